"""The engine side's exception: a DeviceError, so device-serve and device-bench report it the same way."""
from contract.errors import DeviceError


class EngineError(DeviceError):
    """An engine could not be built or loaded; the message says why and what to do."""
