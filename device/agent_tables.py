"""device-agent's share of the latency-table exchange (host/serve/latency_tables.py): the tables host-evolve
--latency-table device:ID asked this device for are measured (device/layer_table.py, on the agent's backend
and precision) and sent to host-serve, once each; a table host-serve could not take is measured again on a
later poll, one it refused (a request gone, a mismatch) is remembered as failed with its reason."""
import json
import time

from contract.errors import DeviceError

REQUESTS_PATH = "/latency-tables/requests"
MAX_REQUESTS_BYTES = 4 * 1024 * 1024
POST_TIMEOUT_S = 60.0


def state_key(agent, request):
    return "table:{}|{}|{}|{}".format(agent.base, request["id"], agent.engine.backend, agent.engine.precision)


def pending_requests(agent, timeout=10.0):
    """host-serve's requests for this device that it has not answered (nor failed) yet. [] from a host-serve
    without the exchange (404); DeviceError when it cannot be asked."""
    import urllib.error
    import urllib.request
    request = urllib.request.Request(agent.base + REQUESTS_PATH, headers={"Authorization": "Bearer " + agent.token,
                                                                         "User-Agent": "squishednets-device"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read(MAX_REQUESTS_BYTES + 1)
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise DeviceError("host-serve {} answered {} for its latency-table requests{}".format(
            agent.base, error.code, ": check --token-file" if error.code in (401, 403) else ""))
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise DeviceError("host-serve {} cannot be asked for latency-table requests ({})".format(
            agent.base, getattr(error, "reason", error)))
    try:
        listed = json.loads(text[:MAX_REQUESTS_BYTES].decode("utf-8"))
    except (ValueError, RecursionError):
        raise DeviceError("host-serve {}{} did not answer JSON".format(agent.base, REQUESTS_PATH))
    if not isinstance(listed, list):
        return []
    mine = []
    for entry in listed:
        if (isinstance(entry, dict) and entry.get("device_id") == agent.spool.device_id and not entry.get("answered")
                and isinstance(entry.get("id"), int) and isinstance(entry.get("parent"), dict)
                and not agent.state.seen(state_key(agent, entry))):
            mine.append(entry)
    return mine


def answer(agent, request, measure=None):
    """Measure and send one requested table: "sent", "retry" (host-serve could not take it now) or "failed"."""
    from device.layer_table import table_for
    from device.reports import DeliveryRefused, NotDelivered, post_json
    measure = measure or table_for
    key = state_key(agent, request)
    agent.log("latency table {} asked by host-serve: measuring {} px on a grid of {} on {} {}".format(
        request["id"], request["image_size"], request["step"], agent.engine.backend, agent.engine.precision))
    try:
        table = measure(request["parent"], int(request["image_size"]), agent.engine, step=int(request["step"]),
                        log=agent.log)
    except Exception as error:  # a backend that will not build: remembered, the rest goes on
        message = str(error) if isinstance(error, DeviceError) else "{}: {}".format(type(error).__name__, error)
        agent.state.mark("failed", key, {"error": message[:2000], "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        agent.log("latency table {}: measuring failed, not retried: {}".format(request["id"], message))
        return "failed"
    table["device_id"] = agent.spool.device_id
    table["request_id"] = request["id"]
    from contract.files import finite_json
    try:
        post_json("{}/latency-tables/{}".format(agent.base, request["id"]), json.dumps(finite_json(table)),
                  token=agent.token, timeout=POST_TIMEOUT_S)
    except (DeliveryRefused, NotDelivered) as refused:
        agent.state.mark("failed", key, {"error": str(getattr(refused, "detail", refused))[:2000],
                                         "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        agent.log("latency table {}: host-serve refused it: {}".format(request["id"], getattr(refused, "detail",
                                                                                                refused)))
        return "failed"
    except OSError as error:
        agent.log("latency table {}: not delivered ({}); measured again on the next poll".format(request["id"], error))
        return "retry"
    agent.state.mark("benchmarked", key, {"request": request["id"], "at": table["measured_at"],
                                          "max_error": table["check"]["max_error"]})
    agent.log("latency table {}: sent (self-check within {:.1f} %)".format(request["id"],
                                                                           100 * table["check"]["max_error"]))
    return "sent"


def answer_all(agent):
    """Every pending request of this device answered in turn; the outcomes (a list). Never raises for a host
    that cannot be asked: said, and tried again on the next poll."""
    try:
        requests = pending_requests(agent)
    except DeviceError as error:
        agent.log(str(error))
        return []
    return [answer(agent, request) for request in requests]
