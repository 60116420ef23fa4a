"""Where an exported ONNX graph spends its time on one large image: ONNX Runtime's own per-node profile.

    lungseg export --format onnx --model fast -o fast.onnx --no-check
    python benchmarks/profile_onnx_ops.py fast.onnx [--width 4020 --height 4892] [--repeat 10] [--threads 2]

The input is the synthetic 12-bit chest-like image of ``lungseg.benchmark.synthetic`` (no
real data), given to the graph as float32 pixels the way the Python runtime gives them. The
session runs ``--repeat`` times after one warm-up run with ORT's profiler on. The report is
each node's kernel time per run (median over the runs), summed per operator type, then the
nodes that take the most, with the share of all node time. Node times do not include the
host's conversion of the pixels to float32, which is timed on its own.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from lungseg.benchmark.synthetic import synthetic_xray


def node_times(profile: list[dict]) -> dict[tuple[str, str], list[float]]:
    """``{(op type, node name): [microseconds of each run]}`` from ORT's profile events."""
    runs: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    for e in profile:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            runs[(e["args"]["op_name"], e["name"][:-len("_kernel_time")])].append(float(e["dur"]))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="an .onnx file written by lungseg export")
    ap.add_argument("--width", type=int, default=4020)
    ap.add_argument("--height", type=int, default=4892)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()

    image, _ = synthetic_xray(args.height, args.width)
    t = time.perf_counter()
    pixels = np.ascontiguousarray(image, np.float32)[None, None]
    convert_ms = 1000 * (time.perf_counter() - t)
    with tempfile.TemporaryDirectory() as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.enable_profiling = True
        so.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(args.model, so, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        session.run(None, {name: pixels})  # warm-up: its profile entries are dropped below (v[1:])
        wall = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            session.run(None, {name: pixels})
            wall.append(1000 * (time.perf_counter() - t))
        profile = json.loads(Path(session.end_profiling()).read_text())
    per_node = {k: statistics.median(v[1:]) / 1000 for k, v in node_times(profile).items() if len(v) > 1}
    total = sum(per_node.values())
    per_op = collections.Counter()
    for (op, _), ms in per_node.items():
        per_op[op] += ms
    print(f"{Path(args.model).name}: {args.width}x{args.height} float32 pixels, {args.threads} threads, "
          f"median of {args.repeat} runs")
    print(f"  host uint16 -> float32 conversion {convert_ms:7.1f} ms (once)")
    print(f"  session.run wall p50              {statistics.median(wall):7.1f} ms")
    print(f"  sum of node kernel times          {total:7.1f} ms")
    print("  per operator type:")
    for op, ms in per_op.most_common():
        if ms >= 0.5:
            print(f"    {op:<20s} {ms:7.1f} ms  {100 * ms / total:5.1f}%")
    print(f"  the {args.top} slowest nodes:")
    for (op, node), ms in sorted(per_node.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"    {ms:7.1f} ms  {100 * ms / total:5.1f}%  {op:<12s} {node}")


if __name__ == "__main__":
    main()
