"""``lungseg fit-quality``: train the view check and calibrate the Dice estimate of a model.

1. View check (:class:`~lungseg.quality.ViewNet`): thumbnails of the ``train`` images of
   every data folder, each drawn as an upright frontal X-ray (training augmentation), an
   inverted one, and an out-of-distribution input (rotated, upside down, cropped to one
   lung; :mod:`lungseg.quality_data`), plus non-chest images; cross-entropy, Adam.
2. Dice estimate: the segmentation network (frozen) on the ``val`` images (held out from
   its training), least squares of log(1 - Dice) on :data:`~lungseg.quality.DICE_FEATURES`
   with one intercept per extent. Dice is measured as ``lungseg evaluate`` does (cleaned
   mask at the truth's size, each folder's own extent, ignore pixels left out).

The result is the input weights file with the fitted head inside (``config["quality"]``).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import torch.nn.functional as F

from .checkpoint import load_weights, save_weights
from .data import find_samples, load_sample
from .data.datasets import as_unit_float, load_ignore
from .extents import channel_of
from .metrics import masked_dice
from .preprocess import Preprocess, resize_antialiased
from .quality import DICE_FEATURES, QualityHead, dice_features, thumbnail
from .quality_data import (NON_CHEST, OUT_OF_DISTRIBUTION, VIEW_FRONTAL, VIEW_INVERTED, VIEW_OTHER,
                           frontal_variant, inverted, non_chest)

log = logging.getLogger(__name__)
WORK_SIDE = 512  # view-check examples are drawn from the image at most this large (a speed-up only)


def _small(image: np.ndarray) -> np.ndarray:
    """A float [0, 1] copy at most WORK_SIDE a side (the one resize of lungseg.preprocess)."""
    x = as_unit_float(image)
    h, w = x.shape
    scale = WORK_SIDE / max(h, w)
    if scale >= 1:
        return x
    t = resize_antialiased(torch.from_numpy(x)[None, None], (max(round(h * scale), 2), max(round(w * scale), 2)))
    return t[0, 0].numpy()


def _small_mask(mask: np.ndarray, shape) -> np.ndarray:
    t = resize_antialiased(torch.from_numpy(mask.astype(np.float32))[None, None], shape)
    return (t[0, 0].numpy() > 0.5).astype(np.uint8)


def view_examples(samples, rng, rounds: int = 1, size: int = 256):
    """(thumbnails ``[M, 1, 64, 64]``, labels ``[M]``) drawn from ``samples`` (see the module doc)."""
    pre = Preprocess(size)
    thumbs, labels = [], []

    def add(img, label):
        with torch.no_grad():
            x = pre(torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None])
        thumbs.append(thumbnail(x, size)[0])
        labels.append(label)

    ood = list(OUT_OF_DISTRIBUTION.values())
    for s in samples:
        image, mask = load_sample(s)
        img = _small(image)
        msk = _small_mask(mask, img.shape)
        for _ in range(rounds):
            add(frontal_variant(img, msk, rng), VIEW_FRONTAL)
            add(frontal_variant(img, msk, rng), VIEW_FRONTAL)
            add(inverted(frontal_variant(img, msk, rng)), VIEW_INVERTED)
            base = frontal_variant(img, msk, rng)
            if rng.random() < 0.3:
                base = inverted(base)
            fn = ood[int(rng.integers(1, len(ood)))]  # rotations, upside down, one-lung crops
            add(fn(base, msk, rng), VIEW_OTHER)
            add(non_chest(NON_CHEST[int(rng.integers(len(NON_CHEST)))], rng), VIEW_OTHER)
    return torch.stack(thumbs), torch.tensor(labels)


def train_view(head: QualityHead, train, val, epochs: int = 12, lr: float = 2e-3, seed: int = 0) -> dict:
    """Fit ``head.view`` on ``train`` (thumbnails, labels); returns the ``val`` accuracy per class."""
    torch.manual_seed(seed)
    net = head.view.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=1e-4)
    x, y = train
    steps = epochs * (-(-len(x) // 64))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=g)
        total = 0.0
        for k in range(0, len(x), 64):
            idx = order[k:k + 64]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        log.info("view check epoch %d: loss %.4f", epoch + 1, total / len(x))
    net.eval()
    with torch.no_grad():
        pred = net(val[0]).argmax(1)
    return {name: float((pred[val[1] == c] == c).float().mean())
            for c, name in enumerate(("frontal", "inverted", "other")) if (val[1] == c).any()}


@torch.no_grad()
def dice_table(segmenter, samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features ``[M, F]``, extent channel ``[M]``, true Dice ``[M]``) of ``samples`` under ``segmenter``."""
    pipe = segmenter.pipeline
    feats, channels, dice = [], [], []
    for s in samples:
        image, truth = load_sample(s)
        pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
        x = pipe.preprocess(pixels)
        out = pipe.network(x)
        c = channel_of(pipe.extents, s.extent)
        other = [k for k in range(out.shape[1]) if k != c]
        feats.append(dice_features(out[:, c:c + 1], out[:, other[0]:other[0] + 1] if other else None,
                                   pipe.postprocess.threshold, pipe.preprocess.size)[0].numpy())
        channels.append(c)
        dice.append(masked_dice(segmenter.segment(image, extent=s.extent), truth, load_ignore(s, truth.shape)))
    return np.array(feats, np.float64), np.array(channels), np.array(dice)


def calibrate(head: QualityHead, feats, channels, dice) -> None:
    """Least squares of log(1 - Dice) on the features plus one intercept per extent, into ``head``."""
    n_ext = len(head.extents)
    onehot = np.eye(n_ext)[channels]
    present = onehot.any(axis=0)
    X = np.concatenate([feats, onehot[:, present]], axis=1)
    y = np.log(np.clip(1.0 - dice, 1e-4, 1.0))
    w, *_ = np.linalg.lstsq(X, y, rcond=None)
    bias = np.full(n_ext, float(np.mean(w[len(DICE_FEATURES):])))  # an extent without val images: the mean
    bias[present] = w[len(DICE_FEATURES):]
    head.coef.copy_(torch.tensor(w[:len(DICE_FEATURES)], dtype=torch.float32))
    head.bias.copy_(torch.tensor(bias, dtype=torch.float32))


def fit_quality(model_path, data_dirs, out_path, *, rounds: int = 3, epochs: int = 12, width: int = 16,
                seed: int = 0) -> dict:
    """Fit a quality head for the model in ``model_path`` and write the model with it to ``out_path``."""
    from .api import Segmenter

    network, config = load_weights(model_path)
    head = QualityHead(network.config["extents"], width=width)
    rng = np.random.default_rng(seed)
    train = [s for d in data_dirs for s in find_samples(d, "train")]
    val = [s for d in data_dirs for s in find_samples(d, "val")]
    log.info("view check: drawing examples from %d train and %d val images", len(train), len(val))
    accuracy = train_view(head, view_examples(train, rng, rounds), view_examples(val, rng, 1), epochs, seed=seed)
    log.info("view check val accuracy: %s", accuracy)
    segmenter = Segmenter(model_path, device="cpu")
    feats, channels, dice = dice_table(segmenter, val)
    calibrate(head, feats, channels, dice)
    network.quality_head = head.eval()
    network.config["quality"] = dict(head.config)
    save_weights(out_path, network, config["image_size"])
    return {"view_accuracy": accuracy, "calibration_images": len(val), "coef": head.coef.tolist(),
            "bias": dict(zip(head.extents, head.bias.tolist()))}
