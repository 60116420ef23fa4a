"""Cost of the quality head: the deploy module with and without it, timed interleaved in one run.

Usage: python scripts/quality_cost.py [--model default|fast|WEIGHTS] [--size 512] [--reps 30]
Prints the median time of each and the head's share (CPU, torch eager, 1 image).
"""

import argparse
import time

import numpy as np
import torch

from lungseg.api import Segmenter


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--model", default="default", help="a shipped model's name or a weights file")
    args = ap.parse_args()
    seg = Segmenter(args.model, device="cpu")
    pipe, head = seg.pipeline, seg.pipeline.network.quality_head
    pixels = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (1, 1, args.size, args.size)).astype(np.float32))
    times = {"with head": [], "without head": []}
    with torch.inference_mode():
        for rep in range(args.reps + 3):
            for name, h in (("with head", head), ("without head", None)):
                pipe.network.quality_head = h
                t = time.perf_counter()
                pipe(pixels)
                if rep >= 3:
                    times[name].append(time.perf_counter() - t)
    pipe.network.quality_head = head
    med = {k: 1000 * float(np.median(v)) for k, v in times.items()}
    print(f"{args.size}x{args.size}, {torch.get_num_threads()} threads: with head {med['with head']:.1f} ms, "
          f"without {med['without head']:.1f} ms, head share {100 * (1 - med['without head'] / med['with head']):.1f}%")


if __name__ == "__main__":
    main()
