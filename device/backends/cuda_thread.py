"""All CUDA work on one thread that holds the GPU's primary context.

pycuda contexts are per thread; TensorRT works in the primary context. A serve loop calls ``infer`` from
whatever thread it likes, so every pycuda/TensorRT call is handed to this one thread instead (a queue hop
costs tens of microseconds, far below a network run, and it rules out "invalid device context" for good).
"""
import sys
import queue
import threading


def primary_context(device_index=0):
    """Retain device ``device_index``'s primary context and make it current here; return its release."""
    import pycuda.driver as cuda
    cuda.init()
    context = cuda.Device(device_index).retain_primary_context()
    context.push()

    def release():
        context.pop()
        context.detach()
    return release


class CudaThread(object):
    """A worker thread that enters a CUDA context (``open_context()`` -> release callable) and runs calls.

    ``call(fn, *args)`` runs ``fn`` there and returns its result or raises its exception; a call made from
    the worker itself runs at once (no deadlock). ``close()`` releases the context and ends the thread.
    """

    def __init__(self, open_context=None, device_index=0, name="cuda"):
        self._open_context = open_context or (lambda: primary_context(device_index))
        self._jobs = queue.Queue()
        self._started = threading.Event()
        self._start_error = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.daemon = True
        self._thread.start()
        self._started.wait()
        if self._start_error is not None:
            raise self._start_error[1].with_traceback(self._start_error[2])

    def _run(self):
        try:
            release = self._open_context()
        except BaseException:
            self._start_error = sys.exc_info()
            self._started.set()
            return
        self._started.set()
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    break
                function, args, kwargs, done, result = job
                try:
                    result.append((True, function(*args, **kwargs)))
                except BaseException:
                    result.append((False, sys.exc_info()))
                done.set()
        finally:
            if release is not None:
                release()

    def is_alive(self):
        """Whether the worker thread still runs (a call given up on may still be building an engine)."""
        return self._thread.is_alive()

    @property
    def is_current(self):
        return threading.current_thread() is self._thread

    def call(self, function, *args, **kwargs):
        if self.is_current:
            return function(*args, **kwargs)
        if self._closed:
            raise RuntimeError("the CUDA thread is closed")
        done, result = threading.Event(), []
        self._jobs.put((function, args, kwargs, done, result))
        # in slices: a signal the kernel hands to another thread (any may get it) only wakes this one's handler
        # when this one wakes; an untimed wait would sit through a minutes-long engine build
        while not done.wait(0.1):
            pass
        ok, value = result[0]
        if ok:
            return value
        raise value[1].with_traceback(value[2])

    def close(self, wait=True):
        """End the thread after the calls queued so far, releasing the context there. ``wait=False`` does not
        wait for it: what a signal handler's exception needs while a call (an engine build) is still running --
        the daemon thread finishes or dies with the process."""
        if not self._closed and self._thread.is_alive():
            self._closed = True
            self._jobs.put(None)
            if wait:
                self._thread.join()
