"""Image files both sides read: host-evolve's datasets, device-serve's folder sources, INT8 calibration sets.

One list of extensions and one decode-and-check function, :func:`read_image`, so that a file is used on both
sides or skipped on both, for the same reason: training (host/evolve/data.py), serving (device/sources.py) and
calibration (calibration/dataset.py) all call it.

The rules (the same whatever OpenCV build decodes, which matters: a Jetson's OpenCV 4.1 is not a desktop's 4.x):

* the bytes are read by Python (``open(path, "rb")``), then ``cv2.imdecode``: ``cv2.imread`` takes the path
  in the file system's encoding and fails or crashes on some names, and on some builds reads formats
  (EXIF-rotated TIFFs) differently from ``imdecode``;
* a JPEG without its end-of-image marker (``FF D9``: a copy or download cut off) is refused, although
  libjpeg would decode its top half and grey the rest;
* HEIC/HEIF (iPhone photos, often named ``.jpg``) and AVIF are named as such, since OpenCV cannot decode them;
* every image becomes 8-bit BGR, H x W x 3 (``IMREAD_COLOR``: grey and 16-bit images converted), and must be
  at least :data:`MIN_SIDE` pixels each way.
"""

# .jfif and .jpe are JPEG's other names (Windows saves web images as .jfif); .gif: OpenCV >= 4.7 decodes it (an
# older OpenCV, a Jetson's 4.1, cannot: read_image then skips and counts it, on both sides alike)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".gif")

#: The smallest image both sides use (pixels, each way): anything smaller carries no picture to classify.
MIN_SIDE = 2

NOT_DECODABLE = "not a decodable image"


def is_image_name(name):
    """True when ``name`` ends with one of IMAGE_EXTENSIONS (any case)."""
    return str(name).lower().endswith(IMAGE_EXTENSIONS)


def size_problem(height, width):
    """None when an image of ``height`` x ``width`` pixels is usable, else why not (the one size rule)."""
    if height < MIN_SIDE or width < MIN_SIDE:
        return "only {}x{} pixels (at least {}x{} needed)".format(width, height, MIN_SIDE, MIN_SIDE)
    return None


def sniff_problem(data):
    """Why ``data`` (a file's bytes) cannot be an image OpenCV decodes whole, or None when it may be.

    Empty files, HEIF/HEIC/AVIF containers (ISO-BMFF ``ftyp`` boxes) and JPEGs cut off before their
    end-of-image marker are told apart here; anything else is left to the decoder.
    """
    if not data:
        return "an empty file"
    head = bytes(data[:32])
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace")
        if brand in ("heic", "heix", "hevc", "hevx", "heim", "heis", "mif1", "msf1", "avif", "avis"):
            kind = "an AVIF" if brand.startswith("avi") else "a HEIC/HEIF"
            return ("{} photo (brand {!r}), which OpenCV cannot decode: convert it to JPEG or PNG (e.g. "
                    "heif-convert, or the phone's 'Most Compatible' camera format)".format(kind, brand))
    if head[:3] == b"\xff\xd8\xff" and bytes(data).rfind(b"\xff\xd9") < 0:
        return "a JPEG cut off before its end (no end-of-image marker): an interrupted copy or download"
    return None


def decode_image_bytes(data):
    """(BGR uint8 H x W x 3 image, None) for a file's bytes, or (None, why it is not used)."""
    import numpy as np
    import cv2
    problem = sniff_problem(data)
    if problem is not None:
        return None, problem
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as error:  # a header claiming more pixels than CV_IO_MAX_IMAGE_PIXELS allows
        lines = str(error).strip().splitlines()
        return None, "{} ({})".format(NOT_DECODABLE, (lines[-1] if lines else "OpenCV refused it")[:160])
    if image is None or image.size == 0:
        if bytes(data[:4]) == b"GIF8":
            return None, ("a GIF, which this OpenCV ({}) cannot decode (4.7 and newer can): convert it to PNG".format(
                getattr(cv2, "__version__", "?")))
        return None, NOT_DECODABLE
    if image.ndim == 2:  # IMREAD_COLOR gives 3 channels; a build that does not is converted here
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    problem = size_problem(image.shape[0], image.shape[1])
    if problem is not None:
        return None, problem
    return image, None


def read_image(path):
    """(BGR uint8 H x W x 3 image, None) for the image file at ``path``, or (None, why it is skipped).

    The one reader of image files on both sides (see the module's rules). Never raises for a bad file: a
    missing, unreadable or undecodable file gives its reason, e.g. ``"unreadable (Permission denied)"``.
    """
    try:
        with open(str(path), "rb") as handle:
            data = handle.read()
    except (IOError, OSError) as error:  # permission denied, a dangling link, a folder named like an image
        return None, "unreadable ({})".format(getattr(error, "strerror", None) or error)
    return decode_image_bytes(data)
