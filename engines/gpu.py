"""The GPU an engine is built for: its name and compute capability are part of every engine cache key
(an engine is never portable between GPUs), and the capability decides whether INT8 is offered."""


class GpuInfo(object):
    """``name`` ("NVIDIA Tegra X1"), ``capability`` ((5, 3)), ``total_memory`` in bytes (0 when unknown)."""

    def __init__(self, name, capability, total_memory=0):
        self.name = str(name)
        self.capability = (int(capability[0]), int(capability[1]))
        self.total_memory = int(total_memory)

    @property
    def capability_text(self):
        return "{}.{}".format(*self.capability)

    def slug(self):
        """A file-name-safe form: ``NVIDIA-Tegra-X1-sm53``."""
        name = "".join(c if c.isalnum() else "-" for c in self.name).strip("-")
        while "--" in name:
            name = name.replace("--", "-")
        return "{}-sm{}{}".format(name or "gpu", *self.capability)

    def to_dict(self):
        return {"name": self.name, "compute_capability": self.capability_text, "total_memory_mb":
                round(self.total_memory / 2.0 ** 20, 1)}

    def __repr__(self):
        return "GpuInfo({!r}, sm_{}{})".format(self.name, *self.capability)


def gpu_info_from_pycuda(cuda, index=0):
    """Read device ``index`` through ``pycuda.driver`` (``cuda.init()`` must have run)."""
    device = cuda.Device(index)
    return GpuInfo(device.name(), device.compute_capability(), device.total_memory())
