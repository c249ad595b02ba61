"""The machine a published figure was measured on: host/machine_info.py (installed with the package, so the
benchmarks here and the trials in trials/ read it alike); kept for the benchmarks that import it from here."""
from host.machine_info import cpu_model, describe_machine  # noqa: F401
