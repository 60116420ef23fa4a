"""Artifacts for the C++ golden parity tests: exported models and the Python package's masks.

    python cpp/tests/make_artifacts.py --out DIR [--data ../shared/data] [--weights W.pt]
                                       [--torchscript yes|no] [--real-per-set 3]

Writes into DIR (a build folder, never the repository):
  model.onnx, model.pt       the pipeline (preprocessing inside) exported by lungseg.export:
                             input `pixels` float32 [N,1,H,W]; outputs `mask` uint8 and
                             `probability` float32 [N,1,H,W], `quality` float32 [N,4]
                             (schema 2); metadata "lungseg.json"
  foreign.pt                 a TorchScript module that is not a lungseg graph
  synth_*.png                synthetic chest-like images of unusual sizes, 8 and 16 bit, and
                             two the view check should flag (inverted, turned a quarter)
  <case>.{raw,clean,labels}.pgm, <case>.prob.f32
                             what lungseg.Segmenter gives for each case: mask without and with
                             the clean-up, 0/1/2 labels, probability (float32, row-major)
  <case>.quality.txt         one line: the quality row (quality, dice_estimate,
                             frontal_probability, inverted_probability; float32 values as
                             decimals, "nan" without a head), then the flag bits of
                             lungseg.quality.flags_of(row, labels) for the cleaned labels and
                             for label_lungs(raw) (Segmenter.analyze(), postprocess on / off)
  manifest.tsv               the cases: group, name, input PNG, reference prefix

Real X-rays are read in place from --data (the first test-split images of each set, sorted
by id) and never copied; where the folder is absent the real group is empty and the
C++ test skips it with the reason. The weights are --weights, else the shipped
src/lungseg/weights/default.pt when present (it carries a calibrated quality head), else a
tiny untrained model (seeded) with a quality head whose Dice-estimate coefficients are set
so that its quality row varies from image to image. Nothing is redone when DIR already
holds artifacts made from the same inputs.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

import lungseg
from lungseg import postprocess as post
from lungseg.api import DEFAULT_WEIGHTS, Segmenter
from lungseg.checkpoint import load_weights, save_weights, sha256_file
from lungseg.io import load_any
from lungseg.models import create_model
from lungseg.pipeline import SegmentationPipeline
from lungseg.quality import FLAGS, flags_of

THRESHOLD = 0.5
SYNTHETIC = [  # name, width, height, bits (values), container dtype
    ("synth_1000x800_u16", 1000, 800, 16, np.uint16),
    ("synth_800x1000_u12", 800, 1000, 12, np.uint16),
    ("synth_4020x4892_u12", 4020, 4892, 12, np.uint16),  # a Montgomery detector's size
    ("synth_517x333_u8", 517, 333, 8, np.uint8),
    ("synth_97x61_u8", 97, 61, 8, np.uint8),
    ("synth_17x11_u8", 17, 11, 8, np.uint8),
]
# Views the quality head's view check should flag (inverted, not_frontal_chest): a synthetic
# X-ray inverted, and one turned a quarter (name, width, height, bits, dtype, transform).
SYNTHETIC_VIEWS = [
    ("synth_inverted_640x512_u8", 640, 512, 8, np.uint8, "invert"),
    ("synth_rotated_512x640_u16", 640, 512, 16, np.uint16, "rotate"),
]


class GraphContract(nn.Module):
    """SegmentationPipeline with the exported outputs' order: (mask, probability)."""

    def __init__(self, pipeline: SegmentationPipeline):
        super().__init__()
        self.pipeline = pipeline

    def forward(self, pixels):
        probability, mask = self.pipeline(pixels)[:2]  # the quality output is not part of this graph
        return mask, probability


def synthetic_xray(width: int, height: int, bits: int, dtype, seed: int) -> np.ndarray:
    """A chest-like radiograph: bright body, two darker lungs, ribs, a gradient and noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    u, v = xx / width, yy / height
    body = ((u - 0.5) / 0.46) ** 2 + ((v - 0.55) / 0.55) ** 2 <= 1
    lungs = (((u - 0.31) / 0.15) ** 2 + ((v - 0.47) / 0.3) ** 2 <= 1) | (((u - 0.69) / 0.14) ** 2 + ((v - 0.48) / 0.29) ** 2 <= 1)
    img = 0.15 + 0.6 * body - 0.35 * lungs * body
    img += 0.04 * np.sin(v * 60.0) * lungs  # ribs
    img += 0.1 * v + 0.03 * rng.standard_normal((height, width)).astype(np.float32)
    top = (1 << bits) - 1
    return np.clip(img * top, 0, top).astype(dtype)


def write_pgm(path: Path, mask: np.ndarray) -> None:
    h, w = mask.shape
    path.write_bytes(f"P5\n{w} {h}\n255\n".encode() + np.ascontiguousarray(mask, np.uint8).tobytes())


def choose_weights(out: Path, given: str | None) -> Path:
    if given:
        return Path(given)
    if DEFAULT_WEIGHTS.is_file():
        return DEFAULT_WEIGHTS
    path = out / "tiny_weights_quality.pt"
    if not path.is_file():
        torch.manual_seed(0)
        model = create_model("resnet18", "sga", decoder_channels=(32, 16, 16, 8, 8), extents=("visible", "full"),
                             quality={"width": 4}).eval()
        # Untrained, the network calls every pixel lung; shift the head's bias so that about
        # half of a synthetic X-ray is above the threshold, which makes the masks (and the
        # parity test) non-trivial: many boundary pixels, several components, holes.
        with torch.no_grad():
            pixels = torch.from_numpy(synthetic_xray(256, 256, 8, np.uint8, 0).astype(np.float32))[None, None]
            logits = SegmentationPipeline(model, 64).logits(pixels)
            model.head.bias -= logits.median()
            # A quality head whose Dice estimate depends on the image (the default coef is 0:
            # a constant); its untrained view check gives image-dependent probabilities.
            model.quality_head.coef.copy_(torch.tensor([0.5, 0.2, 0.1, -1.0]))
            model.quality_head.bias.copy_(torch.tensor([-1.0, -1.2]))
        save_weights(path, model, image_size=64)
    return path


def metadata(weights: Path, config: dict) -> str:
    return json.dumps({
        "version": lungseg.__version__,
        "weights": weights.name,
        "weights_sha256": sha256_file(weights),
        "image_size": int(config.get("image_size", 256)),
        "threshold": THRESHOLD,
        "names": {"input": "pixels", "outputs": ["mask", "probability"]},
    })


def export_models(weights: Path, out: Path, torchscript: bool) -> str:
    """Export model.onnx (and model.pt) with lungseg.export; returns which exporter ran.

    Where lungseg.export is not importable (an older checkout), a stand-in that follows the
    same graph contract is used instead.
    """
    try:
        from lungseg.export import export
    except ImportError:
        export = None
    if export is not None:
        # check=False: the C++ parity tests compare with the eager model themselves.
        export(str(weights), "onnx", out / "model.onnx", threshold=THRESHOLD, check=False)
        if torchscript:
            export(str(weights), "torchscript", out / "model.pt", threshold=THRESHOLD, check=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.jit.trace(nn.Conv2d(1, 1, 1).eval(), torch.zeros(1, 1, 8, 8), check_trace=False).save(
                    str(out / "foreign.pt"))
        return "lungseg.export"
    export_stand_in(weights, out, torchscript)
    return "stand-in exporter (lungseg.export not importable)"


def export_stand_in(weights: Path, out: Path, torchscript: bool) -> None:
    import onnx

    network, config = load_weights(weights)
    pipeline = SegmentationPipeline(network, config.get("image_size", 256), THRESHOLD).eval()
    contract = GraphContract(pipeline).eval()
    meta = metadata(weights, config)
    example = torch.from_numpy(synthetic_xray(96, 80, 8, np.uint8, 0).astype(np.float32))[None, None]
    dyn = {0: "N", 2: "H", 3: "W"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(contract, (example,), str(out / "model.onnx"), input_names=["pixels"],
                          output_names=["mask", "probability"], opset_version=17, dynamo=False,
                          dynamic_axes={"pixels": dyn, "mask": dyn, "probability": dyn})
        model = onnx.load(str(out / "model.onnx"))
        entry = model.metadata_props.add()
        entry.key, entry.value = "lungseg.json", meta
        onnx.save(model, str(out / "model.onnx"))
        if torchscript:
            with torch.no_grad():
                traced = torch.jit.trace(contract, example, check_trace=False)
            traced.save(str(out / "model.pt"), _extra_files={"lungseg.json": meta})
            foreign = torch.jit.trace(nn.Conv2d(1, 1, 1).eval(), example, check_trace=False)
            foreign.save(str(out / "foreign.pt"))


def real_cases(data: Path, per_set: int):
    cases = []
    for name in ("montgomery", "shenzhen"):
        index = data / name / "index.csv"
        if not index.is_file():
            continue
        with open(index, newline="") as f:
            ids = sorted(r["id"] for r in csv.DictReader(f) if r["split"] == "test")
        for i in ids[:per_set]:
            cases.append(("real", f"{name}_{i}", data / name / "images" / f"{i}.png"))
    return cases


def stamp_of(args, weights: Path, reals) -> str:
    h = hashlib.sha256()
    h.update(Path(__file__).read_bytes())
    package = Path(lungseg.__file__).parent
    for part in (("export", "onnx.py"), ("export", "torchscript.py"), ("pipeline.py",), ("quality.py",),
                 ("preprocess.py",), ("postprocess.py",)):
        h.update(package.joinpath(*part).read_bytes() if package.joinpath(*part).is_file() else b"")
    h.update(sha256_file(weights).encode())
    h.update(repr((args.torchscript, [str(p.resolve()) for _, _, p in reals])).encode())
    return h.hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    ap.add_argument("--weights")
    ap.add_argument("--torchscript", choices=["yes", "no"], default="yes")
    ap.add_argument("--real-per-set", type=int, default=3)
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    t0 = time.time()

    weights = choose_weights(out, args.weights).resolve()
    reals = real_cases(args.data, args.real_per_set)
    stamp = stamp_of(args, weights, reals)
    if (out / "manifest.tsv").is_file() and (out / "stamp").is_file() and (out / "stamp").read_text() == stamp:
        print(f"artifacts in {out} are up to date")
        return 0

    exporter = export_models(weights, out, args.torchscript == "yes")
    t_export = time.time() - t0
    cases = []
    for k, (name, w, h, bits, dtype) in enumerate(SYNTHETIC):
        png = out / f"{name}.png"
        cv2.imwrite(str(png), synthetic_xray(w, h, bits, dtype, seed=k + 1), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        cases.append(("synthetic", name, png))
    for k, (name, w, h, bits, dtype, transform) in enumerate(SYNTHETIC_VIEWS):
        img = synthetic_xray(w, h, bits, dtype, seed=100 + k)
        img = (np.iinfo(dtype).max - img).astype(dtype) if transform == "invert" else np.ascontiguousarray(np.rot90(img))
        png = out / f"{name}.png"
        cv2.imwrite(str(png), img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        cases.append(("synthetic", name, png))
    cases += reals

    segmenter = Segmenter(model=str(weights), device="cpu", threshold=THRESHOLD)
    rows = []
    for group, name, png in cases:
        prefix = out / name
        # One network run per image: Segmenter.segment()/analyze() threshold the same
        # probability and apply the same two postprocess functions (checked below on small
        # images); the quality row comes from the same run.
        probs, _, quality = segmenter._run(load_any(png)[None], segmenter.extent)
        prob, row = probs[0], [float(v) for v in np.asarray(quality[0], np.float32)]
        raw = (prob > THRESHOLD).astype(np.uint8)
        clean = post.clean_mask(raw)
        labels = post.label_lungs(clean)
        bits = [sum(1 << FLAGS.index(f) for f in flags_of(row, lab)) for lab in (labels, post.label_lungs(raw))]
        if prob.size <= 1_000_000:
            assert np.array_equal(segmenter.segment(png, labels=True), labels), name
            result = segmenter.analyze(png)
            assert np.array_equal(result.labels, labels) and bits[0] == sum(1 << FLAGS.index(f) for f in result.flags), name
        write_pgm(Path(f"{prefix}.raw.pgm"), raw)
        write_pgm(Path(f"{prefix}.clean.pgm"), clean)
        write_pgm(Path(f"{prefix}.labels.pgm"), labels)
        prob.astype("<f4").tofile(f"{prefix}.prob.f32")
        text = " ".join("nan" if np.isnan(v) else repr(v) for v in row)
        Path(f"{prefix}.quality.txt").write_text(f"{text} {bits[0]} {bits[1]}\n")
        rows.append(f"{group}\t{name}\t{png}\t{prefix}")

    real_note = (f"{len(reals)} real test images from {args.data}" if reals
                 else f"no real X-ray data at {args.data} (../shared/data beside the project)")
    header = [f"# weights\t{weights}",
              f"# exporter\t{exporter}",
              # the stand-in exporter's graph has no quality output: the C++ row is then NaN
              f"# quality_output\t{'yes' if exporter == 'lungseg.export' else 'no'}",
              f"# model_onnxruntime\t{out / 'model.onnx'}",
              f"# real_data\t{real_note}"]
    if args.torchscript == "yes":
        header += [f"# model_libtorch\t{out / 'model.pt'}", f"# foreign_libtorch\t{out / 'foreign.pt'}"]
    (out / "manifest.tsv").write_text("\n".join(header + rows) + "\n")
    (out / "stamp").write_text(stamp)
    print(f"artifacts: {len(cases)} cases ({real_note}), weights {weights.name}, {exporter}, "
          f"{time.time() - t0:.1f} s (export {t_export:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
