"""A report is answered as stored only when it is in the run's own database (issue 32, kind 1, host-serve's part):
the run's lineage.sqlite deleted, or the run folder moved and replaced while served, gives 503 (the device keeps its
report), never 201 for a report then lost, and reads answer 503 instead of 500 with a traceback. The real app on
loopback over a real run folder."""
import shutil

import pytest

httpx = pytest.importorskip("httpx")

from tests.host.test_serve import TOKEN, report  # noqa: E402
from tests.tiny_run import make_tiny_run, serving  # noqa: E402

AUTH = {"Authorization": "Bearer " + TOKEN}


@pytest.mark.parametrize("how", ["deleted", "replaced"])
def test_a_run_taken_away_while_served_answers_503_and_loses_nothing(tmp_path, how):
    run = tmp_path / "run"
    run.mkdir()
    card = make_tiny_run(run)[0]
    with serving(run, TOKEN) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            assert client.post("/reports", json=report(card, 1), headers=AUTH).status_code == 201
            if how == "deleted":
                (run / "lineage.sqlite").unlink()
            else:
                run.rename(tmp_path / "run.old")
                shutil.copytree(str(tmp_path / "run.old"), str(run))  # a new copy: another file at the same path
            answer = client.post("/reports", json=report(card, 2), headers=AUTH)
            assert answer.status_code == 503 and "start host-serve again" in answer.json()["detail"]
            assert client.get("/generations").status_code == 503
            assert client.get("/metrics").status_code == 200
    old = tmp_path / "run.old" / "lineage.sqlite"
    if how == "replaced":  # nothing answered as stored went to the old folder after it was moved
        import sqlite3
        with sqlite3.connect(str(old)) as db:
            assert db.execute("SELECT count(*) FROM device_reports").fetchone()[0] == 1
