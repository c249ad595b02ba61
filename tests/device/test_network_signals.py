"""A network camera that accepts and never answers: device-serve says it is connecting, and SIGTERM, SIGHUP or
Ctrl-C end the wait at once with their exit status (a real silent TCP server on loopback). The mechanism,
device.interruptible.call_interruptibly, is tested on its own with events, not sleeps."""
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from device.interruptible import TimedOut, call_interruptibly
from tests.device.test_serve import RunningServe
from tests.engines.foreign_onnx import foreign_onnx


def test_a_signal_ends_the_wait_for_a_blocked_call_and_its_late_result_is_cleaned_up():
    started, release, cleaned = threading.Event(), threading.Event(), []

    def blocked():
        started.set()
        release.wait()
        return "capture"

    def interrupt():
        started.wait()
        # to the main thread itself (Python's default handler raises KeyboardInterrupt there): a process-directed
        # kill may land on a worker thread, and a main thread blocked in a lock would never hear of it
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        call_interruptibly(blocked, cleanup=cleaned.append, poll_s=0.05)
    assert cleaned == []
    release.set()
    deadline = time.monotonic() + 120  # a bound, not a speed: the worker thread may wait for a busy core
    while not cleaned and time.monotonic() < deadline:
        threading.Event().wait(0.01)
    assert cleaned == ["capture"]  # the call came back after the caller had gone: released, not leaked


def test_a_time_limit_and_the_calls_own_error():
    now = [0.0]
    never = threading.Event()

    def clock():
        now[0] += 1.0  # each look at the clock is a second later: no real waiting for the limit
        return now[0]
    with pytest.raises(TimedOut, match="no answer within 3 s"):
        call_interruptibly(never.wait, timeout_s=3, poll_s=0.001, clock=clock)
    never.set()
    with pytest.raises(ZeroDivisionError):
        call_interruptibly(lambda: 1 // 0)
    assert call_interruptibly(lambda: 42) == 42


@pytest.fixture()
def silent_camera():
    """A TCP server that accepts RTSP connections and never answers (a hung IP camera)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except socket.timeout:
                continue
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    yield "rtsp://127.0.0.1:{}/live".format(server.getsockname()[1])
    stop.set()
    for connection in held:
        connection.close()
    server.close()


class StartedWithSigintIgnored(RunningServe):
    """As a shell script's ``device-serve ... &`` starts it: SIGINT ignored, which Python keeps unless told."""

    def __init__(self, *args):
        original = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the child, as from the shell
        try:
            RunningServe.__init__(self, *args)
        finally:
            signal.signal(signal.SIGINT, original)


@pytest.mark.parametrize("signum, status, started", [(signal.SIGTERM, 143, RunningServe),
                                                     (signal.SIGINT, 130, RunningServe),
                                                     (signal.SIGINT, 130, StartedWithSigintIgnored),
                                                     (signal.SIGHUP, 129, RunningServe)])
def test_a_signal_while_a_silent_camera_is_opened_ends_the_run_at_once(tmp_path, silent_camera, signum, status,
                                                                       started):
    model = foreign_onnx(tmp_path / "m.onnx")
    serve = started("--model", model, "--source", silent_camera, "--headless", "--status-every", "0",
                    "--backend", "onnxruntime")
    try:
        serve.wait_for("connecting (giving up after")
        sent = time.monotonic()
        serve.process.send_signal(signum)
        code = serve.process.wait(timeout=60)
        waited = time.monotonic() - sent
    finally:
        if serve.process.poll() is None:
            serve.process.kill()
    # the signal's own status: a run that waited out the open's limit (10-30 s) would end with the open's
    # error instead (exit 2), so the status says the signal was acted on; the seconds are printed, not judged
    # (a busy machine may take seconds to end any process)
    assert code == status, "exit {} after {:.1f} s".format(code, waited)
    print("the signal ended the run in {:.2f} s".format(waited))


def test_an_abandoned_call_makes_the_exit_status_end_the_process_at_once():
    """A command that gives up on a call still running in C code ends with os._exit (no interpreter shutdown
    under it, which aborted with SIGABRT); without one, exit_status just returns the code."""
    import subprocess
    import sys
    from device.interruptible import exit_status
    assert exit_status(3) == 3
    script = ("import threading, sys\n"
              "from device.interruptible import TimedOut, call_interruptibly, exit_status\n"
              "never = threading.Event()\n"
              "try:\n"
              "    call_interruptibly(never.wait, timeout_s=0.01, poll_s=0.001)\n"
              "except TimedOut:\n"
              "    print('gave up', flush=True)\n"
              "exit_status(7)\n"
              "print('not reached')\n")
    done = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE, universal_newlines=True,
                          timeout=60, cwd=str(Path(__file__).resolve().parents[2]))
    assert done.returncode == 7 and done.stdout == "gave up\n"
