"""Markdown tables for docs/MODEL_CARD.md from `lungseg evaluate --json` summaries.

    python scripts/card_tables.py sets runs/default2x/eval_visible.json runs/default2x/eval_full.json
    python scripts/card_tables.py ablation runs/abl-*        # each run folder's eval_*.json

``sets``: one row per test set (extent, n, Dice mean/std/min, IoU, HD95, ASSD, and the Dice
of TB-positive vs normal images or per finding). ``ablation``: one row per run folder with
its best validation epoch and the Dice mean of every test set.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(x, nd=4):
    return "–" if x is None else f"{x:.{nd}f}"


def sets_table(paths) -> str:
    rows = ["| test set | extent | n | Dice mean | Dice std | Dice min | IoU | HD95 px | ASSD px | Dice by group |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for p in paths:
        for name, s in json.loads(Path(p).read_text()).items():
            if name == "pooled":  # the quality estimate over all sets, not a set
                continue
            groups = []
            for key in ("tb", "normal"):
                if f"dice_mean_{key}" in s:
                    groups.append(f"{'TB-positive' if key == 'tb' else 'normal'} {s[f'dice_mean_{key}']:.4f} (n={s[f'n_{key}']})")
            for finding, g in s.get("by_finding", {}).items():
                groups.append(f"{finding} {g['dice_mean']:.4f} (n={g['n']})")
            rows.append(f"| {name} | {s['extent']} | {s['n']} | {_f(s['dice_mean'])} | {_f(s['dice_std'])} | "
                        f"{_f(s['dice_min'])} | {_f(s['iou_mean'])} | {_f(s['hd95_mean'], 2)} | "
                        f"{_f(s['assd_mean'], 2)} | {'; '.join(groups)} |")
    return "\n".join(rows)


def ablation_table(run_dirs) -> str:
    runs = []
    for d in map(Path, run_dirs):
        scores = {}
        for e in sorted(d.glob("eval_*.json")):
            scores.update({k: v["dice_mean"] for k, v in json.loads(e.read_text()).items()})
        hist = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()] if (d / "metrics.jsonl").is_file() else []
        best = max(hist, key=lambda r: r["val_dice"]) if hist else None
        runs.append((d.name, best, scores))
    names = sorted({k for _, _, s in runs for k in s})
    rows = ["| run | best val epoch (val Dice) | " + " | ".join(names) + " |",
            "|---|---|" + "---|" * len(names)]
    for name, best, scores in runs:
        b = f"{best['epoch']} ({best['val_dice']:.4f})" if best else "–"
        rows.append(f"| {name} | {b} | " + " | ".join(_f(scores.get(n)) for n in names) + " |")
    return "\n".join(rows)


def main(argv):
    if len(argv) < 2 or argv[0] not in ("sets", "ablation"):
        print(__doc__, file=sys.stderr)
        return 2
    print(sets_table(argv[1:]) if argv[0] == "sets" else ablation_table(argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
