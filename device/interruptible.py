"""Blocking calls that a signal can cut short.

OpenCV opens a network camera (``cv2.VideoCapture("rtsp://...")``) inside C code that holds the calling thread
for as long as FFmpeg or GStreamer wait (30 s and more for a camera that accepts and never answers), and
Python runs signal handlers only between bytecodes of the main thread: SIGTERM (docker stop) and Ctrl-C wait
for the open to give up. :func:`call_interruptibly` runs such a call on a worker thread and waits for it in
short slices on the caller's thread, so a handler that raises (KeyboardInterrupt, device.serve.Terminated)
ends the wait at once; the abandoned call finishes (or not) on its daemon thread and is cleaned up there.
"""
import sys
import threading
import time


_ABANDONED = []  # worker threads left running by a caller that gave up on them (a signal, a time limit)


def note_abandoned(thread):
    """Remember ``thread`` as left running (see :func:`exit_status`)."""
    _ABANDONED.append(thread)


def abandoned_alive():
    """How many abandoned worker threads are still running."""
    return sum(1 for thread in _ABANDONED if thread.is_alive())


def exit_status(code, process=True):
    """``code`` for a command's main() to return; but while an abandoned call still runs in C code (OpenCV
    opening a camera, TensorRT building), the interpreter's shutdown would run C++ static destructors under
    it and abort (SIGABRT instead of 143): then the output is flushed and the process ends here, at once,
    with ``code`` (os._exit). ``process`` False (main() called in-process, with an argv: tests) never ends
    the process."""
    if process and abandoned_alive():
        import os
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)
    return code


class TimedOut(Exception):
    """The call did not return within its time limit (it goes on on its own thread, then is cleaned up)."""


def call_interruptibly(function, timeout_s=None, cleanup=None, name="blocking-call", poll_s=0.1, clock=None):
    """``function()``'s result, run on a daemon thread; its exception is raised here.

    ``timeout_s``: raise :class:`TimedOut` after that many seconds (None: wait as long as it takes).
    ``cleanup(result)``: called on the worker thread with the result if it arrives after the caller gave up
    (a signal or the time limit), e.g. to release a capture nobody will read. ``poll_s``: the slice the
    caller waits in (a signal handler runs between slices at the latest).
    """
    clock = clock or time.monotonic
    done = threading.Event()
    state = {"abandoned": False, "result": None, "error": None}
    lock = threading.Lock()

    def work():
        try:
            result = function()
        except BaseException:
            state["error"] = sys.exc_info()
            result = None
        with lock:
            state["result"] = result
            abandoned = state["abandoned"]
        done.set()
        if abandoned and cleanup is not None and state["error"] is None:
            try:
                cleanup(result)
            except Exception:  # nobody is left to tell; the process is ending or has moved on
                pass

    worker = threading.Thread(target=work, name=name)
    worker.daemon = True
    deadline = None if timeout_s is None else clock() + float(timeout_s)
    try:
        worker.start()  # inside: a signal may come while start() waits for the thread to run
        while not done.wait(poll_s):
            if deadline is not None and clock() >= deadline:
                raise TimedOut("no answer within {:.0f} s".format(float(timeout_s)))
    except BaseException as error:  # a signal's exception or the time limit: leave the call to its thread
        with lock:
            finished = done.is_set()
            state["abandoned"] = not finished
        if not finished:
            note_abandoned(worker)
        if not (finished and isinstance(error, TimedOut)):  # (a result that came just in time is taken)
            if finished and cleanup is not None and state["error"] is None:
                try:
                    cleanup(state["result"])
                except Exception:
                    pass
            raise
    if state["error"] is not None:
        raise state["error"][1].with_traceback(state["error"][2])
    return state["result"]
