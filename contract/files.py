"""Files written whole or not at all, and their sha256."""
import errno
import hashlib
import os


def current_umask():
    """The process's umask, read without changing it where Linux says it (/proc/self/status, Linux 4.7+): the
    usual ``os.umask(0)`` then restore would, for a moment, let another thread create files open to all."""
    try:
        with open("/proc/self/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, data, mode=None):
    """Write ``data`` (bytes, or str as UTF-8) to ``path`` so readers see the old file or the new one, never a
    part: a uniquely named temporary file in the same folder (two writers never share one), fsync, rename.
    The temporary file is removed when writing fails (an OSError then names ``path``); one left by a killed
    process (kill -9) is named ``.NAME.<12 hex digits>.partial``.

    The file gets ``mode``, by default 0666 less the umask, as ``open()`` would make it (a temporary file's 0600
    would shut out a second user, nginx, or a container's non-root user reading a bind-mounted run)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)  # another process may be making it too
    partial = None
    try:
        # the name is known before the file exists (not so with tempfile.mkstemp), so a Ctrl-C or SIGTERM landing
        # the instant after it is made still finds it in ``finally`` (a signal raises where Python is, there too)
        for _ in range(100):
            partial = os.path.join(folder, ".{}.{}.partial".format(os.path.basename(path), os.urandom(6).hex()))
            try:
                handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
                break
            except FileExistsError:  # another writer's: not ours to remove
                partial = None
        else:
            raise FileExistsError(errno.EEXIST, "no free temporary name beside it", path)
        os.fchmod(handle, 0o666 & ~current_umask() if mode is None else mode)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)  # atomic on POSIX, replaces an old file
        partial = None
    except OSError as error:  # a full disk (ENOSPC) or a file-size limit (EFBIG) names no file by itself
        if error.filename is None or error.filename == partial:
            error.filename = path  # the file meant, not the temporary one
        raise
    finally:
        if partial is not None:
            try:
                os.remove(partial)
            except FileNotFoundError:
                pass


def sha256_of_file(path):
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def finite_json(value):
    """``value`` with every float that is not finite (NaN, +-inf) made None, through dicts, lists and tuples: what
    json.dumps writes is then JSON (``NaN`` is not; a browser's fetch().json() and host-serve refuse it)."""
    import math
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return dict((key, finite_json(item)) for key, item in value.items())
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value
