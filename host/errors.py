"""The host side's exception type: every message names the input and the fix."""


class HostError(Exception):
    """A problem with the host side's input (data, config, run folder), told plainly."""
