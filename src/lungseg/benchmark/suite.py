"""Plan and run the benchmark: inputs once, one worker process per row, derived figures, the report."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import machine
from .targets import FORMATS, OWN_MODELS, Target, plan

FULL_SIZES = (("512x512 8-bit", 512, 512, np.uint8), ("4020x4892 16-bit", 4892, 4020, np.uint16))
QUICK_SIZES = (("96x96 8-bit", 96, 96, np.uint8), ("256x320 16-bit", 320, 256, np.uint16))
DEFAULT_FORMATS = FORMATS
QUICK_FORMATS = ("eager", "onnx")
PEER_FORMATS = ("eager", "onnx")
ROW_TIMEOUT_S = {True: 300, False: 3600}


@dataclass
class Config:
    out: Path
    data_dirs: list[Path] = field(default_factory=list)
    formats: tuple[str, ...] = DEFAULT_FORMATS
    models: tuple[str, ...] = OWN_MODELS  # lungseg's own rows: the default model, the fast one
    devices: tuple[str, ...] = ("cpu",)
    peers: tuple[str, ...] = ()
    peer_formats: tuple[str, ...] = PEER_FORMATS
    quick: bool = False
    threads: int | None = None
    weights: str | None = None
    split: str = "test"
    max_images: int | None = None     # per data folder; quick mode uses 2
    calibration_images: int = 16      # train-split images per data folder for int8 calibration
    artifacts: Path | None = None     # keep exported models here (default: a temporary folder)
    min_seconds: float | None = None  # timed seconds per measurement (default: timing.FULL's)
    command: str = ""
    extent: str = "visible"           # lungseg's mask convention: its rows are exported and scored with it


def _first_image(data_dirs, split: str) -> tuple[np.ndarray, str] | None:
    from ..data import find_samples, load_sample

    for d in data_dirs:
        samples = find_samples(d, split=split)
        if samples:
            return load_sample(samples[0])[0], f"{Path(d).name} {split} image {samples[0].id}"
    return None


def latency_inputs(cfg: Config, folder: Path) -> list[dict]:
    """The single-image inputs: a real test image resized to each size when a data folder is given."""
    from .synthetic import synthetic_xray

    real = _first_image(cfg.data_dirs, cfg.split)
    out = []
    for name, h, w, dtype in (QUICK_SIZES if cfg.quick else FULL_SIZES):
        if real is not None:
            unit = real[0].astype(np.float32) / max(float(real[0].max()), 1.0)
            img = cv2.resize(unit, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
            source = f"{real[1]}, resized"
        else:
            img = synthetic_xray(h, w)[0].astype(np.float32) / 4095
            source = "synthetic chest-like image"
        top = 255 if dtype == np.uint8 else 4095  # 16-bit inputs carry 12-bit values, as detectors write them
        pixels = np.round(img * top).astype(dtype)
        path = folder / f"latency-{h}x{w}.npy"
        np.save(path, pixels)
        out.append({"name": name, "path": str(path), "source": f"{source}, {8 if dtype == np.uint8 else 12}-bit"})
    return out


def sample_arrays(data_dirs, split: str, folder: Path, limit: int | None) -> list[dict]:
    """Each folder's ``split`` images and masks as ``.npy`` files, decoded once for every row."""
    from ..data import find_samples, load_sample

    sets = []
    for d in data_dirs:
        samples = find_samples(d, split=split)[:limit]
        if not samples:
            continue
        images, masks = [], []
        for s in samples:
            image, mask = load_sample(s)
            stem = folder / f"{split}-{Path(d).name}-{s.id}"
            np.save(f"{stem}-image.npy", image)
            np.save(f"{stem}-mask.npy", mask)
            images.append(f"{stem}-image.npy")
            masks.append(f"{stem}-mask.npy")
        sets.append({"set": Path(d).name, "images": images, "masks": masks})
    return sets


def run_row(target: Target, spec: dict, folder: Path, timeout: float) -> dict:
    """One row in its own Python process; a crash or timeout becomes a ``failed:`` row."""
    name = target.key.replace("/", "_")
    spec_path, result_path = folder / f"{name}.spec.json", folder / f"{name}.result.json"
    spec_path.write_text(json.dumps({**spec, "target": target.__dict__}))
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "lungseg.benchmark.worker", str(spec_path), str(result_path)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"target": target.__dict__, "status": f"failed: no result within {timeout:.0f} s"}
    if proc.returncode != 0 or not result_path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"target": target.__dict__, "status": f"failed: worker exited {proc.returncode}: {' | '.join(tail)}"}
    result = json.loads(result_path.read_text())
    result["wall_s"] = time.perf_counter() - t
    return result


def model_gflop(model: str, weights) -> float:
    """The network's FLOPs (``torch.utils.flop_counter``) for one image at its input size, in GFLOP."""
    from .peers import count_flops
    from .targets import Context, build_pipeline

    pipeline, _, _ = build_pipeline(model, Context(Path("."), weights))
    size = pipeline.preprocess.size
    return count_flops(pipeline.network, (1, getattr(pipeline, "in_channels", 1), size, size)) / 1e9


def derive(rows: list[dict], gflop: dict, peaks: dict) -> None:
    """Add Dice/IoU differences from eager, achieved FLOP/s and their fraction of the device's peak."""
    eager = {(r["target"]["model"], r["target"]["device"]): r for r in rows
             if r["target"]["format"] == "eager" and r.get("accuracy")}
    for r in rows:
        t = r["target"]
        ref = eager.get((t["model"], t["device"])) or eager.get((t["model"], "cpu"))
        for name, acc in (r.get("accuracy") or {}).items():
            if ref and name in ref["accuracy"]:
                acc["dice_diff"] = acc["dice"] - ref["accuracy"][name]["dice"]
                acc["iou_diff"] = acc["iou"] - ref["accuracy"][name]["iou"]
        g = gflop.get(t["model"])
        lat = next(iter((r.get("latency") or {}).values()), None)
        if g is None or not r["status"] == "ok":
            continue
        if r.get("network", {}).get("p50_ms"):
            seconds, source = r["network"]["p50_ms"] / 1e3, "network alone"
        elif lat:
            seconds, source = lat["graph_p50_ms"] / 1e3, "whole graph (a lower bound for the network)"
        else:
            continue
        achieved = g * 1e9 / seconds
        peak = peaks.get(t["device"])
        r["flops"] = {"gflop": g, "achieved_gflops": achieved / 1e9, "timed": source,
                      "fraction_of_peak": achieved / peak if peak else None}
        if t["format"].endswith("int8"):  # int8 multiply-adds: the float32 peak is not their ceiling
            r["flops"]["fraction_of_peak"] = None
            r["flops"]["timed"] += "; int8 arithmetic, not comparable with the float32 peak"


def run(cfg: Config, log=print) -> dict:
    """Run every row of ``cfg`` and write results.csv, results.md and the plots into ``cfg.out``."""
    from .report import write_report

    cfg.out.mkdir(parents=True, exist_ok=True)
    desc = machine.describe()
    peaks = {"cpu": desc["cpu"]["peak_fp32_flops"]}
    if desc["gpu"]:
        peaks["cuda"] = desc["gpu"]["peak_fp32_flops"]
    targets = plan(list(cfg.models), cfg.formats, cfg.devices) + plan(list(cfg.peers), cfg.peer_formats, cfg.devices)
    with tempfile.TemporaryDirectory(prefix="lungseg-bench-") as tmp:
        tmp = Path(tmp)
        artifacts = cfg.artifacts or tmp / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        limit = cfg.max_images if cfg.max_images is not None else (2 if cfg.quick else None)
        spec = {
            "workdir": str(artifacts), "weights": cfg.weights, "threads": cfg.threads, "quick": cfg.quick,
            "extent": cfg.extent,
            "min_seconds": cfg.min_seconds,
            "latency_inputs": latency_inputs(cfg, tmp),
            "accuracy": sample_arrays(cfg.data_dirs, cfg.split, tmp, limit),
            "batch_sizes": {"cpu": [1, 2] if cfg.quick else [1, 2, 4, 8],
                            "cuda": [1, 2] if cfg.quick else [1, 2, 4, 8, 16, 32]},
        }
        spec["throughput_input"] = spec["latency_inputs"][0]["path"]
        if "onnx-int8" in cfg.formats and cfg.data_dirs:
            from ..export.quantize import calibration_images

            calib = calibration_images(cfg.data_dirs, 2 if cfg.quick else cfg.calibration_images)
            spec["calibration"] = []
            for i, pixels in enumerate(calib):
                np.save(tmp / f"calib-{i}.npy", pixels)
                spec["calibration"].append(str(tmp / f"calib-{i}.npy"))
        gflop = {}
        for m in dict.fromkeys(t.model for t in targets):
            try:
                gflop[m] = model_gflop(m, cfg.weights)
            except Exception as e:  # noqa: BLE001 - the rows of this model will report their own failure
                log(f"FLOP count of {m} failed: {e}")
        rows = []
        for target in targets:
            log(f"{target.key} ...")
            row = run_row(target, spec, tmp, ROW_TIMEOUT_S[cfg.quick])
            log(f"{target.key}: {row['status']}")
            rows.append(row)
    if not cfg.quick:  # the ceiling a matrix product reaches through torch, for comparison with the peak
        desc["cpu"]["gemm_fp32_flops"] = _gemm(cfg.threads, "cpu")
        if desc["gpu"] and "cuda" in cfg.devices:
            desc["gpu"]["gemm_fp32_flops"] = _gemm(None, "cuda")
    derive(rows, gflop, peaks)
    results = {"machine": desc, "command": cfg.command, "quick": cfg.quick, "threads": cfg.threads,
               "inputs": [{k: v for k, v in i.items() if k != "path"} for i in spec["latency_inputs"]],
               "accuracy_sets": {s["set"]: len(s["images"]) for s in spec["accuracy"]}, "split": cfg.split, "extent": cfg.extent,
               "rows": rows}
    write_report(results, cfg.out)
    return results


def _gemm(threads, device: str) -> float:
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    return machine.measured_gemm_flops(device)
