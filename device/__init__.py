"""squishednets device side: runs on a Jetson (Python >= 3.6, no torch), or any machine with ONNX Runtime."""

__version__ = "0.1.0"
