"""The ``lungseg`` command line: train, evaluate, segment, info, export, benchmark."""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

import click

from . import __version__
from .errors import InputError, LungsegError


class _Group(click.Group):
    """Turns lungseg's own errors into a one-line message and exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except LungsegError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(2)

    def format_commands(self, ctx, formatter):
        """List the commands with their whole first sentence (wrapped), not cut at the terminal width."""
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1_000_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


class _EchoHandler(logging.Handler):
    """lungseg's log warnings on stderr, as ``warning: ...`` lines."""

    def emit(self, record):
        click.echo(f"{record.levelname.lower()}: {record.getMessage()}", err=True)


def _show_warnings() -> None:
    logger = logging.getLogger("lungseg")
    if not any(isinstance(h, _EchoHandler) for h in logger.handlers):
        handler = _EchoHandler(logging.WARNING)
        logger.addHandler(handler)


@click.group(cls=_Group, context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="lungseg")
def main():
    """Lung segmentation for chest X-rays."""
    _show_warnings()


_TRAIN_HELP = """Train a lung UNet on the train split of DATA folders, choosing by val Dice.

\b
Data folders (--data, repeatable), in either layout:
  images/<id>.<ext>, masks/<id>.<ext> (optional ignore/<id>.<ext>) and
    index.csv with columns id, split (train/val/test), optionally
    tb_label, finding, extent;
  NLM: CXR_png/<id>.png, ManualMask/leftMask/, ManualMask/rightMask/.
Masks (0/1 or 0/255) have their image's size (checked before training).

\b
Writes into OUT:
  last.pt        resumable checkpoint, every epoch
  best.pt        weights of the best val Dice (for --model)
  metrics.jsonl  one line per epoch
  curves.png     loss and Dice curves
  config.json    the options (--resume reuses them)
An OUT that holds a run is refused unless --resume continues it
(options left out keep the run's values) or --overwrite starts afresh.
"""


@main.command(help=_TRAIN_HELP, short_help="Train a lung UNet on data folders, choosing by val Dice.")
@click.option("--data", "data", multiple=True, type=click.Path(),
              help="Data folder (repeatable); required unless --resume takes it from the run.")
@click.option("--out", "out", required=True, type=click.Path(), help="Run folder for checkpoints and logs.")
@click.option("--image-size", default=256, show_default=True, type=int, help="Network input side in pixels.")
@click.option("--encoder", default="resnet18", show_default=True,
              type=click.Choice(["resnet18", "resnet34", "resnet50", "resnet10-fast"]),
              help="ResNet encoder of the UNet (resnet10-fast: the fast model's narrow one).")
@click.option("--decoder-channels", default=None, metavar="C1,...,C5",
              help="Channels of the five decoder stages, stride 16 to 1 (default 256,128,64,32,16).")
@click.option("--teacher", default=None, type=click.Path(),
              help="Distil from these weights: their probabilities are soft targets beside the masks.")
@click.option("--distill-weight", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Weight of the distillation loss (with --teacher).")
@click.option("--attention", default="sga", show_default=True, type=click.Choice(["sga", "none"]),
              help="sga: semantic-guided attention in the decoder; none: a plain UNet.")
@click.option("--epochs", default=40, show_default=True, type=int, help="Total epochs of the run.")
@click.option("--batch-size", default=8, show_default=True, type=int, help="Images per step.")
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Peak AdamW learning rate (warm-up, then cosine).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of initialisation, batch order and augmentation.")
@click.option("--workers", default=0, show_default=True, type=int, help="DataLoader worker processes (0: in-process).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--init", "init", default=None, type=click.Path(), help="Start from these weights (e.g. a lower-resolution run).")
@click.option("--resume", is_flag=True,
              help="Continue the run in --out from its last.pt, with its saved options (config.json).")
@click.option("--overwrite", is_flag=True, help="Start afresh in an --out that holds a run (its checkpoints and metrics go).")
@click.option("--no-augment", is_flag=True, help="Train without augmentation.")
@click.option("--max-steps-per-epoch", default=None, type=int, help="Cap steps per epoch (smoke tests).")
@click.option("--stop-after-epoch", default=None, type=int, help="End this invocation after that epoch; --resume continues.")
@click.option("--amp", type=click.Choice(["auto", "bf16", "fp16", "none"]), default="auto", show_default=True,
              help="Mixed precision: auto takes bf16 where the CPU (AVX-512 BF16/AMX) or GPU runs it natively.")
@click.option("--extents", default="visible,full", show_default=True,
              help="Output channels, comma-separated: visible (lung field), full (full lung extent).")
@click.option("--set-weight", "set_weights", multiple=True, metavar="FOLDER=W",
              help="Sampling weight of a data folder (by folder name; default 1 each; repeatable).")
@click.option("--samples-per-epoch", default=None, type=click.IntRange(min=1),
              help="Images drawn per epoch when several folders are mixed (default: the train split's size).")
@click.option("--average-from", default=None, type=click.IntRange(min=1),
              help="Weight averaging (SWA): from this epoch on the lr is held and each epoch's weights are "
                   "averaged into average.pt (BatchNorm recomputed); it replaces best.pt if its val Dice is higher.")
def train(data, out, image_size, encoder, decoder_channels, teacher, distill_weight, attention, epochs, batch_size, lr, seed, workers, device, init,
          resume, overwrite, no_augment, max_steps_per_epoch, stop_after_epoch, amp, extents, set_weights,
          samples_per_epoch, average_from):
    from .train import TrainConfig, TrainingInterrupted, resume_config, train as run

    weights = {}
    for item in set_weights:
        name, sep, value = item.partition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name or weights[name] < 0:
            raise InputError(f"--set-weight {item!r}: expected FOLDER=W with W a number >= 0")
    if decoder_channels is not None:
        try:
            decoder_channels = [int(c) for c in decoder_channels.split(",")]
        except ValueError:
            raise InputError(f"--decoder-channels {decoder_channels!r}: expected five integers, e.g. 96,48,32,16,8") from None
    fields = dict(data=list(data), image_size=image_size, encoder=encoder, decoder_channels=decoder_channels,
                  teacher=teacher, distill_weight=distill_weight,
                  extents=[e.strip() for e in extents.split(",") if e.strip()],
                  set_weights=weights or None, samples_per_epoch=samples_per_epoch, amp=amp,
                  attention=None if attention == "none" else attention, epochs=epochs,
                  batch_size=batch_size, lr=lr, seed=seed, workers=workers, device=device,
                  init=init, augment=not no_augment, average_from=average_from,
                  max_steps_per_epoch=max_steps_per_epoch, stop_after_epoch=stop_after_epoch)
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    if resume:  # options not given on the command line come from the run's config.json
        ctx = click.get_current_context()
        field_of = {"no_augment": "augment"}
        given = {field_of.get(n, n): fields[field_of.get(n, n)] for n in ctx.params
                 if field_of.get(n, n) in fields and ctx.get_parameter_source(n) in _GIVEN}
        cfg = resume_config(out, given)
    else:
        if not data:
            raise click.UsageError("--data is required (unless --resume continues a run)")
        cfg = TrainConfig(out=out, overwrite=overwrite, **fields)
    try:
        summary = run(cfg, progress=True)
    except TrainingInterrupted as e:
        if int(os.environ.get("RANK", "0")) == 0:
            if e.saved_epoch:
                click.echo(f"\ninterrupted: {e.out / 'last.pt'} keeps epoch {e.saved_epoch} of {e.epochs}; "
                           f"continue with: lungseg train --out {shlex.quote(str(e.out))} --resume", err=True)
            else:
                click.echo(f"\ninterrupted before the first epoch ended: nothing saved to resume from; "
                           "run the same command again to start over", err=True)
        sys.exit(130)
    click.echo(json.dumps(summary))


_GIVEN = (click.core.ParameterSource.COMMANDLINE, click.core.ParameterSource.ENVIRONMENT)


@main.command()
@click.argument("data_dirs", nargs=-1, required=True, type=click.Path())
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test", "all"]))
@click.option("--model", default=None, type=click.Path(),
              help="default or fast (the shipped models), or a weights file; default: default.")
@click.option("--device", default="auto", show_default=True)
@click.option("--json", "json_path", default=None, type=click.Path(),
              help="Write the whole summary here as JSON (stdout then gets one line per dataset).")
@click.option("--out", "out_dir", default=None, type=click.Path(),
              help="Write per_image.csv and overlays of each dataset's 5 worst cases (worst/).")
@click.option("--extent", type=click.Choice(["visible", "full"]), default=None,
              help="Mask convention to score (default: each folder's own: an 'extent' column in index.csv, "
                   "'extent' in the folder's lungseg.json, or the built-in table of known sets; else visible).")
@click.option("--threshold", default=None, type=click.FloatRange(0, 1, min_open=True, max_open=True),
              help="Probability cut-off of the masks (default 0.5); sweep it on --split val to pick an operating point.")
def evaluate(data_dirs, split, model, device, json_path, out_dir, extent, threshold):
    """Dice, IoU, HD95 and ASSD of a model on the SPLIT of DATA_DIRS."""
    from .evaluate import evaluate as run
    from .io import write_bytes_atomic

    summary = run(data_dirs, split, model, device, out_dir, progress=True, extent=extent, threshold=threshold)
    text = json.dumps(summary, indent=2)
    if not json_path:
        click.echo(text)
        return
    write_bytes_atomic(json_path, text.encode())
    for name, s in summary.items():
        q = s["quality"]
        if name != "pooled":
            click.echo(f"{name} ({s['extent']}, n={s['n']}): Dice {s['dice_mean']:.4f} +- {s['dice_std']:.4f} "
                       f"(min {s['dice_min']:.4f}), IoU {s['iou_mean']:.4f}, HD95 {s['hd95_mean']:.1f} px, "
                       f"ASSD {s['assd_mean']:.2f} px")
        click.echo(f"{name} quality vs Dice (n={q['n']}): Spearman {q['spearman_quality']:.3f} (baseline mean "
                   f"probability in the mask {q['spearman_mean_probability']:.3f}), MAE {q['mae_quality']:.4f}, "
                   f"flagged {q['n_flagged']}")
    click.echo(f"summary written to {json_path}")


@main.command("fit-quality")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True, file_okay=False),
              help="Data folder (repeatable): its train split trains the view check, its val split calibrates.")
@click.option("--model", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Weights file of the segmentation network (frozen).")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Weights file to write: the model with its fitted quality head.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(min=1),
              help="View-check examples drawn per training image (x5 kinds).")
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
def fit_quality(data, model, out, rounds, epochs, seed):
    """Train the view check and calibrate the Dice estimate of a model (lungseg.quality)."""
    from .quality_fit import fit_quality as run

    if Path(out).exists():
        raise InputError(f"{out}: exists; give a new file name (nothing is overwritten)")
    click.echo(json.dumps(run(model, data, out, rounds=rounds, epochs=epochs, seed=seed), indent=2))


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Output folder for masks, overlays and report.csv (created if missing).")
@click.option("--labels", is_flag=True,
              help="Write 0/1/2 labels (1 = patient's right lung, on the image's left) instead of 0/255 masks; "
                   "these look black in an image viewer (see --labels-visible).")
@click.option("--labels-visible", is_flag=True,
              help="Write the labels as 0/128/255 (128 = patient's right lung, 255 = left), visible in a viewer.")
@click.option("--overlay", is_flag=True, help="Also write <name>_overlay.png: the X-ray with the lungs in colour.")
@click.option("--model", default=None, type=click.Path(),
              help="default or fast (the shipped models; fast: about a quarter of the cost), or a weights file "
                   "or exported model (see lungseg.load); default: default.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1),
              help="Images of equal size run through the network together.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(min=0),
              help="Threads decoding the next images while the network runs (0: none).")
@click.option("--allow-input-folder", is_flag=True,
              help="Allow OUT inside (or equal to) an input folder; inputs are never overwritten even then, "
                   "and the outputs an earlier run lists in OUT/report.csv are not read as inputs.")
@click.option("--extent", type=click.Choice(["visible", "full"]), default="visible", show_default=True,
              help="visible: the lung field (heart shadow left out); full: the full lung extent, lung behind the heart included.")
@click.option("--min-quality", default=None, type=click.FloatRange(0, 1),
              help="Give images whose quality (estimated Dice, report column 'quality') is under this the status "
                   "'review' (not a failure; the mask is written); also the cut-off of the low_confidence flag "
                   "(default 0.90).")
@click.option("--backend", type=click.Choice(["onnxruntime", "openvino"]), default=None,
              help="Runtime of an exported .onnx --model: onnxruntime (the default) or openvino (CPU only; "
                   "pip install lungseg[openvino]).")
def segment(inputs, out_dir, labels, labels_visible, overlay, model, device, batch_size, workers, allow_input_folder,
            extent, min_quality, backend):
    """Segment the lungs in X-ray files and folders (PNG, JPEG, TIFF, BMP, DICOM) into OUT.

    Folders are searched recursively. Writes OUT/<name>.png per input, OUT/<name>_overlay.png
    with --overlay, and OUT/report.csv (one row per input, written as each finishes); a bad
    file is reported and skipped. A second run into the same OUT at the same time is
    refused. report.csv has each image's quality (estimated Dice) and flags (reasons not to
    trust the mask); see --min-quality. Exit status 1 when any input failed, 2 for unusable arguments, 130/143 when
    interrupted (Ctrl-C/SIGTERM; the report then lists the inputs not done).
    """
    from . import batch

    batch.check_output_folder(inputs, out_dir, allow_input_folder)
    found = batch.find_inputs(inputs, out_dir)
    if not found.files:
        raise InputError("no images or DICOM files found in " + ", ".join(map(batch.quote_name, inputs)))
    jobs = batch.plan_jobs(found, out_dir, overlay)
    with batch.output_folder(out_dir):
        batch.remove_stale_temps(jobs, out_dir)
        segmenter = _segmenter(model, device, extent, backend)
        _quiet_opencv()
        report = batch.ReportWriter(Path(out_dir) / batch.REPORT_NAME)
        status = 0
        try:
            with batch.sigterm_interrupts():
                batch.segment_files(segmenter, jobs, out_dir, labels="visible" if labels_visible else labels,
                                    overlay=overlay, batch_size=batch_size, workers=workers, progress=None,
                                    report=report, min_quality=min_quality)
        except KeyboardInterrupt as e:
            status = 143 if isinstance(e, batch.Terminated) else 130
        finally:
            report.close()
            status = max(status, _segment_summary(report.rows, len(jobs), found.ignored, out_dir))
    sys.exit(status)


def _segmenter(model, device: str, extent: str, backend: str | None = None):
    """A shipped model (None: default, "fast"), or the one at ``model`` (weights or exported), on ``device``.

    ``backend``: the runtime of an exported ``.onnx`` model (see :func:`lungseg.load`).
    """
    from .api import Segmenter

    from .api import shipped_name

    if shipped_name(model) is not None:
        if backend is not None:
            raise InputError(f"--backend {backend} is for an exported .onnx --model, not the shipped "
                             f"{shipped_name(model)} model")
        return Segmenter(model, device=device, extent=extent)
    from .runtime import load

    return load(model, device=device, extent=extent, backend=backend)


def _segment_summary(rows: list[dict], total: int, ignored, out_dir) -> int:
    """Print what ``lungseg segment`` did (also when cut short); returns 1 if an input failed, else 0."""
    from .batch import REPORT_NAME, quote_name

    done = [r for r in rows if r["status"] in ("ok", "review")]
    review = [r for r in rows if r["status"] == "review"]
    failed = [r for r in rows if r["status"] == "failed"]
    click.echo(f"{len(done)} of {total} images segmented into {quote_name(out_dir)} "
               f"(report: {quote_name(Path(out_dir) / REPORT_NAME)})")
    if review:
        click.echo(f"{len(review)} to review (quality under --min-quality; status 'review' in the report)")
    if ignored:
        click.echo(f"ignored {len(ignored)} file(s) in input folders that are not images or DICOMs "
                   f"by name, e.g. {quote_name(ignored[0])}")
    rest = total - len(done) - len(failed)
    if rest:
        click.echo(f"interrupted: {rest} image(s) not segmented (status 'interrupted' in the report)", err=True)
    if failed:
        click.echo(f"{len(failed)} failed:", err=True)
        for r in failed:
            click.echo(f"  {r['error']}", err=True)
    return 1 if failed else 0


def _quiet_opencv() -> None:
    """Keep OpenCV's own error log off the terminal: every failure is reported by lungseg."""
    import cv2

    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # OpenCV builds without the logging module
        pass


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
def info(as_json):
    """Versions, device, backends and extras available, and the default weights' sha256."""
    from .info import collect, format_info

    facts = collect()
    click.echo(json.dumps(facts, indent=2) if as_json else format_info(facts))


def _size(ctx, param, value):
    """``WxH`` (or one number for a square) -> (height, width)."""
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.lower().split("x")]
        w, h = (parts * 2)[:2] if len(parts) == 1 else parts
        if len(parts) > 2 or w < 1 or h < 1:
            raise ValueError
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected WIDTHxHEIGHT, e.g. 2048x2048") from None
    return h, w


def _format(ctx, param, value):
    from .export.formats import get_format

    try:
        return get_format(value).name
    except LungsegError as e:
        raise click.BadParameter(str(e)) from None


@main.command("export")
@click.option("--format", "fmt", required=True, callback=_format,
              metavar="[torchscript|onnx|trt]", help="Artifact format (tensorrt and engine are aliases of trt).")
@click.option("--model", default=None, type=click.Path(),
              help="default or fast (the shipped models), or a weights file; default: default.")
@click.option("-o", "--output", required=True, type=click.Path(), help="Artifact file (.torchscript/.pt, .onnx, .engine).")
@click.option("--fp16", is_flag=True, help="trt: build a float16 engine (preprocessing stays float32).")
@click.option("--opset", default=18, show_default=True, type=click.IntRange(min=18),
              help="onnx, trt: ONNX opset (torch's exporter writes this graph at 18 or newer).")
@click.option("--device", default="cpu", show_default=True,
              help="torchscript: the device to trace on; the archive runs on that device.")
@click.option("--min-size", default="64x64", show_default=True, callback=_size, help="trt profile: smallest WxH.")
@click.option("--opt-size", default="2048x2048", show_default=True, callback=_size, help="trt profile: tuned WxH.")
@click.option("--max-size", default="5000x5000", show_default=True, callback=_size, help="trt profile: largest WxH.")
@click.option("--max-batch", default=4, show_default=True, type=click.IntRange(min=1), help="trt profile: largest N.")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True, max_open=True))
@click.option("--parity-images", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Folder of X-rays (or a data folder with images/) for the parity check (default: synthetic).")
@click.option("--parity-size", "parity_sizes", multiple=True, callback=lambda ctx, p, v: [_size(ctx, p, s) for s in v],
              help="WxH to check (repeatable; default 512x512, 1000x800 and 4020x4892).")
@click.option("--no-check", is_flag=True, help="Skip running the artifact against the eager model.")
@click.option("--int8", is_flag=True, help="onnx: quantize the network to int8 (faster on CPUs; needs --calibration).")
@click.option("--extent", type=click.Choice(["visible", "full"]), default="visible", show_default=True,
              help="Mask convention of the graph's outputs (recorded in the metadata).")
@click.option("--calibration", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="int8: data folder whose train split calibrates the quantization (repeatable; 16 images each).")
def export_command(fmt, model, output, fp16, opset, device, min_size, opt_size, max_size, max_batch, threshold, extent,
                   parity_images, parity_sizes, no_check, int8, calibration):
    """Export the model with its preprocessing to one self-contained file, then check it against the eager model.

    Checked: probabilities within 1e-4 and mask Dice >= 0.999 (fp16: Dice >= 0.995, int8: >= 0.98) at
    512x512, 1000x800 and 4020x4892, batch 2.
    """
    from .export import export
    from .export.parity import real_images

    images = real_images(parity_images) if parity_images else None
    sizes = [(w, h) for h, w in parity_sizes] or None
    t0 = time.monotonic()

    def progress(message: str) -> None:
        click.echo(f"[{time.monotonic() - t0:6.1f} s] {message}", err=True)

    result = export(model, fmt, output, threshold=threshold, extent=extent, check=not no_check, parity_images=images,
                    progress=progress,
                    parity_sizes=sizes, opset=opset, fp16=fp16, device=device, min_shape=(1, 1, *min_size),
                    opt_shape=(1, 1, *opt_size), max_shape=(max_batch, 1, *max_size), int8=int8,
                    calibration=tuple(calibration))
    click.echo(f"wrote {result.path} ({result.format}, {result.metadata['precision']})")
    for row in result.parity or []:
        click.echo(f"  parity {row['size']:>9} batch {row['batch']}: max |prob diff| {row['max_abs_prob_diff']:.2e}, "
                   f"Dice {row['dice']:.7f}  ok")


def _csv_list(choices):
    def parse(ctx, param, value):
        items = [v.strip().lower() for v in (value or "").split(",") if v.strip()]
        bad = [v for v in items if v not in choices]
        if bad:
            raise click.BadParameter(f"{', '.join(bad)}: choose from {', '.join(choices)}")
        return tuple(items)
    return parse


def _command_line(prefix: str, ctx) -> str:
    """The command as the user could retype it: arguments, then the options given on the command line."""
    parts = [prefix]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if ctx.get_parameter_source(param.name) != click.core.ParameterSource.COMMANDLINE:
            continue
        if isinstance(param, click.Argument):
            parts += [str(v) for v in value]
        elif param.is_flag:
            parts.append(param.opts[-1] if len(param.opts[-1]) > 2 else param.opts[0])
        else:
            text = str(value) if value is not None else ""
            if param.name in ("formats", "devices", "peers", "peer_formats") and isinstance(value, (tuple, list)):
                text = ",".join(value)
            parts += [max(param.opts, key=len), repr(text) if text == "" or " " in text else text]
    return " ".join(parts)


@main.command("benchmark")
@click.argument("data", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Folder for results.csv/.md/.json and plots.")
@click.option("--formats", default=None, help="Comma list of eager, torchscript, onnx, onnx-int8, trt-fp32, trt-fp16, "
              "openvino, cpp-onnxruntime, cpp-libtorch (default: all; --quick: eager,onnx).")
@click.option("--device", "devices", default="cpu", show_default=True, help="Comma list of cpu, cuda.")
@click.option("--peers", default=None, help="Comma list of peer replicas to time (default: all; --quick: none; '' for none).")
@click.option("--peer-formats", default="eager,onnx", show_default=True, help="Formats the peers run in.")
@click.option("--threads", default=None, type=click.IntRange(min=1), help="CPU threads per row (default: the libraries').")
@click.option("--model", default=None, type=click.Path(exists=True, dir_okay=False), help="Weights (default: shipped).")
@click.option("--split", default="test", show_default=True, help="Data split for Dice and IoU.")
@click.option("--max-images", default=None, type=click.IntRange(min=1), help="At most this many images per data folder.")
@click.option("--artifacts", default=None, type=click.Path(file_okay=False), help="Keep exported models here and reuse them.")
@click.option("--seconds", "min_seconds", default=None, type=click.FloatRange(min=0),
              help="Timed seconds per measurement, at least 10 runs (default 3).")
@click.option("--quick", is_flag=True, help="Tiny inputs, few runs, 2 images per folder: checks every path in well under a minute.")
@click.option("--extent", type=click.Choice(["visible", "full"]), default="visible", show_default=True,
              help="Mask convention of lungseg's rows (exported and scored with it; the peers have one).")
@click.option("--models", "own_models", default=None,
              help="lungseg's own models to time: lungseg (the default model, or --model), lungseg_fast "
                   "(the shipped fast model); default both (--quick: lungseg).")
def benchmark_command(data, out, formats, devices, peers, peer_formats, threads, model, split, max_images, artifacts,
                      min_seconds, quick, extent, own_models):
    """Dice, IoU, latency, throughput, memory and FLOP/s of every format and device, and of the peers.

    DATA: data folders whose SPLIT images give Dice and IoU (e.g. ../shared/data/montgomery).
    Each row runs in its own process and ends ok, skipped (with the reason) or failed (with
    the error), so one broken backend never hides the others.
    """
    from .benchmark.targets import comparison_models
    from .benchmark.suite import PEER_FORMATS, QUICK_FORMATS, Config, run
    from .benchmark.targets import DEVICES, FORMATS, LUNGSEG, OWN_MODELS

    own = _csv_list(OWN_MODELS)(None, None, own_models) if own_models is not None else ((LUNGSEG,) if quick else OWN_MODELS)
    fmts = _csv_list(FORMATS)(None, None, formats) if formats is not None else (QUICK_FORMATS if quick else FORMATS)
    models = tuple(m for m in comparison_models() if m != "lungseg_sga")  # lungseg_sga: the shipped row itself
    peer_names = _csv_list(models)(None, None, peers) if peers is not None else (() if quick else models)
    cfg = Config(out=Path(out), data_dirs=[Path(d) for d in data], formats=fmts,
                 devices=_csv_list(DEVICES)(None, None, devices) or ("cpu",), peers=peer_names, models=own,
                 peer_formats=_csv_list(FORMATS)(None, None, peer_formats) or PEER_FORMATS, quick=quick,
                 threads=threads, weights=model, split=split, max_images=max_images,
                 artifacts=Path(artifacts) if artifacts else None, min_seconds=min_seconds,
                 command=_command_line("lungseg benchmark", click.get_current_context()), extent=extent)
    results = run(cfg, log=lambda m: click.echo(m, err=True))
    click.echo((Path(out) / "results.md").read_text())
    failed = [r for r in results["rows"] if r["status"].startswith("failed")]
    if failed:
        click.echo(f"{len(failed)} row(s) failed", err=True)
        sys.exit(1)
