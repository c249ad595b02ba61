"""The exception types below every package: each message names the input and the fix."""


class ContractError(Exception):
    """Bad input met by the shared layer (an address, a token file, a preprocessing spec, an ONNX file)."""


class DeviceError(ContractError):
    """A problem with the Jetson side's input (model, source, backend, engine, settings), told plainly.
    device/, engines/ and calibration/ raise it; their CLIs turn any ContractError into one line, exit 2."""
