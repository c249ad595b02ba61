"""squishednets host side: the SquishedNets evolution, training, export and the host service (torch)."""

__version__ = "0.1.0"
