"""Image files both sides read: host-evolve's datasets, device-serve's folder sources, INT8 calibration sets.
One list, so an image the device classifies is never skipped by training (OpenCV decodes all of them)."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def is_image_name(name):
    """True when ``name`` ends with one of IMAGE_EXTENSIONS (any case)."""
    return str(name).lower().endswith(IMAGE_EXTENSIONS)
