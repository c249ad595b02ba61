"""Draws the classification on the frame, as jetson-inference's imagenet does: "xx.xx% label" at the top
left, and a status line with both fps figures named as such. Python 3.6, OpenCV."""
import cv2

FONT = cv2.FONT_HERSHEY_SIMPLEX


def _text_box(frame, text, origin, scale, color, background=(0, 0, 0)):
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, 2)
    x, y = origin
    cv2.rectangle(frame, (x - 4, y - height - 6), (x + width + 4, y + baseline + 2), background, -1)
    cv2.putText(frame, text, (x, y), FONT, scale, color, 2, cv2.LINE_AA)
    return y + height + baseline + 10


def draw_overlay(frame, top, fps=None, network_fps=None):
    """Draw in place on the BGR ``frame``: the top-1 "xx.xx% label" and a status line; returns ``frame``.
    ``top`` is [(label, probability), ...] best first."""
    scale = max(0.5, min(frame.shape[1], frame.shape[0]) / 600.0)
    y = int(30 * scale)
    if top:
        label, probability = top[0]
        y = _text_box(frame, "{:05.2f}% {}".format(100.0 * probability, label), (10, y), scale, (255, 255, 255))
    if fps is not None:
        status = "{:.1f} FPS end-to-end".format(fps)
        if network_fps:
            status += " | Network {:.0f} FPS".format(network_fps)
        _text_box(frame, status, (10, y), scale * 0.6, (180, 255, 180))
    return frame
