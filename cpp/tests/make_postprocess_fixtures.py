"""Write the golden fixtures that pin the host-side postprocessing in Python and C++.

    python cpp/tests/make_postprocess_fixtures.py            # rewrite cpp/tests/fixtures/postprocess_golden.txt
    python cpp/tests/make_postprocess_fixtures.py --check    # exit 1 if the file is out of date

Every input mask is SYNTHETIC (drawn here from shapes and a seeded generator); nothing is
derived from the real X-ray data. The expected outputs are those of lungseg.postprocess:

    clean         clean_mask(mask)                      (C ABI flags 0)
    labels        label_lungs(mask)                     (LUNGSEG_SEGMENT_RAW | LUNGSEG_SEGMENT_LABELS)
    clean_labels  label_lungs(clean_mask(mask))         (LUNGSEG_SEGMENT_LABELS)

The file is checked by tests/test_postprocess_golden.py (Python still gives these outputs)
and by ctest's postprocess_golden (the C++ runtime gives them too).

File format (text, one record per case):

    case <name> <height> <width>
    input <rle>
    clean <rle>
    labels <rle>
    clean_labels <rle>

<rle> is the mask in row-major order as space-separated runs "<value>x<count>".

Ties: of equal-sized components, the one met first in raster order ranks higher, in
Python and in C++; the tie_* cases pin that rule.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from lungseg.postprocess import clean_mask, label_lungs

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "postprocess_golden.txt"


def ellipse(h, w, cy, cx, ry, rx):
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def lungs(h, w, gap=0.0, holes=False, specks=0, seed=0):
    """Two lung-like ellipses (optionally touching), holes and specks."""
    rng = np.random.default_rng(seed)
    m = ellipse(h, w, 0.5 * h, (0.3 - gap) * w, 0.35 * h, 0.17 * w)
    m |= ellipse(h, w, 0.52 * h, (0.7 + gap) * w, 0.33 * h, 0.15 * w)
    if holes:
        m &= ~ellipse(h, w, 0.45 * h, 0.3 * w, 0.06 * h, 0.04 * w)
        m &= ~ellipse(h, w, 0.6 * h, 0.7 * w, 0.03 * h, 0.03 * w)
    for _ in range(specks):
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        m[y:y + rng.integers(1, 3), x:x + rng.integers(1, 3)] = True
    return m.astype(np.uint8)


def random_blobs(h, w, seed, density=0.45, smooth=2):
    """Blobby random masks: thresholded smoothed noise (many components, holes, touching)."""
    rng = np.random.default_rng(seed)
    noise = ndimage.uniform_filter(rng.random((h, w)), size=2 * smooth + 1)
    return (noise > np.quantile(noise, 1.0 - density)).astype(np.uint8)


def hand_made_cases():
    z = lambda h, w: np.zeros((h, w), np.uint8)  # noqa: E731
    cases = {}
    cases["empty"] = z(12, 17)
    cases["full"] = np.ones((9, 14), np.uint8)
    m = z(7, 9); m[3, 2] = 1; cases["single_pixel_left"] = m
    m = z(7, 9); m[3, 6] = 1; cases["single_pixel_right"] = m
    m = z(7, 8); m[2, 4] = 1; cases["single_pixel_at_midline_even_width"] = m
    runs = lambda *r: np.array([v for k, n in enumerate(r) for v in [k % 2 == 0] * n], np.uint8)  # noqa: E731
    cases["row_1x23"] = runs(6, 1, 3, 2, 9, 1, 1)[None, :]
    cases["column_19x1"] = runs(0, 1, 4, 1, 7, 2, 2, 1, 1)[:, None]
    cases["lungs_64"] = lungs(64, 64)
    cases["lungs_holes_specks_80x96"] = lungs(80, 96, holes=True, specks=12, seed=3)
    cases["lungs_touching_70x90"] = lungs(70, 90, gap=-0.08)
    cases["lungs_touching_holes_odd_71x93"] = lungs(71, 93, gap=-0.09, holes=True, seed=5)
    cases["values_255"] = lungs(40, 50) * 255
    # One lung only, left or right of the midline: labelled by its centroid.
    m = z(40, 60); m[5:35, 4:25] = 1; cases["one_lung_left"] = m
    m = z(40, 60); m[5:35, 36:57] = 1; cases["one_lung_right"] = m
    # Crosses the midline but the split band is uniform: first column of least lung wins.
    m = z(20, 40); m[4:16, 5:35] = 1; cases["bar_across_midline"] = m
    # Second component at exactly 2% of the largest is kept; just under is dropped.
    m = z(60, 60); m[0:50, 0:20] = 1; m[55:60, 40:44] = 1; cases["second_at_2_percent"] = m  # 1000 and 20
    m = z(60, 60); m[0:50, 0:20] = 1; m[55:60, 40:44] = 1; m[59, 43] = 0
    cases["second_under_2_percent"] = m  # 1000 and 19
    # Three components of distinct sizes: the smallest is dropped / unlabelled.
    m = z(30, 60); m[2:28, 2:20] = 1; m[2:20, 40:58] = 1; m[25:29, 30:36] = 1; cases["three_components"] = m
    # Hole that reaches the border is not a hole; a diagonal-only link to the outside is.
    m = z(20, 20); m[2:18, 2:18] = 1; m[8:12, 0:8] = 0; cases["notch_from_border"] = m
    m = z(12, 12); m[1:11, 1:11] = 1; m[4:8, 4:8] = 0; m[3, 3] = 0; m[2, 2] = 0
    cases["enclosed_hole_with_diagonal_gap"] = m
    m = z(12, 12); m[0:11, 0:11] = 1; m[5:11, 5:11] = 0; m[11, 11] = 0
    cases["background_diagonal_to_corner"] = m
    # Components touching only at a corner are one (8-connectivity).
    m = z(10, 10); m[0:5, 0:5] = 1; m[5:10, 5:10] = 1; cases["diagonal_touch"] = m
    # Two components of different size with the same centroid column (one above the other).
    m = z(40, 30); m[2:12, 10:20] = 1; m[20:38, 5:25] = 1; cases["stacked_same_column"] = m
    # Lungs at the image border, holes at the border.
    m = lungs(50, 50); m[:, 0] = 1; m[0, :] = 1; cases["lungs_on_border"] = m
    # Equal sizes: the component met first in raster order ranks higher.
    m = z(20, 30); m[2:6, 2:6] = 1; m[2:6, 12:16] = 1; m[12:16, 22:26] = 1; cases["tie_three_equal"] = m
    m = z(20, 30); m[10:18, 1:9] = 1; m[1:4, 20:23] = 1; m[15:18, 20:23] = 1; cases["tie_second_third"] = m
    m = z(30, 20); m[2:8, 7:13] = 1; m[20:26, 7:13] = 1; cases["tie_equal_centroid_stacked"] = m
    m = z(30, 40); m[20:28, 2:8] = 1; m[3:11, 30:36] = 1; cases["tie_top_two_side_by_side"] = m
    m = z(24, 24); m[1::4, 1::4] = 1; cases["tie_grid_of_specks"] = m
    return cases


def random_cases():
    cases = {}
    shapes = [(33, 47), (64, 64), (57, 40), (100, 80), (45, 121)]
    for k, (h, w) in enumerate(shapes):
        for density, smooth in ((0.3, 1), (0.45, 2), (0.6, 3)):
            cases[f"random_{h}x{w}_d{int(density * 100)}_s{smooth}"] = random_blobs(h, w, 100 + k, density, smooth)
    return cases


def rle(a: np.ndarray) -> str:
    flat = np.asarray(a, np.uint8).ravel()
    if flat.size == 0:
        return ""
    change = np.flatnonzero(np.diff(flat)) + 1
    starts = np.concatenate([[0], change])
    counts = np.diff(np.concatenate([starts, [flat.size]]))
    return " ".join(f"{flat[s]}x{c}" for s, c in zip(starts, counts))


def unrle(text: str, shape) -> np.ndarray:
    values = []
    for token in text.split():
        v, c = token.split("x")
        values.append(np.full(int(c), int(v), np.uint8))
    flat = np.concatenate(values) if values else np.zeros(0, np.uint8)
    return flat.reshape(shape)


def read_fixtures(path=FIXTURE):
    """[(name, input, {"clean": ..., "labels": ..., "clean_labels": ...})]"""
    out, lines = [], [ln for ln in Path(path).read_text().splitlines() if ln and not ln.startswith("#")]
    for i in range(0, len(lines), 5):
        _, name, h, w = lines[i].split()
        shape = (int(h), int(w))
        rec = {}
        for ln in lines[i + 1:i + 5]:
            key, _, text = ln.partition(" ")
            rec[key] = unrle(text, shape)
        out.append((name, rec.pop("input"), rec))
    return out


def render() -> str:
    cases = {**hand_made_cases(), **random_cases()}
    lines = ["# lungseg postprocess golden fixtures: synthetic masks only.",
             "# Generated by cpp/tests/make_postprocess_fixtures.py from lungseg.postprocess; do not edit."]
    for name, mask in cases.items():
        clean = clean_mask(mask)
        lines.append(f"case {name} {mask.shape[0]} {mask.shape[1]}")
        lines.append(f"input {rle(mask)}")
        lines.append(f"clean {rle(clean)}")
        lines.append(f"labels {rle(label_lungs(mask))}")
        lines.append(f"clean_labels {rle(label_lungs(clean))}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed file instead of writing it")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        if not FIXTURE.is_file() or FIXTURE.read_text() != text:
            print(f"{FIXTURE} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(text)
    print(f"wrote {FIXTURE} ({text.count(chr(10) + 'case ') + text.startswith('case ')} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
