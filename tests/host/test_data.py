"""Image folders on real JPEGs: splits, labels, corrupt files, refusals, the decode cache, augmentation."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from contract.preprocess import PreprocessSpec
from host.evolve.data import augment_batch, cache_split, normalize_batch, scan_folder
from host.errors import HostError
from tests.conftest import CIFAR_MINI, needs


def write_tree(root, classes=("cat", "dog", "eel"), per_class=10, size=24):
    rng = np.random.default_rng(0)
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            image = np.full((size, size + 6, 3), 40 * index, np.uint8) + rng.integers(0, 30, (size, size + 6, 3),
                                                                                       dtype=np.uint8)
            cv2.imwrite(str(root / name / f"{i:03d}.jpg"), image)
    return root


def test_stratified_seeded_split_and_labels_file(tmp_path):
    root = write_tree(tmp_path / "data")
    (root / "labels.txt").write_text("cat a cat\ndog a dog\neel an eel\n")
    split = scan_folder(root, val_fraction=0.2, seed=3)
    assert split.classes == ["cat", "dog", "eel"] and split.labels == ["a cat", "a dog", "an eel"]
    assert [sum(1 for _, c in split.val if c == k) for k in range(3)] == [2, 2, 2]  # 20 % of every class
    assert len(split.train) == 24 and not set(split.train) & set(split.val)
    assert scan_folder(root, 0.2, seed=3).val == split.val
    assert scan_folder(root, 0.2, seed=4).val != split.val


@needs(CIFAR_MINI)
def test_train_and_test_folders_are_used_as_they_are():
    split = scan_folder(CIFAR_MINI)
    assert len(split.classes) == 10 and split.val_source.startswith("folder test")
    assert len(split.train) == 3000 and len(split.val) == 1000


def test_corrupt_files_are_skipped_and_counted(tmp_path):
    root = write_tree(tmp_path / "data", per_class=5)
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (root / "dog" / "empty.jpg").write_bytes(b"")
    split = scan_folder(root, val_fraction=0.2)
    spec = PreprocessSpec.square(16)
    both = cache_split(split.train + split.val, spec, tmp_path / "cache", "all")
    assert len(both) == 15
    assert sorted(p.rsplit("/", 1)[1] for p, _ in both.skipped) == ["broken.jpg", "empty.jpg"]


@pytest.mark.parametrize("make,message", [
    (lambda root: None, "no such folder"),
    (lambda root: root.mkdir(), "found no class folders"),
    (lambda root: write_tree(root, classes=("only",)), "at least 2 class folders"),
])
def test_unusable_trees_are_refused_with_the_folder_named(tmp_path, make, message):
    root = tmp_path / "data"
    make(root)
    with pytest.raises(HostError, match=message) as error:
        scan_folder(root)
    assert str(root) in str(error.value)


def test_cache_holds_the_device_preprocessing_and_is_reused(tmp_path):
    root = write_tree(tmp_path / "data", per_class=4)
    split = scan_folder(root, val_fraction=0.25)
    spec = PreprocessSpec.square(20)
    first = cache_split(split.train, spec, tmp_path / "cache", "train")
    path, _ = split.train[0]
    assert np.array_equal(first.images[0], spec.resize_frame(cv2.imread(path)))
    files = sorted((tmp_path / "cache").iterdir())
    again = cache_split(split.train, spec, tmp_path / "cache", "train")
    assert sorted((tmp_path / "cache").iterdir()) == files and np.array_equal(again.images, first.images)
    # normalising the cached uint8 in torch gives what the device computes from the original JPEG
    device_input = spec(cv2.imread(path))
    host_input = normalize_batch(torch.from_numpy(np.array(first.images[:1])), spec).numpy()
    np.testing.assert_allclose(host_input, device_input, atol=1e-6)


def test_augmentation_is_seeded_and_keeps_shape():
    batch = torch.randn(6, 3, 32, 32)
    a = augment_batch(batch, torch.Generator().manual_seed(1))
    b = augment_batch(batch, torch.Generator().manual_seed(1))
    c = augment_batch(batch, torch.Generator().manual_seed(2))
    assert a.shape == batch.shape and torch.equal(a, b) and not torch.equal(a, c)
    # full-area crops with no flip give the image back
    same = augment_batch(batch, torch.Generator().manual_seed(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    flipped = torch.where(torch.isclose(same, batch, atol=1e-5).flatten(1).all(1), 0, 1)
    for i in range(6):
        target = batch[i] if flipped[i] == 0 else batch[i].flip(-1)
        torch.testing.assert_close(same[i], target, atol=1e-5, rtol=0)


def test_dangling_links_are_skipped_and_counted(tmp_path):
    root = write_tree(tmp_path / "data", per_class=5)
    (root / "dog" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")  # unreadable as root too
    split = scan_folder(root, val_fraction=0.2)
    both = cache_split(split.train + split.val, PreprocessSpec.square(16), tmp_path / "cache", "all")
    assert len(both) == 15 and [(p.rsplit("/", 1)[1], r) for p, r in both.skipped] == [
        ("gone.jpg", "unreadable (No such file or directory)")]


def scan_as_unprivileged(root, cache):
    """scan_folder + cache_split in a forked child that drops root (uid nobody): chmod 000 binds every user
    but root, and tests run as root here. Without root, the child runs as the same user. The result comes
    back through a pipe as JSON."""
    import json
    import os
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            split = scan_folder(root, val_fraction=0.2)
            both = cache_split(split.train + split.val, PreprocessSpec.square(16), cache, "all", threads=1)
            found = {"classes": split.classes, "folders": split.unreadable, "files": both.skipped, "kept": len(both)}
            os.write(write_end, json.dumps(found).encode())
            status = 0
        except BaseException as error:  # reported to the parent, which fails the test with it
            os.write(write_end, json.dumps({"error": repr(error)}).encode())
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = json.loads(pipe.read().decode() or "{}")
    os.waitpid(pid, 0)
    return answer


def test_permission_denied_files_and_folders_are_skipped_and_counted():
    import shutil
    import tempfile
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # not pytest's tmp_path: its parents are closed to others
    try:
        base.chmod(0o777)
        root = write_tree(base / "data", classes=("cat", "dog", "eel", "fox"), per_class=5)
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (root / "dog" / "001.jpg").chmod(0o000)
        (root / "fox").chmod(0o000)
        found = scan_as_unprivileged(root, base / "cache")
        assert "error" not in found, found
        assert found["classes"] == ["cat", "dog", "eel"]  # fox could not be listed: left out, and said so
        assert found["folders"] == [[str(root / "fox"), "unreadable folder (Permission denied)"]]
        assert found["files"] == [[str(root / "dog" / "001.jpg"), "unreadable (Permission denied)"]]
        assert found["kept"] == 14
    finally:
        for path in [base, *base.rglob("*")]:
            path.chmod(0o777)
        shutil.rmtree(base)


def test_a_changed_image_is_decoded_again(tmp_path):
    root = write_tree(tmp_path / "data", per_class=3)
    split = scan_folder(root, val_fraction=0.34)
    spec = PreprocessSpec.square(16)
    path, _ = split.train[0]
    before = np.array(cache_split(split.train, spec, tmp_path / "cache", "train").images[0])
    cv2.imwrite(path, np.full((24, 30, 3), 255, np.uint8))  # repaired in place: same path, new pixels
    after = np.array(cache_split(split.train, spec, tmp_path / "cache", "train").images[0])
    assert not np.array_equal(before, after) and after.min() > 250


def test_a_split_with_no_decodable_image_is_empty_not_a_crash(tmp_path):
    root = tmp_path / "data"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "a.jpg").write_bytes(b"not a jpeg")
    cached = cache_split([(str(root / "cat" / "a.jpg"), 0)], PreprocessSpec.square(16), tmp_path / "cache", "val")
    assert len(cached) == 0 and cached.images.shape == (0, 16, 16, 3) and len(cached.skipped) == 1
    again = cache_split([(str(root / "cat" / "a.jpg"), 0)], PreprocessSpec.square(16), tmp_path / "cache", "val")
    assert len(again) == 0  # from the cache as well


def test_labels_are_one_line_each_and_labels_txt_must_be_utf8(tmp_path):
    root = write_tree(tmp_path / "data", classes=("cat", "dog\nhouse", "eel\r"), per_class=3)
    split = scan_folder(root, val_fraction=0.34)
    assert split.labels == ["cat", "dog house", "eel"]
    assert "\n".join(split.labels).splitlines() == split.labels  # labels.txt: one line per class
    (root / "labels.txt").write_bytes("cat chat\n".encode("latin-1") + b"dog caf\xe9\n")
    with pytest.raises(HostError, match=r"labels.txt is not UTF-8 text .*save it as UTF-8"):
        scan_folder(root, val_fraction=0.34)


def test_every_image_the_device_reads_is_read_for_training(tmp_path):
    """contract.images: .tif and .ppm (which device-serve classifies) are not skipped by host-evolve."""
    root = write_tree(tmp_path / "data", per_class=3)
    picture = np.full((20, 20, 3), 200, np.uint8)
    for name in ("scan.tif", "frame.ppm", "FRAME2.PGM"):
        cv2.imwrite(str(root / "cat" / name), picture if not name.endswith(("PGM", "pgm")) else picture[:, :, 0])
    split = scan_folder(root, val_fraction=0.2)
    names = {p.rsplit("/", 1)[1] for p, _ in split.train + split.val}
    assert {"scan.tif", "frame.ppm", "FRAME2.PGM"} <= names
    cached = cache_split(split.train + split.val, PreprocessSpec.square(16), tmp_path / "cache", "all")
    assert len(cached) == 12 and cached.skipped == []


def _cache_in_child(args):
    items, folder, barrier = args
    barrier.wait()
    cached = cache_split(items, PreprocessSpec.square(48), folder, "train", threads=1)
    return len(cached), int(np.asarray(cached.images, dtype=np.int64).sum())


def test_two_processes_missing_one_cache_at_once_both_get_it(tmp_path):
    """Two runs side by side sharing a cache folder (bench/peers.py runs with one symlinked cache) that miss the
    same key at once: each decodes into its own temporary file and both get the same whole cache. With one
    temporary name the first to finish replaced it under the second, which died with FileNotFoundError."""
    import multiprocessing
    root = write_tree(tmp_path / "data", per_class=60)
    items = scan_folder(root, val_fraction=0.1).train
    context = multiprocessing.get_context("fork")
    barrier = context.Manager().Barrier(2)
    with context.Pool(2) as pool:
        results = pool.map(_cache_in_child, [(items, tmp_path / "cache", barrier)] * 2)
    assert results[0] == results[1] and results[0][0] == len(items)
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".partial")]
