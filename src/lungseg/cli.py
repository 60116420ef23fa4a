"""The ``lungseg`` command line: train, evaluate, segment, info."""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .errors import LungsegError


class _Group(click.Group):
    """Turns lungseg's own errors into a one-line message and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LungsegError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="lungseg")
def main():
    """Lung segmentation for chest X-rays."""


@main.command()
@click.option("--data", "data", multiple=True, required=True, type=click.Path(), help="Data folder (repeatable).")
@click.option("--out", "out", required=True, type=click.Path(), help="Run folder for checkpoints and logs.")
@click.option("--image-size", default=256, show_default=True, type=int)
@click.option("--encoder", default="resnet18", show_default=True, type=click.Choice(["resnet18", "resnet34", "resnet50"]))
@click.option("--attention", default="sga", show_default=True, type=click.Choice(["sga", "none"]))
@click.option("--epochs", default=40, show_default=True, type=int)
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--lr", default=1e-3, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--workers", default=0, show_default=True, type=int)
@click.option("--device", default="auto", show_default=True)
@click.option("--init", "init", default=None, type=click.Path(), help="Start from these weights (e.g. a lower-resolution run).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last.pt.")
@click.option("--no-augment", is_flag=True)
@click.option("--max-steps-per-epoch", default=None, type=int, help="Cap steps per epoch (smoke tests).")
def train(data, out, image_size, encoder, attention, epochs, batch_size, lr, seed, workers, device, init,
          resume, no_augment, max_steps_per_epoch):
    """Train a lung UNet on the train split of DATA folders, choosing by val Dice."""
    from .train import TrainConfig, train as run

    cfg = TrainConfig(data=list(data), out=out, image_size=image_size, encoder=encoder,
                      attention=None if attention == "none" else attention, epochs=epochs,
                      batch_size=batch_size, lr=lr, seed=seed, workers=workers, device=device,
                      resume=resume, init=init, augment=not no_augment,
                      max_steps_per_epoch=max_steps_per_epoch)
    click.echo(json.dumps(run(cfg, progress=True)))


@main.command()
@click.argument("data_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test", "all"]))
@click.option("--model", default=None, type=click.Path(), help="Weights file (default: the shipped weights).")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_path", default=None, type=click.Path(), help="Write the summary here.")
@click.option("--out", "out_dir", default=None, type=click.Path(), help="Per-image CSV and worst-case overlays.")
def evaluate(data_dirs, split, model, device, json_path, out_dir):
    """Dice, IoU, HD95 and ASSD of a model on the SPLIT of DATA_DIRS."""
    from .evaluate import evaluate as run
    from .io import write_bytes_atomic

    summary = run(data_dirs, split, model, device, out_dir, progress=True)
    text = json.dumps(summary, indent=2)
    if json_path:
        write_bytes_atomic(json_path, text.encode())
    click.echo(text)
