"""Turn a training run's best.pt into shipped weights (fp16) and record their sha256.

Usage: python scripts/package_weights.py RUN_DIR/best.pt [--name default|fast] [--note "how it was trained"]
Writes src/lungseg/weights/NAME.pt and NAME.json (sha256, config, size, note).
"""

import argparse
import json
from pathlib import Path

from lungseg.checkpoint import load_weights, save_weights, sha256_file

OUT = Path(__file__).resolve().parents[1] / "src" / "lungseg" / "weights"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("--name", default="default", choices=("default", "fast"))
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    model, config = load_weights(args.weights)
    path = OUT / f"{args.name}.pt"
    save_weights(path, model, config["image_size"], half=True)
    card = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
            "config": config, "source": str(args.weights), "note": args.note}
    (OUT / f"{args.name}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
