"""The bottom layer: the contract between host and device, and the small utilities every package needs.

Every other package may import it; it imports none of them (tests/test_architecture.py enforces the layers
host -> device -> engines, calibration -> contract). It runs on the Jetson's Python 3.6 with numpy alone
(OpenCV only inside the preprocessing's resize step, which both sides call), never torch.

- ``contract.preprocess``: the one preprocessing definition (PreprocessSpec) and its ONNX metadata key.
- ``contract.model_info``: what a generation's ONNX says about itself (names, shapes, labels, spec, genome).
- ``contract.report_schema``: the device report that host-serve stores (JSON Schema, one place).
- ``contract.precisions``, ``contract.images``: the precision names and image file extensions both sides accept.
- ``contract.files``: atomic writes and sha256 of a file; ``contract.address``: ``[HOST:]PORT``;
  ``contract.tokens``: bearer-token files.
- ``contract.errors``: ContractError, and DeviceError for the Jetson side.
"""
