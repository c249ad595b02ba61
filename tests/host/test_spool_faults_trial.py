"""trials/spool_faults.py, small: one device id over fresh spools, damaged counters, undecodable files and a
copied spool, delivering to the real host-serve process; every report written is stored once (conflicts
kept), nothing lost, nothing duplicated. (The full-disk part needs root for its tmpfs and says so otherwise.)"""
import importlib


def test_spool_faults_lose_and_duplicate_nothing():
    trial = importlib.import_module("trials.spool_faults")  # trials/ is a namespace package beside tests/
    figures = trial.trial(rounds=2, reports=3, seed=1, log=lambda *a: None)
    assert trial.problems(figures) == []
    reused = figures["reused device id, fresh spools"]
    assert reused["written"] == reused["stored"] == 6  # before spool ids: 3 of 6 answered "duplicate", deleted
    copied = figures["a spool folder copied to a second device"]
    assert copied["conflicts_kept"] == copied["conflicts_said_by_the_device"] == 3
    rotten = figures["undecodable files among the reports"]
    assert rotten["set_aside"] == rotten["junk_files"] and rotten["delivered"] == 3
