"""Write a benchmark's results: ``results.json``, ``results.csv``, ``results.md`` and two plots."""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from ..io import write_bytes_atomic, write_png_atomic
from .machine import short_cpu_name

STAGES = ("input to device", "preprocess", "network", "graph postprocess", "host clean-up")
COLOURS = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23), (0, 0, 0), (0, 90, 0),
           (120, 0, 120), (0, 60, 160), (160, 160, 0), (90, 40, 20)]


def row_name(row: dict) -> str:
    t = row["target"]
    return f"{t['model']} {t['format']} {t['device']}"


def flat_row(row: dict, inputs: list[str], sets: list[str]) -> dict:
    """One CSV row: every figure of a benchmark row as a flat column."""
    t = row["target"]
    out = {"model": t["model"], "format": t["format"], "device": t["device"], "status": row["status"],
           "threads": row.get("threads"), "artifact_mb": row.get("artifact_mb")}
    for name in inputs:
        lat = (row.get("latency") or {}).get(name, {})
        for k in ("p50_ms", "p95_ms", "graph_p50_ms", "runs"):
            out[f"{name} {k}"] = lat.get(k)
    thr = row.get("throughput") or {}
    out["images_per_s"], out["best_batch"] = thr.get("images_per_s"), thr.get("batch")
    out["peak_rss_mb"], out["peak_gpu_mb"] = row.get("peak_rss_mb"), row.get("peak_gpu_mb")
    for s in sets:
        acc = (row.get("accuracy") or {}).get(s, {})
        for k in ("dice", "iou", "dice_diff", "iou_diff", "n"):
            out[f"{s} {k}"] = acc.get(k)
    fl = row.get("flops") or {}
    for k in ("gflop", "achieved_gflops", "fraction_of_peak", "timed"):
        out[f"flops {k}"] = fl.get(k)
    out["network_p50_ms"] = (row.get("network") or {}).get("p50_ms")
    return out


def _fmt(v, digits=1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _signed(v) -> str:
    return "–" if v is None else f"{v:+.4f}"


def markdown(results: dict) -> str:
    m = results["machine"]
    cpu, gpu, v = m["cpu"], m["gpu"], m["versions"]
    inputs = [i["name"] for i in results["inputs"]]
    sets = list(results["accuracy_sets"])
    lines = [
        "# lungseg benchmark results", "",
        f"- **Command**: `{results['command']}`",
        f"- **Date**: {results.get('date', '')}",
        f"- **Machine**: {m['host_os']}; CPU {short_cpu_name(cpu)}, {cpu['memory_gib']} GiB",
        f"- **CPU peak float32**: {cpu['peak_derivation']}"
        + (f"; a {2048}^3 float32 matrix product through torch reached "
           f"{cpu['gemm_fp32_flops'] / 1e9:.0f} GFLOP/s" if cpu.get("gemm_fp32_flops") else ""),
        f"- **GPU**: " + (f"{gpu['name']} ({gpu['memory_gib']} GiB, {gpu['sm_count']} SMs); peak: {gpu['peak_derivation']}"
                          + (f"; float32 matrix product through torch: {gpu['gemm_fp32_flops'] / 1e12:.1f} TFLOP/s"
                             if gpu.get("gemm_fp32_flops") else "") if gpu else "none"),
        "- **Versions**: " + ", ".join(f"{k} {val}" for k, val in v.items() if val),
        f"- **CPU threads**: {results['threads'] or 'library default'}",
        "- **Inputs**: " + "; ".join(f"{i['name']} ({i['source']})" for i in results["inputs"]),
        "- **Accuracy**: " + (", ".join(f"{s} {results['split']} split, {n} images" for s, n in
                                        results["accuracy_sets"].items()) or "no data folder given")
        + "; the mask each row returns by default (graph threshold + clean-up) against the manual mask.",
        "- **Latency**: one image, pixel buffer (numpy array) to the cleaned-up mask, after warm-up; p50/p95 of "
        "the timed runs. *graph* is the same call without the host clean-up.",
        "- **Peers** (rows not named lungseg) are architecture replicas with random weights: only their speed "
        "is compared, never their accuracy.",
        "",
    ]
    if results.get("quick"):
        lines += ["**Quick mode**: tiny inputs and few runs; these figures only show that every path works.", ""]
    head = ["row", "status"] + [f"Dice {s}" for s in sets] + ["ΔDice vs eager"]
    for name in inputs:
        head += [f"{name} p50 / p95 ms", "graph p50"]
    head += ["img/s (batch)", "peak RSS MB", "threads", "artifact MB", "GFLOP/s (% peak)"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results["rows"]:
        acc = r.get("accuracy") or {}
        cells = [row_name(r), r["status"]]
        cells += [_fmt(acc.get(s, {}).get("dice"), 4) for s in sets]
        cells += [" / ".join(_signed(acc[s].get("dice_diff")) for s in sets if s in acc) or "–"]
        for name in inputs:
            lat = (r.get("latency") or {}).get(name)
            cells += [f"{lat['p50_ms']:.1f} / {lat['p95_ms']:.1f}" if lat else "–",
                      _fmt(lat["graph_p50_ms"]) if lat else "–"]
        thr = r.get("throughput")
        cells.append(f"{thr['images_per_s']:.1f} ({thr['batch']})" if thr else "–")
        gpu_mb = f" (GPU {r['peak_gpu_mb']:.0f})" if r.get("peak_gpu_mb") else ""
        cells += [_fmt(r.get("peak_rss_mb"), 0) + gpu_mb, _fmt(r.get("threads")), _fmt(r.get("artifact_mb"))]
        fl = r.get("flops")
        if not fl:
            cells.append("–")
        else:
            share = f"{100 * fl['fraction_of_peak']:.0f}%" if fl.get("fraction_of_peak") is not None else "int8"
            star = "" if fl["timed"].startswith("network alone") else "*"
            cells.append(f"{fl['achieved_gflops']:.0f} ({share}){star}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "GFLOP/s: the network's FLOPs (torch.utils.flop_counter) over the network's own median time "
              "(eager rows: the torch module; onnx rows: the network alone exported to ONNX); * over the whole "
              "graph's time (preprocessing and upsampling included), a lower bound; int8: int8 arithmetic, not "
              "compared with the float32 peak.", ""]
    stages = [(r, n, st) for r in results["rows"] for n, st in (r.get("stages") or {}).items()]
    if stages:
        lines += ["## Latency by stage (eager rows, median ms)", "",
                  "| row | input | " + " | ".join(STAGES) + " |", "|" + "---|" * (len(STAGES) + 2)]
        for r, n, st in stages:
            lines.append(f"| {row_name(r)} | {n} | " + " | ".join(_fmt(st.get(s)) for s in STAGES) + " |")
        lines.append("")
    gflop = {r["target"]["model"]: r["flops"]["gflop"] for r in results["rows"] if r.get("flops")}
    if gflop:
        lines += ["## Network cost", "", "| model | GFLOP per image |", "|---|---|"]
        lines += [f"| {k} | {g:.2f} |" for k, g in gflop.items()]
        lines.append("")
    lines += ["Plots: `latency_vs_dice.png`, `latency_by_stage.png`. All figures: `results.csv`, `results.json`.", ""]
    return "\n".join(lines)


def _axes(img, box, xr, yr, xlabel, ylabel, log_x=False):
    x0, y0, x1, y1 = box
    cv2.rectangle(img, (x0, y0), (x1, y1), (0, 0, 0), 1)
    cv2.putText(img, xlabel, (x0 + (x1 - x0) // 2 - 120, y1 + 40), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, ylabel, (10, y0 - 12), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)

    def tx(v):
        a, b = (math.log10(xr[0]), math.log10(xr[1])) if log_x else xr
        v = math.log10(v) if log_x else v
        return int(x0 + (v - a) / (b - a) * (x1 - x0))

    def ty(v):
        return int(y1 - (v - yr[0]) / (yr[1] - yr[0]) * (y1 - y0))

    if log_x:
        ticks = [m * 10 ** k for k in range(math.floor(math.log10(xr[0])), math.ceil(math.log10(xr[1])) + 1)
                 for m in (1, 2, 5)]
    else:
        ticks = list(np.linspace(xr[0], xr[1], 5))
    for t in ticks:
        if xr[0] <= t <= xr[1]:
            cv2.line(img, (tx(t), y1), (tx(t), y1 + 5), (0, 0, 0), 1)
            cv2.putText(img, f"{t:g}", (tx(t) - 12, y1 + 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for t in np.linspace(yr[0], yr[1], 5):
        cv2.putText(img, f"{t:.4f}", (x0 - 60, ty(t) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return tx, ty


def plot_latency_vs_dice(results: dict, path: Path) -> None:
    """Median latency (first input size, log scale) against pooled test Dice, one point per row."""
    name = results["inputs"][0]["name"]
    pts = []
    for r in results["rows"]:
        lat = (r.get("latency") or {}).get(name)
        if not lat:
            continue
        acc = r.get("accuracy") or {}
        n = sum(a["n"] for a in acc.values())
        dice = sum(a["dice"] * a["n"] for a in acc.values()) / n if n else None
        pts.append((row_name(r), lat["p50_ms"], dice))
    img = np.full((560, 900, 3), 255, np.uint8)
    box = (90, 40, 620, 470)
    if pts:
        xs = [p[1] for p in pts]
        ds = [p[2] for p in pts if p[2] is not None]
        lo, hi = (min(ds), max(ds)) if ds else (0.9, 1.0)
        pad = max(hi - lo, 0.002) * 0.5
        yr = (lo - pad, hi + pad)
        tx, ty = _axes(img, box, (min(xs) / 1.5, max(xs) * 1.5), yr, f"p50 latency, {name} (ms, log)",
                       "pooled test Dice (peers: speed only, drawn on the bottom edge)", log_x=True)
        for i, (label, x, d) in enumerate(pts):
            c = COLOURS[i % len(COLOURS)]
            p = (tx(x), ty(d) if d is not None else box[3] - 6)
            if d is not None:
                cv2.circle(img, p, 6, c, -1, cv2.LINE_AA)
            else:
                cv2.drawMarker(img, p, c, cv2.MARKER_TRIANGLE_UP, 12, 2)
            cv2.putText(img, label, (640, 50 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, c, 1, cv2.LINE_AA)
    write_png_atomic(path, img)


def plot_latency_by_stage(results: dict, path: Path) -> None:
    """Horizontal stacked bars per row and input size: graph vs host clean-up, eager rows by stage."""
    bars = []
    for inp in results["inputs"]:
        for r in results["rows"]:
            lat = (r.get("latency") or {}).get(inp["name"])
            if not lat:
                continue
            st = (r.get("stages") or {}).get(inp["name"])
            if st:
                parts = [(s, st.get(s, 0.0)) for s in STAGES]
            else:
                parts = [("graph", lat["graph_p50_ms"]), ("host clean-up", max(lat["p50_ms"] - lat["graph_p50_ms"], 0))]
            bars.append((f"{row_name(r)} | {inp['name']}", parts))
    h = 80 + 22 * max(len(bars), 1)
    img = np.full((h, 1100, 3), 255, np.uint8)
    names = list(STAGES) + ["graph"]
    colour = {s: COLOURS[i] for i, s in enumerate(names)}
    for i, s in enumerate(names):
        cv2.rectangle(img, (20 + 150 * i, 10), (32 + 150 * i, 22), colour[s], -1)
        cv2.putText(img, s, (36 + 150 * i, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    if bars:
        longest = max(sum(v for _, v in parts) for _, parts in bars) or 1.0
        scale = 640 / longest
        for k, (label, parts) in enumerate(bars):
            y = 50 + 22 * k
            cv2.putText(img, label[:52], (10, y + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
            x = 400
            for s, v in parts:
                w = max(int(v * scale), 0)
                cv2.rectangle(img, (x, y), (x + w, y + 16), colour[s], -1)
                x += w
            total = sum(v for _, v in parts)
            cv2.putText(img, f"{total:.0f} ms", (x + 6, y + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1, cv2.LINE_AA)
    write_png_atomic(path, img)


def write_report(results: dict, out: Path) -> None:
    results.setdefault("date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    out.mkdir(parents=True, exist_ok=True)
    inputs = [i["name"] for i in results["inputs"]]
    sets = list(results["accuracy_sets"])
    rows = [flat_row(r, inputs, sets) for r in results["rows"]]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["model"])
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(out / "results.csv", buf.getvalue().encode())
    write_bytes_atomic(out / "results.json", json.dumps(results, indent=1, default=str).encode())
    write_bytes_atomic(out / "results.md", markdown(results).encode())
    plot_latency_vs_dice(results, out / "latency_vs_dice.png")
    plot_latency_by_stage(results, out / "latency_by_stage.png")


def main(argv=None) -> None:
    """``python -m lungseg.benchmark.report DIR``: write results.md, .csv and the plots again from DIR/results.json."""
    import sys

    out = Path((argv or sys.argv[1:])[0])
    write_report(json.loads((out / "results.json").read_text()), out)


if __name__ == "__main__":
    main()
