"""Segment X-ray files and folders into an output folder: the engine of ``lungseg segment``.

For each input ``<name>`` it writes ``OUT/<name>.png`` (0/255 mask; or 0/1/2 labels, which
look black in an image viewer; or the same labels as 0/128/255), optionally
``OUT/<name>_overlay.png``, and ``OUT/report.csv`` with one row per input (status, lung
areas, error), written row by row as images finish. Files found in a folder keep their
sub-folder under OUT. Every image file is written atomically; an input is never
overwritten; a bad file is recorded and skipped. While a batch runs it holds an advisory
lock on OUT (``OUT/.lungseg.lock``), so a second batch into the same folder is refused.
"""

from __future__ import annotations

import csv
import errno
import io as _io
import os
import re
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError, LungsegError
from .io import (DICOM_SUFFIXES, IMAGE_SUFFIXES, is_dicom_file, load_image, remove_stale_temp_files,
                 write_bytes_atomic, write_png_atomic)
from .overlay import draw_overlay
from .postprocess import measure
from .quality import MIN_QUALITY

try:
    import fcntl
except ImportError:  # not on Windows: no lock there
    fcntl = None

REPORT_NAME = "report.csv"
LOCK_NAME = ".lungseg.lock"
VISIBLE_LABELS = np.array([0, 128, 255], np.uint8)  # --labels-visible: 0/1/2 labels as grey levels a viewer shows
REPORT_FIELDS = ["file", "status", "mask", "overlay", "width", "height", "right_px", "left_px", "total_px",
                 "right_mm2", "left_mm2", "total_mm2", "right_left_ratio", "quality", "flags", "error"]


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


def quote_name(path) -> str:
    """A file name as printed in messages: as is when plain, else quoted like ``repr`` (newlines escaped)."""
    text = str(path)
    plain = text.isprintable() and text == text.strip() and not any(c in text for c in "'\"\\")
    return text if plain else repr(text)


def _real(path) -> Path:
    """The absolute path with symlinks resolved as far as they go (never raises on a symlink loop)."""
    return Path(os.path.realpath(path))


def _is_candidate(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or suffix in DICOM_SUFFIXES or (suffix == "" and is_dicom_file(path))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _previous_outputs(out: Path) -> set[Path]:
    """Real paths of the masks and overlays that ``OUT/report.csv`` lists: an earlier run's outputs."""
    try:
        with open(out / REPORT_NAME, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, csv.Error, UnicodeDecodeError):
        return set()
    return {_real(out / r[k]) for r in rows for k in ("mask", "overlay") if r.get(k)}


def _skip_in_folder(root: Path, out: Path):
    """Which real paths a search of ``root`` leaves out: OUT when it lies inside ``root``, else an
    earlier run's outputs (OUT is ``root`` itself or above it, with ``--allow-input-folder``)."""
    if out != root and _inside(out, root):
        return lambda real: _inside(real, out)
    previous = _previous_outputs(out) if _inside(root, out) else set()
    return lambda real: real in previous


def _file_entry(path: Path) -> bool:
    """A file, or a symlink that leads to no folder (a loop, a dangling link: reported when read)."""
    return path.is_file() or (path.is_symlink() and not path.is_dir())


def find_inputs(inputs, out_dir) -> Inputs:
    """Expand INPUT arguments: files as given; folders searched recursively for images and DICOMs.

    In folders, hidden files and the output folder (or, when OUT is the input folder, the
    outputs its ``report.csv`` lists) are skipped, and files that are neither images nor
    DICOMs by name (or DICOM preamble, for files without a suffix) are ignored. Symlink loops
    and dangling links are kept: they fail, one row each, when read.
    """
    out = _real(out_dir)
    files, roots, ignored, seen = [], [], [], set()

    def add(path: Path, root: Path | None) -> None:
        real = _real(path)
        if real not in seen:
            seen.add(real)
            files.append(path)
            roots.append(root)

    for item in map(Path, inputs):
        if not item.is_dir():
            add(item, None)
            continue
        skip = _skip_in_folder(_real(item), out)
        for path in sorted(item.rglob("*")):
            rel = path.relative_to(item)
            if any(part.startswith(".") for part in rel.parts) or not _file_entry(path) or skip(_real(path)):
                continue
            if _is_candidate(path):
                add(path, item)
            else:
                ignored.append(path)
    return Inputs(files, roots, ignored)


def check_output_folder(inputs, out_dir, allow_input_folder: bool = False) -> None:
    """Refuse an output folder inside an input folder, or equal to an input file's folder."""
    out = _real(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"{quote_name(out_dir)}: output path exists and is not a folder")
    if allow_input_folder:
        return
    for item in map(Path, inputs):
        if item.is_dir() and _inside(out, _real(item)):
            raise InputError(f"{quote_name(out_dir)}: output folder is inside the input folder {quote_name(item)}; "
                             "choose another folder or pass --allow-input-folder")
        if not item.is_dir() and out == _real(item).parent:
            raise InputError(f"{quote_name(out_dir)}: output folder is the folder of the input {quote_name(item)}; "
                             "choose another folder or pass --allow-input-folder")


def _relative_name(path: Path, root: Path | None) -> Path:
    """The output path of an input relative to OUT, before clashes are resolved (no suffix)."""
    rel = path.relative_to(root) if root is not None else Path(path.name)
    return rel.with_suffix("")


def plan_jobs(found: Inputs, out_dir, overlay: bool = False) -> list[Job]:
    """Give each input a distinct output name that never lands on an input file or a folder.

    The name is the file's stem (with its sub-folder for files found in a folder). Clashes
    (``a.png`` and ``a.dcm``; two folders both holding ``a.png``; an output that would be an
    input; ``a.jpg`` beside a folder ``a.png/``, whose files go to ``OUT/a.png/``) get the
    input's suffix, then a counter: ``a_dcm``, ``a_2``. Sub-folders keep their names, so the
    folders used are reserved before any file name is chosen.
    """
    out = _real(out_dir)
    protected = {str(_real(p)).lower() for p in found.files}
    protected |= {str(out / REPORT_NAME).lower(), str(out / LOCK_NAME).lower()}
    stems = [_relative_name(p, r) for p, r in zip(found.files, found.roots)]
    folders = {parent.as_posix().lower() for stem in stems for parent in stem.parents if parent != Path(".")}
    taken: set[str] = set()

    def outputs(name: str) -> list[str]:
        return [f"{name}.png", f"{name}_overlay.png"] if overlay else [f"{name}.png"]

    def free(name: str) -> bool:
        return not any(o.lower() in taken or o.lower() in folders or str(out / o).lower() in protected
                       or (out / o).is_dir() for o in outputs(name))

    jobs = []
    for path, stem in zip(found.files, stems):
        name = base = stem.as_posix()
        if not free(name) and path.suffix:
            name = base = f"{base}_{path.suffix[1:].lower()}"
        k = 2
        while not free(name):
            name, k = f"{base}_{k}", k + 1
        taken.update(o.lower() for o in outputs(name))
        jobs.append(Job(path, name))
    return jobs


def output_folders(jobs: list[Job], out_dir) -> list[Path]:
    """OUT and every sub-folder of it that the jobs write into."""
    out = Path(out_dir)
    return sorted({out} | {(out / j.name).parent for j in jobs})


def remove_stale_temps(jobs: list[Job], out_dir) -> list[Path]:
    """Delete the temporary files a killed run left in the folders these jobs write into."""
    return [p for folder in output_folders(jobs, out_dir) for p in remove_stale_temp_files(folder)]


def _make_folder(out: Path) -> None:
    """Create OUT (and its parents), or say in one line why it cannot be."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise InputError(f"{quote_name(out)}: output path exists and is not a folder") from None
    except NotADirectoryError:
        raise InputError(f"{quote_name(out)}: cannot create the output folder: a parent of it is a file") from None
    except OSError as e:
        raise InputError(f"{quote_name(out)}: cannot create the output folder ({e.strerror})") from None
    if not out.is_dir():
        raise InputError(f"{quote_name(out)}: output path exists and is not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"{quote_name(out)}: the output folder is not writable")


def _lock_holder(fd: int) -> str:
    """'pid N' from a lock file's content, or '' when it holds none."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


def _take_lock(path: Path) -> int:
    """An open descriptor of ``path`` holding its exclusive flock; InputError when another process holds it.

    The file may be unlinked by the holder that releases it; a lock taken on such an
    unlinked file is dropped and taken again on the file now at ``path``.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            raise InputError(f"{quote_name(path.parent)}: cannot write into the output folder ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _lock_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise InputError(f"{quote_name(path)}: cannot lock the output folder ({e.strerror})") from None
            raise InputError(f"{quote_name(path.parent)}: another lungseg segment{holder} is writing into this "
                             "output folder; wait for it to finish or choose another -o") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)


@contextmanager
def output_folder(out_dir):
    """Create OUT, check that it is writable and hold its advisory lock (``OUT/.lungseg.lock``) meanwhile.

    Raises :class:`InputError` when OUT cannot be created or written, or another process
    holds the lock. The lock file is removed on the way out.
    """
    out = Path(out_dir)
    _make_folder(out)
    if fcntl is None:
        yield out
        return
    path = out / LOCK_NAME
    fd = _take_lock(path)
    try:
        yield out
    finally:
        try:
            os.unlink(path)  # while still locked: a waiting process then locks the new file, not this one
        except OSError:
            pass
        os.close(fd)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt so the report gets finished."""


_signalled: list[type] = []  # the interruptions signalled while sigterm_interrupts() is active


def raise_if_signalled() -> None:
    """Raise the interruption a signal asked for whose own raise was lost.

    A handler's exception is swallowed when the signal lands while Python runs a finaliser
    (``__del__``, a weakref callback); checking after each image keeps Ctrl-C and SIGTERM
    from being missed then.
    """
    if _signalled:
        raise _signalled[0]()


@contextmanager
def sigterm_interrupts():
    """While active (in the main thread), SIGTERM raises :class:`Terminated` (a second one is
    ignored) and Ctrl-C raises KeyboardInterrupt, each also noted for :func:`raise_if_signalled`.
    A SIGINT handler of the caller's own is left in place."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_term(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _signalled.append(Terminated)
        raise Terminated()

    def on_int(signum, frame):
        _signalled.append(KeyboardInterrupt)
        raise KeyboardInterrupt()

    previous = signal.signal(signal.SIGTERM, on_term)
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_int)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is signal.default_int_handler:
            signal.signal(signal.SIGINT, previous_int)
        _signalled.clear()


def _check_link(path: Path) -> None:
    """Refuse a symlink loop or a dangling symlink with a clear message (before any reader sees it)."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InputError(f"{path}: symlink loop (too many levels of symbolic links)") from None
        if path.is_symlink():
            raise InputError(f"{path}: dangling symbolic link (to {os.readlink(path)})") from None


def _load(job: Job):
    try:
        _check_link(job.source)
        return load_image(job.source)
    except Exception as e:  # recorded in the report; one bad file never stops the batch
        return e


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def _error_text(e: BaseException, source: Path) -> str:
    """The error as one line that names the file once (quoted where its name holds odd characters)."""
    text = str(e) if isinstance(e, LungsegError) else f"{type(e).__name__}: {e}"
    raw = str(source)
    pieces = text.split(raw) if raw and raw in text else ["", ": " + text]
    return quote_name(source).join(_one_line(piece) for piece in pieces).strip()


class ReportWriter:
    """``report.csv`` written as images finish: the header at once, then one flushed line per row.

    Opening it removes a report left by an earlier run (a link is removed, never written
    through) and starts a new file. ``rows`` holds the rows written.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.rows: list[dict] = []
        try:
            self.path.unlink(missing_ok=True)
            self._file = open(self.path, "x", newline="", encoding="utf-8")
        except OSError as e:
            raise InputError(f"{quote_name(self.path)}: cannot write the report ({e.strerror or e})") from None
        self._write({f: f for f in REPORT_FIELDS})

    def _write(self, row: dict) -> None:
        buf = _io.StringIO()
        csv.DictWriter(buf, REPORT_FIELDS, extrasaction="ignore", lineterminator="\n").writerow(row)
        self._file.write(buf.getvalue())  # one write per row: an interrupt never leaves half a row
        self._file.flush()

    def add(self, row: dict) -> None:
        """Append one row and flush it to the file."""
        self._write(row)
        self.rows.append(row)

    def close(self) -> None:
        if not self._file.closed:
            os.fsync(self._file.fileno())
            self._file.close()


def _mask_image(lungs: np.ndarray, mask: np.ndarray, labels: str | None) -> np.ndarray:
    """What the mask file holds: 0/255 (``labels`` None), 0/1/2 (``"labels"``) or 0/128/255 (``"visible"``)."""
    if labels is None:
        return (mask > 0).astype(np.uint8) * 255
    return VISIBLE_LABELS[lungs] if labels == "visible" else lungs


def _write_outputs(job: Job, loaded, result, out: Path, labels: str | None, overlay: bool) -> dict:
    lungs, mask = result.labels, result.mask
    areas = measure(lungs, loaded.spacing, labels=True)
    mask_path = out / f"{job.name}.png"
    write_png_atomic(mask_path, _mask_image(lungs, mask, labels))
    row = {"mask": mask_path.relative_to(out).as_posix()}
    if overlay:
        overlay_path = out / f"{job.name}_overlay.png"
        write_png_atomic(overlay_path, draw_overlay(loaded.pixels, lungs))
        row["overlay"] = overlay_path.relative_to(out).as_posix()
    row.update({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in areas.items()})
    row.update(quality=f"{result.quality:.4f}", flags=" ".join(result.flags))
    return row


def _labels_mode(labels) -> str | None:
    """``labels`` as given (False/None, True, "labels" or "visible") -> None, "labels" or "visible"."""
    if labels in (None, False):
        return None
    if labels is True or labels == "labels":
        return "labels"
    if labels == "visible":
        return "visible"
    raise ValueError(f"labels={labels!r}: expected False, True, 'labels' or 'visible'")


def segment_files(segmenter, jobs: list[Job], out_dir, *, labels: bool | str = False, overlay: bool = False,
                  batch_size: int = 4, workers: int = 2, progress: bool | None = False,
                  report: ReportWriter | None = None, min_quality: float | None = None) -> list[dict]:
    """Segment ``jobs`` with ``segmenter`` into ``out_dir``; returns the report rows.

    ``labels``: False for 0/255 masks, True for 0/1/2 labels, ``"visible"`` for labels as
    0/128/255. ``workers`` threads decode the next batch while the current one runs;
    ``progress`` shows a tqdm bar (None: only on a terminal). Rows go to ``report`` (by
    default a new ``OUT/report.csv``) as each image finishes. When interrupted (Ctrl-C,
    or SIGTERM inside :func:`sigterm_interrupts`), the inputs not done get an
    ``interrupted`` row, so the report has one row per input, and the interrupt propagates.
    Every row written has the image's ``quality`` and ``flags`` (:mod:`lungseg.quality`);
    with ``min_quality``, an image whose quality is under it (or unknown) gets the status
    ``review`` instead of ``ok`` (its mask is written all the same).
    """
    from tqdm import tqdm

    mode = _labels_mode(labels)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    own_report = report is None
    report = ReportWriter(out / REPORT_NAME) if own_report else report
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
            for row in _segment_chunk(segmenter, chunk, loaded, out, mode, overlay, min_quality):
                report.add(row)
                rows.append(row)
                bar.update(1)
                raise_if_signalled()
    except KeyboardInterrupt as e:
        for job in jobs[len(rows):]:
            row = {"file": str(job.source), "status": "interrupted", "error": _error_text(_interruption(e), job.source)}
            report.add(row)
            rows.append(row)
        raise
    finally:
        bar.close()
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
        if own_report:
            report.close()
    return rows


def _interruption(e: KeyboardInterrupt) -> InputError:
    return InputError(f"not segmented: interrupted by {'SIGTERM' if isinstance(e, Terminated) else 'SIGINT'}")


def _segment_chunk(segmenter, chunk, loaded, out: Path, labels: str | None, overlay: bool,
                   min_quality: float | None = None):
    """Yield the report row of each job of the chunk, in order, as it finishes."""
    ok = [i for i, x in enumerate(loaded) if not isinstance(x, BaseException)]
    results: dict = {}
    error = None
    cutoff = MIN_QUALITY if min_quality is None else float(min_quality)
    try:
        results = dict(zip(ok, segmenter.analyze_many([loaded[i].pixels for i in ok], batch_size=max(1, len(ok)),
                                                      min_quality=cutoff)))
    except Exception as e:  # e.g. out of memory on the device: fail this batch, go on with the next
        error = e
    for i, job in enumerate(chunk):
        row = {"file": str(job.source)}
        problem = loaded[i] if isinstance(loaded[i], BaseException) else error
        if problem is None:
            try:
                res = results[i]
                h, w = res.mask.shape
                review = min_quality is not None and not res.quality >= cutoff
                row.update(status="review" if review else "ok", width=w, height=h,
                           **_write_outputs(job, loaded[i], res, out, labels, overlay))
            except Exception as e:  # disk full, permissions
                problem = e
        if problem is not None:
            row = {"file": str(job.source), "status": "failed", "error": _error_text(problem, job.source)}
        yield row


def write_report(path, rows: list[dict]) -> None:
    """Write the rows as CSV (``REPORT_FIELDS`` columns), atomically."""
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, REPORT_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_bytes_atomic(path, buf.getvalue().encode())
