"""Feed the command-line tools bad input and count how each one answers (issue 11, trial 4, the CLIs).

    python trials/fuzz_cli.py [--only host-serve,device-serve,device-bench,host-evolve] [--json out.json]

Every case is a real process with a real bad input: wrong paths, wrong types, truncated or foreign ONNX
files, files that are not images, zero-byte images, images whose header claims 100,000 x 100,000 pixels, a
dataset with one class, out-of-range flags, a TOML file that is not TOML. The expected answer is the house
rule: exit status 2, no traceback, and on stderr one line (after argparse's usage line, where argparse
answers) that names the program; where one bad file sits among good ones, the tool carries on (exit 0, no
traceback). Prints one row per case and the totals; exit status 1 when a case broke the rule.
tests/host/test_cli_bad_input.py runs the quick host-serve cases on every test run.

Exit statuses the tools document (README, docs/serve.md): 0 done, 2 bad input (one line naming the input
and the fix), 130 interrupted (Ctrl-C), 1 anything unforeseen (a bug: report it).
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path


from host.machine_info import describe_machine

TOOLS = {"host-serve": "host.serve.server", "device-serve": "device.serve", "device-bench": "device.bench",
         "host-evolve": "host.evolve.cli"}


def png(path: Path, size=8, color=(200, 30, 30)):
    """A real (tiny) PNG, written with zlib alone."""
    raw = b"".join(b"\x00" + bytes(color) * size for _ in range(size))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)) +
                     chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def huge_png(path: Path, side=100000):
    """A PNG whose header says side x side pixels (10 G here): a few hundred bytes on disk. Decoders must
    refuse it from the header (OpenCV: CV_IO_MAX_IMAGE_PIXELS), never try to allocate it."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)) +
                     chunk(b"IDAT", zlib.compress(b"\x00" * (side * 3 + 1) * 2)) + chunk(b"IEND", b""))


def foreign_onnx(path: Path):
    """A valid ONNX that is not an image classifier: y = x @ W with a 1-D input."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    weight = numpy_helper.from_array(np.ones((4, 2), dtype="float32"), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "foreign",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))


def fixtures(root: Path) -> dict:
    """Every bad (and the few good) inputs the cases name, made once."""
    from host.evolve.tiny_run import make_tiny_run
    f = {}
    run = root / "run"
    run.mkdir()
    make_tiny_run(run)
    f["run"] = run
    f["model"] = run / "gen-00" / "model.onnx"
    data = f["model"].read_bytes()
    (root / "truncated.onnx").write_bytes(data[:len(data) // 2])
    f["truncated"] = root / "truncated.onnx"
    foreign_onnx(root / "foreign.onnx")
    f["foreign"] = root / "foreign.onnx"
    (root / "empty.onnx").write_bytes(b"")
    f["empty_file"] = root / "empty.onnx"
    png(root / "picture.png")
    f["png"] = root / "picture.png"
    (root / "notes.txt").write_text("not a model, not an image\n")
    f["text"] = root / "notes.txt"
    # image folders
    for name in ("not-images", "zero-byte-images"):
        (root / name).mkdir()
    for index in range(3):
        (root / "not-images" / "photo{}.jpg".format(index)).write_text("<html>not a jpeg</html>")
        (root / "zero-byte-images" / "photo{}.jpg".format(index)).write_bytes(b"")
    f["not_images_dir"], f["zero_images_dir"] = root / "not-images", root / "zero-byte-images"
    (root / "with-a-huge-image").mkdir()
    png(root / "with-a-huge-image" / "a-good.png", size=32)
    huge_png(root / "with-a-huge-image" / "b-huge.png")
    f["huge_image_dir"] = root / "with-a-huge-image"
    # datasets
    good = root / "dataset"
    for label, color in (("red", (220, 20, 20)), ("blue", (20, 20, 220))):
        (good / label).mkdir(parents=True)
        for index in range(6):
            png(good / label / "{}.png".format(index), size=16, color=color)
    f["dataset"] = good
    one = root / "one-class"
    shutil.copytree(str(good / "red"), str(one / "red"))
    f["one_class"] = one
    bad = root / "not-images-dataset"
    for label in ("a", "b"):
        (bad / label).mkdir(parents=True)
        for index in range(4):
            (bad / label / "{}.jpg".format(index)).write_text("not an image")
    f["bad_dataset"] = bad
    zero = root / "zero-byte-dataset"
    for label in ("a", "b"):
        (zero / label).mkdir(parents=True)
        for index in range(4):
            (zero / label / "{}.jpg".format(index)).write_bytes(b"")
    f["zero_dataset"] = zero
    huge = root / "dataset-with-a-huge-image"
    shutil.copytree(str(good), str(huge))
    huge_png(huge / "red" / "huge.png")
    f["huge_dataset"] = huge
    (root / "bad.toml").write_text("generations = [1, 2\nepochs = 'x\n")
    f["bad_toml"] = root / "bad.toml"
    (root / "latin1.toml").write_bytes("# caf\xe9\ngenerations = 1\n".encode("latin-1"))
    f["latin1_toml"] = root / "latin1.toml"
    (root / "wrong-type.toml").write_text('offspring = "many"\n')
    f["wrong_type_toml"] = root / "wrong-type.toml"
    (root / "unknown-key.toml").write_text("generatoins = 3\n")
    f["unknown_key_toml"] = root / "unknown-key.toml"
    not_run = root / "not-a-run"
    not_run.mkdir()
    f["not_run"] = not_run
    broken = root / "broken-run"
    broken.mkdir()
    (broken / "lineage.sqlite").write_text("this is not a database\n" * 100)
    f["broken_run"] = broken
    f["missing"] = root / "does-not-exist"
    token = root / "token"
    token.write_text("a-token-long-enough-0123456789\n")
    token.chmod(0o600)
    f["token"] = token
    for name, content, mode in (("empty.token", "", 0o600), ("open.token", "a-token-long-enough-0123456789\n", 0o644),
                                ("short.token", "abc\n", 0o600)):
        (root / name).write_text(content)
        (root / name).chmod(mode)
        f[name.replace(".", "_")] = root / name
    f["out_file"] = root / "notes.txt"
    return f


def cases(f: dict):
    """(tool, label, argv, expected exit status) for every case: 2 (bad input: one line), or 0 where the tool
    must carry on (a huge image among good ones is skipped and counted)."""
    common = ["--epochs", "1", "--ancestor-epochs", "1", "--generations", "1", "--image-size", "32",
              "--batch-size", "4", "--device", "cpu",
              "--max-drop", "1"]  # mechanics, not learning: a 1-epoch ancestor on 6 images may not learn
    evolve_out = str(f["run"].parent / "evolve-out")
    serve = [
        ("missing run", ["--run", f["missing"]]),
        ("run is a file", ["--run", f["text"]]),
        ("not a run folder", ["--run", f["not_run"]]),
        ("lineage.sqlite not a database", ["--run", f["broken_run"], "--token-file", f["token"]]),
        ("bind not a port", ["--run", f["run"], "--token-file", f["token"], "--bind", "notaport"]),
        ("bind port out of range", ["--run", f["run"], "--token-file", f["token"], "--bind", "127.0.0.1:99999"]),
        ("bind address not ours", ["--run", f["run"], "--token-file", f["token"], "--bind", "192.0.2.1:8700"]),
        ("token file missing", ["--run", f["run"], "--token-file", f["missing"]]),
        ("token file empty", ["--run", f["run"], "--token-file", f["empty_token"]]),
        ("token file mode 644", ["--run", f["run"], "--token-file", f["open_token"]]),
        ("token too short", ["--run", f["run"], "--token-file", f["short_token"]]),
        ("token file is a folder", ["--run", f["run"], "--token-file", f["not_run"]]),
        ("unknown flag", ["--run", f["run"], "--port", "8700"]),
    ]
    device = [
        ("model missing", ["--model", f["missing"], "--source", "synthetic", "--frames", "1"]),
        ("model truncated", ["--model", f["truncated"], "--source", "synthetic", "--frames", "1"]),
        ("model foreign ONNX", ["--model", f["foreign"], "--source", "synthetic", "--frames", "1"]),
        ("model zero bytes", ["--model", f["empty_file"], "--source", "synthetic", "--frames", "1"]),
        ("model is an image", ["--model", f["png"], "--source", "synthetic", "--frames", "1"]),
        ("model is a folder", ["--model", f["not_run"], "--source", "synthetic", "--frames", "1"]),
        ("source missing", ["--model", f["model"], "--source", f["missing"], "--frames", "1"]),
        ("source folder of non-images", ["--model", f["model"], "--source", f["not_images_dir"], "--frames", "1"]),
        ("source folder of zero-byte images", ["--model", f["model"], "--source", f["zero_images_dir"], "--frames", "1"]),
        ("source a text file", ["--model", f["model"], "--source", f["text"], "--frames", "1"]),
        ("source folder with one huge image", ["--model", f["model"], "--source", f["huge_image_dir"], "--frames", "2",
                                               "--warmup", "0"], 0),
        ("frames negative", ["--model", f["model"], "--source", "synthetic", "--frames", "-1"]),
        ("frames not a number", ["--model", f["model"], "--source", "synthetic", "--frames", "many"]),
        ("http not a port", ["--model", f["model"], "--source", "synthetic", "--http", "notaport"]),
        ("precision unknown", ["--model", f["model"], "--source", "synthetic", "--precision", "int4"]),
        ("report-to not a URL", ["--model", f["model"], "--source", "synthetic", "--report-to", "ftp://x"]),
    ]
    bench = [
        ("model missing", ["--model", f["missing"]]),
        ("model truncated", ["--model", f["truncated"]]),
        ("model foreign ONNX", ["--model", f["foreign"]]),
        ("model zero bytes", ["--model", f["empty_file"]]),
        ("model is an image", ["--model", f["png"]]),
        ("batch 0", ["--model", f["model"], "--batch", "0"]),
        ("batch 100000", ["--model", f["model"], "--batch", "100000"]),
        ("batch not a number", ["--model", f["model"], "--batch", "two"]),
    ]
    evolve = [
        ("data missing", ["--data", f["missing"], "--out", evolve_out + "-1"] + common),
        ("data is a file", ["--data", f["png"], "--out", evolve_out + "-2"] + common),
        ("data one class", ["--data", f["one_class"], "--out", evolve_out + "-3"] + common),
        ("data all non-images", ["--data", f["bad_dataset"], "--out", evolve_out + "-4"] + common),
        ("data all zero-byte images", ["--data", f["zero_dataset"], "--out", evolve_out + "-5"] + common),
        ("data with one huge image", ["--data", f["huge_dataset"], "--out", evolve_out + "-18"] + common, 0),
        # 0 is in range: the ancestor alone, trained and exported (bench/steering.py makes its reference so)
        ("generations 0 (the ancestor only)", ["--data", f["dataset"], "--out", evolve_out + "-6"] + common
         + ["--generations", "0"], 0),
        ("env-factor 1.5", ["--data", f["dataset"], "--out", evolve_out + "-7"] + common + ["--env-factor", "1.5"]),
        ("image-size 7", ["--data", f["dataset"], "--out", evolve_out + "-8"] + common + ["--image-size", "7"]),
        ("image-size 100000", ["--data", f["dataset"], "--out", evolve_out + "-9"] + common + ["--image-size", "100000"]),
        ("lr -1", ["--data", f["dataset"], "--out", evolve_out + "-10"] + common + ["--lr", "-1"]),
        ("lr nan", ["--data", f["dataset"], "--out", evolve_out + "-11"] + common + ["--lr", "nan"]),
        ("epochs not a number", ["--data", f["dataset"], "--epochs", "two"]),
        ("config not TOML", ["--data", f["dataset"], "--out", evolve_out + "-12", "--config", f["bad_toml"]] + common),
        ("config not UTF-8", ["--data", f["dataset"], "--out", evolve_out + "-13", "--config", f["latin1_toml"]] + common),
        ("config wrong type", ["--data", f["dataset"], "--out", evolve_out + "-14", "--config", f["wrong_type_toml"]] + common),
        ("config unknown key", ["--data", f["dataset"], "--out", evolve_out + "-15", "--config", f["unknown_key_toml"]] + common),
        ("config missing", ["--data", f["dataset"], "--out", evolve_out + "-16", "--config", f["missing"]] + common),
        ("out is a file", ["--data", f["dataset"], "--out", f["out_file"]] + common),
        ("resume missing", ["--resume", f["missing"]]),
        ("resume not a run", ["--resume", f["not_run"]]),
        ("pretrained not weights", ["--data", f["dataset"], "--out", evolve_out + "-17", "--pretrained", f["png"]] + common),
    ]
    for tool, table in (("host-serve", serve), ("device-serve", device), ("device-bench", bench),
                        ("host-evolve", evolve)):
        for label, argv, *expected in table:
            yield tool, label, [str(a) for a in argv], (expected or [2])[0]


def judge(tool: str, code, stdout: str, stderr: str, expected: int = 2) -> list:
    """What broke the house rule (empty: the case passed)."""
    problems = []
    if code is None:
        return ["not refused: still running at the time limit"]
    if expected == 0:  # carry on: finish cleanly, say what was skipped
        if code != 0:
            problems.append("exit status {} (not 0: it should skip the bad file and carry on)".format(code))
        if "Traceback" in stdout + stderr:
            problems.append("traceback")
        return problems
    if code != 2:
        problems.append("exit status {} (not 2)".format(code))
    if "Traceback" in stdout + stderr:
        problems.append("traceback")
    lines = [line for line in stderr.splitlines() if line.strip()]
    usage = 0
    if lines and lines[0].startswith("usage:"):  # argparse: the usage (may wrap), then "prog: error: ..."
        usage = next((index for index, line in enumerate(lines) if line.startswith(tool + ":")), len(lines))
    message = lines[usage:]
    if len(message) != 1:
        problems.append("{} lines on stderr, not 1".format(len(message)))
    elif not message[0].startswith(tool):
        problems.append("the line does not name {}".format(tool))
    return problems


def run_case(tool: str, argv: list, cwd: Path, timeout: float):
    environment = dict(os.environ, SQUISHEDNETS_CACHE=str(cwd / "cache"),
                       XDG_STATE_HOME=str(cwd / "state"))
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", TOOLS[tool]] + argv, cwd=str(cwd), env=environment,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
        code, stdout, stderr = done.returncode, done.stdout, done.stderr
    except subprocess.TimeoutExpired as expired:
        code, stdout, stderr = None, expired.stdout or "", expired.stderr or ""
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
        stderr = stderr.decode() if isinstance(stderr, bytes) else stderr
    return code, stdout, stderr, time.monotonic() - started


def fuzz(only=None, timeout: float = 120.0, log=print) -> dict:
    results = []
    with tempfile.TemporaryDirectory(prefix="fuzz-cli-") as folder:
        root = Path(folder)
        f = fixtures(root)
        for tool, label, argv, expected in cases(f):
            if only and tool not in only:
                continue
            code, stdout, stderr, seconds = run_case(tool, argv, root, timeout)
            problems = judge(tool, code, stdout, stderr, expected)
            last = ([line for line in stderr.splitlines() if line.strip()] or [""])[-1]
            results.append({"tool": tool, "case": label, "exit": code, "expected": expected, "seconds": round(seconds, 1),
                            "problems": problems, "line": last.replace(str(root), "TMP")[:220]})
            log("{:<13} {:<36} exit {:<4} {:<5} {}".format(tool, label, str(code), "ok" if not problems else "FAIL",
                                                            "; ".join(problems) or results[-1]["line"][:110]))
    failed = [r for r in results if r["problems"]]
    return {"cases": len(results), "passed": len(results) - len(failed), "failed": len(failed),
            "tracebacks": sum("traceback" in r["problems"] for r in results), "results": results}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated tools (default all): " + ", ".join(TOOLS))
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per case before it counts as not refused")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else None
    summary = fuzz(only, args.timeout)
    print("cases {cases} | handled cleanly {passed} | broke the rule {failed} | tracebacks {tracebacks}".format(**summary))
    print("machine: {} | load average {:.2f}".format(describe_machine(), os.getloadavg()[0]))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
