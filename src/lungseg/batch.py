"""Segment X-ray files and folders into an output folder: the engine of ``lungseg segment``.

For each input ``<name>`` it writes ``OUT/<name>.png`` (0/255 mask, or 0/1/2 labels),
optionally ``OUT/<name>_overlay.png``, and at the end ``OUT/report.csv`` with one row per
input (status, lung areas, error). Files found in a folder keep their sub-folder under
OUT. Every file is written atomically; an input is never overwritten; a bad file is
recorded and skipped.
"""

from __future__ import annotations

import csv
import io as _io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, LungsegError
from .io import DICOM_SUFFIXES, IMAGE_SUFFIXES, is_dicom_file, load_image, write_bytes_atomic, write_png_atomic
from .overlay import draw_overlay
from .postprocess import label_lungs, measure

REPORT_NAME = "report.csv"
REPORT_FIELDS = ["file", "status", "mask", "overlay", "width", "height", "right_px", "left_px", "total_px",
                 "right_mm2", "left_mm2", "total_mm2", "right_left_ratio", "error"]


@dataclass(frozen=True)
class Job:
    """One input file and the output name (relative to OUT, no suffix) chosen for it."""

    source: Path
    name: str


@dataclass(frozen=True)
class Inputs:
    """What the INPUT arguments hold: files to segment, and folder files skipped as non-images."""

    files: list[Path]
    roots: list[Path | None]  # the folder each file was found in; None for a file named directly
    ignored: list[Path]


def _is_candidate(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES or (suffix == "" and is_dicom_file(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def find_inputs(inputs, out_dir) -> Inputs:
    """Expand INPUT arguments: files as given; folders searched recursively for images and DICOMs.

    In folders, hidden files and the output folder are skipped, and files that are neither
    images nor DICOMs by name (or DICOM preamble, for files without a suffix) are ignored.
    """
    out = Path(out_dir).resolve()
    files, roots, ignored, seen = [], [], [], set()
    for item in map(Path, inputs):
        if not item.is_dir():
            if item.resolve() not in seen:
                seen.add(item.resolve())
                files.append(item)
                roots.append(None)
            continue
        for path in sorted(item.rglob("*")):
            rel = path.relative_to(item)
            if any(part.startswith(".") for part in rel.parts) or _inside(path.resolve(), out) or not path.is_file():
                continue
            if not _is_candidate(path):
                ignored.append(path)
            elif path.resolve() not in seen:
                seen.add(path.resolve())
                files.append(path)
                roots.append(item)
    return Inputs(files, roots, ignored)


def check_output_folder(inputs, out_dir, allow_input_folder: bool = False) -> None:
    """Refuse an output folder inside an input folder, or equal to an input file's folder."""
    out = Path(out_dir).resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out_dir}: output path exists and is not a folder")
    if allow_input_folder:
        return
    for item in map(Path, inputs):
        if item.is_dir() and _inside(out, item.resolve()):
            raise InputError(f"{out_dir}: output folder is inside the input folder {item}; choose another "
                             "folder or pass --allow-input-folder")
        if not item.is_dir() and out == item.resolve().parent:
            raise InputError(f"{out_dir}: output folder is the folder of the input {item}; choose another "
                             "folder or pass --allow-input-folder")


def plan_jobs(found: Inputs, out_dir, overlay: bool = False) -> list[Job]:
    """Give each input a distinct output name that never lands on an input file.

    The name is the file's stem (with its sub-folder for files found in a folder). Clashes
    (``a.png`` and ``a.dcm``; two folders both holding ``a.png``; an output that would be an
    input) get the input's suffix, then a counter: ``a_dcm``, ``a_2``.
    """
    out = Path(out_dir).resolve()
    protected = {str(p.resolve()).lower() for p in found.files} | {str(out / REPORT_NAME).lower()}
    taken: set[str] = set()

    def outputs(name: str) -> list[str]:
        return [name, name + "_overlay"] if overlay else [name]

    def free(name: str) -> bool:
        return not any(n.lower() in taken or str(out / f"{n}.png").lower() in protected for n in outputs(name))

    jobs = []
    for path, root in zip(found.files, found.roots):
        rel = path.relative_to(root) if root is not None else Path(path.name)
        base = rel.with_suffix("").as_posix()
        name = base
        if not free(name) and path.suffix:
            name = base = f"{base}_{path.suffix[1:].lower()}"
        k = 2
        while not free(name):
            name, k = f"{base}_{k}", k + 1
        taken.update(n.lower() for n in outputs(name))
        jobs.append(Job(path, name))
    return jobs


def _load(job: Job):
    try:
        return load_image(job.source)
    except Exception as e:  # recorded in the report; one bad file never stops the batch
        return e


def _error_text(e: BaseException, source: Path) -> str:
    """The error as one line that names the file."""
    text = str(e) if isinstance(e, LungsegError) else f"{type(e).__name__}: {e}"
    text = " ".join(text.split())
    return text if str(source) in text else f"{source}: {text}"


def _write_outputs(job: Job, loaded, mask: np.ndarray, out: Path, labels: bool, overlay: bool) -> dict:
    lungs = label_lungs(mask)
    mask_path = out / f"{job.name}.png"
    write_png_atomic(mask_path, lungs if labels else (mask > 0).astype(np.uint8) * 255)
    row = {"mask": mask_path.relative_to(out).as_posix()}
    if overlay:
        overlay_path = out / f"{job.name}_overlay.png"
        write_png_atomic(overlay_path, draw_overlay(loaded.pixels, lungs))
        row["overlay"] = overlay_path.relative_to(out).as_posix()
    areas = measure(lungs, loaded.spacing)
    row.update({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in areas.items()})
    return row


def segment_files(segmenter, jobs: list[Job], out_dir, *, labels: bool = False, overlay: bool = False,
                  batch_size: int = 4, workers: int = 2, progress: bool | None = False) -> list[dict]:
    """Segment ``jobs`` with ``segmenter`` into ``out_dir``; returns and writes the report rows.

    ``workers`` threads decode the next batch while the current one runs; ``progress``
    shows a tqdm bar (None: only on a terminal). ``report.csv`` is written at the end,
    also when interrupted.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    batch_size = max(1, int(batch_size))
    chunks = [jobs[i:i + batch_size] for i in range(0, len(jobs), batch_size)]
    rows: list[dict] = []
    pool = ThreadPoolExecutor(max_workers=workers) if workers > 0 else None

    def start(chunk):
        return [pool.submit(_load, j) for j in chunk] if pool else chunk

    def finish(started):
        return [f.result() for f in started] if pool else [_load(j) for j in started]

    bar = tqdm(total=len(jobs), unit="image", disable=(not progress) if progress is not None else None)
    try:
        pending = start(chunks[0]) if chunks else None
        for k, chunk in enumerate(chunks):
            loaded = finish(pending)
            pending = start(chunks[k + 1]) if k + 1 < len(chunks) else None
            rows += _segment_chunk(segmenter, chunk, loaded, out, labels, overlay)
            bar.update(len(chunk))
    finally:
        bar.close()
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
        write_report(out / REPORT_NAME, rows)
    return rows


def _segment_chunk(segmenter, chunk, loaded, out: Path, labels: bool, overlay: bool) -> list[dict]:
    rows = [{"file": str(j.source)} for j in chunk]
    ok = [i for i, x in enumerate(loaded) if not isinstance(x, BaseException)]
    for i, x in enumerate(loaded):
        if isinstance(x, BaseException):
            rows[i].update(status="failed", error=_error_text(x, chunk[i].source))
    try:
        masks = segmenter.segment_many([loaded[i].pixels for i in ok], batch_size=max(1, len(ok)))
    except Exception as e:  # e.g. out of memory on the device: fail this batch, go on with the next
        for i in ok:
            rows[i].update(status="failed", error=_error_text(e, chunk[i].source))
        return rows
    for i, mask in zip(ok, masks):
        h, w = mask.shape
        try:
            rows[i].update(status="ok", width=w, height=h, **_write_outputs(chunk[i], loaded[i], mask, out,
                                                                             labels, overlay))
        except Exception as e:  # disk full, permissions
            rows[i].update(status="failed", error=_error_text(e, chunk[i].source))
    return rows


def write_report(path, rows: list[dict]) -> None:
    """Write the rows as CSV (``REPORT_FIELDS`` columns), atomically."""
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, REPORT_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, buf.getvalue().encode())
