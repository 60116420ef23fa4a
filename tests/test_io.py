"""Reading X-ray files and arrays: formats, the pixel limit, and every bad-input case."""

import os
import re
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


# ---- one header boundary for every format the decoder reads (issue 12) --------------------

HUGE = (10_500, 10_000)  # 105 MP: over the default limit of 100 MP


def _tiff_header(width, height, size_type=4, big=False, extra=()):
    """A TIFF (or BigTIFF) with only an IFD holding the size tags (of ``size_type``) and ``extra``."""
    fmt = {3: "H", 4: "I", 8: "h", 9: "i", 16: "Q"}[size_type]
    entries = [(256, size_type, width), (257, size_type, height), *extra]
    if big:
        out = b"II+\x00" + struct.pack("<HHQ", 8, 0, 16) + struct.pack("<Q", len(entries))
        for tag, typ, value in entries:
            f = {3: "H", 4: "I", 8: "h", 9: "i", 16: "Q"}[typ]
            out += struct.pack("<HHQ", tag, typ, 1) + struct.pack("<" + f, value).ljust(8, b"\x00")
        return out + b"\x00" * 8
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, typ, value in entries:
        f = {3: "H", 4: "I", 8: "h", 9: "i"}[typ]
        out += struct.pack("<HHI", tag, typ, 1) + struct.pack("<" + f, value).ljust(4, b"\x00")
    return out + b"\x00" * 4


def _webp_header(kind, width, height):
    if kind == "VP8L":
        bits = (width - 1) | (height - 1) << 14
        payload = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 32
    elif kind == "VP8 ":
        payload = b"\x10\x13\x00\x9d\x01\x2a" + struct.pack("<HH", width, height) + b"\x00" * 32
    else:
        payload = b"\x10\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    chunk = kind.encode() + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


_HUGE_HEADERS = {
    "webp-lossless": _webp_header("VP8L", *HUGE),
    "webp-lossy": _webp_header("VP8 ", *HUGE),
    "webp-extended": _webp_header("VP8X", *HUGE),
    "pgm": b"P5\n# a comment\n10500 10000\n65535\n" + b"\x00" * 64,
    "pbm": b"P4 10500\t10000\n" + b"\x00" * 64,
    "ppm-ascii": b"P3\n10500 10000\n255\n0 0 0\n",
    "pfm": b"Pf\n10500 10000\n-1.0\n" + b"\x00" * 64,
    "tiff-short": _tiff_header(*HUGE, size_type=3),
    "tiff-long": _tiff_header(*HUGE, size_type=4),
    "tiff-slong": _tiff_header(*HUGE, size_type=9),
    "tiff-sshort": _tiff_header(*HUGE, size_type=8),
    "bigtiff-long8": _tiff_header(*HUGE, size_type=16, big=True),
    "bigtiff-slong": _tiff_header(*HUGE, size_type=9, big=True),
}


@pytest.mark.parametrize("kind", sorted(_HUGE_HEADERS))
def test_pixel_limit_is_checked_from_every_accepted_header_whatever_the_suffix(tmp_path, monkeypatch, kind):
    import tracemalloc

    path = tmp_path / "huge.png"  # the suffix lies: the content decides
    path.write_bytes(_HUGE_HEADERS[kind])
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: decoded.append(1))
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match=r"huge\.png: 10500x10000 = 105000000 pixels exceeds the limit"):
            io.load_any(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not decoded and peak < 1 << 20


def _encoded(ext, image, *params):
    ok, buf = cv2.imencode(ext, image, list(params))
    assert ok
    return buf.tobytes()


def test_formats_the_decoder_reads_but_whose_header_is_not_read_are_refused_before_decoding(tmp_path, monkeypatch):
    img, _ = synthetic_xray(64, 64)
    contents = {
        "JPEG 2000": [_encoded(".jp2", img), b"\xff\x4f\xff\x51" + b"\x00" * 60],
        "Radiance HDR": [_encoded(".hdr", np.dstack([img.astype(np.float32)] * 3))],
        "AVIF/HEIF": [b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + b"\x00" * 40],
        "GIF": [b"GIF89a" + struct.pack("<HH", *HUGE) + b"\x00" * 40],
        "OpenEXR": [b"\x76\x2f\x31\x01" + b"\x00" * 60],
        "JPEG XL": [b"\xff\x0a" + b"\x00" * 60],
        "PAM": [b"P7\nWIDTH 10500\nHEIGHT 10000\nDEPTH 1\nMAXVAL 255\nENDHDR\n"],
    }
    decoded = []
    monkeypatch.setattr(cv2, "imdecode", lambda *a, **k: decoded.append(1))
    for fmt, blobs in contents.items():
        for i, blob in enumerate(blobs):
            path = tmp_path / f"x{i}.png"
            path.write_bytes(blob)
            with pytest.raises(InputError, match=rf"x{i}\.png: {re.escape(fmt)} images are not supported"):
                io.load_any(path)
    assert not decoded


def test_unreadable_headers_of_accepted_formats_are_refused(tmp_path):
    cases = {
        "dup.tif": _tiff_header(100, 100, extra=[(256, 4, 20_000)]),  # two ImageWidth entries
        "neg.tif": _tiff_header(-5, 100, size_type=9),
        "tile.tif": _tiff_header(64, 64, extra=[(322, 4, 32768), (323, 4, 32768)]),  # 1 GP tiles
        "nosize.webp": b"RIFF\x20\x00\x00\x00WEBPVP8 " + b"\x00" * 40,
        "bad.pgm": b"P5\n10500x10000\n255\n" + b"\x00" * 40,
        "dnl.jpg": b"\xff\xd8\xff\xc0\x00\x0b\x08\x00\x00\x00\x40\x01\x01\x11\x00\xff\xda" + b"\x00" * 40 + b"\xff\xd9",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(InputError, match=rf"{re.escape(name)}: truncated or corrupt \w+ file"):
            io.load_any(tmp_path / name)


def test_webp_and_pnm_files_read_with_their_header_sizes(tmp_path):
    img, _ = synthetic_xray(37, 53)
    files = {"l.webp": _encoded(".webp", img, cv2.IMWRITE_WEBP_QUALITY, 101),
             "y.webp": _encoded(".webp", img, cv2.IMWRITE_WEBP_QUALITY, 90),
             "g.pgm": _encoded(".pgm", img), "p.ppm": _encoded(".ppm", np.dstack([img] * 3)),
             "f.pfm": _encoded(".pfm", np.dstack([img.astype(np.float32) / 255] * 3))}
    for name, blob in files.items():
        path = tmp_path / name
        path.write_bytes(blob)
        with open(path, "rb") as f:
            assert image_size(f) == (53, 37), name
        out = io.load_any(path).astype(np.float64)
        top = 1.0 if name.endswith(".pfm") else 255.0
        assert out.shape == (37, 53) and np.abs(out / top - img / 255.0).mean() < 0.03, name
    with open(tmp_path / "big.tif", "wb") as f:
        f.write(_tiff_header(4020, 4892, size_type=16, big=True))
    with open(tmp_path / "big.tif", "rb") as f:
        assert image_size(f) == (4020, 4892)


# ---- orientation ---------------------------------------------------------------------------

_DISPLAYED = {1: lambda a: a, 2: np.fliplr, 3: lambda a: np.rot90(a, 2), 4: np.flipud, 5: lambda a: a.T,
              6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).T, 8: lambda a: np.rot90(a, 1)}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_applied(tmp_path, orientation):
    from PIL import ImageOps

    img, _ = synthetic_xray(40, 64)
    img[:8, :16] = 255  # a corner mark
    exif = PIL.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "o.jpg"
    PIL.fromarray(img).save(path, "JPEG", exif=exif.tobytes(), quality=100)
    with open(path, "rb") as f:
        assert io.imageheader.read_header(f).orientation == orientation
    out = io.load_any(path)
    shown = np.asarray(ImageOps.exif_transpose(PIL.open(path)))
    assert out.shape == shown.shape == _DISPLAYED[orientation](img).shape
    assert np.abs(out.astype(int) - shown).max() <= 3
    assert np.abs(out.astype(int) - _DISPLAYED[orientation](img)).mean() < 2


def _plain_tiff(img, orientation):
    """An uncompressed 8-bit gray TIFF with an Orientation tag."""
    h, w = img.shape
    entries = [(256, 4, w), (257, 4, h), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, 0),
               (274, 3, orientation), (277, 3, 1), (278, 4, h), (279, 4, h * w)]
    start = 8 + 2 + 12 * len(entries) + 4
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, typ, value in entries:
        value = start if tag == 273 else value
        out += struct.pack("<HHI", tag, typ, 1) + struct.pack("<" + ("H" if typ == 3 else "I"), value).ljust(4, b"\0")
    return out + b"\x00" * 4 + img.astype(np.uint8).tobytes()


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_once(tmp_path, orientation):
    img = np.arange(40 * 64, dtype=np.uint32).reshape(40, 64).astype(np.uint8)
    path = tmp_path / "o.tif"
    path.write_bytes(_plain_tiff(img, orientation))
    assert np.array_equal(io.load_any(path), _DISPLAYED[orientation](img))


def test_mask_of_a_rotated_jpeg_is_in_displayed_orientation(tmp_path, tiny_weights):
    from lungseg.api import Segmenter

    img, _ = synthetic_xray(48, 80)
    exif = PIL.Exif()
    exif[0x0112] = 6
    path = tmp_path / "r.jpg"
    PIL.fromarray(img).save(path, "JPEG", exif=exif.tobytes(), quality=100)
    assert Segmenter(tiny_weights, device="cpu").segment(path).shape == (80, 48)


# ---- corrupt JPEG data, complex arrays, bytes, extreme values ------------------------------

def test_truncated_jpeg_with_an_end_marker_appended_is_refused(tmp_path, capfd):
    img = (np.random.default_rng(0).random((128, 128)) * 255).astype(np.uint8)
    data = _write(tmp_path / "full.jpg", img).read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:len(data) // 2] + b"\xff\xd9")
    with pytest.raises(InputError, match=r"cut\.jpg: truncated or corrupt JPEG data \(Corrupt JPEG data: premature"):
        io.load_any(tmp_path / "cut.jpg")
    assert io.load_any(tmp_path / "full.jpg").shape == (128, 128)
    assert "Corrupt JPEG" not in capfd.readouterr().err


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 1), (8, 8, 3), (8, 8, 4)])
def test_complex_arrays_are_refused_whatever_their_shape(shape):
    arr = (np.arange(np.prod(shape)).reshape(shape) + 1j).astype(np.complex64)
    with pytest.raises(InputError, match=r"<array>: complex pixel values \(complex64\)"):
        io.load_any(arr)
    with pytest.raises(InputError, match="complex pixel values"):
        io.to_grayscale(arr)


@pytest.mark.parametrize("value", [b"/tmp/x.png", bytearray(b"\x89PNG\r\n\x1a\n"), memoryview(b"abc")])
def test_bytes_are_refused_with_a_clear_message(value):
    with pytest.raises(InputError, match=r"<bytes>: a (bytes|bytearray|memoryview) object is not an image; pass a path"):
        io.load_any(value)


@pytest.mark.parametrize("dtype,shift", [(np.int64, 50), (np.uint64, 55), (np.uint64, 56), (np.int32, 23),
                                         (np.uint32, 24)])
def test_colour_conversion_keeps_wide_integer_magnitudes(dtype, shift):
    img, _ = synthetic_xray(20, 24)
    wide = img.astype(dtype) << dtype(shift)
    gray = io.load_any(np.dstack([wide] * 3))
    assert gray.dtype == dtype
    assert np.allclose(gray.astype(np.float64), img.astype(np.float64) * 2.0 ** shift, rtol=1e-6, atol=2.0 ** shift)
    top = np.full((4, 4, 3), np.iinfo(dtype).max, dtype)
    top[0, 0] = 0
    assert io.to_grayscale(top)[1, 1] >= np.iinfo(dtype).max // 2  # no wrap-around at the top of the range


@pytest.mark.parametrize("scale", [1e-300, 1e-40, 1e-12, 1e30, 1e38, 1e300])
def test_finite_floats_of_any_scale_are_accepted_and_fit_float32(scale):
    img, _ = synthetic_xray(20, 24)
    out = io.load_any(img.astype(np.float64) * scale)
    as32 = out.astype(np.float32)
    assert np.isfinite(as32).all() and as32.max() > 0
    ratio = out / img.clip(1)
    assert np.allclose(ratio[img > 10], ratio[img > 10].flat[0], rtol=1e-6)


def test_corrupt_jpeg_warnings_are_told_apart_between_threads(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    img = (np.random.default_rng(1).random((96, 96)) * 255).astype(np.uint8)
    data = _write(tmp_path / "good.jpg", img).read_bytes()
    (tmp_path / "bad.jpg").write_bytes(data[:len(data) // 2] + b"\xff\xd9")

    def read(i):
        name = "bad.jpg" if i % 2 else "good.jpg"
        try:
            io.load_any(tmp_path / name)
            return name, "ok"
        except InputError:
            return name, "refused"

    with ThreadPoolExecutor(4) as pool:
        results = set(pool.map(read, range(40)))
    assert results == {("good.jpg", "ok"), ("bad.jpg", "refused")}
