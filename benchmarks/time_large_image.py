"""Time one large 16-bit PNG X-ray from file to mask file, stage by stage, on the CPU.

    python benchmarks/time_large_image.py [--model WEIGHTS] [--width 4020 --height 4892] [--repeat 3]

A synthetic 12-bit chest-like image (no real data) is written to a temporary folder as a
16-bit PNG, then each stage of ``lungseg segment`` is timed (median of ``--repeat`` runs):
decode (file -> validated pixels), preprocess (graph: resize + standardise), network,
graph postprocess (resize logits back, sigmoid, threshold), host postprocess (components,
holes, left/right labels, areas) and writing the mask PNG. Without ``--model`` the shipped
weights are used, else an untrained resnet18+SGA network at 256x256 (same cost as a
trained one). The host stage runs on a lung-shaped mask (the synthetic image's own lungs
with specks and a hole), since an untrained network's mask is not lung-shaped.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from lungseg import postprocess as post
from lungseg.benchmark.synthetic import noisy_mask, synthetic_xray
from lungseg.io import load_image, write_png_atomic
from lungseg.overlay import draw_overlay
from lungseg.pipeline import SegmentationPipeline


def build_pipeline(model: str | None) -> tuple[SegmentationPipeline, str]:
    from lungseg.api import DEFAULT_WEIGHTS, default_weights
    from lungseg.checkpoint import load_weights
    from lungseg.models import create_model

    if model is None and DEFAULT_WEIGHTS.is_file():
        path, sha = default_weights()
        net, cfg = load_weights(path, expected_sha256=sha)
        return SegmentationPipeline(net, cfg.get("image_size", 256)).eval(), f"shipped weights {path.name}"
    if model is not None:
        net, cfg = load_weights(model)
        return SegmentationPipeline(net, cfg.get("image_size", 256)).eval(), f"weights {model}"
    torch.manual_seed(0)
    return SegmentationPipeline(create_model("resnet18", "sga").eval(), 256).eval(), "untrained resnet18+sga, 256x256"


def timed(fn, repeat: int):
    """(median wall seconds, median CPU seconds of this process, last result)."""
    wall, cpu, out = [], [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return (statistics.median(wall), statistics.median(cpu)), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--width", type=int, default=4020)
    ap.add_argument("--height", type=int, default=4892)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch and OpenCV threads (default: their choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    pipeline, what = build_pipeline(args.model)
    image, truth = synthetic_xray(args.height, args.width)
    lungs = noisy_mask(truth)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        src = Path(tmp) / "xray.png"
        cv2.imwrite(str(src), image)
        mb = src.stat().st_size / 1e6

        t, loaded = timed(lambda: load_image(src), args.repeat)
        rows.append(("decode (file -> validated uint16 pixels)", t))
        pixels = loaded.pixels
        t, x = timed(lambda: torch.from_numpy(np.ascontiguousarray(pixels, np.float32))[None, None], args.repeat)
        rows.append(("to float32 tensor", t))
        t, net_in = timed(lambda: pipeline.preprocess(x), args.repeat)
        rows.append(("preprocess (graph: resize + standardise)", t))
        t, logits = timed(lambda: pipeline.network(net_in), args.repeat)
        logits = logits[0] if isinstance(logits, (tuple, list)) else logits  # as SegmentationPipeline.logits
        rows.append(("network", t))
        t, _ = timed(lambda: pipeline.postprocess(logits, args.height, args.width)[1][0, 0].numpy(), args.repeat)
        rows.append(("graph postprocess (upsample, sigmoid, threshold)", t))

        def host():
            labels = post.label_lungs(post.clean_mask(lungs))
            return labels, post.measure(labels)

        t, (labels, _) = timed(host, args.repeat)
        rows.append(("host postprocess (components, holes, labels, areas)", t))
        t, _ = timed(lambda: write_png_atomic(Path(tmp) / "mask.png", labels), args.repeat)
        rows.append(("write mask PNG", t))
        t, _ = timed(lambda: write_png_atomic(Path(tmp) / "overlay.png", draw_overlay(pixels, labels)), args.repeat)
        overlay = ("overlay (optional: draw + write)", t)

    total = [sum(t[i] for _, t in rows) for i in (0, 1)]
    print(f"{args.width}x{args.height} 16-bit PNG ({mb:.1f} MB), {what}, torch threads {torch.get_num_threads()}, "
          f"median of {args.repeat}")
    print(f"  {'stage':<55s} {'wall':>8s}     {'share':>5s}  {'CPU':>8s}")
    for name, (wall, cpu) in rows + [("total file -> mask file", total)]:
        print(f"  {name:<55s} {wall * 1000:8.0f} ms  {100 * wall / total[0]:5.1f}%  {cpu * 1000:8.0f} ms")
    print(f"  {overlay[0]:<55s} {overlay[1][0] * 1000:8.0f} ms         {overlay[1][1] * 1000:8.0f} ms")
    print("CPU: this process's CPU time (all its threads); wall above CPU means waiting for a busy machine.")


if __name__ == "__main__":
    main()
