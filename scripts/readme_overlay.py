"""Make the README's overlay picture with the tool itself, from a synthetic chest phantom (no real data).

    python scripts/readme_overlay.py [--model WEIGHTS] [--out docs/overlay_example.png]

Draws a crude PA chest phantom (torso, two lung fields with diaphragm domes, heart, spine,
ribs, clavicles), runs ``lungseg segment --labels --overlay`` on it, and copies the overlay
next to the README. Without ``--model`` the shipped weights are used.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np


def chest_phantom(h: int = 1024, w: int = 880, seed: int = 0) -> np.ndarray:
    """A 16-bit synthetic PA chest radiograph (patient's right lung on the image's left)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    y, x = yy / h, xx / w
    img = np.full((h, w), 0.08, np.float32)
    torso = ((x - 0.5) / 0.47) ** 2 + ((y - 0.55) / 0.62) ** 2 <= 1
    img[torso] = 0.62
    for cx, half in ((0.285, 0.14), (0.715, 0.14)):
        width = half * np.clip((y - 0.1) / 0.22, 0, 1) ** 0.5  # rounded apex, wide base
        dome = 0.8 - 0.06 * np.cos((x - cx) / half * np.pi / 2)  # diaphragm
        img[(np.abs(x - cx) <= width) & (y <= dome)] = 0.26
    heart = ((x - 0.56) / 0.15) ** 2 + ((y - 0.64) / 0.15) ** 2 <= 1
    img[heart] = np.maximum(img[heart], 0.55)
    img[np.abs(x - 0.5) < 0.05] += 0.15  # spine and mediastinum
    for k in range(9):  # ribs: faint arcs inside the torso
        arc = 0.2 + 0.07 * k + 0.05 * ((x - 0.5) / 0.4) ** 2
        img[(np.abs(y - arc) < 0.008) & torso] += 0.06
    for side in (-1, 1):  # clavicles
        img[(np.abs(y - (0.14 - 0.04 * side * (x - 0.5))) < 0.012) & (np.abs(x - 0.5 - side * 0.17) < 0.17)] += 0.2
    img = cv2.GaussianBlur(img, (0, 0), 4) + np.random.default_rng(seed).normal(0, 0.01, (h, w)).astype(np.float32)
    return (np.clip(img, 0, 1) * 4095).astype(np.uint16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "overlay_example.png"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "phantom.png", Path(tmp) / "out"
        cv2.imwrite(str(src), chest_phantom())
        cmd = [sys.executable, "-m", "lungseg", "segment", str(src), "-o", str(out), "--labels", "--overlay"]
        subprocess.run(cmd + (["--model", args.model] if args.model else []), check=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(out / "phantom_overlay.png", args.out)
        print((out / "report.csv").read_text())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
