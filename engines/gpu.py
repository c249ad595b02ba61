"""The GPU an engine is built for: its name and compute capability are part of every engine cache key
(an engine is never portable between GPUs), and the capability decides whether INT8 is offered."""


class GpuInfo(object):
    """``name`` ("NVIDIA Tegra X1"), ``capability`` ((5, 3)), ``total_memory`` in bytes (0 when unknown),
    ``multiprocessors`` (the SM count; 0 when unknown). The TX1 (2 SMs) and the Nano (1 SM) share the name
    "NVIDIA Tegra X1" and sm_53: only the SM count tells their engines apart (TensorRT times tactics on the
    GPU it builds on)."""

    def __init__(self, name, capability, total_memory=0, multiprocessors=0):
        self.name = str(name)
        self.capability = (int(capability[0]), int(capability[1]))
        self.total_memory = int(total_memory)
        self.multiprocessors = int(multiprocessors or 0)

    @property
    def capability_text(self):
        return "{}.{}".format(*self.capability)

    def slug(self):
        """A file-name-safe form: ``NVIDIA-Tegra-X1-sm53``."""
        name = "".join(c if c.isalnum() else "-" for c in self.name).strip("-")
        while "--" in name:
            name = name.replace("--", "-")
        slug = "{}-sm{}{}".format(name or "gpu", *self.capability)
        return slug + ("-{}sm".format(self.multiprocessors) if self.multiprocessors else "")

    def to_dict(self):
        return {"name": self.name, "compute_capability": self.capability_text, "total_memory_mb":
                round(self.total_memory / 2.0 ** 20, 1), "multiprocessors": self.multiprocessors}

    def __repr__(self):
        return "GpuInfo({!r}, sm_{}{})".format(self.name, *self.capability)


def gpu_info_from_pycuda(cuda, index=0):
    """Read device ``index`` through ``pycuda.driver`` (``cuda.init()`` must have run)."""
    device = cuda.Device(index)
    try:
        multiprocessors = device.get_attribute(cuda.device_attribute.MULTIPROCESSOR_COUNT)
    except Exception:  # an old pycuda or driver without the attribute: the count stays unknown (0)
        multiprocessors = 0
    return GpuInfo(device.name(), device.compute_capability(), device.total_memory(), multiprocessors)
