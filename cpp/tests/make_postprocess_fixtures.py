"""Write the golden fixtures that pin the host-side postprocessing in Python and C++.

    python cpp/tests/make_postprocess_fixtures.py            # rewrite cpp/tests/fixtures/*_golden.txt
    python cpp/tests/make_postprocess_fixtures.py --check    # exit 1 if a file is out of date

Two files: postprocess_golden.txt (the clean-up and labels, below) and
quality_flags_golden.txt (the quality flags, see render_quality()).

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
QUALITY_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "quality_flags_golden.txt"


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


# ---- quality flags ------------------------------------------------------------------------
#
# quality_flags_golden.txt pins lungseg.quality.flags_of(row, labels, min_quality) against the
# C++ runtime's flags (LUNGSEG_FLAG_* bits, bit k = FLAGS[k]; ctest quality_flags_golden,
# through lungseg_quality_flags()). One record per case:
#
#     case <name> <height> <width> <min_quality> <quality> <dice> <frontal> <inverted> <bits> <names>
#     labels <rle>
#
# min_quality is "default" (flags_of's default, MIN_QUALITY; the C ABI's 0) or a decimal (the C
# test passes it as a float); the row values are float32 (as the graph gives them) written
# as the shortest decimal of their float64 value ("nan" for NaN), names is the flags joined by
# "," ("-" when none). Labels are 0/1/2: drawn by hand for the boundary cases, and
# label_lungs(clean_mask(mask)) of the synthetic masks above for the rest.


def _f32(v) -> float:
    return float(np.float32(v))


def _above(v) -> float:
    """The float32 next above float32(v)."""
    return float(np.nextafter(np.float32(v), np.float32(np.inf)))


def _below(v) -> float:
    return float(np.nextafter(np.float32(v), np.float32(-np.inf)))


def quality_cases():
    """[(name, labels, row, min_quality or None)]: every flag, NaN rows and the boundaries."""
    nan = float("nan")
    good = (0.95, 0.96, 0.99, 0.01)
    z = lambda h, w: np.zeros((h, w), np.uint8)  # noqa: E731

    def two(h=40, w=60, box=(8, 32, 6, 54), split=30):
        """Two lungs filling a box (rows r0:r1, columns c0:c1), 1 left of `split`, 2 right of it."""
        m = z(h, w)
        r0, r1, c0, c1 = box
        m[r0:r1, c0:split] = 1
        m[r0:r1, split:c1] = 2
        return m

    base = two()  # 24 x 48 box, 1152 of 2400 pixels (0.48), aspect 2.0, lungs 576 / 576
    cases = [("two_lungs_good", base, good, None)]
    # Quality and LOW_CONFIDENCE: NaN (no head), the float32 nearest 0.9 (below 0.9 itself:
    # flagged, as in Python), the next float32 (not flagged); an explicit min_quality.
    cases += [("no_quality_head_nan", base, (nan, nan, nan, nan), None),
              ("quality_nan_view_known", base, (nan, nan, 0.99, 0.01), None),
              ("quality_f32_of_0_9", base, (_f32(0.9), 0.95, 0.99, 0.01), None),
              ("quality_above_0_9", base, (_above(0.9), 0.95, 0.99, 0.01), None),
              ("quality_below_0_9", base, (_below(0.9), 0.95, 0.99, 0.01), None),
              ("quality_one", base, (1.0, 1.0, 1.0, 0.0), None),
              ("quality_zero", base, (0.0, 0.0, 0.99, 0.0), None),
              ("min_quality_0_95_at", base, (_f32(0.95), 0.96, 0.99, 0.01), 0.95),
              ("min_quality_0_95_above", base, (_above(0.95), 0.96, 0.99, 0.01), 0.95),
              ("min_quality_0_5", base, (0.6, 0.6, 0.99, 0.01), 0.5),
              ("min_quality_0_25_at", base, (0.25, 0.6, 0.99, 0.01), 0.25),
              ("min_quality_1", base, (_below(1.0), 0.99, 0.99, 0.01), 1.0)]
    # View: inverted at >= 0.5 and before not_frontal_chest; frontal under 0.5; NaN views.
    cases += [("inverted", base, (0.95, 0.96, 0.2, 0.8), None),
              ("inverted_at_cutoff", base, (0.95, 0.96, 0.9, 0.5), None),
              ("inverted_below_cutoff", base, (0.95, 0.96, 0.9, _below(0.5)), None),
              ("inverted_and_not_frontal", base, (0.1, 0.96, 0.1, 0.7), None),
              ("not_frontal", base, (0.3, 0.96, 0.3, 0.1), None),
              ("frontal_at_cutoff", base, (0.95, 0.96, 0.5, 0.1), None),
              ("frontal_below_cutoff", base, (0.95, 0.96, _below(0.5), 0.1), None),
              ("frontal_nan_inverted_low", base, (0.95, 0.96, nan, 0.1), None),
              ("inverted_nan_frontal_low", base, (0.95, 0.96, 0.2, nan), None),
              ("inverted_nan_frontal_ok", base, (0.95, 0.96, 0.9, nan), None)]
    # ONE_LUNG: none, one label only, the smaller exactly 0.25 of the larger (kept) and one under.
    m = base.copy(); m[m == 2] = 1
    cases += [("only_label_1", m, good, None)]
    m = base.copy(); m[m == 1] = 2
    cases += [("only_label_2", m, good, None)]
    cases += [("empty", z(40, 60), good, None), ("empty_nan", z(40, 60), (nan, nan, nan, nan), None)]
    m = z(40, 60); m[8:32, 6:46] = 1; m[8:32, 46:56] = 2  # 960 and 240: exactly 0.25
    cases += [("smaller_at_quarter", m, good, None)]
    m = m.copy(); m[31, 55] = 0  # 239 < 0.25 * 960
    cases += [("smaller_under_quarter", m, good, None)]
    m = z(40, 60); m[8:32, 6:46] = 2; m[8:32, 46:56] = 1  # the larger is label 2
    cases += [("larger_is_label_2_at_quarter", m, good, None)]
    # IMPLAUSIBLE_SHAPE by area: 20 x 20 = 400 pixels, share 20/400 = 0.05 and 280/400 = 0.70
    # kept, one pixel beyond either flagged (boxes of aspect 1 .. 2 so that only the share matters).
    def area(n, h=20, w=20):
        m = z(h, w)
        k = 0
        for y in range(h):
            for x in range(w):
                if k < n:
                    m[y, x] = 1 if x < w // 2 else 2
                    k += 1
        return m
    m = z(20, 20); m[5:9, 5:10] = 1; m[5:9, 10:15] = 2  # 40 pixels, share 0.1
    cases += [("area_normal", m, good, None)]
    m = z(20, 20); m[8:12, 7:10] = 1; m[8:12, 10:12] = 2; m[12, 9:11] = 1; m[12, 11] = 2  # 20 + 3 = 23
    cases += [("area_23_of_400", m, good, None)]
    m = z(20, 20); m[8:12, 7:10] = 1; m[8:12, 10:12] = 2  # 12 + 8 = 20: exactly 0.05
    cases += [("area_at_0_05", m, good, None)]
    m = m.copy(); m[11, 11] = 0  # 19: under 0.05
    cases += [("area_under_0_05", m, good, None)]
    cases += [("area_at_0_70", area(280), good, None), ("area_over_0_70", area(281), good, None),
              ("area_full", area(400), good, None)]
    # IMPLAUSIBLE_SHAPE by aspect (columns spanned / rows spanned): 0.6 and 2.6 kept, beyond flagged.
    def box(rows, cols, h=100, w=100):
        m = z(h, w)
        r0, c0 = (h - rows) // 2, (w - cols) // 2
        half = c0 + cols // 2
        m[r0:r0 + rows, c0:half] = 1
        m[r0:r0 + rows, half:c0 + cols] = 2
        return m
    cases += [("aspect_at_0_6", box(50, 30), good, None), ("aspect_under_0_6", box(50, 29), good, None),
              ("aspect_at_2_6", box(20, 52), good, None), ("aspect_over_2_6", box(20, 53), good, None),
              ("aspect_1", box(40, 40), good, None)]
    # Box of two separate lungs with a gap: the joint box counts (including the gap).
    m = z(60, 100); m[10:50, 5:25] = 1; m[10:50, 75:95] = 2  # 40 rows x 90 columns: 2.25
    cases += [("aspect_joint_box", m, good, None)]
    m = z(60, 100); m[10:40, 5:25] = 1; m[30:50, 80:95] = 2  # rows 10..49, columns 5..94
    cases += [("aspect_joint_box_offset", m, good, None)]
    # Everything at once.
    m = z(30, 30); m[0:30, 0:2] = 1
    cases += [("all_flags", m, (0.1, 0.2, 0.3, 0.6), None), ("all_but_view", m, (nan, 0.2, 0.9, 0.1), None)]
    # One-pixel and one-row images.
    one = z(1, 1); one[0, 0] = 1
    cases += [("one_pixel", one, good, None)]
    row = z(1, 12); row[0, 2:5] = 1; row[0, 7:10] = 2
    cases += [("one_row", row, good, None)]
    # Labels as lungseg makes them: label_lungs(clean_mask(mask)) of the synthetic masks, with
    # rows from a seeded generator (values around the cut-offs).
    masks = {**hand_made_cases(), **random_cases()}
    rng = np.random.default_rng(7)
    for k, (name, mask) in enumerate(masks.items()):
        r = rng.uniform(0.3, 1.0, 4)
        r[3] = rng.uniform(0.0, 0.7)
        if k % 7 == 3:
            r[:] = np.nan
        cases.append((f"labels_of_{name}", label_lungs(clean_mask(mask)), tuple(float(v) for v in r), None))
    return cases


def _num(v: float) -> str:
    return "nan" if np.isnan(v) else repr(float(v))


def render_quality() -> str:
    from lungseg.quality import FLAGS, MIN_QUALITY, flags_of

    lines = ["# lungseg quality-flag golden fixtures: synthetic labels only.",
             "# Generated by cpp/tests/make_postprocess_fixtures.py from lungseg.quality.flags_of; do not edit.",
             f"# flags (bit k = name k): {' '.join(FLAGS)}; default min_quality {MIN_QUALITY}"]
    for name, labels, row, min_quality in quality_cases():
        row32 = [float(np.float32(v)) for v in row]  # the graph's row is float32
        labels = np.asarray(labels, np.uint8)
        flags = flags_of(row32, labels) if min_quality is None else flags_of(row32, labels, min_quality)
        bits = sum(1 << FLAGS.index(f) for f in flags)
        mq = "default" if min_quality is None else repr(float(min_quality))
        lines.append(f"case {name} {labels.shape[0]} {labels.shape[1]} {mq} {' '.join(_num(v) for v in row32)} "
                     f"{bits} {','.join(flags) or '-'}")
        lines.append(f"labels {rle(labels)}")
    return "\n".join(lines) + "\n"


def read_quality_fixtures(path=QUALITY_FIXTURE):
    """[(name, labels, row, min_quality or None, bits, flag names)]"""
    out, lines = [], [ln for ln in Path(path).read_text().splitlines() if ln and not ln.startswith("#")]
    for i in range(0, len(lines), 2):
        f = lines[i].split()
        shape = (int(f[2]), int(f[3]))
        labels = unrle(lines[i + 1].partition(" ")[2], shape)
        names = [] if f[10] == "-" else f[10].split(",")
        out.append((f[1], labels, [float(v) for v in f[5:9]], None if f[4] == "default" else float(f[4]),
                    int(f[9]), names))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing them")
    args = ap.parse_args(argv)
    files = [(FIXTURE, render(), "case "), (QUALITY_FIXTURE, render_quality(), "case ")]
    if args.check:
        stale = [path for path, text, _ in files if not path.is_file() or path.read_text() != text]
        for path in stale:
            print(f"{path} is out of date; run {Path(__file__).name}", file=sys.stderr)
        return 1 if stale else 0
    for path, text, marker in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path} ({text.count(chr(10) + marker) + text.startswith(marker)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
