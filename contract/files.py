"""Files written whole or not at all, and their sha256."""
import hashlib
import os
import tempfile


def current_umask():
    """The process's umask, read without changing it where Linux says it (/proc/self/status, Linux 4.7+): the
    usual ``os.umask(0)`` then restore would, for a moment, let another thread create files open to all."""
    try:
        with open("/proc/self/status") as status:
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
    process is named ``.NAME.XXXXXXXX.partial``.

    The file gets ``mode``, by default 0666 less the umask, as ``open()`` would make it (mkstemp's own 0600
    would shut out a second user, nginx, or a container's non-root user reading a bind-mounted run)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)  # another process may be making it too
    try:
        handle, partial = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".partial", dir=folder)
    except OSError as error:
        error.filename = path  # the file meant, not the temporary one
        raise
    try:
        os.fchmod(handle, 0o666 & ~current_umask() if mode is None else mode)
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, path)  # atomic on POSIX, replaces an old file
    except OSError as error:  # a full disk (ENOSPC) or a file-size limit (EFBIG) names no file by itself
        if error.filename in (None, partial):
            error.filename = path
        raise
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def sha256_of_file(path):
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
