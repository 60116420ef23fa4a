"""Training loop: BCE + soft Dice (+ SGA auxiliary loss), AdamW, warm-up + cosine schedule.

The network has one output per extent in ``extents`` (default visible field and full
extent); each sample teaches the channels its mask convention speaks for (see
:mod:`lungseg.extents`). With several data folders, batches are drawn with replacement so
that each folder contributes in proportion to its ``set_weights`` entry (default: equal),
``samples_per_epoch`` images per epoch; small sets of sick lungs thus matter as much as
large screening sets. Validation Dice is the mean over folders of each folder's mean Dice
on its own extent, with ``ignore`` pixels left out.

Each epoch ends with validation Dice (masks at the ground truth's resolution, through the
same :class:`~lungseg.pipeline.SegmentationPipeline` as inference), an atomic ``last.pt``
checkpoint, ``best.pt`` when validation Dice improves, a line in ``metrics.jsonl`` and a
refreshed ``curves.png``. ``resume=True`` continues from ``last.pt`` (with the run's saved
``config.json``; see :func:`resume_config`); a folder that already holds a run is refused
unless ``resume`` or ``overwrite`` is set. Every sample's image and mask sizes are checked
from the file headers before the first step. Ctrl-C raises :class:`TrainingInterrupted`,
which says which epoch ``last.pt`` keeps. Under ``torchrun``
(``WORLD_SIZE > 1``) the model is wrapped in DistributedDataParallel; only rank 0
validates and writes.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import struct
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from .api import resolve_device
from .checkpoint import (as_float32, load_weights, save_atomic, save_weights, safe_load, state_from_file,
                         widen_to_extents)
from .data import SegmentationDataset, XrayAugment, find_samples, load_sample
from .data.datasets import load_ignore
from .extents import EXTENTS
from .errors import InputError
from .imageheader import image_size
from .io import remove_stale_temp_files, write_bytes_atomic
from .losses import SegmentationLoss, distillation_loss
from .metrics import masked_dice
from .models import create_model
from .pipeline import SegmentationPipeline
from .plots import plot_curves
from .weight_average import WeightAverage

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    image_size: int = 256
    encoder: str = "resnet18"
    attention: str | None = "sga"
    decoder_channels: list[int] | None = None  # None: the UNet default
    extents: list[str] = field(default_factory=lambda: list(EXTENTS))
    set_weights: dict[str, float] | None = None  # folder name -> sampling weight (default equal)
    samples_per_epoch: int | None = None  # with set weights; None: the train split's size
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
    teacher: str | None = None  # weights whose probabilities are soft targets (distillation)
    distill_weight: float = 1.0
    average_from: int | None = None  # from this epoch on: lr held, weights averaged (SWA) into average.pt
    augment: bool = True
    max_steps_per_epoch: int | None = None
    amp: str = "auto"  # autocast dtype: auto (bf16 where the CPU/GPU has it), bf16, fp16 (CUDA), none
    stop_after_epoch: int | None = None  # end this invocation early (time-boxed jobs); --resume continues
    overwrite: bool = False  # start afresh in a folder that holds a run (its last.pt, best.pt, metrics go)


RUN_FILES = ("last.pt", "best.pt", "metrics.jsonl")  # a folder holding any of these holds a run
# Options of one invocation, free to differ on resume; every other field defines the run.
INVOCATION_FIELDS = ("device", "workers", "amp", "resume", "overwrite", "stop_after_epoch")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training: ``saved_epoch`` is the epoch ``out/last.pt`` holds (0: none yet)."""

    def __init__(self, out: Path, saved_epoch: int, epochs: int):
        super().__init__(out, saved_epoch, epochs)
        self.out, self.saved_epoch, self.epochs = Path(out), saved_epoch, epochs


def _comparable(name: str, value):
    """A field's value normalised for comparison (paths absolute, sequences as lists)."""
    if name == "data":
        return [os.path.abspath(d) for d in value]
    if name in ("init", "teacher"):
        return os.path.abspath(value) if value else None
    if name == "set_weights":
        return {k: float(v) for k, v in value.items()} if value else None
    if isinstance(value, tuple):
        return list(value)
    return value


def saved_config(out) -> dict | None:
    """The ``config.json`` of the run in ``out`` as a dict, or None where there is none."""
    path = Path(out) / "config.json"
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: unreadable run config ({e})") from None
    if not isinstance(saved, dict):
        raise InputError(f"{path}: not a run config")
    return saved


def check_same_run(cfg: TrainConfig, saved: dict, source: str) -> None:
    """Refuse ``cfg`` where a run-defining field differs from the ``saved`` config (one line)."""
    defaults = asdict(TrainConfig(data=[], out=""))
    for name in TrainConfig.__dataclass_fields__:
        if name in INVOCATION_FIELDS or name == "out":
            continue
        mine = _comparable(name, getattr(cfg, name))
        theirs = _comparable(name, saved.get(name, defaults[name]))
        if mine != theirs:
            flag = name.replace("_", "-")
            raise InputError(f"--resume: {flag}={getattr(cfg, name)!r} conflicts with the run's "
                             f"{flag}={saved.get(name, defaults[name])!r} ({source}); leave it out to keep "
                             "the saved value, or start a new run")


def resume_config(out, given: dict) -> TrainConfig:
    """The config resuming the run in ``out``: its saved ``config.json`` with ``given`` on top.

    ``given`` holds the fields set explicitly (e.g. on the command line); a run-defining one
    that differs from the saved value is refused. Invocation fields (device, workers, amp,
    stop_after_epoch) not given keep the saved value, except stop_after_epoch (None).
    """
    out = Path(out)
    _check_resumable(out)
    saved = saved_config(out)
    if saved is None:  # a run from before config.json: everything must be given
        if not given.get("data"):
            raise InputError(f"{out}: no config.json to resume from; give the run's options (--data ...)")
        return TrainConfig(**{**given, "out": str(out), "resume": True, "overwrite": False})
    known = {k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__}
    merged = {**known, "stop_after_epoch": None, **given, "out": str(out), "resume": True, "overwrite": False}
    cfg = TrainConfig(**merged)
    check_same_run(cfg, saved, f"{out / 'config.json'}")
    return cfg


def _check_resumable(out: Path) -> None:
    if not (out / "last.pt").is_file():
        what = "no such folder" if not out.exists() else "no last.pt there"
        raise InputError(f"{out / 'last.pt'}: nothing to resume from ({what}); start the run without --resume")


def _check_run_folder(cfg: TrainConfig, out: Path, rank: int) -> None:
    """Resume needs a run; a fresh start refuses a folder holding one unless ``overwrite``."""
    if cfg.resume and cfg.overwrite:
        raise InputError("--resume and --overwrite exclude each other")
    if cfg.resume:
        _check_resumable(out)
        saved = saved_config(out)
        if saved is not None:
            check_same_run(cfg, saved, f"{out / 'config.json'}")
        return
    existing = [n for n in RUN_FILES if (out / n).exists()]
    if existing and not cfg.overwrite:
        raise InputError(f"{out} already holds a run ({', '.join(existing)}): continue it with --resume, "
                         "or start over with --overwrite")
    if existing and rank == 0:
        for n in (*RUN_FILES, "curves.png"):
            (out / n).unlink(missing_ok=True)


def _header_size(path: Path) -> tuple[int, int] | None:
    try:
        with open(path, "rb") as f:
            return image_size(f)
    except (OSError, struct.error, ValueError):
        return None  # unreadable or unknown header: decoding it reports the problem


def check_sample_sizes(samples) -> None:
    """Every mask (and ignore mask) must have its image's size; read from the headers only."""
    for s in samples:
        size = _header_size(s.image)
        if size is None:
            continue
        for m in (*s.masks, *([s.ignore] if s.ignore is not None else [])):
            other = _header_size(m)
            if other is not None and other != size and other != size[::-1]:  # swapped: EXIF rotation decides
                kind = "ignore mask" if m == s.ignore else "mask"
                raise InputError(f"{m}: {kind} size {other[0]}x{other[1]} differs from image size "
                                 f"{size[0]}x{size[1]} of {s.image}")


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
def validation_dice(pipeline: SegmentationPipeline, samples, device) -> dict[str, float]:
    """Per folder, the mean Dice of the thresholded masks of each sample's own extent
    against its full-resolution mask (ignored pixels left out)."""
    was_training = pipeline.training
    pipeline.eval()
    scores: dict[str, list[float]] = {}
    for s in samples:
        image, mask = load_sample(s)
        pixels = torch.from_numpy(image.astype(np.float32))[None, None].to(device)
        # a one-output model (the naive merged baseline) is scored with its one output
        pipeline.select_extent(s.extent if s.extent in pipeline.extents else pipeline.extents[0])
        pred = pipeline(pixels)[1]
        dice = masked_dice(pred[0, 0].cpu().numpy(), mask, load_ignore(s, mask.shape))
        scores.setdefault(s.dataset, []).append(dice)
    pipeline.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()}


def set_sampler(samples, set_weights: dict[str, float] | None, num_samples: int, generator) -> WeightedRandomSampler:
    """Draw samples so that each folder's share of an epoch follows ``set_weights``."""
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.dataset] = counts.get(s.dataset, 0) + 1
    weights = set_weights or {}
    unknown = set(weights) - set(counts)
    if unknown:
        raise InputError(f"set weights for unknown data folders {sorted(unknown)}; folders: {sorted(counts)}")
    per_sample = [float(weights.get(s.dataset, 1.0)) / counts[s.dataset] for s in samples]
    return WeightedRandomSampler(per_sample, num_samples, replacement=True, generator=generator)


AMP_MODES = ("auto", "bf16", "fp16", "none")


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device`` (None: full float32).

    ``auto`` takes bf16 where the hardware runs it natively (CPUs with AVX-512 BF16 or AMX
    through oneDNN, CUDA GPUs that report bf16) and float32 elsewhere; bf16 needs no loss
    scaling. ``fp16`` is for CUDA only (with a gradient scaler).
    """
    if mode not in AMP_MODES:
        raise InputError(f"amp {mode!r}: choose one of {', '.join(AMP_MODES)}")
    if mode == "none":
        return None
    if mode == "fp16":
        if device.type != "cuda":
            raise InputError("amp fp16 needs a CUDA device; use bf16 or none on CPU")
        return torch.float16
    if mode == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu" and torch.backends.mkldnn.is_available():
        return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None
    return None


def _as_float(output):
    return tuple(o.float() for o in output) if isinstance(output, (tuple, list)) else output.float()


class _Teacher(torch.nn.Module):
    """A frozen network whose logits, in the student's channel order, are the soft targets."""

    def __init__(self, network, channels: list[int]):
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.channels = channels

    @torch.no_grad()
    def forward(self, x):
        return self.network(x)[:, self.channels]


def _load_teacher(cfg: TrainConfig, model, device) -> _Teacher | None:
    """The ``cfg.teacher`` network, which must speak for every extent the student learns."""
    if cfg.teacher is None:
        return None
    network, config = load_weights(cfg.teacher)
    theirs = list(network.config["extents"])
    missing = [e for e in model.config["extents"] if e not in theirs]
    if missing:
        raise InputError(f"{cfg.teacher}: the teacher has no {', '.join(missing)} output (it has {', '.join(theirs)})")
    if config.get("image_size", cfg.image_size) != cfg.image_size:
        log.warning("teacher %s was trained at %s px; it is run at the student's %d px",
                    cfg.teacher, config.get("image_size"), cfg.image_size)
    network = network.to(device).to(memory_format=torch.channels_last)
    return _Teacher(network, [theirs.index(e) for e in model.config["extents"]])


def _lr_lambda(total_steps: int, warmup_steps: int, hold_step: int | None = None):
    """Linear warm-up, then cosine to 0 at ``total_steps``; held from ``hold_step`` on (weight averaging)."""
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        if hold_step is not None:
            step = min(step, max(hold_step, warmup_steps))
        t = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    return f


def _finish_average(cfg, average: WeightAverage, model, loader, steps, pipeline, val_samples, device, out: Path,
                    best: float, history: list) -> float:
    """Write ``average.pt`` (the averaged weights) and its val Dice; it becomes best.pt if better."""
    t0 = time.time()
    batches = (b for _, b in zip(range(steps), loader))
    avg = average.averaged(model, batches, device)
    avg_pipeline = SegmentationPipeline(avg, cfg.image_size).to(device)
    per_set = validation_dice(avg_pipeline, val_samples, device)
    val = float(np.mean(list(per_set.values())))
    row = {"epoch": "average", "averaged_epochs": [cfg.average_from, cfg.epochs], "val_dice": val,
           "val_dice_per_set": per_set, "seconds": round(time.time() - t0, 1)}
    history.append(row)
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    if val > best:
        save_weights(out / "best.pt", avg, cfg.image_size)
        best = val
    save_weights(out / "average.pt", avg, cfg.image_size)  # last: its presence marks the step done
    log.info("average of epochs %d-%d: val_dice %.4f", cfg.average_from, cfg.epochs, val)
    return best


def train(cfg: TrainConfig, progress: bool = False) -> dict:
    """Run (or resume) a training run into ``cfg.out``; returns the final summary.

    ``progress``: print each epoch's metrics line, with a progress bar on a terminal.
    """
    out = Path(cfg.out)
    _check_run_folder(cfg, out, int(os.environ.get("RANK", "0")))
    train_samples = [s for d in cfg.data for s in find_samples(d, "train")]
    val_samples = [s for d in cfg.data for s in find_samples(d, "val")]
    check_sample_sizes(train_samples + val_samples)

    rank, world = _distributed()
    device = resolve_device(cfg.device)
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(out)
    _seed_everything(cfg.seed + rank)

    dataset = SegmentationDataset(train_samples, cfg.image_size, XrayAugment() if cfg.augment else None,
                                  seed=cfg.seed, extents=cfg.extents)
    generator = torch.Generator().manual_seed(cfg.seed)
    if world > 1:
        sampler = DistributedSampler(dataset, world, rank, shuffle=True, seed=cfg.seed)
    elif len(cfg.data) > 1 or cfg.set_weights:
        sampler = set_sampler(train_samples, cfg.set_weights, cfg.samples_per_epoch or len(dataset), generator)
    else:
        sampler = None
    loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=cfg.workers, drop_last=len(dataset) > cfg.batch_size * world,
                        generator=generator, persistent_workers=False)

    extra = {} if cfg.decoder_channels is None else {"decoder_channels": tuple(cfg.decoder_channels)}
    model = create_model(cfg.encoder, cfg.attention, extents=tuple(cfg.extents), **extra).to(device)
    if cfg.init:
        _, sd = state_from_file(safe_load(cfg.init), cfg.init)
        # Shipped weights carry a fitted quality head; it is fitted again after training (fit-quality).
        sd = {k: v for k, v in sd.items() if not k.startswith("quality_head.")}
        model.load_state_dict(widen_to_extents(as_float32(sd), model))
    model = model.to(memory_format=torch.channels_last)
    teacher = _load_teacher(cfg, model, device)
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    steps_per_epoch = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch),
                              None if cfg.average_from is None else (cfg.average_from - 1) * steps_per_epoch))
    average = WeightAverage() if cfg.average_from is not None else None
    criterion = SegmentationLoss(cfg.aux_weight)
    amp_dtype = autocast_dtype(cfg.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    pipeline = SegmentationPipeline(model, cfg.image_size).to(device)

    start_epoch, best, history = 0, -1.0, []
    last = out / "last.pt"
    if cfg.resume:
        ck = safe_load(last)
        theirs = ck.get("config") or {}
        for key, mine in model.config.items():  # runs without config.json: name the mismatch, not the keys
            if key in theirs and _comparable(key, theirs[key]) != _comparable(key, mine):
                raise InputError(f"{last}: was trained with {key}={theirs[key]!r}, not {mine!r}; "
                                 "resume with the run's own options")
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        scheduler.load_state_dict(ck["scheduler"])
        start_epoch, best, history = ck["epoch"], ck["best_dice"], json.loads(ck["history"])
        if average is not None:
            average = WeightAverage(ck.get("average"))
        torch.set_rng_state(ck["torch_rng"])
        if rank == 0:  # the checkpoint carries its epochs' metrics: a kill after it cannot lose a line
            write_bytes_atomic(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history).encode())

    if rank == 0:
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
    saved_epoch = start_epoch  # the epoch last.pt holds
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.time()
            dataset.set_epoch(epoch)
            generator.manual_seed(cfg.seed * 1000 + epoch)  # same batch order on resume
            if isinstance(sampler, DistributedSampler):
                sampler.set_epoch(epoch)
            net.train()
            losses = []
            batches = iter(loader)
            bar = range(steps_per_epoch)
            if progress and rank == 0 and sys.stderr.isatty():  # no bars in redirected logs
                from tqdm import tqdm
                bar = tqdm(bar, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False)
            for _ in bar:
                x, y, w, primary = next(batches)
                x = x.to(device).contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    output = net(x)
                    soft = None if teacher is None else teacher(x)
                loss = criterion(_as_float(output), y.to(device), w.to(device), primary.to(device))
                if soft is not None:
                    logits = output[0] if isinstance(output, (tuple, list)) else output
                    loss = loss + cfg.distill_weight * distillation_loss(logits.float(), soft.float())
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses.append(loss.item())
                if hasattr(bar, "set_postfix"):
                    bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if average is not None and epoch + 1 >= cfg.average_from:
                average.add(model)
            if rank == 0:
                per_set = validation_dice(pipeline, val_samples, device)
                val = float(np.mean(list(per_set.values())))
                row = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_dice": val, "val_dice_per_set": per_set,
                       "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.time() - t0, 1)}
                history.append(row)
                if val > best:
                    best = val
                    save_weights(out / "best.pt", model, cfg.image_size)
                save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "best_dice": best,
                             "history": json.dumps(history), "torch_rng": torch.get_rng_state(),
                             "config": {**model.config, "image_size": cfg.image_size},
                             "average": None if average is None else average.state()}, last)
                saved_epoch = epoch + 1
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
        if average is not None and rank == 0 and saved_epoch == cfg.epochs and not (out / "average.pt").is_file():
            best = _finish_average(cfg, average, model, loader, steps_per_epoch, pipeline, val_samples, device,
                                   out, best, history)
    except KeyboardInterrupt as e:
        raise TrainingInterrupted(out, saved_epoch, cfg.epochs) from e
    summary = {"best_val_dice": best, "epochs": cfg.epochs, "out": str(out)}
    if world > 1:
        dist.destroy_process_group()
    return summary
