"""Shared fixtures: tiny models, synthetic X-rays, and the real data folder when present."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lungseg.checkpoint import save_weights, sha256_file
from lungseg.models import create_model

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

torch.set_num_threads(min(2, torch.get_num_threads()))
warnings.filterwarnings("ignore", message=".*TorchScript.*deprecated.*")


def needs_shared_data(name: str = "montgomery") -> Path:
    """Path of a real data folder from ../shared/data, or skip with the reason."""
    path = SHARED_DATA / name
    if not (path / "index.csv").is_file():
        pytest.skip(f"real X-ray data not present at {path} (../shared/data beside the project)")
    return path


def synthetic_xray(h: int = 96, w: int = 96, seed: int = 0, dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
    """A crude chest-like image (two dark ellipses on a bright body) and its lung mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    mask = np.zeros((h, w), np.uint8)
    for cx in (0.3, 0.7):
        e = ((xx - cx * w) / (0.16 * w)) ** 2 + ((yy - 0.5 * h) / (0.3 * h)) ** 2 <= 1
        mask |= e.astype(np.uint8)
    img = 0.75 - 0.45 * mask + 0.05 * rng.standard_normal((h, w))
    img = np.clip(img, 0, 1)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1.0
    return (img * top).astype(dtype), mask


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """An untrained resnet18+SGA weights file with a 64x64 network input and both extents
    (visible, full) as outputs, and a quality head with a non-constant Dice estimate, like the
    shipped model (fast, deterministic)."""
    torch.manual_seed(0)
    model = create_model("resnet18", "sga", decoder_channels=(32, 16, 16, 8, 8), extents=("visible", "full"),
                         quality={"width": 4})
    model.quality_head.coef.copy_(torch.tensor([0.5, 0.2, 0.1, -1.0]))
    model.quality_head.bias.copy_(torch.tensor([-1.0, -1.2]))
    path = tmp_path_factory.mktemp("weights") / "tiny.pt"
    save_weights(path, model.eval(), image_size=64)
    return path


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory) -> Path:
    """A folder-layout data set (images/, masks/, index.csv) of small synthetic X-rays."""
    import cv2

    root = tmp_path_factory.mktemp("data") / "synthetic"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["id,tb_label,split"]
    for i, split in enumerate(["train"] * 6 + ["val"] * 2 + ["test"] * 2):
        img, mask = synthetic_xray(96, 96, seed=i)
        cv2.imwrite(str(root / "images" / f"case{i}.png"), img)
        cv2.imwrite(str(root / "masks" / f"case{i}.png"), mask * 255)
        rows.append(f"case{i},{i % 2},{split}")
    (root / "index.csv").write_text("\n".join(rows) + "\n")
    return root


# Exported tiny models, shared by tests/test_export.py and tests/test_runtime.py (each format exported once).
EXPORT_PARITY_SIZES = ((512, 512), (1000, 800))  # (width, height); 4020x4892 runs in a slow test


@pytest.fixture(scope="session")
def tiny_threshold(tiny_weights) -> float:
    """A threshold inside the untrained tiny model's probability range, so its masks are neither empty nor full."""
    from lungseg.checkpoint import load_weights
    from lungseg.export.parity import eager, parity_batches
    from lungseg.pipeline import SegmentationPipeline

    network, config = load_weights(tiny_weights)
    _, pixels = next(parity_batches(None, ((512, 512),)))
    prob = eager(SegmentationPipeline(network, config["image_size"]), pixels)[0]
    return float(np.median(prob))


@pytest.fixture(scope="session")
def exported(tiny_weights, tiny_threshold, tmp_path_factory):
    """``exported(format)`` -> the ExportResult of the tiny model in that format, made once per session."""
    import lungseg
    from lungseg.export.formats import get_format

    done = {}

    def get(fmt: str):
        if fmt not in done:
            out = tmp_path_factory.mktemp(f"export-{fmt}") / f"tiny{get_format(fmt).suffixes[0]}"
            done[fmt] = lungseg.export(tiny_weights, fmt, out, threshold=tiny_threshold,
                                       parity_sizes=EXPORT_PARITY_SIZES)
        return done[fmt]

    return get


@pytest.fixture
def install_shipped(monkeypatch, tmp_path):
    """``install(name, weights, sha=None)``: a weights file as the shipped model ``name``
    ("default" or "fast"), with its sha256 card (or ``sha``), for one test."""
    from lungseg import api

    def install(name, weights, sha=None):
        pt, card = tmp_path / f"{name}.pt", tmp_path / f"{name}.json"
        shutil.copy(weights, pt)
        card.write_text(json.dumps({"sha256": sha or sha256_file(pt)}))
        monkeypatch.setattr(api, f"{name.upper()}_WEIGHTS", pt)
        monkeypatch.setattr(api, f"{name.upper()}_CARD", card)
        api._cached_segmenter.cache_clear()

    yield install
    api._cached_segmenter.cache_clear()
