"""``[HOST:]PORT`` as every server flag takes it (device-serve --http, host-serve --bind, the healthcheck)."""
from contract.errors import ContractError

LOOPBACK = "127.0.0.1"


def parse_address(text, default_host=LOOPBACK, flag="--http", allow_port_zero=True):
    """``[HOST:]PORT`` -> (host, port). A bare port binds to loopback, so nothing is shared on the network
    unless asked for (``0.0.0.0:PORT``); ``[::1]:PORT`` takes IPv6 brackets."""
    text = str(text).strip()
    host, _, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host.strip("[]") or default_host
    if ":" in host and not bracketed:
        raise ContractError("{} {!r}: write an IPv6 address in brackets, e.g. [::1]:8080".format(flag, text))
    low = 0 if allow_port_zero else 1
    if not port.isdigit() or not low <= int(port) < 65536:
        raise ContractError("{} {!r} is not [HOST:]PORT with a port {}-65535, e.g. 8080 or 0.0.0.0:8080".format(
            flag, text, low))
    return host, int(port)


def connect_host(host):
    """Where a client on the same machine reaches a server bound to ``host``: a wildcard bind on loopback of
    the same family (0.0.0.0 -> 127.0.0.1, :: -> ::1), any other address there."""
    return {"0.0.0.0": LOOPBACK, "": LOOPBACK, "localhost": LOOPBACK, "::": "::1"}.get(host, host)
