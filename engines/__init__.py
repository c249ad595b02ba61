"""ONNX -> TensorRT engine build and cache, TensorRT 8.2 (JetPack 4.6.1) ... 10.x, Python >= 3.6.

``tensorrt`` is imported lazily (only when an engine is built or loaded), so this package imports anywhere.
The pieces, named for what becomes what (as Polygraphy does):

- :mod:`engines.tensorrt_api`  feature tests that pick the 8.2 / 8.4+ / 10 / 11 spelling of each call;
- :mod:`engines.gpu`           the GPU's name and compute capability (part of every cache key);
- :mod:`engines.cache`         the engine cache: key, JSON sidecar, validation, atomic writes;
- :mod:`engines.build`         ``engine_from_onnx`` (the builder sequence) and ``cached_engine_from_onnx``.
"""
from engines.errors import EngineError

__all__ = ["EngineError"]
