import json
import os
import socket
import subprocess
import sys

import pytest
import torch

from lungseg.checkpoint import safe_load
from lungseg.errors import InputError
from lungseg.train import TrainConfig, train

TINY = dict(image_size=32, decoder_channels=[16, 16, 8, 8, 8], batch_size=2, lr=3e-3, warmup_epochs=0.5)


def test_tiny_training_run_lowers_the_loss(synthetic_data, tmp_path):
    cfg = TrainConfig(data=[str(synthetic_data)], out=str(tmp_path / "run"), epochs=5, augment=False, **TINY)
    summary = train(cfg)
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert summary["best_val_dice"] == max(r["val_dice"] for r in rows)
    for name in ("best.pt", "last.pt", "curves.png", "config.json"):
        assert (tmp_path / "run" / name).is_file()


def test_resume_continues_and_matches_an_uninterrupted_run(synthetic_data, tmp_path):
    base = dict(data=[str(synthetic_data)], epochs=3, seed=3, **TINY)
    train(TrainConfig(out=str(tmp_path / "straight"), **base))
    train(TrainConfig(out=str(tmp_path / "split"), stop_after_epoch=1, **base))
    assert safe_load(tmp_path / "split/last.pt")["epoch"] == 1
    train(TrainConfig(out=str(tmp_path / "split"), resume=True, **base))
    a, b = safe_load(tmp_path / "straight/last.pt"), safe_load(tmp_path / "split/last.pt")
    assert b["epoch"] == 3
    rows = [json.loads(x)["epoch"] for x in (tmp_path / "split/metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3]
    for k, v in a["model"].items():
        assert torch.allclose(v.float(), b["model"][k].float(), atol=1e-5), k


def test_resume_without_checkpoint_is_a_clear_error(synthetic_data, tmp_path):
    with pytest.raises(InputError, match="nothing to resume"):
        train(TrainConfig(data=[str(synthetic_data)], out=str(tmp_path / "new"), resume=True, **TINY))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_cpu_processes_gloo(synthetic_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "LUNGSEG_DDP_BACKEND": "gloo", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1", f"--master_port={_free_port()}",
           "-m", "lungseg", "train", "--data", str(synthetic_data), "--out", str(out), "--image-size", "32",
           "--epochs", "2", "--batch-size", "2", "--no-augment", "--device", "cpu"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 2  # one line per epoch: only rank 0 writes
    assert safe_load(out / "last.pt")["epoch"] == 2


# --- run folders, resume from the saved config, Ctrl-C, sizes checked up front ---------------

from click.testing import CliRunner  # noqa: E402

from lungseg.cli import main  # noqa: E402


def _epochs(run):
    return [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_fresh_run_into_a_folder_holding_a_run_is_refused_unless_overwrite(synthetic_data, tmp_path):
    run = tmp_path / "run"
    base = dict(data=[str(synthetic_data)], out=str(run), epochs=1, augment=False, **TINY)
    train(TrainConfig(**base))
    with pytest.raises(InputError, match="--resume.*--overwrite"):
        train(TrainConfig(**base))
    assert _epochs(run) == [1]
    train(TrainConfig(**base, overwrite=True))
    assert _epochs(run) == [1]  # started afresh, not appended to (epochs 1, 1)
    r = CliRunner().invoke(main, ["train", "--data", str(synthetic_data), "--out", str(run), "--image-size", "32"])
    assert r.exit_code == 2 and "--resume" in r.output and "--overwrite" in r.output


def _cli_train(*args):
    return CliRunner().invoke(main, ["train", *map(str, args)])


def test_cli_resume_takes_the_saved_config(synthetic_data, tmp_path):
    run = tmp_path / "run"
    r = _cli_train("--data", synthetic_data, "--out", run, "--image-size", "32", "--epochs", "2", "--batch-size", "2",
                   "--lr", "3e-3", "--seed", "4", "--no-augment", "--device", "cpu", "--extents", "visible",
                   "--max-steps-per-epoch", "2", "--stop-after-epoch", "1")
    assert r.exit_code == 0, r.output
    assert "\r" not in r.output  # no progress bars when stderr is not a terminal
    assert _epochs(run) == [1]
    r = _cli_train("--out", run, "--resume")  # nothing else: every option from config.json
    assert r.exit_code == 0, r.output
    assert _epochs(run) == [1, 2]
    saved = json.loads((run / "config.json").read_text())
    assert saved["image_size"] == 32 and saved["lr"] == 3e-3 and saved["seed"] == 4 and not saved["augment"]
    assert saved["extents"] == ["visible"] and safe_load(run / "last.pt")["epoch"] == 2


def test_cli_resume_refuses_a_conflicting_option_in_one_line(synthetic_data, tmp_path):
    run = tmp_path / "run"
    train(TrainConfig(data=[str(synthetic_data)], out=str(run), epochs=2, stop_after_epoch=1, **TINY))
    r = _cli_train("--out", run, "--resume", "--encoder", "resnet34")
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and "encoder" in lines[0] and "resnet34" in lines[0], r.output
    # the same options as saved (what scripts/train_sick_lungs.sh passes) are accepted
    r = _cli_train("--out", run, "--resume", "--data", synthetic_data, "--image-size", "32", "--batch-size", "2",
                   "--lr", "3e-3", "--epochs", "2", "--stop-after-epoch", "2")
    assert r.exit_code == 0, r.output
    assert _epochs(run) == [1, 2]


def test_resume_into_a_missing_folder_does_not_create_it(synthetic_data, tmp_path):
    run = tmp_path / "missing"
    r = _cli_train("--data", synthetic_data, "--out", run, "--resume", "--image-size", "32")
    assert r.exit_code == 2 and "nothing to resume" in r.output, r.output
    assert not run.exists()
    r = _cli_train("--out", run, "--resume")
    assert r.exit_code == 2 and "nothing to resume" in r.output and not run.exists()


def test_ctrl_c_says_which_epoch_is_kept_and_how_to_continue(synthetic_data, tmp_path, monkeypatch):
    import lungseg.train as train_module

    calls = []
    real = train_module.validation_dice

    def interrupt_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "validation_dice", interrupt_in_epoch_2)
    run = tmp_path / "run"
    r = _cli_train("--data", synthetic_data, "--out", run, "--image-size", "32", "--epochs", "3", "--batch-size", "2",
                   "--max-steps-per-epoch", "1", "--device", "cpu")
    assert r.exit_code == 130
    assert "Aborted" not in r.output
    assert "keeps epoch 1 of 3" in r.output and f"lungseg train --out {run} --resume" in r.output, r.output
    assert safe_load(run / "last.pt")["epoch"] == 1


def test_mask_of_the_wrong_size_is_refused_before_any_step(synthetic_data, tmp_path, monkeypatch):
    import shutil

    import cv2

    from lungseg.data import SegmentationDataset

    data = tmp_path / "data"
    shutil.copytree(synthetic_data, data)
    bad = data / "masks" / "case7.png"  # a val sample: today found only after a whole epoch
    cv2.imwrite(str(bad), cv2.resize(cv2.imread(str(bad), cv2.IMREAD_UNCHANGED), (80, 96)))
    loaded = []
    real = SegmentationDataset.__getitem__
    monkeypatch.setattr(SegmentationDataset, "__getitem__", lambda self, i: loaded.append(i) or real(self, i))
    with pytest.raises(InputError, match=r"case7\.png: mask size 80x96 differs from image size 96x96"):
        train(TrainConfig(data=[str(data)], out=str(tmp_path / "run"), epochs=1, **TINY))
    assert loaded == []
    assert not (tmp_path / "run").exists()


def test_train_help_documents_options_layouts_and_outputs():
    r = CliRunner().invoke(main, ["train", "--help"])
    assert r.exit_code == 0
    for words in ("index.csv", "CXR_png", "last.pt", "best.pt", "metrics.jsonl", "config.json", "--overwrite"):
        assert words in r.output, words
    cmd = main.commands["train"]
    undocumented = [p.name for p in cmd.params if not getattr(p, "help", None)]
    assert undocumented == []


def test_weight_averaging_is_the_mean_of_the_chosen_epochs_and_survives_a_resume(synthetic_data, tmp_path):
    base = dict(data=[str(synthetic_data)], epochs=3, seed=4, average_from=2, **TINY)
    run = tmp_path / "avg"
    train(TrainConfig(out=str(run), stop_after_epoch=2, **base))
    assert not (run / "average.pt").exists()  # the run has not ended
    epoch2 = safe_load(run / "last.pt")["model"]
    train(TrainConfig(out=str(run), resume=True, **base))
    epoch3 = safe_load(run / "last.pt")["model"]
    avg = safe_load(run / "average.pt")["state_dict"]
    from lungseg.models import create_model
    names = {n for n, _ in create_model("resnet18", "sga", decoder_channels=(16, 16, 8, 8, 8)).named_parameters()}
    for name in names:
        assert torch.allclose(avg[name].float(), (epoch2[name].float() + epoch3[name].float()) / 2, atol=1e-6), name
    bn = [k for k in avg if k.endswith("running_mean")]
    assert bn and any(not torch.allclose(avg[k], epoch3[k]) for k in bn)  # recomputed for the averaged weights
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, "average"]
    assert rows[1]["lr"] == rows[2]["lr"]  # the lr is held while averaging
    best = max(r["val_dice"] for r in rows)
    best_sd = safe_load(run / "best.pt")["state_dict"]
    is_average = all(torch.equal(best_sd[k], avg[k]) for k in names)
    assert is_average == (rows[-1]["val_dice"] > max(r["val_dice"] for r in rows[:-1]))  # best.pt: the better by val
    assert train(TrainConfig(out=str(run), resume=True, **base))["best_val_dice"] == best  # nothing left to do


def test_init_from_weights_with_a_quality_head(synthetic_data, tmp_path):
    """Shipped weights carry a fitted quality head; training from them drops it (fit-quality fits a new one)."""
    from lungseg.checkpoint import load_weights, save_weights
    from lungseg.quality import QualityHead

    first = tmp_path / "first"
    train(TrainConfig(data=[str(synthetic_data)], out=str(first), epochs=1, **TINY))
    network, config = load_weights(first / "best.pt")
    network.quality_head = QualityHead(network.config["extents"], width=4)
    save_weights(tmp_path / "with_head.pt", network, config["image_size"])
    train(TrainConfig(data=[str(synthetic_data)], out=str(tmp_path / "second"), epochs=1,
                      init=str(tmp_path / "with_head.pt"), **{**TINY, "lr": 0.0}))
    got = safe_load(tmp_path / "second/best.pt")["state_dict"]
    assert not any(k.startswith("quality_head.") for k in got)
    for name, p in network.named_parameters():  # lr 0: the network's weights are the init's
        if not name.startswith("quality_head."):
            assert torch.equal(got[name].float(), p.detach().float()), name
