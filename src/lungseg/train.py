"""Training loop: BCE + soft Dice (+ SGA auxiliary loss), AdamW, warm-up + cosine schedule.

Each epoch ends with validation Dice (masks at the ground truth's resolution, through the
same :class:`~lungseg.pipeline.SegmentationPipeline` as inference), an atomic ``last.pt``
checkpoint, ``best.pt`` when validation Dice improves, a line in ``metrics.jsonl`` and a
refreshed ``curves.png``. ``resume=True`` continues from ``last.pt``. Under ``torchrun``
(``WORLD_SIZE > 1``) the model is wrapped in DistributedDataParallel; only rank 0
validates and writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from .api import resolve_device
from .checkpoint import as_float32, save_atomic, save_weights, safe_load, state_from_file
from .data import SegmentationDataset, XrayAugment, find_samples, load_sample
from .errors import InputError
from .losses import SegmentationLoss
from .metrics import dice_score
from .models import create_model
from .pipeline import SegmentationPipeline
from .plots import plot_curves

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    image_size: int = 256
    encoder: str = "resnet18"
    attention: str | None = "sga"
    decoder_channels: list[int] | None = None  # None: the UNet default
    epochs: int = 40
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    aux_weight: float = 0.4
    seed: int = 0
    workers: int = 0
    device: str = "auto"
    resume: bool = False
    init: str | None = None
    augment: bool = True
    max_steps_per_epoch: int | None = None
    stop_after_epoch: int | None = None  # end this invocation early (time-boxed jobs); --resume continues


def _seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("LUNGSEG_DDP_BACKEND") != "gloo" else "gloo"
        dist.init_process_group(backend)
    return (dist.get_rank(), world) if world > 1 else (0, 1)


@torch.no_grad()
def validation_dice(pipeline: SegmentationPipeline, samples, device) -> float:
    """Mean Dice of the pipeline's thresholded masks against the full-resolution masks."""
    was_training = pipeline.training
    pipeline.eval()
    scores = []
    for s in samples:
        image, mask = load_sample(s)
        pixels = torch.from_numpy(image.astype(np.float32))[None, None].to(device)
        _, pred = pipeline(pixels)
        scores.append(dice_score(pred[0, 0].cpu().numpy(), mask))
    pipeline.train(was_training)
    return float(np.mean(scores))


def _lr_lambda(total_steps: int, warmup_steps: int):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return f


def train(cfg: TrainConfig, progress: bool = False) -> dict:
    """Run (or resume) a training run into ``cfg.out``; returns the final summary."""
    rank, world = _distributed()
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    _seed_everything(cfg.seed + rank)

    train_samples = [s for d in cfg.data for s in find_samples(d, "train")]
    val_samples = [s for d in cfg.data for s in find_samples(d, "val")]
    dataset = SegmentationDataset(train_samples, cfg.image_size,
                                  XrayAugment() if cfg.augment else None, seed=cfg.seed)
    sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.workers, drop_last=len(dataset) > cfg.batch_size * world,
                        generator=generator, persistent_workers=False)

    extra = {} if cfg.decoder_channels is None else {"decoder_channels": tuple(cfg.decoder_channels)}
    model = create_model(cfg.encoder, cfg.attention, **extra).to(device)
    if cfg.init:
        _, sd = state_from_file(safe_load(cfg.init), cfg.init)
        model.load_state_dict(as_float32(sd))
    model = model.to(memory_format=torch.channels_last)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    steps_per_epoch = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch)))
    criterion = SegmentationLoss(cfg.aux_weight)
    pipeline = SegmentationPipeline(model, cfg.image_size).to(device)

    start_epoch, best, history = 0, -1.0, []
    last = out / "last.pt"
    if cfg.resume:
        if not last.is_file():
            raise InputError(f"{last}: nothing to resume from")
        ck = safe_load(last)
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        start_epoch, best, history = ck["epoch"], ck["best_dice"], json.loads(ck["history"])
        torch.set_rng_state(ck["torch_rng"])

    if rank == 0:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.time()
        dataset.set_epoch(epoch)
        generator.manual_seed(cfg.seed * 1000 + epoch)  # same batch order on resume
        if sampler is not None:
            sampler.set_epoch(epoch)
        net.train()
        losses = []
        batches = iter(loader)
        bar = range(steps_per_epoch)
        if progress and rank == 0:
            from tqdm import tqdm
            bar = tqdm(bar, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
        for _ in bar:
            x, y = next(batches)
            x = x.to(device).contiguous(memory_format=torch.channels_last)
            y = y.to(device)
            loss = criterion(net(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        if rank == 0:
            val = validation_dice(pipeline, val_samples, device)
            row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_dice": val,
                   "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1)}
            history.append(row)
            if val > best:
                best = val
                save_weights(out / "best.pt", model, cfg.image_size)
            save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "best_dice": best,
                         "history": json.dumps(history), "torch_rng": torch.get_rng_state(),
                         "config": {**model.config, "image_size": cfg.image_size}}, last)
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            plot_curves(history, out / "curves.png")
            log.info("epoch %d loss %.4f val_dice %.4f", epoch + 1, row["train_loss"], val)
            if progress:
                print(json.dumps(row), flush=True)
        if world > 1:
            dist.barrier()
        if cfg.stop_after_epoch is not None and epoch + 1 >= cfg.stop_after_epoch:
            break
    summary = {"best_val_dice": best, "epochs": cfg.epochs, "out": str(out)}
    if world > 1:
        dist.destroy_process_group()
    return summary
