"""Chest X-ray segmentation datasets: the NLM layout and an images/masks folder layout.

Layouts (detected from the folder):

* folder layout: ``images/<id>.<ext>``, ``masks/<id>.<ext>``, optional ``ignore/<id>.<ext>``
  (pixels that count neither as lung nor as background) and an optional ``index.csv`` with
  columns ``id`` and ``split`` (optionally ``tb_label``, ``finding``, ``extent``) that
  selects train/val/test; the mask convention of each image is its ``extent`` column or the
  folder's (:func:`lungseg.extents.folder_extent`);
* NLM distribution layout: ``CXR_png/<id>.png`` with ``ManualMask/leftMask/<id>.png`` and
  ``ManualMask/rightMask/<id>.png`` (merged into one mask); no split, TB label read from the
  ``_0``/``_1`` suffix of the Montgomery/Shenzhen file names.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InputError
from ..extents import check_extent, extent_targets, folder_extent
from ..io import IMAGE_SUFFIXES, read_image, read_mask
from ..preprocess import Preprocess, mask_to_grid

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One image with its mask file(s) and what the index says about it."""

    id: str
    image: Path
    masks: tuple[Path, ...]
    dataset: str
    split: str | None = None
    tb_label: int | None = None
    extent: str = "visible"
    ignore: Path | None = None
    finding: str | None = None


def _find_by_stem(folder: Path, stem: str) -> Path | None:
    for suffix in (".png", *sorted(IMAGE_SUFFIXES - {".png"})):
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def _tb_from_name(stem: str) -> int | None:
    tail = stem.rsplit("_", 1)[-1]
    return int(tail) if tail in ("0", "1") else None


def _folder_samples(root: Path, split: str | None) -> list[Sample]:
    images, masks = root / "images", root / "masks"
    index = root / "index.csv"
    if index.is_file():
        with open(index, newline="") as f:
            rows = list(csv.DictReader(f))
        if rows and "id" not in rows[0]:
            raise InputError(f"{index}: no 'id' column")
        if split is not None and rows and "split" not in rows[0]:
            raise InputError(f"{index}: no 'split' column, cannot select split {split!r}")
        rows = [r for r in rows if split is None or r.get("split") == split]
    else:
        if split is not None:
            raise InputError(f"{root}: no index.csv, so split {split!r} cannot be selected; use --split all")
        rows = [{"id": p.stem} for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    default_extent = folder_extent(root)
    out = []
    for r in rows:
        img = _find_by_stem(images, r["id"])
        if img is None:
            raise InputError(f"{images / r['id']}.png: image listed in the index is missing")
        msk = _find_by_stem(masks, r["id"])
        if msk is None:
            raise InputError(f"{img}: no mask for this image in {masks}")
        tb = r.get("tb_label")
        extent = check_extent(r["extent"], f"{index} row {r['id']}") if r.get("extent") else default_extent
        ignore = _find_by_stem(root / "ignore", r["id"]) if (root / "ignore").is_dir() else None
        out.append(Sample(r["id"], img, (msk,), root.resolve().name, r.get("split"),
                          int(tb) if tb not in (None, "") else _tb_from_name(r["id"]),
                          extent, ignore, r.get("finding") or None))
    return out


def _nlm_samples(root: Path, split: str | None) -> list[Sample]:
    if split is not None:
        raise InputError(f"{root}: the NLM layout has no split; use --split all")
    left, right = root / "ManualMask" / "leftMask", root / "ManualMask" / "rightMask"
    out = []
    for img in sorted((root / "CXR_png").iterdir()):
        if img.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        lm, rm = left / img.name, right / img.name
        for m in (lm, rm):
            if not m.is_file():
                raise InputError(f"{img}: missing mask {m}")
        out.append(Sample(img.stem, img, (lm, rm), root.resolve().name, None, _tb_from_name(img.stem),
                          folder_extent(root)))
    return out


def find_samples(root, split: str | None = None) -> list[Sample]:
    """List the samples of a data folder (either layout); ``split`` None or "all" takes all."""
    root = Path(root)
    split = None if split in (None, "all") else split
    if split is not None and split not in SPLITS:
        raise InputError(f"unknown split {split!r}; choose one of {SPLITS} or 'all'")
    if not root.is_dir():
        raise InputError(f"{root}: no such data folder")
    if (root / "images").is_dir() and (root / "masks").is_dir():
        samples = _folder_samples(root, split)
    elif (root / "CXR_png").is_dir() and (root / "ManualMask").is_dir():
        samples = _nlm_samples(root, split)
    else:
        raise InputError(f"{root}: not a data folder (expected images/ + masks/, or CXR_png/ + ManualMask/)")
    if not samples:
        raise InputError(f"{root}: no samples" + (f" in split {split!r}" if split else ""))
    return samples


def load_sample(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Read a sample's image (own units) and merged 0/1 mask; sizes must match."""
    image = read_image(sample.image)
    mask = np.zeros(image.shape, np.uint8)
    for m in sample.masks:
        part = read_mask(m)
        if part.shape != image.shape:
            raise InputError(f"{m}: mask size {part.shape[::-1]} differs from image size {image.shape[::-1]} of {sample.image}")
        mask |= part
    return image, mask


def load_ignore(sample: Sample, shape) -> np.ndarray | None:
    """The sample's 0/1 ignore mask (None where it has none); its size must match the image."""
    if sample.ignore is None:
        return None
    ignore = read_mask(sample.ignore)
    if ignore.shape != tuple(shape):
        raise InputError(f"{sample.ignore}: ignore mask size {ignore.shape[::-1]} differs from image size {tuple(shape)[::-1]}")
    return ignore


def as_unit_float(image: np.ndarray) -> np.ndarray:
    """Integer pixels -> float32 in [0, 1] by the dtype's range (for augmentation only)."""
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32) / float(np.iinfo(image.dtype).max)
    return image.astype(np.float32)


IGNORE_BIT = 2  # set in the training mask where a pixel counts neither way (geometry moves it along)


class SegmentationDataset(Dataset):
    """Samples -> (input ``[1, S, S]``, targets ``[C, S, S]``, weights ``[C, S, S]``, primary channel).

    One target channel per entry of ``extents`` (the model's outputs), built by
    :func:`lungseg.extents.extent_targets` from each sample's mask in its own convention.
    Images are decoded once and kept in memory (``cache=True``), at most ``max_side`` pixels
    a side (larger ones area-downscaled once, which keeps augmentation of detector-size
    images cheap; :class:`Preprocess` then maps them to the network input as at inference).
    ``augment`` is a callable ``(image_float01, mask, rng) -> (image, mask)``; the mask it
    gets carries :data:`IGNORE_BIT` on ignored pixels.
    """

    def __init__(self, samples, size: int, augment=None, cache: bool = True, seed: int = 0,
                 extents=("visible",), max_side: int = 1024):
        self.samples = list(samples)
        self.preprocess = Preprocess(size)
        self.size = size
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        self.extents = tuple(extents)
        self.max_side = max_side
        self._cache = {} if cache else None

    def __len__(self):
        return len(self.samples)

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def _read(self, i):
        s = self.samples[i]
        image, mask = load_sample(s)
        ignore = load_ignore(s, image.shape)
        if ignore is not None:
            mask = mask | (ignore.astype(np.uint8) * IGNORE_BIT)
        scale = self.max_side / max(image.shape)
        if scale < 1:
            hw = (max(int(round(image.shape[1] * scale)), 1), max(int(round(image.shape[0] * scale)), 1))
            image = cv2.resize(image, hw, interpolation=cv2.INTER_AREA)
            mask = cv2.resize(mask, hw, interpolation=cv2.INTER_NEAREST)
        return image, mask

    def _load(self, i):
        if self._cache is None:
            return self._read(i)
        if i not in self._cache:
            self._cache[i] = self._read(i)
        return self._cache[i]

    def __getitem__(self, i):
        image, mask = self._load(i)
        image = as_unit_float(image)
        if self.augment is not None:
            rng = np.random.default_rng((self.seed, self.epoch, i))
            image, mask = self.augment(image, mask, rng)
        grid = (self.size, self.size)
        with torch.no_grad():
            x = self.preprocess(torch.from_numpy(np.ascontiguousarray(image))[None, None])[0]
            lung = mask_to_grid(torch.from_numpy(np.ascontiguousarray(mask & 1))[None, None], grid)[0]
            valid = 1 - mask_to_grid(torch.from_numpy(np.ascontiguousarray((mask & IGNORE_BIT) > 0))[None, None], grid)[0]
        target, weight, primary = extent_targets(lung, valid, self.samples[i].extent, self.extents)
        return x, target, weight, primary
