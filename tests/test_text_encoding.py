"""Every text file the Jetson side opens names its encoding (UTF-8): under an ASCII locale (a Jetson
container without LANG, Python 3.6's default there) a bare open() reads and writes ASCII, and a label like
"café" ends the run. Binary opens ("rb", "wb", "ab") need none."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("device", "engines", "calibration", "contract")


def _text_opens_without_encoding(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open"):
            continue
        mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                             None)
        if isinstance(mode, ast.Constant) and "b" in str(mode.value):
            continue
        if any(k.arg == "encoding" for k in node.keywords):
            continue
        found.append("{}:{}".format(path.relative_to(ROOT), node.lineno))
    return found


def test_every_text_open_on_the_device_side_names_utf8():
    found = [hit for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))
             for hit in _text_opens_without_encoding(path)]
    assert found == [], "open() in text mode without encoding='utf-8': " + ", ".join(found)
