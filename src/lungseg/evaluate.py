"""Evaluation: run :class:`~lungseg.api.Segmenter` (the ``lungseg.segment`` path) over data folders.

Masks are compared at the ground truth's resolution, in each image's own mask convention
(its folder's extent, see :func:`lungseg.extents.folder_extent`) unless ``extent`` forces
one; pixels of an ``ignore`` mask count neither way. The summary holds, per dataset (keyed
by folder name), ``extent``, ``n``, ``dice_mean``, ``dice_std``, ``dice_min``, ``iou_mean``,
``hd95_mean``, ``assd_mean`` (distances in pixels of the mask grid), the Dice means of
TB-positive and normal images where the index gives ``tb_label``, and per ``finding``
where it gives one, and how well the quality estimate ranks and predicts Dice
(:func:`quality_summary`: Spearman of ``quality`` and of the baseline ``mean_probability``
(mean lung probability inside the mask) with Dice, mean absolute error of quality as a
Dice estimate, images flagged); ``summary["pooled"]`` gives the same over all images. A ground-truth mask covering more than :data:`FULL_MASK_FRACTION` of
its image (an inverted mask, most likely) is scored but logged as a warning.
"""

from __future__ import annotations

import csv
import io as _io
import logging
import sys
from pathlib import Path

import numpy as np

from .api import Segmenter
from .data import find_samples, load_sample
from .data.datasets import load_ignore
from .io import write_bytes_atomic, write_png_atomic
from .metrics import all_metrics, spearman
from .overlay import draw_overlay
from .postprocess import label_lungs

FIELDS = ["dataset", "id", "extent", "tb_label", "finding", "dice", "iou", "hd95", "assd", "quality",
          "mean_probability", "flags"]
FULL_MASK_FRACTION = 0.8  # lungs never cover this much of a chest X-ray: the mask is likely inverted

log = logging.getLogger(__name__)


def _summary(rows: list[dict]) -> dict:
    d = np.array([r["dice"] for r in rows])
    out = {"extent": rows[0]["extent"], "n": len(rows), "dice_mean": float(d.mean()), "dice_std": float(d.std()),
           "dice_min": float(d.min()), "iou_mean": float(np.mean([r["iou"] for r in rows])),
           "hd95_mean": float(np.mean([r["hd95"] for r in rows])),
           "assd_mean": float(np.mean([r["assd"] for r in rows]))}
    for label, key in ((1, "tb"), (0, "normal")):
        sub = [r["dice"] for r in rows if r["tb_label"] == label]
        if sub:
            out[f"dice_mean_{key}"] = float(np.mean(sub))
            out[f"n_{key}"] = len(sub)
    findings = sorted({r["finding"] for r in rows if r["finding"]})
    if findings:
        out["by_finding"] = {f: {"n": len([r for r in rows if r["finding"] == f]),
                                 "dice_mean": float(np.mean([r["dice"] for r in rows if r["finding"] == f]))}
                             for f in findings}
    out["worst"] = [{"id": r["id"], "dice": r["dice"], "tb_label": r["tb_label"], "quality": r["quality"]}
                    for r in sorted(rows, key=lambda r: r["dice"])[:3]]
    out["quality"] = quality_summary(rows)
    return out


def quality_summary(rows: list[dict]) -> dict:
    """How well each image's ``quality`` (and the baseline ``mean_probability``) predicts its Dice."""
    d = np.array([r["dice"] for r in rows])
    q = np.array([r["quality"] for r in rows])
    base = np.array([r["mean_probability"] for r in rows])
    flagged = [r for r in rows if r["flags"]]
    return {"n": len(rows), "spearman_quality": spearman(q, d), "spearman_mean_probability": spearman(base, d),
            "mae_quality": float(np.mean(np.abs(q - d))) if not np.isnan(q).any() else float("nan"),
            "quality_mean": float(q.mean()), "n_flagged": len(flagged),
            "flag_counts": {f: sum(f in r["flags"].split() for r in rows)
                            for f in sorted({f for r in flagged for f in r["flags"].split()})}}


def evaluate(data_dirs, split: str = "test", model=None, device: str = "auto", out_dir=None,
             n_worst: int = 5, progress: bool = False, segmenter: Segmenter | None = None,
             extent: str | None = None, threshold: float | None = None) -> dict:
    """Evaluate on the ``split`` of each data folder; returns ``{dataset: summary}``.

    ``extent``: None scores each image in its folder's own convention; ``visible`` or
    ``full`` scores every image against that output of the model. A model with one output
    only is scored with it against every convention. ``out_dir``: per_image.csv and
    overlays of the ``n_worst`` cases of each dataset. ``progress``: a bar on a terminal.
    ``threshold``: probability cut-off of the masks (None: the segmenter's, 0.5), to pick an
    operating point on a val split; each summary records the one used.
    """
    segmenter = segmenter or Segmenter(model, device=device)
    # A one-output model (lungseg 0.1's weights, the naive merged baseline) is scored with
    # its one output against every convention; a two-extent model with the matching output.
    single = segmenter.extents[0] if len(segmenter.extents) == 1 else None
    results, all_rows = {}, []
    for d in data_dirs:
        samples = find_samples(d, split)
        it = samples
        if progress and sys.stderr.isatty():  # no bars in redirected logs
            from tqdm import tqdm
            it = tqdm(samples, desc=Path(d).name, leave=False)
        rows = []
        for s in it:
            image, truth = load_sample(s)
            coverage = float(truth.mean()) if truth.size else 0.0
            if coverage > FULL_MASK_FRACTION:
                log.warning("%s: the mask covers %.0f%% of the image; inverted (lung black)?",
                            s.masks[0] if len(s.masks) == 1 else s.image, 100 * coverage)
            own = extent or s.extent
            res = segmenter.analyze(image, extent=own if own in segmenter.extents else single, threshold=threshold)
            pred = res.mask
            inside = res.probability[pred > 0]
            rows.append({"dataset": s.dataset, "id": s.id, "extent": own, "tb_label": s.tb_label,
                         "finding": s.finding, **all_metrics(pred, truth, ignore=load_ignore(s, truth.shape)),
                         "quality": res.quality, "mean_probability": float(inside.mean()) if inside.size else 0.0,
                         "flags": " ".join(res.flags), "_sample": s, "_pred": pred})
        key = Path(d).resolve().name
        results[key] = _summary(rows)
        results[key]["threshold"] = segmenter.threshold if threshold is None else threshold
        all_rows += rows
    if len(results) > 1:
        results["pooled"] = {"n": len(all_rows), "quality": quality_summary(all_rows)}
    if out_dir is not None:
        _write_details(all_rows, Path(out_dir), n_worst)
    return results


def _write_details(rows, out: Path, n_worst: int):
    buf = _io.StringIO()
    w = csv.DictWriter(buf, FIELDS, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_bytes_atomic(out / "per_image.csv", buf.getvalue().encode())
    by_dataset: dict[str, list[dict]] = {}
    for r in rows:
        by_dataset.setdefault(r["dataset"], []).append(r)
    for group in by_dataset.values():  # the worst of each dataset, so a small set gets its own
        for r in sorted(group, key=lambda r: r["dice"])[:n_worst]:
            image, truth = load_sample(r["_sample"])
            pic = draw_overlay(image, label_lungs(r["_pred"]), reference=truth, legend=True)
            write_png_atomic(out / "worst" / f"{r['dataset']}_{r['id']}_dice{r['dice']:.4f}.png", pic)
