"""ONNX Runtime against OpenVINO on one exported ``.onnx`` file, in one process, one image.

    lungseg export --format onnx -o /tmp/ov_default.onnx
    python benchmarks/openvino_vs_onnxruntime.py /tmp/ov_default.onnx [--image X.png] [--size 512] [--threads 2]

The image (default: the first Montgomery image in ../shared/data, else a synthetic X-ray) is
resized to ``--size`` square, 8-bit. Each backend runs ``--runs`` end-to-end ``segment`` calls
and as many without the host clean-up (graph), in alternating blocks of 10 after a warm-up,
so that one runtime's spinning threads do not sit in the other's timed runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

import lungseg
from lungseg.benchmark.synthetic import synthetic_xray

MONTGOMERY = Path(__file__).resolve().parents[2] / "shared" / "data" / "montgomery" / "images"
BACKENDS = ("onnxruntime", "openvino")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", help="an .onnx file made by lungseg export --format onnx")
    ap.add_argument("--image", default=None)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=40, help="timed runs per backend (a multiple of 10)")
    args = ap.parse_args()
    src = args.image or next(iter(sorted(MONTGOMERY.glob("*.png"))), None)
    image = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE) if src else (synthetic_xray(1024, 1024)[0] // 16)  # 12-bit
    if image is None:
        raise SystemExit(f"{src}: not a readable image")
    image = cv2.resize(image, (args.size, args.size), interpolation=cv2.INTER_AREA).astype(np.uint8)
    segs = {b: lungseg.load(args.model, device="cpu", threads=args.threads, backend=b) for b in BACKENDS}
    for seg in segs.values():
        for _ in range(5):
            seg.segment(image)
    times = {(b, k): [] for b in BACKENDS for k in ("segment", "graph")}
    for _ in range(max(1, args.runs // 10)):
        for b, seg in segs.items():
            seg.segment(image)  # the block's first call, untimed
            for kind, call in (("segment", lambda: seg.segment(image)),
                               ("graph", lambda: seg.segment(image, postprocess=False))):
                for _ in range(10):
                    t = time.perf_counter()
                    call()
                    times[b, kind].append(time.perf_counter() - t)
    print(f"{src or 'synthetic X-ray'} at {args.size}x{args.size} uint8, {args.threads} threads, "
          f"{len(times[BACKENDS[0], 'segment'])} runs each")
    for b in BACKENDS:
        seg, graph = np.array(times[b, "segment"]) * 1e3, np.array(times[b, "graph"]) * 1e3
        print(f"  {b:12s} p50 {np.median(seg):7.1f} ms  p95 {np.percentile(seg, 95):7.1f} ms  "
              f"graph p50 {np.median(graph):7.1f} ms")
    masks = [segs[b].segment(image) for b in BACKENDS]
    probs = [segs[b].probability(image) for b in BACKENDS]
    print(f"  mask pixels differing: {int((masks[0] != masks[1]).sum())}, "
          f"max |probability difference|: {float(np.abs(probs[0] - probs[1]).max()):.2g}")


if __name__ == "__main__":
    main()
