"""Run one benchmark row in its own process: ``python -m lungseg.benchmark.worker SPEC.json RESULT.json``.

A process per row keeps rows apart: one backend's crash, leaked threads or memory do not
touch the next row, and the process's peak resident memory is that row's own. The spec
(written by :mod:`.suite`) names the row, the inputs (``.npy`` files) and the time budget;
the result is a JSON object whose ``status`` is ``ok``, ``skipped: <reason>`` or
``failed: <error>``.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from .targets import OWN_MODELS, Context, Skip, Target, open_runner
from .timing import FULL, QUICK, STAGES, best_throughput, time_call


def stage_times(runner, pixels: np.ndarray, budget) -> dict:
    """Median ms of each stage of the eager pipeline for one image (the stages every format runs)."""
    import torch

    from .. import postprocess as post

    p = runner.pipeline
    dev = next(p.parameters()).device
    sync = runner.sync
    out = {}
    x = torch.from_numpy(np.ascontiguousarray(pixels, np.float32))[None, None]
    with torch.inference_mode():
        out["input to device"] = time_call(lambda: x.to(dev), budget, sync).p50_ms
        xd = x.to(dev)
        out["preprocess"] = time_call(lambda: p.preprocess(xd), budget, sync).p50_ms
        net_in = p.preprocess(xd)
        channels = getattr(p, "in_channels", 1)  # peers that take RGB see the grey image repeated
        net_in = net_in.expand(-1, channels, -1, -1) if channels != 1 else net_in
        out["network"] = time_call(lambda: p.network(net_in), budget, sync).p50_ms
        logits = p.logits(xd)
        h, w = pixels.shape
        out["graph postprocess"] = time_call(lambda: p.postprocess(logits, h, w)[1].cpu(), budget, sync).p50_ms
        mask = p.postprocess(logits, h, w)[1][0, 0].cpu().numpy()
    out["host clean-up"] = time_call(lambda: post.clean_mask(mask), budget).p50_ms
    return out


def _peak_gpu_mb() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


def _accuracy(runner, sets: list[dict]) -> dict:
    from ..metrics import dice_score, iou_score

    out = {}
    for s in sets:
        d, j = [], []
        for image, mask in zip(s["images"], s["masks"]):
            pred = runner.segment(np.load(image)) > 0
            truth = np.load(mask) > 0
            d.append(dice_score(pred, truth))
            j.append(iou_score(pred, truth))
        out[s["set"]] = {"dice": float(np.mean(d)), "iou": float(np.mean(j)), "n": len(d)}
    return out


def run(spec: dict) -> dict:
    target = Target(**spec["target"])
    ctx = Context(workdir=Path(spec["workdir"]), weights=spec.get("weights"), threads=spec.get("threads"),
                  calibration=[np.load(p) for p in spec.get("calibration", [])], extent=spec.get("extent", "visible"))
    budget = QUICK if spec.get("quick") else FULL
    if spec.get("min_seconds") is not None and not spec.get("quick"):
        budget = dataclasses.replace(budget, min_seconds=float(spec["min_seconds"]))
    stage_budget = QUICK if spec.get("quick") else STAGES
    result: dict = {"target": spec["target"], "status": "ok"}
    phase = "loading"
    try:
        t = time.perf_counter()
        runner = open_runner(target, ctx)
        result["load_s"] = time.perf_counter() - t
        result["threads"] = runner.threads
        result["artifact_mb"] = sum(p.stat().st_size for p in runner.artifact) / 1e6 if runner.artifact else None
        if runner.pipeline is not None:
            size = runner.pipeline.preprocess.size
            result["network"] = {"size": size}
            channels = getattr(runner.pipeline, "in_channels", 1)
            net_in = np.random.default_rng(0).standard_normal((1, channels, size, size)).astype(np.float32)
            result["network"]["p50_ms"] = _network_ms(runner, net_in, budget)
        elif target.format == "onnx" and target.device == "cpu" and not spec.get("quick"):
            result["network"] = {"p50_ms": onnx_network_ms(target, ctx, budget)}
        phase = "latency"
        result["latency"], result["stages"] = {}, {}
        for item in spec["latency_inputs"]:
            pixels = np.load(item["path"])
            e2e = time_call(lambda: runner.segment(pixels), budget, runner.sync)
            graph = time_call(lambda: runner.graph(pixels), budget, runner.sync)
            result["latency"][item["name"]] = {"p50_ms": e2e.p50_ms, "p95_ms": e2e.p95_ms, "runs": e2e.runs,
                                               "graph_p50_ms": graph.p50_ms, "graph_p95_ms": graph.p95_ms}
            if runner.pipeline is not None:
                result["stages"][item["name"]] = stage_times(runner, pixels, stage_budget)
        phase = "throughput"
        if runner.run_batch is not None and spec.get("throughput_input"):
            pixels = np.load(spec["throughput_input"])
            rate, batch = best_throughput(runner.run_batch, pixels, spec["batch_sizes"][target.device], budget,
                                          runner.sync)
            result["throughput"] = {"images_per_s": rate, "batch": batch}
        elif spec.get("throughput_input"):
            lat = next(iter(result["latency"].values()))
            result["throughput"] = {"images_per_s": 1e3 / lat["p50_ms"], "batch": 1}
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["peak_gpu_mb"] = _peak_gpu_mb() if target.device == "cuda" else None
        phase = "accuracy"
        if spec.get("accuracy") and target.model in OWN_MODELS:
            result["accuracy"] = _accuracy(runner, spec["accuracy"])
    except Skip as e:
        result["status"] = f"skipped: {e}"
    except Exception as e:  # noqa: BLE001 - a row's failure is recorded, never raised: other rows go on
        result["status"] = f"failed: {phase}: {type(e).__name__}: {e}".replace("\n", " ")[:500]
        result["traceback"] = traceback.format_exc()
    return result


def _network_ms(runner, net_in: np.ndarray, budget) -> float:
    import torch

    net = runner.pipeline.network
    x = torch.from_numpy(net_in).to(next(net.parameters()).device)
    with torch.inference_mode():
        return time_call(lambda: net(x), budget, runner.sync).p50_ms


def onnx_network_ms(target: Target, ctx: Context, budget) -> float:
    """Median ms of the network alone (no pre/postprocessing) in ONNX Runtime on the CPU, at its input size."""
    import onnxruntime as ort
    import torch

    from ..export.onnx import _quiet_exporter
    from .targets import build_pipeline

    pipeline = build_pipeline(target.model, ctx)[0]
    shape = (1, getattr(pipeline, "in_channels", 1), pipeline.preprocess.size, pipeline.preprocess.size)
    path = Path(ctx.workdir) / f"{target.model}-network-only.onnx"
    if not path.is_file():
        with _quiet_exporter(), torch.no_grad():
            torch.onnx.export(pipeline.network.eval(), (torch.randn(shape),), str(path), dynamo=True,
                              input_names=["x"], opset_version=18)
    options = ort.SessionOptions()
    if ctx.threads:
        options.intra_op_num_threads = int(ctx.threads)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return time_call(lambda: session.run(None, {"x": x}), budget).p50_ms


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(argv[0]).read_text())
    result = run(spec)
    Path(argv[1]).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
