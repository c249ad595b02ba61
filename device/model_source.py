"""Where a model comes from: a local path, or host-serve's URL (downloaded once, sha256-checked, cached).

host-serve answers ``GET /models/<generation>/model.onnx`` with an ``X-SHA256`` header and
``GET /generations`` with ``[{"generation", "sha256", "model_url", ...}]``; the key is
``contract.report_schema.MODEL_URL_KEY``, the constant host-serve writes the entries with, so the two sides
cannot drift apart. A URL may carry the expected
digest as a fragment (``http://host:8700/models/3/model.onnx#sha256=<hex>``), or the caller passes it.

The cache holds one file per digest, ``<cache>/models/<sha256>.onnx``, written atomically, so a model is
downloaded once however many URLs name it, and a half-written file is never taken for a model.
"""
import errno
import hashlib
import json
import os
import re
import tempfile
import time

from contract.errors import ContractError, DeviceError
from contract.files import sha256_of_file
from contract.generation_files import MODEL_ONNX, REFERENCE_NPZ, cached_reference, generation_url_path
from contract.model_info import ModelInfo
from contract.report_schema import MODEL_URL_KEY

from urllib.error import HTTPError, URLError
from urllib.parse import urldefrag, urljoin
from urllib.request import Request, urlopen

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
TIMEOUT_S = 30.0
# the largest model a download may be: the project's models are a few MB (SqueezeNet 1.1 is 4.7 MB in fp32);
# a host (or anyone on a plain-http path) that streams without end must not fill the device's disk first
MAX_MODEL_BYTES = 128 * 1024 * 1024


def default_cache_dir():
    """``$SQUISHEDNETS_CACHE`` or ``~/.cache/squishednets``: models and engines live below it."""
    return os.environ.get("SQUISHEDNETS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "squishednets")


def is_url(text):
    return str(text).startswith(("http://", "https://"))


def _normal_sha256(value, where):
    if value is None:
        return None
    value = str(value).strip().lower()
    if not _SHA256.match(value):
        raise DeviceError("{} {!r} is not a sha256 (64 hex digits)".format(where, value))
    return value


def split_url(url):
    """``url#sha256=<hex>`` -> (url without the fragment, hex or None)."""
    base, fragment = urldefrag(url)
    expected = None
    for part in fragment.split("&") if fragment else ():
        key, _, value = part.partition("=")
        if key == "sha256":
            expected = _normal_sha256(value, "the URL's sha256 fragment")
    return base, expected


def resolve_model(path_or_url, cache_dir=None, expected_sha256=None, timeout=TIMEOUT_S, log=None,
                  max_bytes=MAX_MODEL_BYTES):
    """Return a local path to the model; download and verify it when given a URL.

    A path is used in place (checked against ``expected_sha256`` when one is given). A URL is fetched unless
    a cached file already has the expected digest (from the argument, the ``#sha256=`` fragment or the
    server's ``X-SHA256`` header). Any mismatch deletes the download and raises DeviceError.
    """
    expected = _normal_sha256(expected_sha256, "expected sha256")
    text = str(path_or_url)
    if not is_url(text):
        path = _local_model(text)
        try:
            open(path, "rb").close()
        except (IOError, OSError) as error:  # host-evolve writes model.onnx 0600: another user meets this
            raise _unreadable(path, error)
        if expected is not None:
            actual = sha256_of_file(path)
            if actual != expected:
                raise DeviceError("model {} has sha256 {} but {} was expected: it is not the generation you "
                                  "asked for".format(path, actual, expected))
        return path
    url, from_fragment = split_url(text)
    if expected is not None and from_fragment is not None and expected != from_fragment:
        raise DeviceError("model URL {} says sha256 {} but {} was expected: they must agree".format(
            text, from_fragment, expected))
    expected = expected or from_fragment
    folder = os.path.join(cache_dir or default_cache_dir(), "models")
    if expected is not None and _cached(folder, expected):
        return _cached(folder, expected)
    return _download(url, folder, expected, timeout, log, max_bytes)


def open_model(path_or_url, cache_dir=None, expected_sha256=None, timeout=TIMEOUT_S, log=None, output_name=None):
    """The model opened once: resolved (a host-serve URL fetched into the cache and sha256-checked as
    :func:`resolve_model` does), read and checked once; its contract.model_info.ModelInfo, which every backend
    takes as it is (device.backends.open_backend). A local file is read once: its sha256 is the ModelInfo's,
    compared with ``expected_sha256`` (64 hex digits or None). DeviceError/ContractError naming the model and the
    fix. ``output_name``: the output holding the class scores (``--output-blob``; contract.model_info)."""
    text = str(path_or_url)
    if is_url(text):
        path = resolve_model(text, cache_dir=cache_dir, expected_sha256=expected_sha256, timeout=timeout, log=log)
        fetch_reference(text, path, timeout, log)
        return ModelInfo.from_onnx(path, output_name)
    path = _local_model(text)
    try:
        info = ModelInfo.from_onnx(path, output_name)  # read (and hashed) once, here
    except (IOError, OSError) as error:
        raise _unreadable(path, error)
    return check_expected_sha256(info, expected_sha256)


def check_expected_sha256(info, expected_sha256):
    """``info`` (a ModelInfo) when ``expected_sha256`` (64 hex digits, or None for no check) is its identity, else
    DeviceError naming both."""
    expected = _normal_sha256(expected_sha256, "expected sha256")
    if expected is not None and info.sha256 != expected:
        raise DeviceError("model {} has sha256 {} but {} was expected: it is not the generation you "
                          "asked for".format(info.path, info.sha256, expected))
    return info


MAX_REFERENCE_BYTES = 64 * 1024 * 1024


def fetch_reference(model_url, model_path, timeout=TIMEOUT_S, log=None):
    """The generation's reference outputs (``reference.npz``, contract.reference) fetched from host-serve beside the
    cached model (contract.generation_files.cached_reference), checked by the sha256 host-serve sends, so that
    device-serve, device-bench --check and device-agent compare the engine with its ONNX on the documented Jetson
    path too. Returns the path, or None when the host has none (a foreign model, a host-serve or run from before
    references were served): said in ``log``, never an error. A broken download keeps nothing."""
    target = cached_reference(model_path)
    if os.path.isfile(target):
        return target
    url = urljoin(urldefrag(str(model_url))[0], REFERENCE_NPZ)
    try:
        response = urlopen(Request(url, headers={"User-Agent": "squishednets-device"}), timeout=timeout)
    except (HTTPError, URLError, OSError, ValueError) as error:
        if log is not None:
            log("no reference outputs from {} ({}): the engine is not compared with its ONNX".format(
                url, getattr(error, "code", None) or getattr(error, "reason", error)))
        return None
    partial = target + ".partial"
    try:
        announced = response.headers.get("X-SHA256")
        digest, received = hashlib.sha256(), 0
        with open(partial, "wb") as out:
            while True:
                block = response.read(1 << 16)
                if not block:
                    break
                received += len(block)
                if received > MAX_REFERENCE_BYTES:
                    raise DeviceError("reference outputs {} are over {} bytes: not a reference".format(
                        url, MAX_REFERENCE_BYTES))
                digest.update(block)
                out.write(block)
        if announced is None or digest.hexdigest() != announced.strip().lower():
            raise DeviceError("reference outputs {}: sha256 {} but host-serve said {}; nothing kept".format(
                url, digest.hexdigest(), announced))
        os.rename(partial, target)
    except (DeviceError, IOError, OSError, ValueError) as error:
        if log is not None:
            log("reference outputs from {} not kept ({}): the engine is not compared with its ONNX".format(url, error))
        return None
    finally:
        response.close()
        if os.path.exists(partial):
            os.remove(partial)
    if log is not None:
        log("reference outputs {} -> {} (sha256 verified)".format(url, target))
    return target


def _local_model(text):
    """The absolute path of a model given as a local path, or DeviceError when there is no such file."""
    path = os.path.abspath(os.path.expanduser(text))
    if not os.path.isfile(path):
        raise DeviceError("model {} does not exist (or is not a file): give a generation's {} or a "
                          "host-serve URL such as http://HOST:8700{}".format(text, MODEL_ONNX, generation_url_path(3)))
    return path


def _unreadable(path, error):
    """The DeviceError for a model file this user may not read (host-evolve writes model.onnx 0600)."""
    return DeviceError("model {} cannot be read by this user ({}): run as its owner, or let others read "
                       "it (chmod a+r {})".format(path, getattr(error, "strerror", None) or error, path))


def _cached(folder, sha256):
    path = os.path.join(folder, sha256 + ".onnx")
    return path if os.path.isfile(path) else None


def _open(url, timeout):
    try:
        return urlopen(Request(url, headers={"User-Agent": "squishednets-device"}), timeout=timeout)
    except HTTPError as error:
        detail = _error_detail(error)
        if error.code >= 500:
            raise DeviceError("model URL {} answered HTTP {} {}{}: the host cannot serve it now; try again later".format(
                url, error.code, error.reason, ": " + detail if detail else ""))
        raise DeviceError("model URL {} answered HTTP {} {}{}: {}".format(
            url, error.code, error.reason, ": " + detail if detail else "", not_found_advice(url, error.code, detail)))
    except (URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", error)
        raise DeviceError("model URL {} is unreachable ({}): is host-serve running and reachable from this "
                          "device (host-serve --bind 0.0.0.0:8700)?".format(url, reason))


def not_found_advice(url, status, detail):
    """What to check when host-serve refuses a model URL, from its own ``detail``: the file name (``/models/3/
    modle.onnx``), the generation (a number it does not hold), an alias with no generation yet, or the address."""
    if status in (401, 403):
        return "host-serve refused the token; give its token with --token-file"
    if "is not served" in detail:
        return "check the file name at the end of the URL ({})".format(generation_url_path("N"))
    if "has no best generation" in detail or "has no latest generation" in detail:
        return ("host-serve's run has no such generation yet (none within its tolerance, or none exported): give a "
                "generation's number (GET /generations on host-serve lists them)")
    if "is not in this run" in detail or "is not a generation" in detail:
        return "check the generation number (GET /generations on host-serve lists them)"
    if "/models/" not in url:
        return "check the address: host-serve's models are at {}".format(generation_url_path("N"))
    return "check the URL against GET /generations on host-serve"


def _error_detail(error):
    """host-serve's ``{"detail": "..."}`` of an error answer, short and printable, or ''."""
    try:
        detail = json.loads(error.read(2048).decode("utf-8")).get("detail")
    except Exception:  # not JSON, not a dict, a broken connection: the status says enough
        return ""
    if not isinstance(detail, str):
        return ""
    return "".join(c if c.isprintable() else "?" for c in detail[:300])


def _too_large(url, size, max_bytes):
    return DeviceError("model URL {} sends {} bytes, more than a model may be ({} MB); nothing was kept: check "
                       "the URL".format(url, size, max_bytes // (1024 * 1024)))


def cache_unwritable(folder, error):
    """The one line for a model cache that cannot take a download (a full disk, a read-only mount, permission)."""
    cause = getattr(error, "strerror", None) or error
    fix = ("free space there" if getattr(error, "errno", None) == errno.ENOSPC else
           "it is read-only: mount it writable" if getattr(error, "errno", None) == errno.EROFS else
           "give a folder this user may write")
    return DeviceError("model cache {}: cannot keep the download ({}); {}, or give another --cache-dir (nothing "
                       "was kept)".format(folder, cause, fix))


DOWNLOAD_GRACE_S = 30.0  # a download may take this long whatever its size ...
MIN_DOWNLOAD_RATE = 64 * 1024  # ... and then as long as its size at this many bytes a second


def download_deadline_s(size):
    """How long a download of ``size`` bytes may take in all: DOWNLOAD_GRACE_S plus the size at
    MIN_DOWNLOAD_RATE (a 3 MB model: 77 s; the 128 MB ceiling: 35 min). A host that sends a byte a second
    never holds device-serve at start for ever."""
    return DOWNLOAD_GRACE_S + float(size) / MIN_DOWNLOAD_RATE


def _download(url, folder, expected, timeout, log, max_bytes=MAX_MODEL_BYTES):
    response = _open(url, timeout)
    try:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.strip().isdigit() and int(declared) > max_bytes:
            raise _too_large(url, int(declared), max_bytes)  # refused before a byte is read
        announced = response.headers.get("X-SHA256")
        announced = _normal_sha256(announced, "header X-SHA256 from {}".format(url)) if announced else None
        if expected is not None and announced is not None and expected != announced:
            raise DeviceError("model URL {} serves sha256 {} but {} was expected: the host has another model "
                              "under that URL now".format(url, announced, expected))
        want = expected or announced
        if want is not None and _cached(folder, want):
            return _cached(folder, want)  # downloaded before: leave the body unread
        try:
            if not os.path.isdir(folder):
                os.makedirs(folder)
            handle, partial = tempfile.mkstemp(prefix=".download-", suffix=".partial", dir=folder)
        except OSError as error:
            raise cache_unwritable(folder, error)
        digest = hashlib.sha256()
        received = 0
        size = int(declared) if declared is not None and declared.strip().isdigit() else max_bytes
        allowed_s = download_deadline_s(size)
        deadline = time.monotonic() + allowed_s
        read_some = getattr(response, "read1", response.read)
        try:
            with os.fdopen(handle, "wb") as out:
                while True:
                    try:  # read1: what has arrived (one socket read), so the deadline is checked as bytes come
                        block = read_some(1 << 16)
                    except (OSError, ValueError) as error:
                        raise DeviceError("model URL {}: the download broke off ({}); try again".format(url, error))
                    if not block:
                        break
                    received += len(block)
                    if received > max_bytes:
                        raise _too_large(url, "over {}".format(max_bytes), max_bytes)
                    if time.monotonic() > deadline:  # each read has its timeout; the whole has this one
                        raise DeviceError("model URL {}: the download took over {:.0f} s ({} of {} bytes; below {} "
                                          "KB/s): the host or the network is too slow; try again, or copy the model "
                                          "to the device and give its path".format(
                                              url, allowed_s, received, size if declared else "?",
                                              MIN_DOWNLOAD_RATE // 1024))
                    digest.update(block)
                    try:
                        out.write(block)
                    except OSError as error:
                        raise cache_unwritable(folder, error)
                try:
                    out.flush()
                    os.fsync(out.fileno())
                except OSError as error:
                    raise cache_unwritable(folder, error)
            actual = digest.hexdigest()
            if want is not None and actual != want:
                raise DeviceError("model URL {}: the download has sha256 {} but {} was expected; it was corrupted "
                                  "or the host changed it; nothing was kept".format(url, actual, want))
            _refuse_side_files(partial, url)  # nothing cached that cannot run without files a download does not bring
            if expected is None:  # no digest from the caller: keep only what the device could run
                _check_is_model(partial, url)
            final = os.path.join(folder, actual + ".onnx")
            if os.path.exists(final):  # another process finished the same model first
                os.remove(partial)
            else:
                os.rename(partial, final)
            if log is not None:
                log("model {} -> {} (sha256 verified)".format(url, final) if want else
                    "model {} -> {} (no sha256 to check against: pass #sha256=<hex>)".format(url, final))
            return final
        finally:
            if os.path.exists(partial):
                os.remove(partial)
    finally:
        response.close()


def _refuse_side_files(path, url):
    """DeviceError when the downloaded model keeps its weights in side files (model.onnx + model.onnx.data): a URL
    brings the graph alone, so nothing of it is cached."""
    from contract.model_info import external_data_of
    try:
        with open(path, "rb") as handle:
            sides = external_data_of(handle.read(), url)
    except ContractError:
        return  # not a model at all: the checks after this one say so
    if sides:
        raise DeviceError("model URL {} keeps its weights in side file(s) {} that a download does not bring; nothing "
                          "was kept: copy the model's folder (model and data files) to the device and give its "
                          "path".format(url, ", ".join(sides[:3])))


def _check_is_model(path, url):
    """DeviceError unless ``path`` is an ONNX model the device can run (parses; one NCHW image input)."""
    try:
        ModelInfo.from_onnx(path)
    except ContractError as error:
        raise DeviceError("model URL {} did not give a model the device can run ({}); nothing was kept: "
                          "check the URL (host-serve's GET /generations lists them)".format(
                              url, str(error).replace(path, "the download")))


def list_generations(base_url, timeout=TIMEOUT_S):
    """host-serve's ``GET /generations``: a list of dicts with ``generation``, ``sha256``, ``model_url``.

    ``model_url`` (:data:`MODEL_URL_KEY`) is made absolute and given the entry's sha256 as its ``#sha256=``
    fragment, so :func:`resolve_model` verifies the download against the listing with no other argument.
    """
    url = urljoin(base_url.rstrip("/") + "/", "generations")
    response = _open(url, timeout)
    try:
        text = response.read(MAX_LISTING_BYTES + 1)
        if len(text) > MAX_LISTING_BYTES:
            raise DeviceError("{} answered more than {} MB: is it host-serve?".format(url, MAX_LISTING_BYTES >> 20))
        generations = json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, nested beyond the parser's depth
        raise DeviceError("{} did not answer JSON ({}): is it host-serve?".format(url, str(error)[:120]))
    except (IOError, OSError) as error:
        raise DeviceError("{}: the answer broke off ({}); try again".format(url, error))
    finally:
        response.close()
    if isinstance(generations, dict):
        generations = generations.get("generations")
    if not isinstance(generations, list):
        raise DeviceError("{} did not answer a list of generations (it answered {}): is it host-serve?".format(
            url, type(generations).__name__ if generations is not None else "null"))
    listed = []
    for entry in generations:
        if not well_formed_entry(entry):
            continue  # an entry the device cannot use is skipped; the rest are measured
        if entry.get(MODEL_URL_KEY):
            entry[MODEL_URL_KEY] = urljoin(url, entry[MODEL_URL_KEY])
            entry[MODEL_URL_KEY] = urldefrag(entry[MODEL_URL_KEY])[0] + "#sha256=" + entry["sha256"]
        listed.append(entry)
    if generations and not listed:
        raise DeviceError("{} answered {} entries, none of them a generation ({{generation: N, sha256: 64 hex, "
                          "model_url}}): is it host-serve?".format(url, len(generations)))
    return listed


MAX_LISTING_BYTES = 16 * 1024 * 1024


def well_formed_entry(entry):
    """A /generations entry the device can use: a dict whose ``generation`` is an integer >= 0, ``sha256`` 64
    hex digits, and ``model_url`` (when there) a string."""
    if not isinstance(entry, dict):
        return False
    number, sha256, url = entry.get("generation"), entry.get("sha256"), entry.get(MODEL_URL_KEY)
    return (isinstance(number, int) and not isinstance(number, bool) and number >= 0
            and isinstance(sha256, str) and bool(_SHA256.match(sha256))
            and (url is None or isinstance(url, str)))
