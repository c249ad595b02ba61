"""The one preprocessing definition, shared by training (host) and inference (device).

The host imports this module; it never imports the host. Python 3.6, numpy and OpenCV only.

The contract (docs/architecture.md, and what jetson-inference's ``imagenet`` does with a custom ONNX):
resize the whole frame to the network's input size (no crop, aspect not kept), bilinear,
BGR -> RGB, scale to [0, 1], subtract the mean and divide by the std per channel, HWC -> CHW.
"""
import json

import numpy as np

from contract.errors import ContractError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: A 1-channel (greyscale) model's default statistics when its file names none: ImageNet's, averaged over
#: the channels (what torchvision users pass to Normalize for Grayscale(1) inputs).
GREY_MEAN = (0.449,)
GREY_STD = (0.226,)
#: Colour orders a spec may name; GRAY is one channel (OpenCV's BGR -> grey luma, then the same steps).
COLORS = ("RGB", "BGR", "GRAY")

#: Key under which the spec is stored in the ONNX ``metadata_props``.
METADATA_KEY = "preprocess"


class PreprocessSpec(object):
    """How a frame becomes a network input. Stored in the ONNX metadata and in summary.json.

    ``color``: RGB or BGR (3 channels), or GRAY (1 channel: a model trained on greyscale; its mean and std
    default to GREY_MEAN / GREY_STD). ``channels`` is 1 or 3 accordingly.
    """

    def __init__(self, height, width, mean=IMAGENET_MEAN, std=IMAGENET_STD, color="RGB",
                 resize="stretch", interpolation="linear"):
        if int(height) < 8 or int(width) < 8:
            raise ContractError("preprocess size {}x{} is too small: use at least 8x8 pixels".format(height, width))
        if color not in COLORS:
            raise ContractError("preprocess color {!r} is not one of {}".format(color, ", ".join(COLORS)))
        channels = 1 if color == "GRAY" else 3
        if channels == 1:
            mean = GREY_MEAN if tuple(mean) == IMAGENET_MEAN else mean
            std = GREY_STD if tuple(std) == IMAGENET_STD else std
        if resize != "stretch":
            raise ContractError("preprocess resize {!r} is not supported: only 'stretch' (whole frame, "
                              "as jetson-inference does)".format(resize))
        if interpolation not in _INTERPOLATIONS:
            raise ContractError("preprocess interpolation {!r} is not one of {}".format(
                interpolation, ", ".join(sorted(_INTERPOLATIONS))))
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ContractError("preprocess mean/std need {} value(s) each ({}), std > 0; got {} / {}".format(
                channels, color, mean, std))
        self.height = int(height)
        self.width = int(width)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.color = color
        self.resize = resize
        self.interpolation = interpolation

    @property
    def channels(self):
        """1 for GRAY, else 3: the network input's channel count."""
        return 1 if self.color == "GRAY" else 3

    @classmethod
    def square(cls, size):
        """The default spec at ``size`` x ``size`` with ImageNet statistics."""
        return cls(size, size)

    def to_dict(self):
        return {"height": self.height, "width": self.width, "mean": list(self.mean), "std": list(self.std),
                "color": self.color, "resize": self.resize, "interpolation": self.interpolation,
                "scale": "1/255", "layout": "NCHW"}

    def to_json(self):
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data):
        try:
            return cls(data["height"], data["width"], data.get("mean", IMAGENET_MEAN), data.get("std", IMAGENET_STD),
                       data.get("color", "RGB"), data.get("resize", "stretch"), data.get("interpolation", "linear"))
        except (KeyError, TypeError) as error:
            raise ContractError("preprocess spec {!r} is missing a field ({}): it needs height and width".format(
                data, error))

    @classmethod
    def from_json(cls, text):
        try:
            return cls.from_dict(json.loads(text))
        except ValueError as error:
            raise ContractError("preprocess spec is not valid JSON ({}): {!r}".format(error, text[:200]))

    def __eq__(self, other):
        return isinstance(other, PreprocessSpec) and self.to_dict() == other.to_dict()

    def __ne__(self, other):
        return not self == other

    def __repr__(self):
        return "PreprocessSpec({})".format(self.to_json())

    # -- the steps -----------------------------------------------------------------------------
    def resize_frame(self, frame_bgr):
        """BGR uint8 HxWx3 (or greyscale HxW) -> uint8 ``height`` x ``width`` x 3 in ``self.color`` order
        (``height`` x ``width`` x 1 for GRAY: OpenCV's luma of the BGR frame, then resized)."""
        import cv2
        if frame_bgr is None or not hasattr(frame_bgr, "shape") or frame_bgr.size == 0:
            raise ContractError("preprocess got an empty frame")
        if frame_bgr.ndim == 2:
            frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
        elif frame_bgr.shape[2] == 4:
            frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_BGRA2BGR)
        if self.color == "GRAY":
            grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
            if grey.shape[0] != self.height or grey.shape[1] != self.width:
                grey = cv2.resize(grey, (self.width, self.height), interpolation=_INTERPOLATIONS[self.interpolation])
            return grey[:, :, None]
        if frame_bgr.shape[0] != self.height or frame_bgr.shape[1] != self.width:
            frame_bgr = cv2.resize(frame_bgr, (self.width, self.height),
                                   interpolation=_INTERPOLATIONS[self.interpolation])
        if self.color == "RGB":
            frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        return frame_bgr

    def normalize(self, images):
        """uint8 HxWxC or NxHxWxC (already resized, in ``self.color`` order; C = ``channels``) -> float32 NCHW."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        scale, offset = self.affine()
        out = images.astype(np.float32) * scale + offset  # (x / 255 - mean) / std as one multiply-add
        return np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    def affine(self):
        """Per-channel (scale, offset) with ``x_norm = x_uint8 * scale + offset``; what a fused kernel uses."""
        std = np.asarray(self.std, dtype=np.float32)
        mean = np.asarray(self.mean, dtype=np.float32)
        return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)

    def __call__(self, frame_bgr):
        """One BGR frame -> float32 1 x ``channels`` x H x W network input."""
        return self.normalize(self.resize_frame(frame_bgr))


def _interpolations():
    try:
        import cv2
        return {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "nearest": cv2.INTER_NEAREST}
    except ImportError:  # resolved again when a frame is resized; the spec itself needs no OpenCV
        return {"linear": 1, "area": 3, "nearest": 0}


_INTERPOLATIONS = _interpolations()
