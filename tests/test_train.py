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
