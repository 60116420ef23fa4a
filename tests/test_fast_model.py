"""The shipped fast model: its architecture, its name on every path, distillation in training."""

import functools

import numpy as np
import pytest
import torch

import lungseg
from conftest import synthetic_xray
from lungseg import api
from lungseg.checkpoint import load_weights, save_weights, sha256_file
from lungseg.errors import InputError, ModelError
from lungseg.losses import distillation_loss
from lungseg.models import create_model
from lungseg.train import TrainConfig, train

FAST_DECODER = (96, 48, 32, 16, 8)


@pytest.fixture(scope="module")
def tiny_fast(tmp_path_factory):
    """An untrained fast-architecture weights file at a 64x64 input, both extents."""
    torch.manual_seed(1)
    model = create_model("resnet10-fast", "sga", decoder_channels=FAST_DECODER, extents=("visible", "full"))
    path = tmp_path_factory.mktemp("fast") / "fast.pt"
    save_weights(path, model.eval(), image_size=64)
    return path


@pytest.fixture
def shipped_fast_from(install_shipped):
    """Install a weights file as the shipped fast model (with its sha256 card) for one test."""
    return functools.partial(install_shipped, "fast")


def test_fast_architecture_is_a_small_fraction_of_the_default():
    fast = create_model("resnet10-fast", "sga", decoder_channels=FAST_DECODER, extents=("visible", "full"))
    default = create_model("resnet18", "sga", extents=("visible", "full"))
    n_fast = sum(p.numel() for p in fast.parameters())
    n_default = sum(p.numel() for p in default.parameters())
    assert n_fast * 2 <= 5e6 * 0.6  # fp16 weights well under 5 MB, room for the quality head
    assert n_fast < n_default / 10
    assert fast.attention is not None  # still semantic-guided attention


def test_segment_with_model_fast_uses_the_shipped_fast_weights(shipped_fast_from, tiny_fast):
    shipped_fast_from(tiny_fast)
    image = synthetic_xray(72, 60, seed=3)[0]
    expected = api.Segmenter(tiny_fast, device="cpu").segment(image, labels=True)
    assert np.array_equal(lungseg.segment(image, labels=True, device="cpu", model="fast"), expected)
    assert api.Segmenter("fast", device="cpu").config["encoder"] == "resnet10-fast"
    result = lungseg.analyze(image, device="cpu", model="fast")
    assert np.array_equal(result.labels, expected)


def test_shipped_fast_weights_are_checked_against_their_sha256(shipped_fast_from, tiny_fast):
    shipped_fast_from(tiny_fast, sha="0" * 64)
    with pytest.raises(ModelError, match="does not match"):
        lungseg.segment(synthetic_xray(40, 40)[0], device="cpu", model="fast")


def test_top_level_functions_take_shipped_names_only(tiny_fast):
    with pytest.raises(InputError, match="shipped model"):
        lungseg.segment(synthetic_xray(40, 40)[0], model=str(tiny_fast))
    with pytest.raises(ModelError, match="no shipped model named 'tiny'"):
        api.shipped_weights("tiny")


def test_cli_segment_takes_model_fast(shipped_fast_from, tiny_fast, tmp_path):
    import cv2
    from click.testing import CliRunner

    from lungseg.cli import main

    shipped_fast_from(tiny_fast)
    src = tmp_path / "in"
    src.mkdir()
    image = synthetic_xray(72, 60, seed=3)[0]
    cv2.imwrite(str(src / "a.png"), image)
    res = CliRunner().invoke(main, ["segment", str(src), "-o", str(tmp_path / "out"), "--model", "fast",
                                    "--device", "cpu", "--workers", "0"])
    assert res.exit_code == 0, res.output
    written = cv2.imread(str(tmp_path / "out/a.png"), cv2.IMREAD_UNCHANGED)
    expected = api.Segmenter(tiny_fast, device="cpu").segment(image)
    assert np.array_equal(written > 0, expected > 0)


def test_export_takes_the_fast_name(shipped_fast_from, tiny_fast, tmp_path):
    from lungseg.export import export
    from lungseg.runtime import load

    shipped_fast_from(tiny_fast)
    out = tmp_path / "fast.torchscript"
    export("fast", "torchscript", out, parity_sizes=((64, 64),))
    image = synthetic_xray(64, 64, seed=2)[0]
    assert np.array_equal(load(out, device="cpu").segment(image), api.Segmenter(tiny_fast, device="cpu").segment(image))


# ---- distillation ------------------------------------------------------------------------------

def test_distillation_loss_is_least_where_the_student_agrees_with_the_teacher():
    teacher = torch.randn(2, 2, 8, 8) * 3
    agree = distillation_loss(teacher.clone(), teacher)
    assert agree < distillation_loss(-teacher, teacher)
    assert agree < distillation_loss(torch.zeros_like(teacher), teacher)
    student = teacher.clone().requires_grad_(True)
    distillation_loss(student, teacher).backward()
    assert student.grad.abs().max() < 1e-6  # the teacher's own logits are the minimum


def test_training_with_a_teacher_runs_and_refuses_a_teacher_without_the_extent(synthetic_data, tmp_path, tiny_weights):
    base = dict(data=[str(synthetic_data)], image_size=64, decoder_channels=[16, 16, 8, 8, 8], batch_size=2,
                epochs=1, max_steps_per_epoch=2, encoder="resnet10-fast")
    summary = train(TrainConfig(out=str(tmp_path / "kd"), teacher=str(tiny_weights), distill_weight=1.0, **base))
    assert (tmp_path / "kd/best.pt").is_file() and summary["epochs"] == 1
    one = create_model("resnet18", "sga", decoder_channels=(16, 16, 8, 8, 8), extents=("visible",))
    save_weights(tmp_path / "visible_only.pt", one.eval(), image_size=64)
    with pytest.raises(InputError, match="no full output"):
        train(TrainConfig(out=str(tmp_path / "kd2"), teacher=str(tmp_path / "visible_only.pt"), **base))


# ---- the shipped file ---------------------------------------------------------------------------

def test_shipped_fast_weights_fit_the_size_budget():
    if not api.FAST_WEIGHTS.is_file():
        pytest.skip(f"fast weights not present at {api.FAST_WEIGHTS}")
    assert api.FAST_WEIGHTS.stat().st_size <= 5_000_000
    path, sha = api.shipped_weights("fast")
    assert sha256_file(path) == sha
    _, config = load_weights(path)
    assert config["encoder"] == "resnet10-fast" and set(config["extents"]) == {"visible", "full"}
