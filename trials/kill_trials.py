"""Kill trials (issue 11, trial 1; issue 18): host-evolve killed with SIGKILL, or stopped with SIGTERM, at random
and at targeted moments, then resumed with --resume; and two --resume of one run at once.

    python trials/kill_trials.py [--trials 20] [--seed 0] [--generations 3] [--json out.json]

On a tiny generated dataset (the demo's shapes, 60 JPEGs a class, 40 px) with the settings of
tests/host/test_evolve.py, one uninterrupted run is the reference. Each trial starts the same run and kills it
(SIGKILL) at a moment chosen in turn from:

* ``random``: a uniform random delay over the reference run's duration;
* ``mid-epoch``: a random moment inside the epoch after a random number of finished epochs (epoch rows in
  lineage.sqlite);
* ``mid-checkpoint``: as soon as the checkpoint's temporary file (``.checkpoint.pt.XXXX.partial``) exists;
* ``mid-export``: as soon as a new ``gen-NN/`` folder exists without its ``model.onnx``, or a temporary file
  is in it (the export under way);
* ``mid-lineage-write``: as soon as ``lineage.sqlite-wal`` changes (a commit has just been written; SQLite's
  own transaction is not visible from outside, so this is the nearest observable point);
* ``mid-startup``: as soon as the run folder holds anything while ``config.json`` is not there yet;
* ``sigterm-random``, ``sigterm-mid-write`` (issue 18): SIGTERM (kill, systemd, docker stop) instead, at a random
  moment or as soon as any temporary file (``*.partial``) is in the run folder: host-evolve must stop as with
  Ctrl-C, exit 143, and the run be resumable as after a kill.

The targeted modes kill at the first, second or third time their moment is seen (chosen at random).
Each killed run is resumed (``--resume RUN``) to its end; a run killed before its config.json existed cannot
be resumed (host-evolve says so), and is then started again with its first command, which must be accepted; then every run must be complete (summary.json with
generations 0..G), no finished epoch lost (the epochs recorded before the kill are a prefix of those after),
no generation duplicated or missing in lineage.sqlite, ``PRAGMA integrity_check`` ok, every exported ONNX
matching its recorded sha256, no temporary file (``*.partial``) left in the run folder after the resume; and, with one thread, the lineage is compared to the reference run's
(genome, top-1 and the sha256 of each generation's weights equal: the kill changed nothing; not the ONNX's, whose
metadata names its run folder). Finally two ``--resume`` of one killed run are started
at once, and what happened is printed. Exit status 1 if a check fails.
"""
import argparse
import glob
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

from contract.files import sha256_of_file

SETTINGS = {"image_size": 32, "epochs": 2, "ancestor_epochs": 2, "env_factor": 0.75, "round_to": 4,
            "min_filters": 2, "batch_size": 32, "lr": 0.01, "crop_scale": 0.7, "seed": 5,
            "max_drop": 1.0, "distill_weight": 0.0}  # mechanics, not learning: acceptance off (tests/host/test_evolve.py)
MODES = ("random", "mid-epoch", "mid-checkpoint", "mid-export", "mid-lineage-write", "mid-startup", "sigterm-random",
         "sigterm-mid-write")


def temporary_files(run):
    """The temporary files in the run folder (contract.files.atomic_write's ``.NAME.XXXX.partial``, the image
    cache's ``NAME.partial``), relative to it."""
    return sorted(os.path.relpath(path, run) for path in glob.glob(os.path.join(run, "**", "*.partial"), recursive=True)
                  + glob.glob(os.path.join(run, "**", ".*.partial"), recursive=True))


def env():
    return dict(os.environ, OMP_NUM_THREADS="1")  # one thread: bit-identical arithmetic


def evolve_command(data, out, generations):
    values = dict(SETTINGS, data=data, out=out, generations=generations)
    return [sys.executable, "-m", "host.evolve.cli"] + ["--{}={}".format(k.replace("_", "-"), v) for k, v in values.items()]


def resume_command(out):
    return [sys.executable, "-m", "host.evolve.cli", "--resume", out]


def epochs_done(run):
    path = os.path.join(run, "lineage.sqlite")
    if not os.path.exists(path):
        return []
    try:
        db = sqlite3.connect("file:{}?mode=ro".format(path), uri=True, timeout=1)
        rows = db.execute("SELECT generation, offspring, epoch FROM epochs ORDER BY 1, 2, 3").fetchall()
        db.close()
        return rows
    except sqlite3.Error:
        return None  # busy or half-made: ask again


def wait_for_moment(process, run, mode, rng, reference_seconds, reference_epochs):
    """Poll the run folder until ``mode``'s moment; return a description of where the kill landed (or None
    when the run ended first)."""
    started = time.monotonic()
    if mode in ("random", "sigterm-random"):
        delay = rng.uniform(0.5, reference_seconds * 0.95)
        while time.monotonic() - started < delay:
            if process.poll() is not None:
                return None
            time.sleep(0.01)
        return "after {:.2f} s".format(delay)
    if mode == "mid-epoch":
        target = rng.randint(1, max(1, reference_epochs - 1))
        seen = None
        while process.poll() is None:
            rows = epochs_done(run)
            if rows is not None and len(rows) >= target:
                seen = time.monotonic()
                break
            time.sleep(0.01)
        if seen is None:
            return None
        per_epoch = reference_seconds / max(1, reference_epochs)
        time.sleep(rng.uniform(0.1, 0.8) * per_epoch)
        return "{:.0%} into the epoch after {} finished".format((time.monotonic() - seen) / per_epoch, target)
    skip = 0 if mode == "mid-startup" else rng.randint(0, 2)  # which occurrence: not always the first
    wal = os.path.join(run, "lineage.sqlite-wal")
    last_wal = None
    known_gens = set()
    occurrences = 0
    partial_seen = False
    while process.poll() is None:
        hit = None
        if mode == "mid-checkpoint":
            present = bool(glob.glob(os.path.join(run, ".checkpoint.pt.*.partial")))
            if present and not partial_seen:
                hit = ".checkpoint.pt.XXXX.partial present ({} epochs done)".format(len(epochs_done(run) or []))
            partial_seen = present
        elif mode == "sigterm-mid-write":
            names = temporary_files(run) if os.path.isdir(run) else []
            if names and not partial_seen:
                hit = "{} present".format(names[0])
            partial_seen = bool(names)
        elif mode == "mid-startup":
            if os.path.isdir(run) and os.listdir(run) and not os.path.exists(os.path.join(run, "config.json")):
                hit = "folder holds {} and no config.json".format(", ".join(sorted(os.listdir(run))))
        elif mode == "mid-export":
            for name in sorted(os.listdir(run)) if os.path.isdir(run) else []:
                folder = os.path.join(run, name)
                if name.startswith("gen-") and os.path.isdir(folder) and name not in known_gens:
                    inside = os.listdir(folder)
                    if "model.onnx" not in inside or any(n.endswith((".partial", ".tmp")) or n.startswith(".")
                                                         for n in inside):
                        hit = "{} being written ({})".format(name, ", ".join(sorted(inside)) or "empty")
                        known_gens.add(name)
                        break
                    known_gens.add(name)
        elif mode == "mid-lineage-write":
            try:
                stat = os.stat(wal)
                mark = (stat.st_size, stat.st_mtime_ns)
            except OSError:
                mark = None
            if last_wal is not None and mark is not None and mark != last_wal:
                hit = "lineage.sqlite-wal just changed"
            last_wal = mark if mark is not None else last_wal
        if hit is not None:
            if occurrences >= skip:
                return hit
            occurrences += 1
        time.sleep(0.002)
    return None


def lineage_facts(run):
    db = sqlite3.connect(os.path.join(run, "lineage.sqlite"))
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        generations = [r[0] for r in db.execute("SELECT generation FROM generations ORDER BY generation")]
        rows = db.execute("SELECT generation, onnx, sha256 FROM generations ORDER BY generation").fetchall()
    finally:
        db.close()
    return integrity, generations, rows


def lineage_outcome(run, summary):
    """What an interrupted run must share with the uninterrupted one: per generation its genome, top-1 and the
    sha256 of its weights file (the ONNX's own sha256 differs by design: its metadata names the run folder)."""
    db = sqlite3.connect(os.path.join(run, "lineage.sqlite"))
    try:
        weights = dict(db.execute("SELECT generation, weights FROM generations").fetchall())
    finally:
        db.close()
    return [(g["genome"], g["top1"], sha256_of_file(os.path.join(run, weights[g["generation"]])))
            for g in summary["generations"]]


def check_run(run, before, reference, generations):
    """The problems found in a resumed run (an empty list when all checks pass), and a few figures."""
    found = []
    summary_path = os.path.join(run, "summary.json")
    if not os.path.exists(summary_path):
        return ["no summary.json: the run did not complete"], {}
    summary = json.load(open(summary_path))
    numbers = [g["generation"] for g in summary["generations"]]
    if numbers != list(range(generations + 1)):
        found.append("summary generations {}".format(numbers))
    after = epochs_done(run)
    if before and after[:len(before)] != before:
        found.append("finished epochs lost: {} before, {} after".format(before, after[:len(before)]))
    if after != reference["epochs"]:
        found.append("epochs {} differ from the reference {}".format(after, reference["epochs"]))
    integrity, in_lineage, rows = lineage_facts(run)
    if integrity != "ok":
        found.append("integrity_check: " + integrity)
    duplicated = len(in_lineage) - len(set(in_lineage))
    missing = sorted(set(range(generations + 1)) - set(in_lineage))
    if duplicated or missing:
        found.append("generations duplicated {} missing {}".format(duplicated, missing))
    bad_sha = [g for g, onnx, sha in rows if sha256_of_file(os.path.join(run, onnx)) != sha]
    if bad_sha:
        found.append("ONNX not matching its sha256: generations {}".format(bad_sha))
    left = temporary_files(run)
    if left:
        found.append("temporary files left after the resume: {}".format(", ".join(left)))
    same = lineage_outcome(run, summary) == reference["generations"]
    if not same:
        found.append("lineage differs from the uninterrupted run")
    return found, {"epochs": len(after), "duplicated": duplicated, "missing": len(missing), "bad_sha": len(bad_sha),
                   "integrity": integrity, "identical_to_reference": same, "temporary_left": len(left)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generations", type=int, default=3)
    parser.add_argument("--work", help="folder for the runs (default: a new temporary folder)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    from pathlib import Path
    from host.evolve.demo import write_demo_dataset
    rng = random.Random(args.seed)
    work = args.work or tempfile.mkdtemp(prefix="kill-trials-")
    data = str(write_demo_dataset(Path(work) / "shapes", per_class=60, size=40))
    reference_run = os.path.join(work, "reference")
    began = time.monotonic()
    subprocess.run(evolve_command(data, reference_run, args.generations), check=True, env=env(),
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reference_seconds = time.monotonic() - began
    summary = json.load(open(os.path.join(reference_run, "summary.json")))
    reference = {"epochs": epochs_done(reference_run),
                 "generations": lineage_outcome(reference_run, summary)}
    print("reference run: {:.1f} s, {} epochs, generations 0..{}".format(reference_seconds, len(reference["epochs"]),
                                                                       args.generations), flush=True)
    results = []
    for number in range(args.trials):
        mode = MODES[number % len(MODES)]
        run = os.path.join(work, "trial-{:02d}".format(number))
        process = subprocess.Popen(evolve_command(data, run, args.generations), env=env(), stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, universal_newlines=True)
        where = wait_for_moment(process, run, mode, rng, reference_seconds, len(reference["epochs"]))
        how = signal.SIGTERM if mode.startswith("sigterm") else signal.SIGKILL
        if process.poll() is None:
            process.send_signal(how)
        _, stopped_stderr = process.communicate()
        # SIGTERM: a clean stop, exit 128 + 15, one line saying how to go on (before config.json: nothing kept)
        # (-15: SIGTERM landed while Python was still starting, before host-evolve's handler: nothing written yet)
        killed = where is not None and process.returncode in ((143, -signal.SIGTERM) if how == signal.SIGTERM
                                                              else (-signal.SIGKILL,))
        left_at_stop = temporary_files(run) if os.path.isdir(run) else []
        before = epochs_done(run) or []
        resumed = subprocess.run(resume_command(run), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 universal_newlines=True)
        restarted = None
        if resumed.returncode == 2 and "no config.json" in resumed.stderr:  # killed before the run existed
            restarted = subprocess.run(evolve_command(data, run, args.generations), env=env(), stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, universal_newlines=True)
        found, facts = check_run(run, before, reference, args.generations)
        if how == signal.SIGTERM and process.returncode == 143 and ("Traceback" in stopped_stderr or "host-evolve: stopped by SIGTERM"
                                                 not in stopped_stderr):
            found.insert(0, "SIGTERM: not one clean line: {}".format(stopped_stderr.strip()[-300:]))
        if restarted is not None and restarted.returncode != 0:
            found.insert(0, "killed before config.json: --resume refused, and the first command again exited {}: "
                            "{}".format(restarted.returncode, restarted.stderr.strip()[-300:]))
        elif resumed.returncode != 0 and restarted is None:
            found.insert(0, "resume exited {}: {}".format(resumed.returncode, resumed.stderr.strip()[-300:]))
        results.append(dict(facts, trial=number, mode=mode, where=where, killed=killed, epochs_before=len(before),
                            signal=how.name, stop_exit=process.returncode, temporary_at_stop=left_at_stop,
                            resume_exit=resumed.returncode, restarted=restarted is not None, problems=found))
        print("trial {:2d} {:18s} {} {:5s} at {} (exit {}, {} epochs done, temporary files left: {}) -> resume exit {}{}; {}"
              .format(number, mode, how.name, str(killed), where, process.returncode, len(before),
                      ", ".join(left_at_stop) or "none", resumed.returncode,
            "" if restarted is None else ", first command again exit {}".format(restarted.returncode),
            "ok" if not found else "PROBLEMS: " + "; ".join(found)), flush=True)

    # two --resume of one killed run at once
    run = os.path.join(work, "twice")
    process = subprocess.Popen(evolve_command(data, run, args.generations), env=env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    while process.poll() is None and len(epochs_done(run) or []) < 3:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = epochs_done(run) or []
    pair = [subprocess.Popen(resume_command(run), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True) for _ in range(2)]
    outputs = [p.communicate() for p in pair]
    found, facts = check_run(run, before, reference, args.generations)
    twice = {"exits": [p.returncode for p in pair],
             "stderr_last_lines": [err.strip().splitlines()[-1] if err.strip() else "" for _, err in outputs],
             "problems": found, "facts": facts}
    print("two --resume at once: exits {}, last lines {}; {}".format(
        twice["exits"], twice["stderr_last_lines"], "ok" if not found else "PROBLEMS: " + "; ".join(found)))

    killed = [r for r in results if r["killed"]]
    figures = {"trials": len(results), "killed": len(killed),
               "by_mode": {mode: sum(1 for r in killed if r["mode"] == mode) for mode in MODES},
               "temporary_left_at_stop": sum(1 for r in killed if r["temporary_at_stop"]),
               "temporary_left_after_resume": sum(r.get("temporary_left", 0) for r in results),
               "completed": sum(1 for r in results if r.get("epochs") == len(reference["epochs"])),
               "resume_failures": sum(1 for r in results if r["resume_exit"] != 0 and not r["restarted"]),
               "restarted_before_config": sum(1 for r in results if r["restarted"]),
               "epochs_lost": sum(1 for r in results if any("epochs lost" in p for p in r["problems"])),
               "generations_duplicated": sum(r.get("duplicated", 0) for r in results),
               "generations_missing": sum(r.get("missing", 0) for r in results),
               "integrity_failures": sum(1 for r in results if r.get("integrity") != "ok"),
               "sha_mismatches": sum(r.get("bad_sha", 0) for r in results),
               "identical_to_reference": sum(1 for r in results if r.get("identical_to_reference")),
               "reference_seconds": round(reference_seconds, 1), "two_resumes": twice, "results": results}
    print(json.dumps({k: v for k, v in figures.items() if k != "results"}, indent=2, sort_keys=True))
    from host.machine_info import describe_machine
    figures["machine"] = describe_machine()
    figures["finished_at"] = time.strftime("%a %b %d %H:%M:%S %Z %Y")
    print("machine: {} | finished {}".format(figures["machine"], figures["finished_at"]))
    failed = [r for r in results if r["problems"]]
    print("kill trials: {trials} trials, {killed} killed by SIGKILL or stopped by SIGTERM ({by_mode}); temporary files "
          "left by {temporary_left_at_stop} of them, {temporary_left_after_resume} after --resume; {completed} completed after "
          "--resume ({restarted_before_config} killed before config.json: started again), epochs lost in {epochs_lost}, generations duplicated {generations_duplicated}, missing "
          "{generations_missing}, integrity failures {integrity_failures}, ONNX sha256 mismatches {sha_mismatches}, "
          "identical to the uninterrupted run {identical_to_reference}/{trials}; {verdict}".format(
              verdict="PASS" if not failed else "FAIL ({} trials)".format(len(failed)), **figures))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2, sort_keys=True)
    return 1 if failed or len(killed) < len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
