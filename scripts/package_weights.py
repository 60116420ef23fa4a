"""Turn a training run's best.pt into the shipped default weights (fp16) and record their sha256.

Usage: python scripts/package_weights.py RUN_DIR/best.pt [--note "how it was trained"]
Writes src/lungseg/weights/default.pt and default.json (sha256, config, size, note).
"""

import argparse
import json
from pathlib import Path

from lungseg.checkpoint import load_weights, save_weights, sha256_file

OUT = Path(__file__).resolve().parents[1] / "src" / "lungseg" / "weights"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("weights")
    ap.add_argument("--note", default="")
    args = ap.parse_args()
    model, config = load_weights(args.weights)
    path = OUT / "default.pt"
    save_weights(path, model, config["image_size"], half=True)
    card = {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
            "config": config, "source": str(args.weights), "note": args.note}
    (OUT / "default.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
