"""Median latency of the C ABI on a 512x512 uint8 image, through lungseg.benchmark.cabi.

    python cpp/tests/time_cabi.py LIBRARY MODEL BACKEND THREADS [--runs 7]

LIBRARY: liblungseg.so of a build; BACKEND: onnxruntime or libtorch; THREADS: options.num_threads
(0: the backend's default). Three warm-up calls (TorchScript optimizes during the first two),
then the median of --runs calls. Used for the thread figures of cpp/README.md ("Threads");
set OMP_WAIT_POLICY in the environment to compare OpenMP wait policies.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from lungseg.benchmark.cabi import CppSegmenter


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("library")
    ap.add_argument("model")
    ap.add_argument("backend", choices=["onnxruntime", "libtorch"])
    ap.add_argument("threads", type=int)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args(argv)
    seg = CppSegmenter(args.model, args.backend, threads=args.threads, library=args.library)
    img = (np.random.default_rng(0).random((512, 512)) * 200 + 20).astype(np.uint8)
    for _ in range(3):
        seg.segment(img)
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        seg.segment(img)
        times.append(time.perf_counter() - t0)
    print(f"{args.backend} num_threads={args.threads} OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}: "
          f"median {np.median(times) * 1000:.0f} ms of {args.runs} calls")
    seg.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
