"""INT8 calibration for TensorRT, Python >= 3.6, no torch; ``tensorrt`` and ``pycuda`` are imported lazily.

- :mod:`calibration.dataset`     a calibration set from an image folder, with the model's own preprocessing;
- :mod:`calibration.calibrator`  the entropy calibrator (IInt8EntropyCalibrator2) and its cache file;
- :mod:`calibration.policy`      where INT8 is offered at all (not on TX1: use FP16 there).
"""
