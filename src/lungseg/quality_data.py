"""Inputs the quality estimate must refuse, and the variants it must accept.

Every function takes a float32 image in [0, 1] (and, for chest variants, its 0/1 mask)
and a ``numpy.random.Generator``. :data:`OUT_OF_DISTRIBUTION` builds, from a chest
X-ray, inputs whose mask cannot be trusted (inverted, rotated, upside down, cropped to
one lung); :func:`non_chest` draws images that are no X-ray at all (noise, gradients,
shapes). The view check (:class:`lungseg.quality.ViewNet`) is trained on these built
from training images (``lungseg fit-quality``); ``scripts/quality_ood.py`` scores the
finished estimate on the same kinds built from test images.
"""

from __future__ import annotations

import cv2
import numpy as np

from .data.transforms import XrayAugment

VIEW_FRONTAL, VIEW_INVERTED, VIEW_OTHER = 0, 1, 2


def frontal_variant(image, mask, rng):
    """An upright frontal chest X-ray as training shows them (affine, opacities, intensity, degradation)."""
    return XrayAugment()(image, mask, rng)[0]


def inverted(image, mask=None, rng=None):
    return (1.0 - image).astype(np.float32)


def rotated_90(image, mask=None, rng=None):
    return np.ascontiguousarray(np.rot90(image, 1 if rng is None or rng.random() < 0.5 else 3))


def upside_down(image, mask=None, rng=None):
    """Rotated 180 degrees (or flipped top to bottom)."""
    return np.ascontiguousarray(image[::-1, ::-1] if rng is None or rng.random() < 0.5 else image[::-1])


def one_lung_crop(image, mask, rng=None):
    """A crop to one lung: the bounding box of one half of the mask, with a small margin."""
    h, w = image.shape
    rng = rng or np.random.default_rng(0)
    half = slice(0, w // 2) if rng.random() < 0.5 else slice(w // 2, w)
    sub = np.zeros_like(mask)
    sub[:, half] = mask[:, half]
    ys, xs = np.nonzero(sub)
    if len(ys) == 0:
        ys, xs = np.arange(h // 4, 3 * h // 4), np.arange(half.start, half.stop)
    pad = int(rng.uniform(0.0, 0.08) * w)
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, h)
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, w)
    return np.ascontiguousarray(image[y0:y1, x0:x1])


OUT_OF_DISTRIBUTION = {"inverted": inverted, "rotated_90": rotated_90, "upside_down": upside_down,
                       "one_lung_crop": one_lung_crop}
NON_CHEST = ("noise", "smooth_noise", "gradient", "ellipses", "shapes", "flat")


def non_chest(kind: str, rng, size: int = 256) -> np.ndarray:
    """One image of ``kind`` (:data:`NON_CHEST`), ``size`` x ``size``, in [0, 1]."""
    s = size
    if kind == "noise":
        x = rng.random((s, s))
    elif kind == "smooth_noise":
        cells = int(rng.integers(3, 24))
        x = cv2.resize(rng.random((cells, cells)).astype(np.float32), (s, s), interpolation=cv2.INTER_CUBIC)
    elif kind == "gradient":
        yy, xx = np.mgrid[0:s, 0:s] / float(s)
        a = rng.uniform(0, 2 * np.pi)
        x = np.cos(a) * xx + np.sin(a) * yy if rng.random() < 0.6 else np.hypot(xx - rng.random(), yy - rng.random())
    elif kind in ("ellipses", "shapes"):
        x = np.full((s, s), rng.uniform(0.5, 1.0), np.float32)
        count = 2 if kind == "ellipses" else int(rng.integers(1, 6))
        for i in range(count):
            if kind == "ellipses":  # two dark ellipses side by side, like lungs drawn by a child
                centre = (int(s * (0.3 + 0.4 * i) + rng.normal(0, s * 0.03)), int(s * rng.uniform(0.4, 0.6)))
                axes = (int(s * rng.uniform(0.1, 0.18)), int(s * rng.uniform(0.2, 0.35)))
                cv2.ellipse(x, centre, axes, rng.uniform(-15, 15), 0, 360, float(rng.uniform(0.0, 0.4)), -1)
            else:
                p = rng.integers(0, s, 4)
                value = float(rng.random())
                if rng.random() < 0.5:
                    cv2.rectangle(x, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), value, -1)
                else:
                    cv2.circle(x, (int(p[0]), int(p[1])), int(rng.integers(s // 16, s // 3)), value, -1)
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.5, 4.0))
    elif kind == "flat":
        x = np.full((s, s), rng.random()) + rng.normal(0, 0.02, (s, s))
    else:
        raise ValueError(f"unknown kind {kind!r}; choose one of {NON_CHEST}")
    x = x.astype(np.float32)
    return (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
