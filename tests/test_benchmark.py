"""The benchmark suite: machine facts, timing, row planning, row isolation, reports, and a --quick run."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from lungseg.benchmark import machine, report, suite, targets, timing, worker
from lungseg.cli import main

from conftest import SHARED_DATA


def test_flops_per_cycle_follows_the_vector_extensions():
    assert machine.fp32_flops_per_cycle({"avx512f", "avx2", "fma"})[0] == 64
    assert machine.fp32_flops_per_cycle({"avx2", "fma", "avx"})[0] == 32
    assert machine.fp32_flops_per_cycle({"avx"})[0] == 16
    assert machine.fp32_flops_per_cycle(set())[0] == 8


def test_cpu_peak_states_how_it_was_derived():
    cpu = machine.cpu_description()
    assert cpu["cores"] >= 1
    if cpu["mhz"]:  # Linux reports a clock; the peak is cores x clock x FLOP/cycle
        per_cycle = machine.fp32_flops_per_cycle(set(cpu["vector"].split(", ")))[0]
        assert cpu["peak_fp32_flops"] == pytest.approx(cpu["cores"] * cpu["mhz"] * 1e6 * per_cycle)
        assert f"{cpu['cores']} cores" in cpu["peak_derivation"]


def test_time_call_warms_up_and_keeps_to_its_run_limits():
    calls = []
    budget = timing.Budget(warmup=2, min_runs=4, min_seconds=0.0, max_seconds=60, max_runs=6)
    t = timing.time_call(lambda: calls.append(1), budget)
    assert t.runs == 4 and len(calls) == 6
    assert t.p50_ms <= t.p95_ms
    capped = timing.time_call(lambda: None, timing.Budget(warmup=0, min_runs=100, min_seconds=0, max_runs=7))
    assert capped.runs == 7


def test_best_throughput_returns_a_tried_batch_size():
    seen = []
    rate, batch = timing.best_throughput(lambda b: seen.append(len(b)), np.zeros((4, 4), np.uint8), [1, 2, 4],
                                         timing.QUICK)
    assert batch in (1, 2, 4) and rate > 0
    assert set(seen) <= {1, 2, 4}


def test_plan_crosses_models_formats_devices_and_refuses_unknown_names():
    rows = targets.plan(["lungseg"], ["eager", "onnx"], ["cpu", "cuda"])
    assert [r.key for r in rows] == ["lungseg/eager/cpu", "lungseg/onnx/cpu", "lungseg/eager/cuda",
                                     "lungseg/onnx/cuda"]
    with pytest.raises(ValueError, match="tflite"):
        targets.plan(["lungseg"], ["tflite"], ["cpu"])
    with pytest.raises(ValueError, match="tpu"):
        targets.plan(["lungseg"], ["eager"], ["tpu"])


@pytest.mark.parametrize("fmt, device, reason", [
    ("trt-fp16", "cpu", "CUDA devices only"),
    ("onnx-int8", "cuda", "CPU kernels"),
])
def test_rows_that_cannot_run_here_are_skipped_with_the_reason(tmp_path, fmt, device, reason):
    spec = {"target": {"model": "lungseg", "format": fmt, "device": device}, "workdir": str(tmp_path),
            "latency_inputs": [], "batch_sizes": {"cpu": [1], "cuda": [1]}}
    result = worker.run(spec)
    assert result["status"].startswith("skipped:") and reason in result["status"]


def test_a_broken_row_fails_alone_with_its_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a weights file")
    spec = {"target": {"model": "lungseg", "format": "eager", "device": "cpu"}, "workdir": str(tmp_path),
            "weights": str(bad), "latency_inputs": [], "batch_sizes": {"cpu": [1], "cuda": [1]}}
    result = worker.run(spec)
    assert result["status"].startswith("failed: loading:") and "bad.pt" in result["status"]


def _fake_results() -> dict:
    ok = {"target": {"model": "lungseg", "format": "eager", "device": "cpu"}, "status": "ok", "threads": 2,
          "artifact_mb": None, "latency": {"512x512 8-bit": {"p50_ms": 80.0, "p95_ms": 90.0, "runs": 10,
                                                              "graph_p50_ms": 70.0, "graph_p95_ms": 75.0}},
          "stages": {"512x512 8-bit": {s: 10.0 for s in report.STAGES}},
          "throughput": {"images_per_s": 14.0, "batch": 4}, "peak_rss_mb": 500.0,
          "accuracy": {"montgomery": {"dice": 0.97, "iou": 0.94, "n": 28}}, "network": {"p50_ms": 50.0}}
    onnx = json.loads(json.dumps(ok))
    onnx["target"]["format"], onnx["artifact_mb"] = "onnx", 61.2
    onnx["accuracy"]["montgomery"]["dice"] = 0.9695
    onnx.pop("stages"), onnx.pop("network")
    skipped = {"target": {"model": "lungseg", "format": "trt-fp16", "device": "cpu"},
               "status": "skipped: TensorRT runs on CUDA devices only"}
    failed = {"target": {"model": "plain_unet", "format": "onnx", "device": "cpu"}, "status": "failed: boom"}
    rows = [ok, onnx, skipped, failed]
    suite.derive(rows, {"lungseg": 10.0}, {"cpu": 100e9})
    return {"machine": machine.describe(), "command": "lungseg benchmark x", "quick": False, "threads": 2,
            "inputs": [{"name": "512x512 8-bit", "source": "synthetic"}], "accuracy_sets": {"montgomery": 28},
            "split": "test", "rows": rows}


def test_derive_gives_differences_from_eager_and_the_fraction_of_peak():
    rows = _fake_results()["rows"]
    assert rows[1]["accuracy"]["montgomery"]["dice_diff"] == pytest.approx(-0.0005)
    assert rows[0]["flops"]["achieved_gflops"] == pytest.approx(200.0)  # 10 GFLOP in 50 ms
    assert rows[0]["flops"]["fraction_of_peak"] == pytest.approx(2.0)
    assert rows[1]["flops"]["timed"].startswith("whole graph")  # no network-only time: the graph's
    assert "flops" not in rows[2]


def test_report_writes_every_row_with_its_status(tmp_path):
    report.write_report(_fake_results(), tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert "lungseg benchmark x" in md and "skipped: TensorRT runs on CUDA devices only" in md
    assert "failed: boom" in md and "-0.0005" in md and "peak" in md
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "ok", "skipped: TensorRT runs on CUDA devices only", "failed: boom"]
    assert float(rows[0]["512x512 8-bit p50_ms"]) == 80.0
    for png in ("latency_vs_dice.png", "latency_by_stage.png"):
        assert cv2.imread(str(tmp_path / png)) is not None


def test_quick_benchmark_runs_end_to_end(tmp_path, tiny_weights):
    """The CI mode: two formats in their own processes, accuracy on 2 images per folder, all outputs."""
    data = [str(SHARED_DATA / n) for n in ("montgomery", "shenzhen") if (SHARED_DATA / n / "index.csv").is_file()]
    out = tmp_path / "bench"
    result = CliRunner().invoke(main, ["benchmark", *data, "--quick", "--threads", "1", "--model", str(tiny_weights),
                                       "--formats", "eager,onnx,trt-fp32", "--peers", "", "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "results.json").read_text())["rows"]
    status = {r["target"]["format"]: r["status"] for r in rows}
    assert status["eager"] == "ok" and status["onnx"] == "ok"
    assert status["trt-fp32"].startswith("skipped:")
    for r in rows[:2]:
        assert set(r["latency"]) == {name for name, *_ in suite.QUICK_SIZES}
        assert r["throughput"]["images_per_s"] > 0 and r["peak_rss_mb"] > 0
        if data:  # the same model in two runtimes gives the same masks
            assert all(abs(a["dice_diff"]) < 1e-3 for a in r["accuracy"].values())
    assert rows[1]["artifact_mb"] > 0
    md = (out / "results.md").read_text()
    assert "| lungseg eager cpu | ok |" in md and "| lungseg onnx cpu | ok |" in md
    assert "`lungseg benchmark " in md and "--quick" in md


def test_rows_export_and_run_the_chosen_extent(tmp_path, tiny_weights):
    """--extent full: lungseg's eager pipeline and its exported artifact both give the full-extent mask."""
    pytest.importorskip("onnxruntime")
    import lungseg
    from lungseg.benchmark.targets import LUNGSEG, Context, Target, _export, build_pipeline

    ctx = Context(tmp_path, weights=str(tiny_weights), extent="full")
    pipeline, _, _ = build_pipeline(LUNGSEG, ctx)
    assert pipeline.extent == "full"
    path = _export(Target(LUNGSEG, "onnx", "cpu"), ctx)[0]
    assert "full" in path.name
    assert lungseg.load(path).extent == "full"
    visible = _export(Target(LUNGSEG, "onnx", "cpu"), Context(tmp_path, weights=str(tiny_weights)))[0]
    assert visible != path and lungseg.load(visible).extent == "visible"
