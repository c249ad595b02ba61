"""Image folders on real JPEGs: splits, labels, corrupt files, refusals, the decode cache, augmentation."""
import cv2
import numpy as np
import pytest
import torch

from contract.preprocess import PreprocessSpec
from host.data import augment_batch, cache_split, normalize_batch, scan_folder
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
