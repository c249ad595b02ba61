"""Gather, here, what scripts/gpu-check.sh needs on a GPU machine that has no network and sees only the files
sent with the command (at most 64 MiB; ../shared does not travel).

    scripts/gpu-kit.sh [--out gpu-kit] [--offline] [--python-version 3.12]

Into ``--out`` (ignored by git; send it along with the command):

* ``wheels/``: pycuda's source package (built there against its CUDA, since no wheel exists) with its small
  pure-Python dependencies (pytools, platformdirs, mako, markupsafe, ...), setuptools and wheel to build it
  without an index, and onnx-simplifier for that Python with onnx and protobuf (host-evolve's export needs
  it; numpy, torch, CuPy and ONNX Runtime are already there);
* ``images/``: a few real JPEGs per class of ../shared/datasets/imagenette (the kernel checks);
* ``cifar10-mini/``: a small slice of ../shared/datasets/cifar10-mini (one host-evolve generation on CUDA);
* ``MANIFEST.json``: every file with its size and sha256, and what could not be gathered (gpu-check's ``kit``
  step verifies it before anything else).

``--offline`` copies the images and the data only (no registry): what the tests do.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared", "datasets")
MANIFEST = "MANIFEST.json"
LIMIT_BYTES = 60 << 20  # under the 64 MiB a command may take along, with room for the repository's changes

#: (what, pip arguments): binary wheels for the GPU machine's Python, resolved with their dependencies except
#: what is there already; pycuda's source package alone (pip refuses --platform for source packages).
PYCUDA_SOURCE = ["--no-deps", "--no-binary", "pycuda", "--no-build-isolation", "pycuda"]
WHEELS = ["pytools", "platformdirs", "mako", "setuptools", "wheel", "onnxsim", "onnx", "protobuf", "ml_dtypes"]
ALREADY_THERE = ("numpy",)  # torch and CuPy need it: not carried (16 MB)


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_images(source, target, per_class, splits=None):
    """Copy the first ``per_class`` JPEGs of every class folder of ``source`` (or of ``source/<split>`` for
    each split) to ``target`` with the same layout; the number copied."""
    copied = 0
    roots = [(os.path.join(source, s), os.path.join(target, s)) for s in splits] if splits else [(source, target)]
    for root, out in roots:
        if not os.path.isdir(root):
            continue
        for name in sorted(os.listdir(root)):
            folder = os.path.join(root, name)
            if not os.path.isdir(folder) or name.startswith("."):
                continue
            files = sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg")))[:per_class]
            os.makedirs(os.path.join(out, name), exist_ok=True)
            for file_name in files:
                shutil.copyfile(os.path.join(folder, file_name), os.path.join(out, name, file_name))
                copied += 1
    return copied


def pip_download(arguments, target, log):
    """``pip download ... -d target``; (ok, last line)."""
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-d", target] + arguments
    log("gpu-kit: pip download " + " ".join(arguments))
    try:
        done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                              timeout=600)
    except subprocess.TimeoutExpired:
        return False, "pip download took over 600 s"
    last = (done.stdout.strip().splitlines() or ["no output"])[-1]
    return done.returncode == 0, last


def gather(out, offline=False, python_version="3.12", images_per_class=2, data_per_class=(24, 8), log=print):
    """Fill ``out`` (see the module) and write its manifest; returns the manifest dict."""
    os.makedirs(out, exist_ok=True)
    missing = []
    wheels = os.path.join(out, "wheels")
    os.makedirs(wheels, exist_ok=True)
    if offline:
        missing.append("wheels: --offline (pycuda and onnxsim must then be on the GPU machine already)")
    else:
        ok, last = pip_download(PYCUDA_SOURCE, wheels, log)
        if not ok:
            missing.append("pycuda source package: " + last)
        platform = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
                    "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_28_x86_64"]
        ok, last = pip_download(platform + WHEELS, wheels, log)
        if not ok:
            missing.append("wheels for Python {}: {}".format(python_version, last))
        for name in os.listdir(wheels):  # what the GPU machine has: not carried
            if name.lower().startswith(tuple(p + "-" for p in ALREADY_THERE)):
                os.remove(os.path.join(wheels, name))
    imagenette = os.path.join(SHARED, "imagenette")
    split = next((s for s in ("val", "train") if os.path.isdir(os.path.join(imagenette, s))), None)
    count = copy_images(imagenette, os.path.join(out, "images"), images_per_class, splits=[split] if split else None)
    if not count:
        missing.append("images: no JPEGs under {}".format(imagenette))
    cifar = os.path.join(SHARED, "cifar10-mini")
    train = copy_images(cifar, os.path.join(out, "cifar10-mini"), data_per_class[0], splits=["train"])
    test = copy_images(cifar, os.path.join(out, "cifar10-mini"), data_per_class[1], splits=["test"])
    if not train:
        missing.append("cifar10-mini: nothing under {}".format(cifar))
    files = {}
    for root, _, names in os.walk(out):
        for name in sorted(names):
            path = os.path.join(root, name)
            relative = os.path.relpath(path, out)
            if relative != MANIFEST:
                files[relative] = {"bytes": os.path.getsize(path), "sha256": sha256(path)}
    total = sum(entry["bytes"] for entry in files.values())
    manifest = {"made": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": python_version, "files": files,
                "bytes": total, "missing": missing,
                "counts": {"images": count, "cifar10_train": train, "cifar10_test": test}}
    with open(os.path.join(out, MANIFEST), "w", encoding="utf-8") as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
    log("gpu-kit: {} files, {:.1f} MiB in {}{}".format(len(files), total / 2.0 ** 20, out,
                                                       "; missing: " + "; ".join(missing) if missing else ""))
    if total > LIMIT_BYTES:
        log("gpu-kit: warning: {:.1f} MiB is more than the {:.0f} MiB a command may take along".format(
            total / 2.0 ** 20, LIMIT_BYTES / 2.0 ** 20))
    return manifest


def verify(kit):
    """(ok, detail): every file the manifest lists is there with its sha256 (what a copy that did not arrive
    whole looks like otherwise: a pycuda build that fails for no visible reason)."""
    path = os.path.join(kit, MANIFEST)
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (IOError, OSError, ValueError) as error:
        return False, "{} is unreadable ({})".format(path, error)
    bad = []
    for relative, entry in sorted(manifest["files"].items()):
        full = os.path.join(kit, relative)
        if not os.path.isfile(full):
            bad.append("{} is missing".format(relative))
        elif os.path.getsize(full) != entry["bytes"] or sha256(full) != entry["sha256"]:
            bad.append("{} differs from the manifest".format(relative))
    if bad:
        return False, "{} of {} files: {}".format(len(bad), len(manifest["files"]), "; ".join(bad[:3]))
    detail = "{} files, {:.1f} MiB, made {} for Python {}".format(
        len(manifest["files"]), manifest["bytes"] / 2.0 ** 20, manifest["made"], manifest["python"])
    if manifest.get("missing"):
        detail += "; gathered without: " + "; ".join(manifest["missing"])
    return True, detail


def get_args_parser():
    parser = argparse.ArgumentParser(prog="gpu-kit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.join(REPO, "gpu-kit"), help="the kit folder (default %(default)s)")
    parser.add_argument("--offline", action="store_true", help="images and data only, no registry")
    parser.add_argument("--python-version", default="3.12", help="the GPU machine's Python (default %(default)s)")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    manifest = gather(args.out, offline=args.offline, python_version=args.python_version)
    return 1 if manifest["bytes"] > LIMIT_BYTES else 0


if __name__ == "__main__":
    sys.exit(main())
