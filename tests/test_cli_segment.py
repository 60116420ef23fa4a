"""`lungseg segment` and `lungseg info`: outputs, report, bad files, safety of inputs, exit status."""

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from conftest import synthetic_xray
from lungseg.cli import main


def _report(out):
    with open(out / "report.csv", newline="") as f:
        return {r["file"]: r for r in csv.DictReader(f)}


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def folder(tmp_path):
    """Good X-rays (8-bit, 16-bit, a TIFF in a sub-folder), a truncated PNG, a text file, a README."""
    root = tmp_path / "xrays"
    (root / "sub").mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(root / f"case{i}.png"), synthetic_xray(64, 56, seed=i)[0])
    cv2.imwrite(str(root / "wide16.png"), synthetic_xray(48, 80, seed=5, dtype=np.uint16)[0])
    cv2.imwrite(str(root / "sub" / "deep.tif"), synthetic_xray(60, 60, seed=6, dtype=np.uint16)[0])
    data = (root / "case0.png").read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "notes.png").write_text("this is a text file, not an X-ray\n")
    (root / "README.txt").write_text("ignored: not an image by name\n")
    return root


GOOD = {"case0.png": "case0.png", "case1.png": "case1.png", "wide16.png": "wide16.png", "sub/deep.tif": "sub/deep.png"}


def test_folder_with_good_and_bad_files(folder, tmp_path, tiny_weights):
    out = tmp_path / "out"
    result = _run("segment", folder, "-o", out, "--model", tiny_weights, "--batch-size", 3)
    assert result.exit_code == 1
    for src, dst in GOOD.items():
        mask = cv2.imread(str(out / dst), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(str(folder / src), cv2.IMREAD_UNCHANGED)
        assert mask.shape == image.shape and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
    rows = _report(out)
    assert len(rows) == 6
    assert {r["status"] for f, r in rows.items() if not f.endswith(("truncated.png", "notes.png"))} == {"ok"}
    bad = {f: r for f, r in rows.items() if r["status"] == "failed"}
    assert sorted(p.split("/")[-1] for p in bad) == ["notes.png", "truncated.png"]
    for f, r in bad.items():
        assert f in r["error"] and r["error"] in result.output  # named, with the reason, on screen too
    assert "truncated" in rows[str(folder / "truncated.png")]["error"]
    assert "not an image" in rows[str(folder / "notes.png")]["error"]
    assert "4 of 6 images segmented" in result.output and "2 failed" in result.output
    assert "ignored 1 file" in result.output
    ok = rows[str(folder / "case0.png")]
    assert (int(ok["width"]), int(ok["height"])) == (56, 64)
    assert int(ok["total_px"]) == int(ok["right_px"]) + int(ok["left_px"])
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))


def test_all_good_exits_zero_labels_and_overlays(folder, tmp_path, tiny_weights):
    for bad in ("truncated.png", "notes.png"):
        (folder / bad).unlink()
    out = tmp_path / "out"
    result = _run("segment", folder, "-o", out, "--model", tiny_weights, "--labels", "--overlay", "--workers", 0)
    assert result.exit_code == 0, result.output
    for src, dst in GOOD.items():
        labels = cv2.imread(str(out / dst), cv2.IMREAD_UNCHANGED)
        assert set(np.unique(labels)) <= {0, 1, 2}
        overlay = cv2.imread(str(out / dst.replace(".png", "_overlay.png")), cv2.IMREAD_UNCHANGED)
        assert overlay.shape == labels.shape + (3,)
    assert all(r["overlay"] for r in _report(out).values())


def test_batching_and_workers_do_not_change_the_masks(folder, tmp_path, tiny_weights):
    outs = []
    for i, opts in enumerate((["--batch-size", 1, "--workers", 0], ["--batch-size", 4, "--workers", 2])):
        outs.append(tmp_path / f"out{i}")
        _run("segment", folder, "-o", outs[-1], "--model", tiny_weights, *opts)
    for dst in GOOD.values():
        a, b = (cv2.imread(str(o / dst), cv2.IMREAD_UNCHANGED) for o in outs)
        assert np.array_equal(a, b), dst


def test_refuses_to_write_into_an_input_folder(folder, tiny_weights):
    result = _run("segment", folder, "-o", folder / "masks", "--model", tiny_weights)
    assert result.exit_code == 2 and "inside the input folder" in result.output
    assert not (folder / "masks").exists()
    result = _run("segment", folder / "case0.png", "-o", folder, "--model", tiny_weights)
    assert result.exit_code == 2 and "is the folder of the input" in result.output
    assert _run("segment", folder / "case0.png", "-o", folder / "masks", "--model", tiny_weights).exit_code == 0


def test_never_overwrites_an_input_even_when_allowed_into_its_folder(tmp_path, tiny_weights):
    image = synthetic_xray(40, 40)[0]
    cv2.imwrite(str(tmp_path / "x.png"), image)
    before = (tmp_path / "x.png").read_bytes()
    result = _run("segment", tmp_path / "x.png", "-o", tmp_path, "--model", tiny_weights, "--allow-input-folder")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "x.png").read_bytes() == before
    assert _report(tmp_path)[str(tmp_path / "x.png")]["mask"] == "x_png.png"
    assert cv2.imread(str(tmp_path / "x_png.png"), cv2.IMREAD_UNCHANGED).shape == image.shape


def test_same_names_from_two_folders_get_distinct_outputs(tmp_path, tiny_weights):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        cv2.imwrite(str(tmp_path / d / "x.png"), synthetic_xray(40, 40, seed=ord(d))[0])
    out = tmp_path / "out"
    assert _run("segment", tmp_path / "a", tmp_path / "b", "-o", out, "--model", tiny_weights).exit_code == 0
    masks = sorted(r["mask"] for r in _report(out).values())
    assert len(set(masks)) == 2 and all((out / m).is_file() for m in masks)


def test_dicom_input_reports_areas_in_mm2(tmp_path, tiny_weights):
    pytest.importorskip("pydicom")
    from dicom_files import write_dicom

    (tmp_path / "in").mkdir()
    write_dicom(tmp_path / "in" / "IM0001", synthetic_xray(48, 40, dtype=np.uint16)[0] >> 4, bits_stored=12,
                PixelSpacing=[0.5, 0.5])
    out = tmp_path / "out"
    assert _run("segment", tmp_path / "in", "-o", out, "--model", tiny_weights).exit_code == 0
    row = next(iter(_report(out).values()))
    assert row["mask"] == "IM0001.png"
    assert float(row["total_mm2"]) == pytest.approx(int(row["total_px"]) * 0.25)


def test_exported_model_runs_through_the_same_command(folder, tmp_path, exported):
    pytest.importorskip("onnxruntime")
    import lungseg

    model = exported("onnx").path
    out = tmp_path / "out"
    assert _run("segment", folder, "-o", out, "--model", model, "--labels").exit_code == 1  # the two bad files
    seg = lungseg.load(model, device="cpu")
    for src, dst in GOOD.items():
        assert np.array_equal(cv2.imread(str(out / dst), cv2.IMREAD_UNCHANGED), seg.segment(folder / src, labels=True))


def test_no_images_is_an_error(tmp_path, tiny_weights):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("x")
    result = _run("segment", tmp_path / "in", "-o", tmp_path / "out", "--model", tiny_weights)
    assert result.exit_code == 2 and "no images or DICOM files found" in result.output


def test_python_dash_m_works_like_the_console_script(tmp_path, tiny_weights):
    cv2.imwrite(str(tmp_path / "x.png"), synthetic_xray(40, 40)[0])
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "lungseg", "segment", str(tmp_path / "x.png"), "-o", str(out),
                           "--model", str(tiny_weights)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "x.png").is_file() and (out / "report.csv").is_file()


def test_info_lists_versions_backends_and_weights(tmp_path, monkeypatch, tiny_weights):
    import shutil

    import torch

    import lungseg
    from lungseg import api
    from lungseg.checkpoint import sha256_file

    result = _run("info", "--json")
    assert result.exit_code == 0
    facts = json.loads(result.output)
    assert facts["lungseg"] == lungseg.__version__ and facts["torch"] == torch.__version__
    assert {"torch", "onnxruntime", "tensorrt"} <= set(facts["backends"]) and "dicom" in facts["extras"]
    pt = tmp_path / "default.pt"
    shutil.copy(tiny_weights, pt)
    (tmp_path / "default.json").write_text(json.dumps({"sha256": sha256_file(pt)}))
    monkeypatch.setattr(api, "DEFAULT_WEIGHTS", pt)
    monkeypatch.setattr(api, "DEFAULT_CARD", tmp_path / "default.json")
    text = _run("info").output
    assert sha256_file(pt) in text and "verified" in text and f"lungseg            {lungseg.__version__}" in text


# ---- hardening (issue 12) -------------------------------------------------------------------

def _write_good(path, seed=0, size=(40, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), synthetic_xray(*size, seed=seed)[0])
    return path


def test_symlink_loops_are_one_failed_row_each_and_the_batch_goes_on(tmp_path, tiny_weights):
    root = tmp_path / "in"
    _write_good(root / "good.png")
    (root / "loop.png").symlink_to("loop.png")
    (root / "ping.png").symlink_to("pong.png")
    (root / "pong.png").symlink_to("ping.png")
    out = tmp_path / "out"
    result = _run("segment", root, "-o", out, "--model", tiny_weights)
    assert result.exit_code == 1, result.output
    rows = _report(out)
    assert len(rows) == 4 and rows[str(root / "good.png")]["status"] == "ok"
    for name in ("loop.png", "ping.png", "pong.png"):
        assert rows[str(root / name)]["status"] == "failed" and "symlink loop" in rows[str(root / name)]["error"]
    named = _run("segment", root / "loop.png", root / "good.png", "-o", tmp_path / "out2", "--model", tiny_weights)
    assert named.exit_code == 1 and "symlink loop" in named.output
    assert [r["status"] for r in _report(tmp_path / "out2").values()] == ["failed", "ok"]


def test_unusable_output_folder_is_refused_up_front(tmp_path, tiny_weights, monkeypatch):
    import lungseg.batch as batch

    image = _write_good(tmp_path / "in" / "x.png")
    (tmp_path / "file").write_text("a file, not a folder")
    for out in (tmp_path / "file" / "out", tmp_path / "file"):
        result = _run("segment", image, "-o", out, "--model", tiny_weights)
        assert result.exit_code == 2 and result.output.startswith("error: ") and "Traceback" not in result.output
        assert "a parent of it is a file" in result.output or "not a folder" in result.output
    real_access = batch.os.access

    def access(path, mode, **kw):  # a read-only folder, as a user other than root sees it
        return False if str(path).endswith("ro") and mode & batch.os.W_OK else real_access(path, mode, **kw)

    monkeypatch.setattr(batch.os, "access", access)
    (tmp_path / "ro").mkdir()
    result = _run("segment", image, "-o", tmp_path / "ro", "--model", tiny_weights)
    assert result.exit_code == 2 and "not writable" in result.output and not list((tmp_path / "ro").iterdir())


def test_read_only_output_folder_is_refused(tmp_path, tiny_weights):
    import os

    image = _write_good(tmp_path / "in" / "x.png")
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        if os.access(out, os.W_OK):
            pytest.skip("running as a user who can write into a read-only folder (root)")
        result = _run("segment", image, "-o", out, "--model", tiny_weights)
        assert result.exit_code == 2 and "not writable" in result.output
    finally:
        out.chmod(0o755)


def _interrupt_on(monkeypatch, call: int, signum, seen: list):
    """Make the ``call``-th image written send ``signum`` to this process, after noting report.csv so far."""
    import os

    import lungseg.batch as batch

    real, calls = batch._write_outputs, []

    def write(job, loaded, mask, out, labels, overlay):
        calls.append(job)
        if len(calls) == call:
            seen.append((out / "report.csv").read_text())
            os.kill(os.getpid(), signum)
        return real(job, loaded, mask, out, labels, overlay)

    monkeypatch.setattr(batch, "_write_outputs", write)


@pytest.fixture
def default_sigint():
    """Ctrl-C as in a terminal: Python's default SIGINT handler, also where the test run was
    started in the background (a non-interactive shell starts background jobs with SIGINT ignored)."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


class _UnhandledSignal(BaseException):
    """A signal that reached the test's own handler."""


@pytest.mark.parametrize("signame, status", [("SIGTERM", 143), ("SIGINT", 130)])
def test_interrupt_finishes_the_report_and_prints_the_summary(tmp_path, tiny_weights, monkeypatch, signame, status,
                                                              default_sigint):
    import signal

    root = tmp_path / "in"
    (root / "a_bad.png").parent.mkdir()
    (root / "a_bad.png").write_text("not an image")
    for i in range(4):
        _write_good(root / f"b{i}.png", seed=i)
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.csv").write_text("file,status\nstale-from-an-earlier-run.png,ok\n")
    seen = []
    _interrupt_on(monkeypatch, 2, getattr(signal, signame), seen)
    def unhandled(signum, frame):  # where the command installs no handler, fail the test, not the test run
        raise _UnhandledSignal(signum)

    before = signal.signal(signal.SIGTERM, unhandled)
    try:
        result = _run("segment", root, "-o", out, "--model", tiny_weights, "--batch-size", 1, "--workers", 0)
        assert signal.getsignal(signal.SIGTERM) is unhandled  # the command's own handler is gone again
    finally:
        signal.signal(signal.SIGTERM, before)
    assert result.exit_code == status, result.output
    assert "stale" not in seen[0] and str(root / "b0.png") in seen[0]  # rows reach the file as images finish
    rows = _report(out)
    assert [r["status"] for r in rows.values()] == ["failed", "ok", "interrupted", "interrupted", "interrupted"]
    assert "1 of 5 images segmented" in result.output and "interrupted: 3 image(s)" in result.output
    assert "1 failed" in result.output and str(root / "a_bad.png") in result.output  # failures so far, printed
    assert not list(out.rglob("*.tmp")) and not (out / ".lungseg.lock").exists()


_KILL_ON_SECOND_MASK = """
import os, signal, sys
real, n = os.replace, []
def replace(src, dst):
    if str(dst).endswith(".png"):
        n.append(dst)
        if len(n) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # the temporary file of the second mask is written, not renamed
    return real(src, dst)
os.replace = replace
from lungseg.cli import main
main(sys.argv[1:])
"""


def test_after_kill_9_the_next_run_removes_temp_files_and_the_stale_report(tmp_path, tiny_weights):
    root = tmp_path / "in"
    for i in range(3):
        _write_good(root / "sub" / f"c{i}.png", seed=i)
    out = tmp_path / "out"
    args = ["segment", str(root), "-o", str(out), "--model", str(tiny_weights), "--batch-size", "1", "--workers", "0"]
    assert _run(*args).exit_code == 0 and len(_report(out)) == 3
    proc = subprocess.run([sys.executable, "-c", _KILL_ON_SECOND_MASK, *args], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -9, proc.stderr
    assert [r["status"] for r in _report(out).values()] == ["ok"]  # the earlier run's rows are gone, ours kept
    left = list(out.rglob(".c1.png.*.tmp"))
    assert len(left) == 1
    (out / ".report.csv.abcd1234.tmp").write_text("left by a killed run")
    mine = out / "sub" / ".c1.png.keep"  # not of our naming: kept
    mine.write_text("x")
    assert _run(*args).exit_code == 0
    assert sorted(r["status"] for r in _report(out).values()) == ["ok"] * 3
    assert not list(out.rglob("*.tmp")) and mine.exists()


def test_output_folder_equal_to_the_input_folder_with_allow_input_folder(tmp_path, tiny_weights):
    root = tmp_path / "in"
    _write_good(root / "x.png")
    _write_good(root / "sub" / "y.png", seed=1)
    for _ in range(2):  # the second run skips the first run's masks (listed in its report.csv)
        result = _run("segment", root, "-o", root, "--model", tiny_weights, "--allow-input-folder")
        assert result.exit_code == 0, result.output
        assert sorted(r["mask"] for r in _report(root).values()) == ["sub/y_png.png", "x_png.png"]
    result = _run("segment", root / "sub", "-o", root, "--model", tiny_weights, "--allow-input-folder")
    assert result.exit_code == 0 and [r["mask"] for r in _report(root).values()] == ["y.png"]


def test_a_file_beside_a_folder_of_its_output_name_gets_a_distinct_output(tmp_path, tiny_weights):
    from lungseg import batch

    root = tmp_path / "in"
    _write_good(root / "a.jpg")
    _write_good(root / "a.png" / "b.png", seed=1)
    _write_good(root / "c.png", seed=2)
    _write_good(root / "c_overlay.png" / "d.png", seed=3)
    out = tmp_path / "out"
    result = _run("segment", root, "-o", out, "--model", tiny_weights, "--overlay")
    assert result.exit_code == 0, result.output
    rows = _report(out)
    assert rows[str(root / "a.png" / "b.png")]["mask"] == "a.png/b.png"
    assert rows[str(root / "a.jpg")]["mask"] == "a_jpg.png" and rows[str(root / "c.png")]["mask"] == "c_png.png"
    outputs = [r[k] for r in rows.values() for k in ("mask", "overlay")]
    assert len({o.lower() for o in outputs}) == len(outputs) and all((out / o).is_file() for o in outputs)
    jobs = batch.plan_jobs(batch.find_inputs([root], out), out)
    assert [j.name for j in jobs] == ["a_jpg", "a.png/b", "c", "c_overlay.png/d"]


def test_a_second_process_writing_into_the_same_folder_is_refused(tmp_path, tiny_weights):
    from lungseg import batch

    image = _write_good(tmp_path / "in" / "x.png")
    out = tmp_path / "out"
    with batch.output_folder(out):
        assert (out / batch.LOCK_NAME).read_text().strip().isdigit()
        result = _run("segment", image, "-o", out, "--model", tiny_weights)
        assert result.exit_code == 2 and "another lungseg segment" in result.output
        assert "is writing into this output folder" in result.output
        assert not (out / "report.csv").exists()
    assert not (out / batch.LOCK_NAME).exists()
    assert _run("segment", image, "-o", out, "--model", tiny_weights).exit_code == 0


def test_a_file_name_with_a_newline_is_printed_once_quoted(tmp_path, tiny_weights):
    root = tmp_path / "in"
    _write_good(root / "good.png")
    odd = root / "bad\nname.png"
    odd.write_text("not an image")
    out = tmp_path / "out"
    result = _run("segment", root, "-o", out, "--model", tiny_weights)
    assert result.exit_code == 1
    assert result.output.count(repr(str(odd))) == 1 and str(odd) not in result.output
    assert [line for line in result.output.splitlines() if "name.png" in line] == [
        f"  {repr(str(odd))}: not an image file (format not recognised)"]
    rows = _report(out)
    assert rows[str(odd)]["status"] == "failed" and repr(str(odd)) in rows[str(odd)]["error"]


def test_labels_visible_and_measure_on_the_written_masks(tmp_path, tiny_weights, monkeypatch):
    import lungseg
    from lungseg import api, cli

    image = _write_good(tmp_path / "in" / "x.png", size=(64, 64))
    median = float(np.median(api.Segmenter(tiny_weights, device="cpu").probability(image)))
    monkeypatch.setattr(cli, "_segmenter", lambda model, device, extent, *_: api.Segmenter(model, "cpu", threshold=median),
                        raising=False)
    helps = {p.name: p.help for p in cli.main.commands["segment"].params}
    assert "look black in an image viewer" in helps["labels"] and "0/128/255" in helps["labels_visible"]
    outs = {}
    for opt in ("--labels", "--labels-visible", None):
        outs[opt] = tmp_path / f"out{opt}"
        assert _run("segment", image, "-o", outs[opt], "--model", tiny_weights, *([opt] if opt else [])).exit_code == 0
    labels, visible, mask = (cv2.imread(str(outs[o] / "x.png"), cv2.IMREAD_UNCHANGED)
                             for o in ("--labels", "--labels-visible", None))
    assert np.array_equal(visible, np.array([0, 128, 255], np.uint8)[labels]) and {1, 2} <= set(np.unique(labels))
    row = _report(outs[None])[str(image)]
    for written in (mask, visible, labels):  # measure reads what the command writes
        m = lungseg.measure(written)
        assert (m["right_px"], m["left_px"]) == (int(row["right_px"]), int(row["left_px"]))


def test_a_folder_of_every_kind_of_bad_input_finishes_with_a_complete_report(tmp_path, tiny_weights):
    root = tmp_path / "in"
    good = _write_good(root / "good.png")
    (root / "loop.png").symlink_to("loop.png")
    data = good.read_bytes()
    (root / "truncated.png").write_bytes(data[: len(data) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_text("not an image\n")
    (root / "new\nline.png").write_bytes(data)
    out = tmp_path / "out"
    result = _run("segment", root, "-o", out, "--model", tiny_weights, "--overlay")
    assert result.exit_code == 1, result.output
    rows = _report(out)
    inputs = ["empty.png", "good.png", "loop.png", "new\nline.png", "text.jpg", "truncated.png"]
    assert sorted(rows) == sorted(str(root / n) for n in inputs)  # one row per input
    status = {f.rsplit("/", 1)[1]: r["status"] for f, r in rows.items()}
    assert status == {"empty.png": "failed", "good.png": "ok", "loop.png": "failed", "new\nline.png": "ok",
                      "text.jpg": "failed", "truncated.png": "failed"}
    assert "2 of 6 images segmented" in result.output and "4 failed" in result.output
    for f, r in rows.items():
        assert (r["status"] == "ok") == bool(r["mask"] and (out / r["mask"]).is_file())
        assert r["status"] == "ok" or r["error"] in result.output
    assert not list(out.rglob("*.tmp")) and not list(out.rglob(".*"))


def test_ctrl_c_whose_raise_a_finaliser_swallowed_is_raised_after_the_image(default_sigint):
    import os
    import signal

    import lungseg.batch as batch

    class Finaliser:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(10000):  # the handler runs in here: Python ignores exceptions from __del__
                pass

    with batch.sigterm_interrupts():
        batch.raise_if_signalled()  # nothing signalled yet
        Finaliser()
        with pytest.raises(KeyboardInterrupt):
            batch.raise_if_signalled()
    batch.raise_if_signalled()  # the note ends with the context
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
