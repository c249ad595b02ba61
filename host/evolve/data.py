"""Image-folder datasets, decoded once with OpenCV into a uint8 cache, and batch augmentation in torch.

Decoding JPEGs would starve training on 2 cores, so every image is decoded and resized *once*, with
the device's own preprocessing (contract.preprocess), into a uint8 memmap per split and image size.
Training then reads uint8 batches from it and augments them on the fly (random resized crop and
flip as one batched affine resample); evaluation normalises the cached images exactly as the device
does, so the accuracy measured here is the accuracy the device will see.
"""
from __future__ import annotations

import errno
import hashlib
import json
import logging
import math
import os
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from contract.files import atomic_write
from contract.generation_files import LABELS_TXT
from contract.images import IMAGE_EXTENSIONS, is_image_name, read_image  # the device's list and reader: one verdict per file
from contract.preprocess import PreprocessSpec
from host.errors import HostError
from host.evolve.progress import bars_disabled

log = logging.getLogger("squishednets.data")
VAL_FOLDER_NAMES = ("val", "valid", "validation", "test")


@dataclass
class FolderSplit:
    """What a data folder holds: class folders, readable labels, and (path, class index) per split."""
    root: Path
    classes: list[str]  # folder names, sorted; the class index is the position here
    labels: list[str]  # readable names (labels.txt), same order, one line each
    train: list[tuple[str, int]]
    val: list[tuple[str, int]]
    val_source: str  # "folder val/" or "held out 4 of 44 images (9 %) ..."
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (folder, reason): skipped class folders
    not_used: list[tuple[str, str]] = field(default_factory=list)  # (file, reason): files under root left out
    notes: list[str] = field(default_factory=list)  # what the scan made of the folder, for the console



def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # e.g. permission denied on the parent's entries: not a folder we can use
        return False


def _list_images(folder: Path, unreadable: list[tuple[str, str]],
                 others: dict[str, list[str]] | None = None,
                 not_used: list[tuple[str, str]] | None = None) -> list[str]:
    """Every file with an image extension in ``folder`` and in its subfolders (as torchvision's ImageFolder walks
    a class folder: ``cat/indoor/*.jpg`` is a cat), sorted; a file that cannot be read (permission denied, a
    dangling link) is listed too, so that decoding skips and counts it. Hidden files and folders are left out;
    a folder reached twice through links is walked once. An unreadable folder is added to ``unreadable``.
    Every other file goes to ``not_used`` as (path, why) when given, and the names of what the folder holds
    besides images to ``others[str(folder)]``: what a class folder without images holds, for its refusal."""
    images, other_names, seen = [], [], set()

    def cannot_list(error: OSError) -> None:
        unreadable.append((str(error.filename or folder), f"unreadable folder ({error.strerror or error})"))
    for here, folders, files in os.walk(str(folder), onerror=cannot_list, followlinks=True):
        real = os.path.realpath(here)
        if real in seen:  # a link back up the tree: walked once
            folders[:] = []
            continue
        seen.add(real)
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in files:
            if name.startswith("."):
                continue
            path = os.path.join(here, name)
            if is_image_name(name):
                images.append(path)
            else:
                other_names.append(os.path.relpath(path, str(folder)))
                if not_used is not None:
                    not_used.append((path, not_an_image(name)))
    if others is not None:
        others[str(folder)] = sorted(other_names)
    return sorted(images)


def not_an_image(name: str) -> str:
    """Why a file is not used: its extension is none of IMAGE_EXTENSIONS."""
    suffix = Path(name).suffix.lower()
    return f"not an image file ({suffix or 'no extension'}; images are {', '.join(IMAGE_EXTENSIONS)})"


def class_order(names) -> list[str]:
    """Class folders in class-index order: by number when every name is a number (GTSRB's 0 ... 42, so that a
    labels.txt of one label per line in that order names them right), else sorted as text."""
    names = list(names)
    if names and all(name.isdigit() for name in names):
        return sorted(names, key=lambda name: (int(name), name))
    return sorted(names)


def _class_folders(root: Path, unreadable: list[tuple[str, str]], refuse_empty: bool = True,
                   not_used: list[tuple[str, str]] | None = None, skip: tuple = ()) -> dict[str, list[str]]:
    try:
        entries = sorted(root.iterdir())
    except OSError as error:
        raise HostError(f"--data {root}: cannot read the folder ({error.strerror or error}); make it readable "
                        "by this user") from error
    others: dict[str, list[str]] = {}
    found = {d.name: _list_images(d, unreadable, others, not_used)
             for d in entries if not d.name.startswith(".") and d.name not in skip and _is_folder(d)}
    if not_used is not None:  # files beside the class folders: in no class (labels.txt is read, not skipped)
        for entry in entries:
            if entry.name.startswith(".") or entry.name == LABELS_TXT or entry.name in skip or _is_folder(entry):
                continue
            not_used.append((str(entry), "outside every class folder" if is_image_name(entry.name)
                             else not_an_image(entry.name)))
    listed = {folder for folder, _ in unreadable}
    empty = {name: others.get(str(root / name), []) for name, files in found.items()
             if not files and str(root / name) not in listed}
    if refuse_empty and empty and len(found) - len(empty) >= 1:
        raise HostError(f"--data {root}: {_empty_classes_text(root, empty)}; a class needs images "
                        f"({', '.join(IMAGE_EXTENSIONS)}): convert them, or move the folder out of {root}")
    return found


def _empty_classes_text(root: Path, empty: dict[str, list[str]]) -> str:
    """'class folder 'bird' holds no image file (5 files: IMG_0000.HEIC, ...)' for each empty class folder."""
    parts = []
    for name, held in sorted(empty.items()):
        if held:
            shown = ", ".join(held[:3]) + (", ..." if len(held) > 3 else "")
            parts.append(f"class folder {name!r} holds no image file ({len(held)} other file(s): {shown})")
        else:
            parts.append(f"class folder {name!r} is empty")
    return "; ".join(parts)


def check_classes_decoded(split: "FolderSplit", train: "CachedImages") -> None:
    """Refuse a class whose files all failed to decode (HEIC photos named .jpg, truncated files): the model
    would get an output that never saw an image. Names the folder and what its files are, as
    contract.images.read_image said."""
    kept = np.bincount(np.asarray(train.labels, dtype=np.int64), minlength=len(split.classes))
    empty = [index for index, count in enumerate(kept) if count == 0]
    if not empty:
        return
    parts = []
    for index in empty:
        name = split.classes[index]
        files = [path for path, label in split.train if label == index]
        reasons = [reason for path, reason in train.skipped if path in set(files)]
        example = f", e.g. {Path(files[0]).name}: {reasons[0]}" if files and reasons else ""
        parts.append(f"class folder {name!r} has no usable image ({len(files)} file(s) skipped{example})")
    raise HostError(f"--data {split.root}: {'; '.join(parts)}; replace its files with JPEG/PNG images, or move "
                    "the folder out of the data")


def one_line(label: str) -> str:
    """A label as one line of labels.txt: line breaks and other control characters become spaces (a class
    folder may be named anything; the device reads labels.txt line by line)."""
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in label).strip() or "?"


def read_labels_file(root: Path, classes: list[str], warn=None) -> list[str]:
    """labels.txt -> readable labels, one per class folder (in ``classes`` order).

    Two layouts, as jetson-inference and ImageNet's synset files use: "n01440764 tench" (a folder name, any
    whitespace -- spaces or a tab --, the label) or one label per line in class order. Read as UTF-8 with a
    byte-order mark stripped (Windows Notepad writes one) and any line ending. ``warn(message)`` is told when
    a labels.txt exists but maps the class folders neither way (the folder names are used then).
    """
    path = root / LABELS_TXT  # the data folder's label map: the same one-label-a-line format as a generation's
    if not path.is_file():
        return list(classes)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise HostError(f"--data {path} is not UTF-8 text ({error.reason} at byte {error.start}); save it as "
                        "UTF-8") from error
    except OSError as error:
        raise HostError(f"--data {path}: cannot read it ({error.strerror or error})") from error
    mapping, plain = {}, []
    for line in text.lstrip("\ufeff").splitlines():
        line = line.strip()
        if not line:
            continue
        parts = line.split(None, 1)
        mapping[parts[0]] = parts[1].strip() if len(parts) > 1 else parts[0]
        plain.append(line)
    if all(c in mapping for c in classes):
        return [mapping[c] for c in classes]
    if len(plain) == len(classes):
        return plain
    if warn is not None:
        unmapped = [c for c in classes if c not in mapping]
        warn(f"{path} does not map the class folders: {len(plain)} line(s) for {len(classes)} classes, and "
             f"{len(unmapped)} folder(s) ({', '.join(unmapped[:3])}) are not named in it; using the folder names "
             "as labels. Write one 'FOLDER LABEL' line per class folder, or one label per line in folder order")
    return list(classes)


def scan_folder(root: str | Path, val_fraction: float = 0.1, seed: int = 0, warn=None,
                order: list[str] | None = None) -> FolderSplit:
    """Find the classes and images of ``root``: ``root/<class>/**`` or ``root/train/<class>`` + ``root/val/<class>``
    (also ``valid/``, ``validation/``, ``test/``), images in subfolders of a class folder included.

    Every file under ``root`` is accounted for: used, or in ``not_used`` with why (not an image file, outside
    every class folder, in an unlabelled ``test/`` that holds images but no class folders). Class folders named
    by number are in numeric order (:func:`class_order`); ``order`` (a resumed run's recorded classes, the same
    set) wins. Without a val folder, a stratified, seeded ``val_fraction`` of every class is held out. A class
    folder without image files is refused by name (HostError), with what it holds; ``warn(message)`` hears about
    a labels.txt that does not map the class folders (default: the ``squishednets.data`` logger).
    """
    if warn is None:
        import logging
        warn = logging.getLogger("squishednets.data").warning
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise HostError(f"--data {root} is a file, not a folder. Give an image-folder tree: DIR/<class>/*.jpg "
                        "or DIR/train/<class> + DIR/val/<class>")
    if not root.is_dir():
        raise HostError(f"--data {root}: no such folder. Give an image-folder tree: DIR/<class>/*.jpg "
                        "or DIR/train/<class> + DIR/val/<class>")
    train_dir = root / "train"
    unreadable: list[tuple[str, str]] = []
    not_used: list[tuple[str, str]] = []
    notes: list[str] = []
    val_dir = None
    if _is_folder(train_dir):
        train_classes = _class_folders(train_dir, unreadable, not_used=not_used)
        for candidate in (root / n for n in VAL_FOLDER_NAMES if _is_folder(root / n)):
            loose = _unlabelled_images(candidate)
            if loose is not None:  # a Kaggle-style test/ of loose photos: nothing to validate against
                not_used += [(path, f"unlabelled: {candidate.name}/ holds images but no class folders")
                             for path in loose]
                notes.append(f"{candidate}: {len(loose)} image(s) but no class folders (an unlabelled test set?): "
                             f"not used; sort them into class folders to validate on them")
                continue
            val_dir = candidate
            break
        val_classes = (_class_folders(val_dir, unreadable, refuse_empty=False, not_used=not_used)
                       if val_dir is not None else None)
        unlabelled = {Path(path).parent for path, why in not_used if why.startswith("unlabelled")}
        for entry in sorted(root.iterdir()):  # beside train/ and val/: in no split
            if entry.name.startswith(".") or entry.name == LABELS_TXT or entry in (train_dir, val_dir) or \
                    entry in unlabelled:
                continue
            if _is_folder(entry):
                why = (f"a second validation folder ({entry.name}/; {val_dir.name}/ is the one used)"
                       if entry.name in VAL_FOLDER_NAMES and val_dir is not None
                       else f"outside train/ and the val folder ({entry.name}/)")
                not_used += [(path, why) for path in _list_images(entry, unreadable)]
            else:
                not_used.append((str(entry), "outside train/ and the val folder" if is_image_name(entry.name)
                                 else not_an_image(entry.name)))
    else:
        train_classes, val_classes = _class_folders(root, unreadable, not_used=not_used), None
        train_dir = root
    found_classes = train_classes
    train_classes = {c: files for c, files in train_classes.items() if files}
    if len(train_classes) < 2:
        found = ", ".join(f"{c!r} ({len(f)} images)" for c, f in found_classes.items()) or "no class folders"
        raise HostError(f"--data {train_dir}: found {found}; a classifier needs at least 2 class folders with "
                        f"images ({', '.join(IMAGE_EXTENSIONS)}) in them, as DIR/<class>/*.jpg")
    classes = list(order) if order is not None and sorted(order) == sorted(train_classes) \
        else class_order(train_classes)
    train, val = [], []
    if val_classes is not None:
        unknown = sorted(set(c for c, f in val_classes.items() if f) - set(classes))
        if unknown:
            raise HostError(f"--data {val_dir}: classes {unknown} are not in {train_dir}; "
                            "the val folder must use the train folder's class names")
        for index, name in enumerate(classes):
            train += [(p, index) for p in train_classes[name]]
            val += [(p, index) for p in val_classes.get(name, [])]
        source = f"folder {val_dir.name}/"
        if not val:
            raise HostError(f"--data {val_dir}: the validation folder holds no images in class folders named as "
                            f"{train_dir}'s ({', '.join(classes[:3])}, ...); add images to {val_dir}/<class>/, or "
                            f"move {val_dir.name}/ out of {root} to hold out {val_fraction:.0%} of train instead")
    else:
        if not 0.0 < val_fraction < 1.0:
            raise HostError(f"val_fraction {val_fraction} must be in (0, 1) when {root} has no val folder")
        rng = np.random.default_rng(seed)
        for index, name in enumerate(classes):
            files = train_classes[name]
            order_ = rng.permutation(len(files))
            n_val = max(1, int(round(len(files) * val_fraction))) if len(files) > 1 else 0
            val += [(files[i], index) for i in sorted(order_[:n_val])]
            train += [(files[i], index) for i in sorted(order_[n_val:])]
        total = len(train) + len(val)
        source = (f"held out {len(val)} of {total} images ({100 * len(val) / max(1, total):.0f} %; asked "
                  f"{val_fraction:.0%} of each class, at least 1 of a class with 2 or more), seed {seed}")
        if not val:
            raise HostError(f"--data {root}: no class has 2 images, so none can be held out for validation; add "
                            f"images to the class folders, or a val folder (DIR/train/<class> + DIR/val/<class>)")
    nested = [path for name in classes for path in train_classes[name] + (val_classes or {}).get(name, [])
              if Path(path).parent.name != name]
    if nested:
        example = Path(nested[0]).relative_to(root).as_posix()
        notes.append(f"{len(nested)} image(s) in subfolders of class folders are used as their class's (as "
                     f"torchvision's ImageFolder does), e.g. {example}")
    labels = [one_line(label) for label in read_labels_file(root, classes, warn)]
    return FolderSplit(root, classes, labels, train, val, source, unreadable, not_used, notes)


def _unlabelled_images(folder: Path) -> list[str] | None:
    """The images directly in ``folder`` when it holds some but no class folder with images in it, else None."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return None
    loose = sorted(str(e) for e in entries if is_image_name(e.name) and not _is_folder(e) and not e.name.startswith("."))
    if not loose:
        return None
    has_classes = any(_is_folder(e) and not e.name.startswith(".") and _list_images(e, [])
                      for e in entries)
    return None if has_classes else loose


@dataclass(frozen=True)
class DataIdentity:
    """What makes a data folder the one a run was trained on: its classes (folder names, in class-index order)
    and every image file it lists (paths relative to the folder, '/'-separated, sorted; train and val, the
    undecodable ones too). Contents are not hashed: a repaired image keeps its place (the cache re-decodes it)."""
    classes: tuple[str, ...]
    files: tuple[str, ...]

    @classmethod
    def of(cls, split: FolderSplit) -> "DataIdentity":
        root = Path(split.root)
        files = sorted(Path(path).relative_to(root).as_posix() for path, _ in split.train + split.val)
        return cls(tuple(split.classes), tuple(files))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps([self.classes, self.files]).encode("utf-8")).hexdigest()

    def to_record(self) -> dict:
        """For lineage.sqlite's ``dataset`` table."""
        return {"classes": json.dumps(list(self.classes)), "files": json.dumps(list(self.files)),
                "sha256": self.sha256}

    @classmethod
    def from_record(cls, record: dict) -> "DataIdentity":
        return cls(tuple(json.loads(record["classes"])), tuple(json.loads(record["files"])))

    def differences(self, now: "DataIdentity", shown: int = 3) -> list[str]:
        """How ``now`` (the folder as it is) differs from this (the run's), as phrases naming the first
        ``shown`` classes and files missing from it and new in it; [] when it is the same data."""
        def named(noun: str, state: str, items: list[str]) -> str:
            return (f"{len(items)} {noun}{'' if len(items) == 1 else ('es' if noun == 'class' else 's')} {state}: "
                    + ", ".join(items[:shown]) + (", ..." if len(items) > shown else ""))
        phrases = []
        if self.classes != now.classes:
            missing = [c for c in self.classes if c not in set(now.classes)]
            new = [c for c in now.classes if c not in set(self.classes)]
            parts = [named("class", "missing", missing)] * bool(missing) + [named("class", "new", new)] * bool(new)
            phrases.append("; ".join(parts) if parts else
                           f"classes in another order ({', '.join(now.classes[:shown])}, ...)")
        ours, theirs = set(self.files), set(now.files)
        missing = sorted(ours - theirs)
        new = sorted(theirs - ours)
        if missing:
            phrases.append(named("file", "missing", missing))
        if new:
            phrases.append(named("file", "new", new))
        return phrases


@dataclass
class CachedImages:
    """Decoded, resized images of one split: uint8 N x H x W x 3 (RGB) and int64 labels."""
    images: np.ndarray
    labels: np.ndarray
    paths: list[str]
    skipped: list[tuple[str, str]]  # (path, reason) of files that could not be decoded

    def __len__(self) -> int:
        return len(self.labels)


def _decode(path: str, spec: PreprocessSpec) -> np.ndarray | str:
    """The resized image, or why there is none (contract.images.read_image: the device's own rules)."""
    image, reason = read_image(path)
    return reason if image is None else spec.resize_frame(image)


def _file_identity(path: str) -> tuple[int, int] | None:
    """(size, mtime in ns): a repaired or replaced image gets a new cache."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def cache_split(items: list[tuple[str, int]], spec: PreprocessSpec, cache_dir: str | Path, name: str,
                threads: int = 2) -> CachedImages:
    """Decode ``items`` once into ``cache_dir``; later calls (and resumed runs) reuse the cache while every
    file keeps its size and modification time (the cache's key holds them)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    identities = [_file_identity(path) for path, _ in items]
    key = hashlib.sha256(json.dumps([items, identities, spec.to_dict()]).encode()).hexdigest()[:16]
    stem = cache_dir / f"{name}-{spec.height}x{spec.width}-{key}"
    manifest_path, data_path = stem.with_suffix(".json"), stem.with_suffix(".u8")
    shape_hw = (spec.height, spec.width, 3)
    if manifest_path.is_file() and data_path.is_file():
        cached = _read_cache(manifest_path, data_path, shape_hw)
        if cached is not None:
            return cached
        log.warning("the decoded-image cache %s is damaged; decoding the %s split again", manifest_path, name)

    # one temporary file per process: two runs sharing a cache folder (two benches side by side) that miss at
    # once each decode into their own and the last replace wins, instead of one truncating under the other
    tmp = data_path.with_suffix(f".u8.{os.getpid()}.partial")
    try:
        kept_paths, kept_labels, skipped = _decode_into(tmp, items, spec, name, threads)
        os.replace(tmp, data_path)
    except OSError as error:
        if error.filename in (None, str(tmp)):
            error.filename = str(data_path)  # a full disk names the cache file meant
        raise
    finally:  # stopped (Ctrl-C, SIGTERM) or failed: no temporary file stays behind
        tmp.unlink(missing_ok=True)
    # the manifest lands last: its presence means the cache is whole
    atomic_write(manifest_path, json.dumps({"labels": kept_labels, "paths": kept_paths, "skipped": skipped}))
    return cache_split(items, spec, cache_dir, name, threads)


def _decode_into(tmp: Path, items: list[tuple[str, int]], spec: PreprocessSpec, name: str,
                 threads: int) -> tuple[list[str], list[int], list[tuple[str, str]]]:
    """Decode ``items`` into the uint8 file ``tmp`` (N x H x W x 3, cut to the decodable ones): their paths,
    labels, and (path, reason) of those skipped. The whole file is reserved first, so that a full disk is an
    OSError here and not a SIGBUS while writing the memory map."""
    shape_hw = (spec.height, spec.width, 3)
    with open(tmp, "wb") as handle:
        _reserve(handle.fileno(), max(1, len(items)) * int(np.prod(shape_hw)))
    buffer = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=(max(1, len(items)),) + shape_hw)
    kept_paths, kept_labels, skipped = [], [], []
    # cv2 releases the GIL while decoding, so threads use every core
    with ThreadPoolExecutor(max_workers=threads) as pool:
        decoded = pool.map(lambda item: _decode(item[0], spec), items)
        # disable=None: a bar on a terminal only (a refused dataset then ends in one clear line in a log)
        for (path, label), image in tqdm(zip(items, decoded), total=len(items), desc=f"decode {name}",
                                         unit="img", leave=False, disable=bars_disabled()):
            if isinstance(image, str):
                skipped.append((path, image))
                continue
            buffer[len(kept_labels)] = image
            kept_paths.append(path)
            kept_labels.append(label)
    buffer.flush()
    del buffer
    os.truncate(tmp, len(kept_labels) * int(np.prod(shape_hw)))
    return kept_paths, kept_labels, skipped


def _reserve(descriptor: int, size: int) -> None:
    """Allocate ``size`` bytes of the open file (posix_fallocate; a plain truncate where the file system has
    no such call). Raises OSError ENOSPC / EFBIG when there is no room."""
    try:
        os.posix_fallocate(descriptor, 0, size)
    except OSError as error:
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
        os.ftruncate(descriptor, size)


def _read_cache(manifest_path: Path, data_path: Path, shape_hw: tuple) -> CachedImages | None:
    """A whole cache (manifest and images agreeing), or None for a damaged one (a stray write, a copy cut
    short): the cache is derived from the images, so it is decoded again."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        labels, paths, skipped = manifest["labels"], manifest["paths"], manifest["skipped"]
        count = len(labels)
        if len(paths) != count or data_path.stat().st_size != count * int(np.prod(shape_hw)):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    images = (np.memmap(data_path, dtype=np.uint8, mode="r", shape=(count,) + shape_hw) if count
              else np.zeros((0,) + shape_hw, np.uint8))  # none decodable: an empty file cannot be mapped
    return CachedImages(images, np.asarray(labels, dtype=np.int64), paths, [tuple(s) for s in skipped])


def normalize_batch(batch: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float N x 3 x H x W with the device's normalisation (same scale and offset)."""
    scale, offset = (torch.from_numpy(a).to(batch.device).view(1, 3, 1, 1) for a in spec.affine())
    return batch.permute(0, 3, 1, 2).float() * scale + offset


def augment_batch(batch: torch.Tensor, generator: torch.Generator, scale=(0.25, 1.0),
                  ratio=(3 / 4, 4 / 3)) -> torch.Tensor:
    """Random resized crop + horizontal flip of a normalised N x 3 x H x W batch, as one affine resample."""
    n = batch.shape[0]
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=generator)
    log_ratio = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=generator)
    aspect = torch.exp(log_ratio)
    width = torch.sqrt(area * aspect).clamp(max=1.0)  # fraction of the image's width
    height = torch.sqrt(area / aspect).clamp(max=1.0)
    centre_x = (torch.rand(n, generator=generator) * 2 - 1) * (1 - width)
    centre_y = (torch.rand(n, generator=generator) * 2 - 1) * (1 - height)
    flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = width * flip
    theta[:, 0, 2] = centre_x
    theta[:, 1, 1] = height
    theta[:, 1, 2] = centre_y
    grid = F.affine_grid(theta.to(batch.device, batch.dtype), list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
