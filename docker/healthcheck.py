#!/usr/bin/env python3
"""Docker HEALTHCHECK of the device image: GET /stats on device-serve's --http port must answer a JSON object.

Python 3.6, the standard library and the image's contract package (the image guarantees no curl). The address is read from device-serve's own
command line (PID 1's ``--http [HOST:]PORT``), so ``docker run IMAGE ... --http 0.0.0.0:9000`` is probed on
9000 with nothing else to change; ``SQUISHEDNETS_HEALTH_URL`` overrides it. Without ``--http`` there is
nothing to probe and the check passes (the container lives exactly as long as device-serve).
Exit status, Docker's contract: 0 healthy, 1 unhealthy.
"""
import json
import os
import sys
import urllib.request

TIMEOUT_S = 5.0


def http_argument(argv):
    """The value of ``--http`` in an argument list (``--http V`` or ``--http=V``), or None."""
    for index, argument in enumerate(argv):
        if argument == "--http" and index + 1 < len(argv):
            return argv[index + 1]
        if argument.startswith("--http="):
            return argument[len("--http="):]
    return None


def stats_url(http_value):
    """``--http [HOST:]PORT`` -> the /stats URL to probe from inside the container.

    device-serve's own parsing (contract.address): a bare port binds to loopback; a wildcard bind (0.0.0.0, ::)
    is probed on loopback; a specific address is probed there.
    """
    from contract.address import connect_host, parse_address
    from contract.errors import ContractError
    try:
        host, port = parse_address(http_value, allow_port_zero=False)
    except ContractError as error:
        raise ValueError(str(error))
    host = connect_host(host)
    if ":" in host:
        host = "[" + host + "]"
    return "http://{}:{}/stats".format(host, int(port))


def command_line(pid=1, proc="/proc"):
    """The argument list of process ``pid`` ([] if it cannot be read)."""
    try:
        with open(os.path.join(proc, str(pid), "cmdline"), "rb") as handle:
            raw = handle.read()
    except (IOError, OSError):
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def probe(url, timeout=TIMEOUT_S):
    """(healthy, one-line reason) for GET ``url``."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
            status = response.status
    except Exception as error:  # any failure to get an answer is "unhealthy", with the reason shown
        return False, "{}: {}".format(url, error)
    try:
        stats = json.loads(body.decode("utf-8"))
    except ValueError as error:
        return False, "{}: HTTP {} but not JSON ({})".format(url, status, error)
    if not isinstance(stats, dict):
        return False, "{}: HTTP {} but not a JSON object".format(url, status)
    return True, "{}: frames {}, fps {}".format(url, stats.get("frames"), stats.get("fps"))


def main(argv=None, pid=1, proc="/proc"):
    url = os.environ.get("SQUISHEDNETS_HEALTH_URL")
    if not url:
        value = http_argument(command_line(pid, proc) if argv is None else argv)
        if value is None:
            print("healthy: device-serve has no --http, nothing to probe")
            return 0
        try:
            url = stats_url(value)
        except ValueError as error:
            print("unhealthy: {}".format(error))
            return 1
    healthy, reason = probe(url)
    print("{}: {}".format("healthy" if healthy else "unhealthy", reason))
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
