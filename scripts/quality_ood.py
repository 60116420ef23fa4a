"""How often the quality estimate flags inputs it should, and leaves alone those it should.

For each test image of the given data folders: the image unmodified, then each kind of
lungseg.quality_data.OUT_OF_DISTRIBUTION (inverted, rotated 90 degrees, upside down,
cropped to one lung); plus --non-chest images of each NON_CHEST kind (noise, gradients,
shapes). An image counts as flagged when lungseg.analyze gives it any flag (low_confidence
included: quality under --min-quality). Prints one line per kind and writes --json.

Usage: python scripts/quality_ood.py ../shared/data/montgomery ../shared/data/shenzhen \
         [--model WEIGHTS] [--non-chest 40] [--json runs/quality/ood.json]
"""

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from lungseg.api import Segmenter
from lungseg.data import find_samples, load_sample
from lungseg.data.datasets import as_unit_float
from lungseg.quality import MIN_QUALITY
from lungseg.quality_data import NON_CHEST, OUT_OF_DISTRIBUTION, non_chest


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data_dirs", nargs="+")
    ap.add_argument("--model", default=None)
    ap.add_argument("--split", default="test")
    ap.add_argument("--non-chest", type=int, default=40, help="images of each non-chest kind")
    ap.add_argument("--min-quality", type=float, default=MIN_QUALITY)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    seg = Segmenter(args.model, device="cpu")
    rng = np.random.default_rng(args.seed)
    results: dict[str, list] = {}

    def score(kind, image):
        r = seg.analyze(image, min_quality=args.min_quality)
        results.setdefault(kind, []).append((bool(r.flags), r.flags, r.quality))

    for d in args.data_dirs:
        for s in find_samples(d, args.split):
            image, mask = load_sample(s)
            x = as_unit_float(image)
            score(f"{Path(d).name}: unmodified", image)
            for name, fn in OUT_OF_DISTRIBUTION.items():
                score(name, fn(x, mask, rng))
    for kind in NON_CHEST:
        for _ in range(args.non_chest):
            score(f"non-chest {kind}", non_chest(kind, rng, int(rng.integers(200, 700))))
    summary = {}
    for kind, rows in results.items():
        flags = Counter(f for _, fl, _ in rows for f in fl)
        summary[kind] = {"n": len(rows), "flagged": sum(f for f, _, _ in rows) / len(rows),
                         "quality_median": float(np.nanmedian([q for _, _, q in rows])), "flags": dict(flags)}
        print(f"{kind:28s} n={len(rows):4d} flagged {100 * summary[kind]['flagged']:5.1f}%  "
              f"quality median {summary[kind]['quality_median']:.3f}  {dict(flags)}")
    ood = [f for k, rows in results.items() if "unmodified" not in k for f, _, _ in rows]
    print(f"all out-of-distribution and non-chest inputs: n={len(ood)} flagged {100 * np.mean(ood):.1f}%")
    summary["all_out_of_distribution"] = {"n": len(ood), "flagged": float(np.mean(ood))}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
