"""The device side's exception type: every message names the input and the fix."""


class DeviceError(Exception):
    """A problem with the device side's input (model, source, backend, settings), told plainly."""
