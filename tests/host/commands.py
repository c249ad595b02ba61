"""host-evolve as the tests run it: a real process, its flags, and the one-line refusal every bad input gets."""
import os
import resource
import subprocess
import sys


def host_evolve(*args, cwd=None, limit_bytes=None, wait=True, timeout=300):
    """host-evolve (``python -m host.evolve.cli``) in a real process with OMP_NUM_THREADS=1, run to its end
    (a CompletedProcess with text output), or started (a Popen) with ``wait`` False. ``limit_bytes``: its
    file-size limit (RLIMIT_FSIZE, as ``ulimit -f`` sets)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    command = [sys.executable, "-m", "host.evolve.cli", *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if not wait:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                          preexec_fn=limit if limit_bytes else None)


def flags(**values):
    """``--key=value`` for each setting (underscores as dashes)."""
    return [f"--{k.replace('_', '-')}={v}" for k, v in values.items()]


def one_clear_line(result, *phrases):
    """Exit status 2, no traceback, one error, and it is the last line (progress may come before it) and holds
    every one of ``phrases``; that line."""
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.read()
    assert result.returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr and stderr.count("error:") == 1, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("host-evolve: error: "), stderr
    for phrase in phrases:
        assert phrase in last, last
    return last
