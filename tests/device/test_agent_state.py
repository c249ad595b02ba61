"""device.agent_state: what was measured survives a restart; an unreadable state file is set aside, not fatal."""
import json

from device.agent_state import AgentState


def test_state_survives_a_restart(tmp_path):
    path = str(tmp_path / "agent-state.json")
    key = AgentState.key("ab" * 32, "onnxruntime", "fp32")
    AgentState(path).mark("benchmarked", key, {"generation": 1, "fps": 100.0})
    again = AgentState(path)
    assert again.seen(key) and not again.seen(AgentState.key("ab" * 32, "tensorrt", "fp32"))
    assert json.loads((tmp_path / "agent-state.json").read_text())["benchmarked"][key]["fps"] == 100.0
    assert [p.name for p in tmp_path.iterdir()] == ["agent-state.json"]  # no partial file left behind


def test_an_unreadable_state_file_is_moved_aside(tmp_path, capsys):
    path = tmp_path / "agent-state.json"
    path.write_text("{not json")
    state = AgentState(str(path))
    assert state.data["benchmarked"] == {} and not path.exists()
    assert (tmp_path / "agent-state.json.broken").read_text() == "{not json"
    assert "unreadable" in capsys.readouterr().out
