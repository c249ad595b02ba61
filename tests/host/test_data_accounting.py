"""Every file under --data is accounted for: used (nested class subfolders, .jfif, .gif), or counted with its reason
in the data line and lineage.sqlite's skipped_files; class folders named by number in numeric order; an unlabelled
test/ said as such; the share held out stated as it is. Real folders of real images, made in each test, and
host-evolve in a real process where the console is under test (issue 30, kind 1)."""
import sqlite3

import cv2
import numpy as np
import pytest

from host.evolve.data import class_order, scan_folder
from tests.host.commands import flags, host_evolve
from tests.host.settings import MECHANICS


def image(path, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    picture = np.full((24, 24, 3), value, np.uint8)
    cv2.rectangle(picture, (4, 4), (4 + value % 12, 18), (255, 255, 255), -1)
    assert cv2.imwrite(str(path), picture)
    return path


def test_images_in_subfolders_of_a_class_folder_are_that_class_and_said(tmp_path):
    root = tmp_path / "data"
    for k, name in enumerate(("cat", "dog")):
        image(root / name / "top.jpg", 40 * k)
        for sub in ("indoor", "outdoor"):
            for i in range(3):
                image(root / name / sub / f"{i}.jpg", 40 * k + i)
    split = scan_folder(root)
    assert len(split.train) + len(split.val) == 14
    nested = [path for path, label in split.train + split.val if "indoor" in path]
    assert nested and all(label == split.classes.index("cat" if "/cat/" in path else "dog")
                          for path, label in split.train + split.val)
    assert any("12 image(s) in subfolders of class folders are used" in note for note in split.notes)


def test_jfif_and_gif_files_are_images(tmp_path):
    root = tmp_path / "data"
    for k, name in enumerate(("cat", "dog")):
        image(root / name / "0.jpg", 40 * k)
        jpeg = cv2.imencode(".jpg", np.full((24, 24, 3), 40 * k + 5, np.uint8))[1].tobytes()
        (root / name / "1.jfif").write_bytes(jpeg)
        (root / name / "2.jpe").write_bytes(jpeg)
        (root / name / "3.gif").write_bytes(b"GIF89a" + b"\0" * 40)  # listed, then decoded or skipped by reason
    split = scan_folder(root)
    names = sorted(path.rsplit("/", 1)[1] for path, _ in split.train + split.val)
    assert names == ["0.jpg", "0.jpg", "1.jfif", "1.jfif", "2.jpe", "2.jpe", "3.gif", "3.gif"]
    assert split.not_used == []


def test_files_that_are_not_images_are_counted_with_their_reason(tmp_path):
    root = tmp_path / "data"
    for k, name in enumerate(("cat", "dog")):
        for i in range(4):
            image(root / name / f"{i}.png", 40 * k + i)
    (root / "cat" / "notes.txt").write_text("shot on a phone\n")
    (root / "dog" / "clip.mp4").write_bytes(b"\0" * 64)
    (root / "README.md").write_text("my data\n")
    image(root / "stray.jpg")
    (root / "labels.txt").write_text("cat Cat\ndog Dog\n")  # read, so not "not used"
    split = scan_folder(root)
    reasons = {path.rsplit("/", 1)[1]: why for path, why in split.not_used}
    assert sorted(reasons) == ["README.md", "clip.mp4", "notes.txt", "stray.jpg"]
    assert reasons["notes.txt"].startswith("not an image file (.txt;")
    assert reasons["stray.jpg"] == "outside every class folder"
    assert split.labels == ["Cat", "Dog"]


def test_class_folders_named_by_number_are_in_numeric_order_so_labels_txt_lines_name_them_right(tmp_path):
    root = tmp_path / "gtsrb"
    for number in range(12):
        for i in range(2):
            image(root / str(number) / f"{i}.png", 10 * number + i)
    names = [f"sign {number}" for number in range(12)]
    (root / "labels.txt").write_text("\n".join(names) + "\n")  # one label a line, in the classes' own order
    split = scan_folder(root)
    assert split.classes == [str(n) for n in range(12)]
    assert split.labels == names
    assert class_order(["b", "10", "2"]) == ["10", "2", "b"]  # not all numbers: text order
    # a resumed run keeps the order it recorded (its class indices), whatever the rule now says
    recorded = sorted(str(n) for n in range(12))
    assert scan_folder(root, order=recorded).classes == recorded


def test_an_unlabelled_test_folder_is_not_taken_for_validation_and_is_said(tmp_path):
    root = tmp_path / "kaggle"
    for k, name in enumerate(("cat", "dog")):
        for i in range(10):
            image(root / "train" / name / f"{i}.jpg", 20 * k + i)
    for i in range(8):
        image(root / "test" / f"{i}.jpg", 3 * i)
    split = scan_folder(root)
    assert not split.val_source.startswith("folder") and len(split.val) == 2
    assert len([why for _, why in split.not_used if why.startswith("unlabelled")]) == 8
    assert any("test: 8 image(s) but no class folders" in note for note in split.notes)


def test_the_share_held_out_is_the_share_actually_held_out(tmp_path):
    root = tmp_path / "data"
    for k, name in enumerate(("cat", "dog")):
        for i in range(2):
            image(root / name / f"{i}.jpg", 30 * k + i)
    split = scan_folder(root)
    assert split.val_source.startswith("held out 2 of 4 images (50 %")


def test_the_data_line_counts_what_was_left_out_by_reason_and_the_lineage_lists_it(tmp_path):
    pytest.importorskip("torch")
    root = tmp_path / "data"
    for k, name in enumerate(("circle", "square")):
        for i in range(8):
            image(root / name / ("sub" if i % 2 else "") / f"{i}.jpg", 30 * k + i)
        (root / name / "Thumbs.db").write_bytes(b"\0" * 10)
    (root / "circle" / "broken.jpg").write_bytes(b"not a jpeg at all")
    run = tmp_path / "run"
    done = host_evolve(*flags(**dict(MECHANICS, data=root, out=run)))
    assert done.returncode == 0, done.stderr[-3000:]
    console = done.stderr + done.stdout
    line = next(line for line in console.splitlines() if line.startswith("data "))
    assert "3 skipped (2 not an image file, 1 not a decodable image;" in line, line
    assert "circle -> circle, square -> square" in console
    assert "8 image(s) in subfolders of class folders are used" in console
    with sqlite3.connect(str(run / "lineage.sqlite")) as db:
        rows = db.execute("SELECT path, reason, split FROM skipped_files ORDER BY path").fetchall()
    assert sorted((path.rsplit("/", 1)[1], split == "not used") for path, _, split in rows) == [
        ("Thumbs.db", True), ("Thumbs.db", True), ("broken.jpg", False)]
