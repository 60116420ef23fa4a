"""Reading X-ray files and arrays: formats, the pixel limit, and every bad-input case."""

import os
import struct
import zlib

import cv2
import numpy as np
import pytest

from conftest import synthetic_xray
from lungseg import io
from lungseg.errors import InputError
from lungseg.imageheader import image_size, sniff_format

PIL = pytest.importorskip("PIL.Image", reason="pillow (the dev extra) is needed for the PIL input tests")


def _write(path, image):
    assert cv2.imwrite(str(path), image)
    return path


def _png_header_only(path, width, height, bit_depth=16):
    """A PNG whose header claims ``width x height`` but that holds (almost) no pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    return path


# ---- formats -------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix,dtype", [(".png", np.uint8), (".png", np.uint16), (".tif", np.uint8),
                                          (".tif", np.uint16), (".bmp", np.uint8)])
def test_lossless_formats_round_trip_in_own_units(tmp_path, suffix, dtype):
    img, _ = synthetic_xray(40, 30, dtype=dtype)
    loaded = io.load_image(_write(tmp_path / f"x{suffix}", img))
    assert loaded.pixels.dtype == dtype and np.array_equal(loaded.pixels, img)
    assert loaded.spacing is None


def test_jpeg_reads_close_to_the_original(tmp_path):
    img, _ = synthetic_xray(64, 48)
    out = io.load_any(_write(tmp_path / "x.jpg", img))
    assert out.shape == (64, 48) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - img).mean() < 8


def test_colour_files_become_gray_rgb_order(tmp_path):
    img, _ = synthetic_xray(32, 32)
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0] = img  # red channel only
    _write(tmp_path / "c.png", rgb[..., ::-1])  # OpenCV writes BGR
    out = io.load_any(tmp_path / "c.png")
    assert np.array_equal(out, np.round(img * np.float32(0.299)).astype(np.uint8))
    rgba = np.dstack([rgb[..., ::-1], np.full((32, 32), 255, np.uint8)])
    assert np.array_equal(io.load_any(_write(tmp_path / "a.png", rgba)), out)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.int32, np.int64, np.float32, np.float64])
def test_arrays_of_any_numeric_dtype(dtype):
    img, _ = synthetic_xray(20, 24, dtype=np.uint8)
    arr = img.astype(dtype)
    for a in (arr, arr[..., None], np.dstack([arr] * 3), np.dstack([arr] * 3 + [np.ones_like(arr)])):
        out = io.load_any(a)
        assert out.shape == (20, 24)
        assert np.allclose(out.astype(np.float64), img, atol=0.51)


def test_bool_array_is_accepted():
    _, mask = synthetic_xray(20, 20)
    assert np.array_equal(io.load_any(mask.astype(bool)), mask)


@pytest.mark.parametrize("mode", ["L", "I;16", "I", "F", "RGB", "RGBA", "LA", "P", "1", "CMYK"])
def test_pil_images_of_common_modes(mode):
    img, _ = synthetic_xray(24, 32)
    pil = PIL.fromarray(img).convert(mode) if mode not in ("I;16",) else PIL.fromarray(img.astype(np.uint16) * 257)
    out = io.load_any(pil)
    assert out.shape == (24, 32)
    assert out.min() < out.max()


def test_header_sizes_match_the_files(tmp_path):
    img, _ = synthetic_xray(37, 53, dtype=np.uint16)
    cases = {"x.png": img, "x.tif": img, "x.jpg": (img >> 8).astype(np.uint8), "x.bmp": (img >> 8).astype(np.uint8)}
    for name, a in cases.items():
        p = _write(tmp_path / name, a)
        with open(p, "rb") as f:
            assert image_size(f) == (53, 37), name
            f.seek(0)
            assert sniff_format(f.read(32)) is not None
    big_endian = tmp_path / "be.tif"  # a big-endian TIFF header: width as LONG, height as SHORT
    big_endian.write_bytes(b"MM\x00*" + struct.pack(">IH", 8, 2)
                           + struct.pack(">HHII", 256, 4, 1, 4020)
                           + struct.pack(">HHIHH", 257, 3, 1, 4892, 0) + b"\x00" * 4)
    with open(big_endian, "rb") as f:
        assert image_size(f) == (4020, 4892)


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path, monkeypatch):
    path = _png_header_only(tmp_path / "huge.png", 50_000, 40_000)  # 2 GP claimed, 33 bytes on disk
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: decoded.append(1))
    with pytest.raises(InputError, match=r"huge\.png: 50000x40000 = 2000000000 pixels exceeds the limit"):
        io.load_any(path)
    assert not decoded


def test_default_pixel_limit_admits_a_full_size_detector_image():
    assert io.MAX_PIXELS >= 4 * 4020 * 4892


def test_pixel_limit_can_be_changed(tmp_path, monkeypatch):
    img, _ = synthetic_xray(40, 40)
    path = _write(tmp_path / "x.png", img)
    monkeypatch.setattr(io, "MAX_PIXELS", 1000)
    with pytest.raises(InputError, match="exceeds the limit of 1000"):
        io.load_any(path)
    with pytest.raises(InputError, match="exceeds the limit of 1000"):
        io.load_any(img)
    with pytest.raises(InputError, match="exceeds the limit of 1000"):
        io.load_any(PIL.fromarray(img))


def test_dicom_is_recognised_by_content_without_suffix(tmp_path):
    pytest.importorskip("pydicom")
    from dicom_files import write_dicom

    img, _ = synthetic_xray(20, 30, dtype=np.uint16)
    path = write_dicom(tmp_path / "IM0001", img, PixelSpacing=[0.14, 0.15])
    loaded = io.load_image(path)
    assert np.array_equal(loaded.pixels, img) and loaded.spacing == (0.14, 0.15)


# ---- bad input: a typed error that names the file and the problem -------------------------

def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(InputError, match=r"e\.png: empty file"):
        io.load_any(tmp_path / "e.png")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match=r"nope\.png: no such file"):
        io.load_any(tmp_path / "nope.png")
    with pytest.raises(InputError, match="is a folder"):
        io.load_any(tmp_path)


@pytest.mark.parametrize("suffix,dtype", [(".png", np.uint16), (".png", np.uint8), (".jpg", np.uint8),
                                          (".tif", np.uint16), (".bmp", np.uint8)])
@pytest.mark.parametrize("keep", [0.5, 0.95])
def test_truncated_files(tmp_path, suffix, dtype, keep):
    img, _ = synthetic_xray(64, 64, dtype=dtype)
    data = _write(tmp_path / f"full{suffix}", img).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(InputError, match=r"cut\.\w+: truncated"):
        io.load_any(cut)


def test_jpeg_without_end_marker_is_truncated_even_if_a_decoder_would_accept_it(tmp_path):
    img, _ = synthetic_xray(64, 64)
    data = _write(tmp_path / "full.jpg", img).read_bytes()
    assert data.endswith(b"\xff\xd9")
    (tmp_path / "cut.jpg").write_bytes(data[:-2])
    with pytest.raises(InputError, match="truncated JPEG"):
        io.load_any(tmp_path / "cut.jpg")


@pytest.mark.parametrize("content", [b"just some text\n" * 20, os.urandom(2000), b"BM" + b"\x00" * 100])
def test_non_images(tmp_path, content):
    path = tmp_path / "notes.png"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"notes\.png: (not an image|truncated or corrupt)"):
        io.load_any(path)


def test_text_file_with_a_dicom_suffix(tmp_path):
    pytest.importorskip("pydicom")
    (tmp_path / "x.dcm").write_text("not a dicom\n" * 30)
    with pytest.raises(InputError, match=r"x\.dcm: not a DICOM file"):
        io.load_any(tmp_path / "x.dcm")


@pytest.mark.parametrize("shape", [(0, 10), (10, 0), (0, 0)])
def test_zero_size_arrays(shape):
    with pytest.raises(InputError, match="zero-size"):
        io.load_any(np.zeros(shape, np.uint8))


@pytest.mark.parametrize("shape", [(50, 1), (1, 50), (1, 1)])
def test_one_pixel_wide_arrays_and_files(tmp_path, shape):
    a = np.arange(50, dtype=np.uint8)[: shape[0] * shape[1]].reshape(shape)
    with pytest.raises(InputError, match="at least 2 pixels per side"):
        io.load_any(a)
    path = _write(tmp_path / "thin.png", a)
    with pytest.raises(InputError, match=r"thin\.png: image is \d+x\d+; at least 2"):
        io.load_any(path)


def test_zero_size_png_header(tmp_path):
    with pytest.raises(InputError, match=r"z\.png: zero-size image \(0x100\)"):
        io.load_any(_png_header_only(tmp_path / "z.png", 0, 100))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_non_finite_floats(bad, dtype):
    img, _ = synthetic_xray(20, 20, dtype=np.float32)
    img = img.astype(dtype)
    img[3, 4] = bad
    with pytest.raises(InputError, match="<array>: NaN or infinite"):
        io.load_any(img)


def test_non_finite_float_tiff_names_the_file(tmp_path):
    img, _ = synthetic_xray(20, 20, dtype=np.float32)
    img[0, 0] = np.nan
    path = _write(tmp_path / "f.tif", img)
    with pytest.raises(InputError, match=r"f\.tif: NaN or infinite"):
        io.load_any(path)


def test_constant_images(tmp_path):
    with pytest.raises(InputError, match="constant image"):
        io.load_any(np.full((30, 30), 7, np.uint16))
    with pytest.raises(InputError, match=r"flat\.png: constant image"):
        io.load_any(_write(tmp_path / "flat.png", np.zeros((30, 30), np.uint8)))


@pytest.mark.parametrize("channels", [2, 5, 8])
def test_unsupported_channel_counts(channels):
    with pytest.raises(InputError, match=f"{channels} channels"):
        io.load_any(np.zeros((10, 10, channels), np.uint8))


@pytest.mark.parametrize("arr", [np.zeros(10), np.zeros((2, 3, 4, 5)), np.zeros((5, 5), complex)])
def test_wrong_dimensions_and_types(arr):
    with pytest.raises(InputError):
        io.load_any(arr)


def test_input_error_is_a_value_error_and_exported():
    import lungseg

    assert lungseg.InputError is InputError and issubclass(InputError, ValueError)


# ---- writing -------------------------------------------------------------------------------

def test_atomic_write_leaves_old_file_or_new_file_and_no_temporaries(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    io.write_png_atomic(target, np.full((4, 4), 255, np.uint8))
    old = target.read_bytes()

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        io.write_png_atomic(target, np.zeros((8, 8), np.uint8))
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_atomic_write_gives_the_permissions_of_a_plainly_written_file(tmp_path):
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"x")
    atomic = tmp_path / "atomic.bin"
    io.write_bytes_atomic(atomic, b"x")
    assert atomic.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777
