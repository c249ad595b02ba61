"""A class folder with no usable image is refused by name; labels.txt is read the same whatever its encoding
details (a byte-order mark, tabs, CRLF). Every folder is made in the test."""
import cv2
import numpy as np
import pytest

from contract.preprocess import PreprocessSpec
from host.evolve.data import cache_split, check_classes_decoded, scan_folder
from host.errors import HostError

HEIC = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic" + b"\0" * 200


def tree(root, classes=("cat", "dog"), per_class=6):
    for index, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            cv2.imwrite(str(root / name / f"{i}.jpg"), np.full((20, 24, 3), 90 * index, np.uint8))
    return root


def test_a_class_folder_of_heic_photos_named_heic_is_refused_by_name(tmp_path):
    root = tree(tmp_path / "data")
    (root / "bird").mkdir()
    for i in range(5):
        (root / "bird" / f"IMG_{i:04d}.HEIC").write_bytes(HEIC)
    with pytest.raises(HostError, match=r"class folder 'bird' holds no image file \(5 other file\(s\): "
                                        r"IMG_0000.HEIC"):
        scan_folder(root)


def test_an_empty_class_folder_is_refused_but_an_unlisted_hidden_one_is_not(tmp_path):
    root = tree(tmp_path / "data")
    (root / ".thumbnails").mkdir()
    assert scan_folder(root).classes == ["cat", "dog"]
    (root / "eel").mkdir()
    with pytest.raises(HostError, match="class folder 'eel' is empty"):
        scan_folder(root)


def test_a_class_whose_images_all_fail_to_decode_is_refused_by_name(tmp_path):
    root = tree(tmp_path / "data")
    (root / "bird").mkdir()
    for i in range(5):
        (root / "bird" / f"IMG_{i:04d}.jpg").write_bytes(HEIC)  # iPhone photos named .jpg
    split = scan_folder(root, val_fraction=0.2)
    train = cache_split(split.train, PreprocessSpec.square(16), tmp_path / "cache", "train", threads=1)
    with pytest.raises(HostError, match=r"class folder 'bird' has no usable image \(4 file\(s\) skipped, e\.g\. "
                                        r"IMG_\d+\.jpg: a HEIC/HEIF photo"):
        check_classes_decoded(split, train)


@pytest.mark.parametrize("text", ["\ufeffn01440764 tench\nn02102040 English springer\n",
                                  "n01440764\ttench\r\nn02102040\tEnglish springer\r\n",
                                  "\ufefftench\r\nEnglish springer\r\n",
                                  "n02102040   English springer\n\nn01440764 \t tench  \n"])
def test_labels_txt_with_a_bom_tabs_or_crlf_gives_clean_labels(tmp_path, text):
    root = tree(tmp_path / "data", classes=("n01440764", "n02102040"))
    (root / "labels.txt").write_bytes(text.encode("utf-8"))
    assert scan_folder(root).labels == ["tench", "English springer"]


def test_a_labels_txt_that_maps_nothing_is_warned_about(tmp_path):
    root = tree(tmp_path / "data", classes=("cat", "dog"))
    (root / "labels.txt").write_text("n01 tench\nn02 springer\nn03 cassette\n", encoding="utf-8")
    heard = []
    assert scan_folder(root, warn=heard.append).labels == ["cat", "dog"]
    assert len(heard) == 1 and "does not map the class folders" in heard[0] and "cat, dog" in heard[0]
