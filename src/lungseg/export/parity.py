"""Parity of an exported artifact with the eager model: same pixels in, same probabilities and masks out.

Each case is a batch of ``batch`` images at one size. Real X-rays (from data folders) are
resized to every size; without them, synthetic 12-bit chest-like images are drawn at each
size. A float32 artifact passes when its probabilities are within ``1e-4`` of the eager
model's and every mask has Dice >= 0.999 with the eager mask; a float16 one when Dice
>= 0.995 (its probability difference is reported, not judged).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import InputError
from ..io import IMAGE_SUFFIXES, read_image
from ..metrics import dice_score

# (width, height): a square image, a small landscape one and a full-size Montgomery detector image
PARITY_SIZES = ((512, 512), (1000, 800), (4020, 4892))
PARITY_BATCH = 2
TOLERANCES = {"fp32": {"max_abs_prob_diff": 1e-4, "dice": 0.999, "max_abs_quality_diff": 2e-3},
              "fp16": {"max_abs_prob_diff": None, "dice": 0.995, "max_abs_quality_diff": 0.02},
              "int8": {"max_abs_prob_diff": None, "dice": 0.98, "max_abs_quality_diff": 0.05}}


@dataclass
class ParityCase:
    size: str
    batch: int
    max_abs_prob_diff: float
    dice: float
    ok: bool
    max_abs_quality_diff: float = 0.0


def synthetic_xray(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A 12-bit (uint16) chest-like radiograph: bright mediastinum and body, two darker lung fields."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    y, x = y / height, x / width
    body = np.exp(-(((x - 0.5) / 0.42) ** 6 + ((y - 0.55) / 0.5) ** 6))
    lungs = sum(np.exp(-(((x - cx) / 0.15) ** 2 + ((y - 0.45) / 0.26) ** 2) * 3) for cx in (0.3 + 0.02 * seed, 0.7))
    image = 300 + 3000 * body - 1700 * np.clip(lungs, 0, 1) + rng.normal(0, 40, (height, width))
    return np.clip(image, 0, 4095).astype(np.uint16)


def real_images(folders, count: int = 2) -> list[np.ndarray]:
    """The first ``count`` images of each folder (or of its ``images/`` subfolder)."""
    out = []
    for folder in folders:
        folder = Path(folder)
        if (folder / "images").is_dir():
            folder = folder / "images"
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise InputError(f"{folder}: no images for the parity check")
        out.extend(read_image(p) for p in files[:count])
    return out


def parity_batches(images=None, sizes=PARITY_SIZES, batch: int = PARITY_BATCH):
    """``(label, pixels [batch, H, W])`` per size, from ``images`` (resized) or synthetic X-rays."""
    for w, h in sizes:
        if images:
            picks = [images[i % len(images)] for i in range(batch)]
            stack = [cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA if w * h < im.size else cv2.INTER_LINEAR)
                     for im in picks]
        else:
            stack = [synthetic_xray(h, w, seed=i) for i in range(batch)]
        yield f"{w}x{h}", np.stack(stack)


@torch.inference_mode()
def eager(pipeline, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The eager deploy module on ``pixels [N, H, W]`` -> (probability, mask, quality): ``[N, H, W]`` x2, ``[N, 4]``."""
    device = next(pipeline.parameters()).device
    prob, mask, quality = pipeline(torch.from_numpy(pixels.astype(np.float32))[:, None].to(device))
    return prob[:, 0].float().cpu().numpy(), mask[:, 0].cpu().numpy(), quality.float().cpu().numpy()


def _quality_diff(a, b) -> float:
    """Largest difference of two quality tables; NaN in both (no head) is equal, in one is inf."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or (np.isnan(a) != np.isnan(b)).any():
        return float("inf")
    both = ~np.isnan(a)
    return float(np.abs(a[both] - b[both]).max()) if both.any() else 0.0


def compare(pipeline, backend, pixels: np.ndarray, precision: str = "fp32", label: str = "") -> ParityCase:
    """Run ``backend`` (pixels float32 [N, 1, H, W] -> prob, mask, quality) and the eager model; judge the difference."""
    label = label or f"{pixels.shape[2]}x{pixels.shape[1]}"
    ref_prob, ref_mask, ref_quality = eager(pipeline, pixels)
    prob, mask, quality = backend(np.ascontiguousarray(pixels, dtype=np.float32)[:, None])
    prob, mask = np.asarray(prob)[:, 0].astype(np.float32), np.asarray(mask)[:, 0]
    if prob.shape != ref_prob.shape or mask.shape != ref_mask.shape or mask.dtype != np.uint8:
        return ParityCase(label, len(pixels), float("inf"), 0.0, False)
    diff = float(np.abs(prob - ref_prob).max())
    dice = min(dice_score(m, r) for m, r in zip(mask, ref_mask))
    qdiff = _quality_diff(quality, ref_quality)
    tol = TOLERANCES[precision]
    ok = (dice >= tol["dice"] and (tol["max_abs_prob_diff"] is None or diff <= tol["max_abs_prob_diff"])
          and qdiff <= tol["max_abs_quality_diff"])
    return ParityCase(label, len(pixels), diff, dice, ok, qdiff)


def check_parity(pipeline, backend, precision: str = "fp32", images=None, sizes=PARITY_SIZES,
                 batch: int = PARITY_BATCH, progress=None) -> list[dict]:
    """One row per size: ``{size, batch, max_abs_prob_diff, dice, ok}``; ``progress(message)``
    is called before each size where given."""
    rows = []
    for label, pixels in parity_batches(images, sizes, batch):
        if progress is not None:
            progress(f"parity check at {label}, batch {len(pixels)}")
        rows.append(asdict(compare(pipeline, backend, pixels, precision, label)))
    return rows
