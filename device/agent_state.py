"""What device-agent measured already, kept across restarts in ``<cache-dir>/agent-state.json``."""
import json
import os

from contract.files import atomic_write

STATE_FILE = "agent-state.json"
STATE_SCHEMA = 1


def _log(message):
    print("device-agent: {}".format(message), flush=True)


class AgentState(object):
    """``{"schema": 1, "benchmarked": {key: {...}}, "failed": {key: {...}}}`` in one JSON file, rewritten
    atomically after every change; key = ``sha256|backend|precision``."""

    def __init__(self, path):
        self.path = path
        self.data = {"schema": STATE_SCHEMA, "benchmarked": {}, "failed": {}}
        try:
            with open(path, encoding="utf-8") as handle:
                loaded = json.load(handle)
            if isinstance(loaded, dict):
                for section in ("benchmarked", "failed"):
                    if isinstance(loaded.get(section), dict):
                        self.data[section] = loaded[section]
        except (IOError, OSError):
            pass
        except ValueError as error:
            broken = path + ".broken"
            os.replace(path, broken)
            _log("state file {} was unreadable ({}); moved it to {} and starting afresh".format(path, error, broken))

    @classmethod
    def for_device(cls, cache_dir, device_id):
        """The state of ``device_id`` in ``cache_dir`` (agent-state-<id>.json). A cache folder of an older agent
        holds one state for all ids (STATE_FILE): its records of this id are carried over once."""
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in str(device_id))
        path = os.path.join(cache_dir, "agent-state-{}.json".format(safe))
        state = cls(path)
        shared = os.path.join(cache_dir, STATE_FILE)
        if not os.path.exists(path) and os.path.exists(shared):
            old = cls(shared)
            carried = False
            for section in ("benchmarked", "failed"):
                for key, record in old.data[section].items():
                    if isinstance(record, dict) and record.get("device_id") in (device_id, None):
                        state.data[section][key] = record
                        carried = True
            if carried:
                atomic_write(path, json.dumps(state.data, indent=1, sort_keys=True))
        return state

    @staticmethod
    def key(sha256, backend, precision):
        return "{}|{}|{}".format(sha256, backend, precision)

    def seen(self, key):
        return key in self.data["benchmarked"] or key in self.data["failed"]

    def mark(self, section, key, record):
        self.data[section][key] = record
        atomic_write(self.path, json.dumps(self.data, indent=1, sort_keys=True))
