"""Two mask conventions (visible lung field, full lung extent) through data, loss, training,
API, CLI, evaluation and export."""

import json
import shutil

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import lungseg
from lungseg import api
from lungseg.checkpoint import load_weights, save_weights
from lungseg.cli import main
from lungseg.data import SegmentationDataset, find_samples
from lungseg.errors import InputError
from lungseg.evaluate import evaluate
from lungseg.extents import extent_targets, folder_extent
from lungseg.losses import SegmentationLoss, masked_bce_dice_loss
from lungseg.metrics import all_metrics
from lungseg.models import create_model
from lungseg.train import TrainConfig, train

from conftest import synthetic_xray


def _dataset(root, n=6, extent_file=None, index_extent=None, ignore=False):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    if ignore:
        (root / "ignore").mkdir()
    header = "id,split" + (",extent" if index_extent else "")
    rows = [header]
    for i in range(n):
        img, mask = synthetic_xray(96, 96, seed=100 + i)
        cv2.imwrite(str(root / "images" / f"c{i}.png"), img)
        cv2.imwrite(str(root / "masks" / f"c{i}.png"), mask * 255)
        if ignore:
            ig = np.zeros_like(mask)
            ig[40:56, 20:40] = 255
            cv2.imwrite(str(root / "ignore" / f"c{i}.png"), ig)
        split = "train" if i < n - 2 else ("val" if i == n - 2 else "test")
        rows.append(f"c{i},{split}" + (f",{index_extent}" if index_extent else ""))
    (root / "index.csv").write_text("\n".join(rows) + "\n")
    if extent_file:
        (root / "lungseg.json").write_text(json.dumps({"extent": extent_file}))
    return root


def test_targets_use_visible_inside_full():
    mask = torch.tensor([[[0.0, 1.0, 1.0, 0.0]]])
    valid = torch.tensor([[[1.0, 1.0, 0.0, 1.0]]])
    t, w, primary = extent_targets(mask, valid, "visible", ("visible", "full"))
    assert primary == 0 and t.shape == w.shape == (2, 1, 4)
    assert w[0].tolist() == [[1, 1, 0, 1]]  # own channel: everything but ignored pixels
    assert w[1].tolist() == [[0, 1, 0, 0]]  # visible lung is full lung; nothing said of the rest
    t, w, primary = extent_targets(mask, valid, "full", ("visible", "full"))
    assert primary == 1
    assert w[1].tolist() == [[1, 1, 0, 1]]
    assert w[0].tolist() == [[1, 0, 0, 1]]  # outside the full extent nothing is visible lung
    assert torch.equal(t[0], t[1])
    # a one-output model learns every convention in its one channel (the naive merge)
    t, w, primary = extent_targets(mask, valid, "full", ("visible",))
    assert primary == 0 and torch.equal(w, valid)


def test_loss_ignores_ignored_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 8)
    target = (torch.rand(2, 2, 8, 8) > 0.5).float()
    weight = torch.ones(2, 2, 8, 8)
    weight[:, :, :3] = 0  # ignored rows
    primary = torch.tensor([0, 1])
    base = masked_bce_dice_loss(logits, target, weight, primary)
    changed = logits.clone()
    changed[:, :, :3] = torch.randn(2, 2, 3, 8) * 50
    assert torch.allclose(masked_bce_dice_loss(changed, target, weight, primary), base)
    changed[:, :, 5] += 3  # a counted pixel does change it
    assert not torch.allclose(masked_bce_dice_loss(changed, target, weight, primary), base)


def test_sga_loss_supervises_both_coarse_maps():
    loss = SegmentationLoss(0.4)
    target = torch.zeros(1, 2, 32, 32)
    weight = torch.ones(1, 2, 32, 32)
    coarse = torch.zeros(1, 2, 1, 1, requires_grad=True)
    logits = torch.zeros(1, 2, 32, 32, requires_grad=True)
    loss((logits, coarse), target, weight, torch.tensor([0])).backward()
    assert (coarse.grad.abs() > 0).all()


def test_metrics_count_ignored_pixels_neither_way():
    truth = np.zeros((20, 20), np.uint8)
    truth[5:15, 5:15] = 1
    pred = truth.copy()
    ignore = np.zeros_like(truth)
    ignore[0:4, :] = 1
    pred[0:4, :] = 1  # wrong only where ignored
    assert all_metrics(pred, truth, ignore=ignore)["dice"] == 1.0
    assert all_metrics(pred, truth)["dice"] < 1.0


def test_folder_extent_declarations(tmp_path):
    assert folder_extent(_dataset(tmp_path / "plain")) == "visible"
    assert folder_extent(_dataset(tmp_path / "declared", extent_file="full")) == "full"
    assert folder_extent(tmp_path / "covid_v7") == "full"  # the built-in table of known sets
    samples = find_samples(_dataset(tmp_path / "rows", index_extent="full"), "train")
    assert {s.extent for s in samples} == {"full"}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "lungseg.json").write_text('{"extent": "thorax"}')
    with pytest.raises(InputError, match="thorax"):
        folder_extent(tmp_path / "bad")


def test_dataset_marks_ignored_pixels(tmp_path):
    root = _dataset(tmp_path / "ig", extent_file="full", ignore=True)
    ds = SegmentationDataset(find_samples(root, "train"), 32, None, extents=("visible", "full"))
    x, t, w, primary = ds[0]
    assert primary == 1 and t.shape == w.shape == (2, 32, 32)
    assert float(w[1].min()) == 0.0 and float(w[1].max()) == 1.0  # ignored pixels weigh 0


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory):
    """A tiny two-extent training run on a visible-field folder and a full-extent folder with ignore masks."""
    tmp = tmp_path_factory.mktemp("mixed")
    vis = _dataset(tmp / "vis")
    full = _dataset(tmp / "full", extent_file="full", ignore=True)
    cfg = TrainConfig(data=[str(vis), str(full)], out=str(tmp / "run"), image_size=32,
                      decoder_channels=[16, 16, 8, 8, 8], batch_size=2, lr=3e-3, warmup_epochs=0.5, epochs=2,
                      augment=True, samples_per_epoch=6, set_weights={"full": 2.0})
    summary = train(cfg)
    return tmp, summary


def test_training_on_mixed_conventions_runs(mixed_run):
    tmp, summary = mixed_run
    rows = [json.loads(x) for x in (tmp / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert set(rows[-1]["val_dice_per_set"]) == {"vis", "full"}
    network, config = load_weights(tmp / "run/best.pt")
    assert config["extents"] == ["visible", "full"]
    assert network.head.out_channels == 2


def test_set_weights_must_name_known_folders(tmp_path):
    vis = _dataset(tmp_path / "vis")
    cfg = TrainConfig(data=[str(vis)], out=str(tmp_path / "run"), image_size=32, set_weights={"nope": 1.0},
                      decoder_channels=[16, 16, 8, 8, 8], epochs=1)
    with pytest.raises(InputError, match="nope"):
        train(cfg)


def test_evaluate_uses_each_folders_extent(mixed_run, tiny_weights):
    tmp, _ = mixed_run
    result = evaluate([tmp / "vis", tmp / "full"], "test", model=tiny_weights, device="cpu")
    assert result["vis"]["extent"] == "visible" and result["full"]["extent"] == "full"
    forced = evaluate([tmp / "full"], "test", model=tiny_weights, device="cpu", extent="visible")
    assert forced["full"]["extent"] == "visible"
    out = CliRunner().invoke(main, ["evaluate", str(tmp / "full"), "--model", str(tiny_weights),
                                    "--device", "cpu", "--json", str(tmp / "e.json")])
    assert out.exit_code == 0, out.output
    assert json.loads((tmp / "e.json").read_text())["full"]["extent"] == "full"


def test_api_gives_both_extents(tiny_weights):
    image, _ = synthetic_xray(128, 112, seed=3)
    seg = api.Segmenter(tiny_weights, device="cpu", postprocess=False)
    vis = seg.segment(image)
    full = seg.segment(image, extent="full")
    assert vis.shape == full.shape == image.shape
    assert not np.array_equal(vis, full)  # untrained: the two heads differ
    assert np.array_equal(api.Segmenter(tiny_weights, device="cpu", postprocess=False, extent="full").segment(image), full)
    assert all(np.array_equal(m, full) for m in seg.segment_many([image, image], extent="full"))
    with pytest.raises(InputError, match="extent"):
        seg.segment(image, extent="thorax")


def test_one_extent_weights_still_load_and_refuse_full(tmp_path):
    model = create_model("resnet18", "sga", decoder_channels=(16, 16, 8, 8, 8))
    path = tmp_path / "old.pt"
    save_weights(path, model.eval(), image_size=32)
    seg = api.Segmenter(path, device="cpu")
    image, _ = synthetic_xray(64, 64)
    assert seg.segment(image).shape == (64, 64)
    with pytest.raises(InputError, match="no 'full' output"):
        seg.segment(image, extent="full")


def test_cli_segment_extent_matches_api(tmp_path, tiny_weights):
    image, _ = synthetic_xray(96, 96, seed=5)
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), image)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["segment", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_weights),
                                       "--device", "cpu", "--extent", "full"])
    assert result.exit_code == 0, result.output
    written = cv2.imread(str(out / "a.png"), cv2.IMREAD_UNCHANGED) > 0
    expected = api.Segmenter(tiny_weights, device="cpu").segment(image, extent="full")
    assert np.array_equal(written, expected.astype(bool))


def test_export_carries_the_chosen_extent(tmp_path, tiny_weights):
    pytest.importorskip("onnxruntime")
    image, _ = synthetic_xray(100, 90, seed=6)
    eager = api.Segmenter(tiny_weights, device="cpu")
    res = lungseg.export(tiny_weights, "onnx", tmp_path / "full.onnx", extent="full", parity_sizes=[(96, 80)])
    assert res.metadata["extent"] == "full" and all(r["ok"] for r in res.parity)
    loaded = lungseg.load(res.path)
    assert loaded.extent == "full"
    got = loaded.segment(image)
    want = eager.segment(image, extent="full")
    assert 2 * (got & want).sum() / (got.sum() + want.sum()) >= 0.999
    with pytest.raises(InputError, match="export it again with --extent visible"):
        loaded.segment(image, extent="visible")
    with pytest.raises(InputError):
        lungseg.load(res.path, extent="visible")
    copy = tmp_path / "copy.onnx"
    shutil.copy(res.path, copy)
    cli = CliRunner().invoke(main, ["export", "--format", "onnx", "--model", str(tiny_weights), "-o",
                                    str(tmp_path / "vis.onnx"), "--extent", "visible", "--parity-size", "64x64"])
    assert cli.exit_code == 0, cli.output
    assert lungseg.load(tmp_path / "vis.onnx").extent == "visible"
