"""Camera faults trial (issue 11, trial 3): a live source that stalls, ends, raises and returns corrupt frames,
under the real serve loop (ONNX Runtime) with the live page up. The page must answer throughout, every fault
must be counted and logged, and frames must flow again after each one.

    python trials/camera_faults.py [--rounds 5] [--seed 0] [--model RUN/gen-00/model.onnx] [--json out.json]

Each round injects, in a random order, one stall (1.5-3 s with no frame), one end of the stream (the camera
then refuses to reopen 1-3 times), one read that raises (a driver failure), one read that never returns (an
RTSP camera gone without a TCP reset, a hung Argus capture: the reader must abandon it after --lost seconds
and open a fresh capture, never releasing the blocked one) and 5-30 corrupt frames (empty, grey, float, 1x1,
not an array). Prints the faults injected and counted per kind, the /stats requests sent
and answered (and the slowest), and the frames classified after each recovery. Exit status 1 if any check
fails. Without --model a tiny 3-class model is exported first (needs the host side: torch).
"""
import argparse
import json
import os
import random
import sys
import threading
import time
import urllib.request

import numpy as np


from contract.errors import DeviceError
from device.sources import SyntheticSource

CORRUPT_FRAMES = [np.zeros((0, 0, 3), np.uint8), np.zeros((48, 64, 5), np.uint8), np.zeros((48, 64, 3), np.float32),
                  np.zeros((1, 1, 3), np.uint8), "not an image"]


class FaultySource(object):
    """A live camera made from the synthetic scene at ``fps``, that follows ``schedule``: a list of
    ``(kind, amount)`` with kind ``ok`` (frames), ``stall`` (seconds without a frame), ``corrupt`` (frames),
    ``end`` (the stream ends; the next ``amount`` reopen attempts fail) or ``raise`` (one read raises).
    After the schedule it serves good frames for ever. ``injected`` counts what it did; ``recovered_at``
    holds the time.monotonic() of the first good frame after each fault."""

    live = True

    def __init__(self, schedule, fps=60.0, width=64, height=48):
        self.inner = SyntheticSource(width=width, height=height)
        self.schedule = list(schedule)
        self.gap = 1.0 / fps
        self.failing_opens = 0
        self.injected = {"stall": 0, "corrupt": 0, "end": 0, "raise": 0, "refused_open": 0, "hang": 0}
        self.recovered_at = []
        self.shared = {"done_at": None, "released": threading.Event(), "closed_while_reading": 0}
        self._left = None
        self._after_fault = False
        self._reading = 0

    @property
    def schedule_done_at(self):
        return self.shared["done_at"]

    def fresh(self):
        """A new capture of the same camera (what the reader opens after a hung read): the rest of the schedule,
        the same counters."""
        other = FaultySource.__new__(FaultySource)
        other.inner = SyntheticSource(width=self.inner.width, height=self.inner.height)
        other.schedule, other.gap, other.failing_opens = self.schedule, self.gap, 0
        other.injected, other.recovered_at, other.shared = self.injected, self.recovered_at, self.shared
        other._left, other._after_fault, other._reading = None, True, 0
        return other

    def release(self):
        self.shared["released"].set()

    def describe(self):
        return "faulty-camera"

    def open(self):
        if self.failing_opens > 0:
            self.failing_opens -= 1
            self.injected["refused_open"] += 1
            raise DeviceError("faulty-camera is not there (injected)")
        self.inner.open()

    def close(self):
        if self._reading:
            self.shared["closed_while_reading"] += 1

    def _good(self):
        if self._after_fault:
            self.recovered_at.append(time.monotonic())
            self._after_fault = False
        return self.inner.read()

    def read(self):
        self._reading += 1
        try:
            return self._read()
        finally:
            self._reading -= 1

    def _read(self):
        time.sleep(self.gap)
        if not self.schedule:
            if self.shared["done_at"] is None:
                self.shared["done_at"] = time.monotonic()
            return self._good()
        kind, amount = self.schedule[0]
        if kind == "ok":
            self._left = amount if self._left is None else self._left
            self._left -= 1
            if self._left <= 0:
                self.schedule.pop(0)
                self._left = None
            return self._good()
        if kind == "corrupt":
            self._left = amount if self._left is None else self._left
            frame = CORRUPT_FRAMES[self.injected["corrupt"] % len(CORRUPT_FRAMES)]
            self.injected["corrupt"] += 1
            self._left -= 1
            if self._left <= 0:
                self.schedule.pop(0)
                self._left = None
                self._after_fault = True
            return frame
        self.schedule.pop(0)
        self.injected[kind] += 1
        self._after_fault = True
        if kind == "stall":
            time.sleep(amount)
            return self._good()
        if kind == "end":
            self.failing_opens = int(amount)
            return None
        if kind == "raise":
            raise RuntimeError("injected driver failure")
        if kind == "hang":  # never returns until the trial ends: the reader must leave it and open a fresh one
            self.shared["released"].wait()
            return None
        raise ValueError("unknown fault {!r}".format(kind))


def random_schedule(rounds, seed):
    rng = random.Random(seed)
    schedule = [("ok", 30)]
    for _ in range(rounds):
        faults = [("stall", round(rng.uniform(1.5, 3.0), 2)), ("end", rng.randint(1, 3)), ("raise", 1),
                  ("corrupt", rng.randint(5, 30)), ("hang", 1)]
        rng.shuffle(faults)
        for fault in faults:
            schedule += [fault, ("ok", rng.randint(20, 60))]
    return schedule


def run_trial(model, schedule, seconds_after=1.5, stall_s=1.0, poll_s=0.1, log=None, lost_s=4.0):
    """Run the real loop over a FaultySource(schedule) with the page up until the schedule is done and
    ``seconds_after`` more have passed; poll /stats all along. Returns the figures (a dict)."""
    from device.backends import open_backend
    from device.loop import ServeLoop
    from contract.model_info import ModelInfo
    from device.serve import _snapshot
    from device.frame_reader import FrameReader
    from device.telemetry import Telemetry
    from device.web import FrameHub, LiveServer

    lines = []

    def record(message):
        lines.append(message)
        if log is not None:
            log(message)
    info = ModelInfo.from_onnx(model)
    backend = open_backend(model, "onnxruntime", "fp32", max_batch=1, log=record)
    source = FaultySource(schedule)
    source.open()
    reader = FrameReader(source, log=record, backoff_s=0.05, max_backoff_s=0.4, stall_s=stall_s, lost_s=lost_s)
    telemetry = Telemetry(backend.name, backend.precision, info.sha256, platform_monitors=False)
    hub = FrameHub()
    live = LiveServer("127.0.0.1", 0, lambda: _snapshot(telemetry, reader, None), hub, log=record).start()
    loop = ServeLoop(backend, info.spec, info.labels, reader, telemetry, hub=hub, log=record)
    polls = []  # (sent at, seconds, frames) or (sent at, None, error)
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            sent = time.monotonic()
            try:
                with urllib.request.urlopen(live.url + "stats", timeout=5) as response:
                    frames = json.loads(response.read().decode("utf-8"))["frames"]
                polls.append((sent, time.monotonic() - sent, frames))
            except Exception as error:  # counted as unanswered
                polls.append((sent, None, repr(error)))
            stop.wait(poll_s)

    def end_when_done():
        while not stop.is_set():
            if source.schedule_done_at is not None and time.monotonic() - source.schedule_done_at > seconds_after:
                loop.stop()
                return
            stop.wait(0.05)
    threads = [threading.Thread(target=poll, daemon=True), threading.Thread(target=end_when_done, daemon=True)]
    started = time.monotonic()
    reader.start()
    for thread in threads:
        thread.start()
    try:
        loop.run()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        reader.close()
        source.release()  # the hung reads return now; their abandoned readers release their own captures
        live.close()
        backend.close()
        telemetry.close()
    answered = [p for p in polls if p[1] is not None]
    frames_after = []
    for moment in source.recovered_at:  # frames the page reported 1 s after each recovery, minus at recovery
        before = [p[2] for p in answered if p[0] <= moment]
        later = [p[2] for p in answered if p[0] >= moment + 1.0]
        if before and later:
            frames_after.append(later[0] - before[-1])
    return {
        "seconds": round(time.monotonic() - started, 2),
        "injected": dict(source.injected),
        "counted": {"stall": reader.stalls, "corrupt": reader.corrupt,
                    "end": len(reader.gaps) - reader.read_errors - reader.abandoned,
                    "raise": reader.read_errors, "hang": reader.abandoned, "gaps": len(reader.gaps)},
        "captures_released_while_read": source.shared["closed_while_reading"],
        "logged": {"stall": sum("stalled" in line for line in lines),
                   "stall_over": sum("is back after a stall" in line for line in lines),
                   "corrupt": sum("corrupt frame" in line for line in lines),
                   "lost": sum("lost after" in line for line in lines),
                   "back": sum("is back after a gap" in line for line in lines),
                   "raise": sum("reading failed" in line for line in lines),
                   "hang": sum("treated as lost" in line for line in lines)},
        "recoveries": len(source.recovered_at),
        "frames_in_1s_after_each_recovery": frames_after,
        "frames": telemetry.snapshot()["frames"],
        "stats_requests": len(polls),
        "stats_answered": len(answered),
        "stats_slowest_s": round(max([p[1] for p in answered] or [0.0]), 3),
        "loop_errors": [str(e) for e in loop.errors],
    }


def problems(figures):
    """What the trial's figures break (empty when it passed)."""
    found = []
    injected, counted = figures["injected"], figures["counted"]
    for kind in ("stall", "corrupt", "end", "raise", "hang"):
        expected = injected[kind] + (injected["hang"] if kind == "stall" else 0)  # a hung read is a stall first
        if expected != counted[kind]:
            found.append("{}: injected {}, counted {}".format(kind, expected, counted[kind]))
    logged = figures["logged"]
    if logged["hang"] != injected["hang"] or figures["captures_released_while_read"]:
        found.append("hung reads: {} logged of {}, {} captures released while read".format(
            logged["hang"], injected["hang"], figures["captures_released_while_read"]))
    if logged["stall"] != injected["stall"] + injected["hang"] or logged["stall_over"] != injected["stall"]:
        found.append("stalls not all logged (start and end): {}".format(logged))
    if logged["raise"] != injected["raise"] or logged["lost"] != injected["end"] + injected["raise"] \
            or logged["back"] != injected["end"] + injected["raise"] + injected["hang"]:
        found.append("lost sources not all logged: {}".format(logged))
    if injected["corrupt"] and not logged["corrupt"]:
        found.append("corrupt frames not logged")
    if figures["stats_answered"] != figures["stats_requests"]:
        found.append("{} of {} /stats unanswered".format(figures["stats_requests"] - figures["stats_answered"],
                                                         figures["stats_requests"]))
    if any(count <= 0 for count in figures["frames_in_1s_after_each_recovery"]):
        found.append("no frames after a recovery: {}".format(figures["frames_in_1s_after_each_recovery"]))
    if figures["loop_errors"]:
        found.append("the loop failed: {}".format(figures["loop_errors"]))
    return found


def tiny_model():
    """gen-00/model.onnx of a tiny run (host.evolve.tiny_run) made in a temporary folder, removed at exit."""
    import atexit
    import shutil
    import tempfile
    from pathlib import Path
    from host.evolve.tiny_run import make_tiny_run
    folder = tempfile.mkdtemp(prefix="camera-faults-")
    atexit.register(shutil.rmtree, folder, True)
    make_tiny_run(Path(folder))
    return os.path.join(folder, "gen-00", "model.onnx")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="an exported model.onnx (default: a tiny one made here)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    model = args.model or tiny_model()
    schedule = random_schedule(args.rounds, args.seed)
    figures = run_trial(model, schedule, log=lambda m: print("  | " + m, flush=True))
    figures["rounds"], figures["seed"] = args.rounds, args.seed
    found = problems(figures)
    figures["problems"] = found
    from host.machine_info import describe_machine
    figures["machine"] = describe_machine()
    figures["finished_at"] = time.strftime("%a %b %d %H:%M:%S %Z %Y")
    print("machine: {} | finished {}".format(figures["machine"], figures["finished_at"]))
    print(json.dumps(figures, indent=2, sort_keys=True))
    print("camera faults: {} rounds, injected {}, counted {}; /stats {} of {} answered (slowest {} s); "
          "frames in the second after each of {} recoveries: min {}; {}".format(
              args.rounds, figures["injected"], figures["counted"], figures["stats_answered"],
              figures["stats_requests"], figures["stats_slowest_s"], figures["recoveries"],
              min(figures["frames_in_1s_after_each_recovery"] or [0]), "PASS" if not found else "FAIL: " + "; ".join(found)))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2, sort_keys=True)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
