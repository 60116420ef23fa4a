"""DICOM reading: modality and VOI transforms, MONOCHROME1, spacing, refusals, missing extras."""

import struct
import sys

import numpy as np
import pytest

from conftest import synthetic_xray
from lungseg import io
from lungseg.errors import InputError, MissingExtraError

pydicom = pytest.importorskip("pydicom", reason="pydicom (the dicom extra) is not installed")
from dicom_files import write_dicom  # noqa: E402
from lungseg.dicom import read_dicom  # noqa: E402


@pytest.fixture
def pixels():
    img, _ = synthetic_xray(40, 32, dtype=np.uint16)
    return img >> 4  # 12-bit values


def test_monochrome2_pixels_and_spacing(tmp_path, pixels):
    path = write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12, PixelSpacing=[0.143, 0.139])
    d = read_dicom(path)
    assert d.pixels.dtype == np.uint16 and np.array_equal(d.pixels, pixels)
    assert d.spacing == (0.143, 0.139)


def test_imager_pixel_spacing_is_the_fallback(tmp_path, pixels):
    path = write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12, ImagerPixelSpacing=[0.2, 0.2])
    assert read_dicom(path).spacing == (0.2, 0.2)
    assert read_dicom(write_dicom(tmp_path / "b.dcm", pixels, bits_stored=12)).spacing is None


def test_monochrome1_is_inverted_exactly(tmp_path, pixels):
    mono1 = write_dicom(tmp_path / "m1.dcm", 4095 - pixels, photometric="MONOCHROME1", bits_stored=12)
    assert np.array_equal(read_dicom(mono1).pixels, pixels)


def test_signed_monochrome1(tmp_path):
    img, _ = synthetic_xray(20, 20, dtype=np.uint16)
    signed = (img >> 4).astype(np.int16) - 2048
    mono1 = write_dicom(tmp_path / "s.dcm", -1 - signed, photometric="MONOCHROME1", bits_stored=12)
    assert np.array_equal(read_dicom(mono1).pixels, signed)


def test_rescale_slope_and_intercept(tmp_path, pixels):
    path = write_dicom(tmp_path / "r.dcm", pixels, bits_stored=12, RescaleSlope=2.5, RescaleIntercept=-1024)
    out = read_dicom(path).pixels
    assert out.dtype == np.float32
    assert np.allclose(out, pixels * 2.5 - 1024)


def test_window_centre_and_width(tmp_path, pixels):
    lo, hi = np.percentile(pixels, [20, 80])
    path = write_dicom(tmp_path / "w.dcm", pixels, bits_stored=12,
                       WindowCenter=float((lo + hi) / 2), WindowWidth=float(hi - lo))
    out = read_dicom(path).pixels
    assert out.min() == 0 and out.max() == 4095  # clipped to the window, spread over 12 bits
    inside = (pixels > lo + 1) & (pixels < hi - 1)
    assert np.all(np.diff(out[inside][np.argsort(pixels[inside])]) >= 0)  # monotone within it


def test_voi_lut_sequence_wins_over_window(tmp_path, pixels):
    from pydicom.dataset import Dataset

    lut = Dataset()
    lut.add_new("LUTDescriptor", "US", [4096, 0, 16])
    lut.add_new("LUTData", "US", [4095 - v for v in range(4096)])  # an inverting LUT: easy to recognise
    path = write_dicom(tmp_path / "v.dcm", pixels, bits_stored=12, VOILUTSequence=[lut],
                       WindowCenter=2048, WindowWidth=100)
    assert np.array_equal(read_dicom(path).pixels, 4095 - pixels)


def test_rle_compressed_file_decodes(tmp_path, pixels):
    from pydicom.uid import RLELossless

    path = write_dicom(tmp_path / "rle.dcm", pixels, bits_stored=12, transfer_syntax=RLELossless)
    assert np.array_equal(read_dicom(path).pixels, pixels)


def test_multi_frame_is_refused(tmp_path, pixels):
    path = write_dicom(tmp_path / "mf.dcm", np.stack([pixels, pixels]), bits_stored=12)
    with pytest.raises(InputError, match=r"mf\.dcm: multi-frame DICOM \(2 frames\)"):
        io.load_any(path)


def test_colour_is_refused(tmp_path, pixels):
    rgb = np.dstack([(pixels >> 4).astype(np.uint8)] * 3)
    path = write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB")
    with pytest.raises(InputError, match=r"rgb\.dcm: colour DICOM \(Photometric Interpretation RGB"):
        io.load_any(path)


def test_undecodable_compression_names_the_plugin(tmp_path, pixels):
    from pydicom.encaps import encapsulate
    from pydicom.pixels import get_decoder
    from pydicom.uid import JPEGLSLossless

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder plugin is installed here")
    path = write_dicom(tmp_path / "ls.dcm", pixels, bits_stored=12)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7" + bytes(64)])
    ds["PixelData"].VR = "OB"
    ds.save_as(path)
    with pytest.raises(InputError, match=r"ls\.dcm: pixel data compressed as JPEG-LS.*pip install pyjpegls"):
        io.load_any(path)


def test_truncated_pixel_data(tmp_path, pixels):
    path = write_dicom(tmp_path / "t.dcm", pixels, bits_stored=12)
    path.write_bytes(path.read_bytes()[:-500])
    with pytest.raises(InputError, match=r"t\.dcm: cannot decode the DICOM pixel data"):
        io.load_any(path)


def test_truncated_header(tmp_path, pixels):
    path = write_dicom(tmp_path / "t.dcm", pixels, bits_stored=12)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match=r"t\.dcm: "):
        io.load_any(path)


def test_pixel_limit_checked_before_decoding(tmp_path, pixels, monkeypatch):
    path = write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12)
    monkeypatch.setattr(io, "MAX_PIXELS", 100)
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(lambda self: pytest.fail("decoded")))
    with pytest.raises(InputError, match=r"a\.dcm: 32x40 = 1280 pixels exceeds the limit of 100"):
        io.load_any(path)


def test_missing_pydicom_names_the_extra(tmp_path, pixels, monkeypatch):
    path = write_dicom(tmp_path / "a.dcm", pixels, bits_stored=12)
    for name in [m for m in sys.modules if m == "pydicom" or m.startswith("pydicom.")]:
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtraError, match=r"pip install lungseg\[dicom\]"):
        io.load_any(path)


def test_monochrome1_and_monochrome2_give_the_same_mask(tmp_path, tiny_weights, pixels):
    from lungseg.api import Segmenter

    seg = Segmenter(tiny_weights, device="cpu")
    mono2 = write_dicom(tmp_path / "m2.dcm", pixels, bits_stored=12)
    mono1 = write_dicom(tmp_path / "m1.dcm", 4095 - pixels, photometric="MONOCHROME1", bits_stored=12)
    a, b = seg.segment(mono2), seg.segment(mono1)
    assert np.array_equal(a, b)
    assert not np.array_equal(seg.segment(4095 - pixels), a) or a.all() or not a.any()


# ---- compressed frames: their own size must be Rows x Columns, read before decoding (issue 12) ----

def _encapsulated(path, pixels, frame: bytes, syntax, rows=None, cols=None):
    """A DICOM holding ``frame`` as its one encapsulated frame under ``syntax``, with Rows/Columns given."""
    from pydicom.encaps import encapsulate

    write_dicom(path, pixels)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].VR = "OB"
    ds.Rows, ds.Columns = rows or pixels.shape[0], cols or pixels.shape[1]
    ds.save_as(path)
    return path


def _jpeg_frame_header(width, height, sof=0xC0):
    return (b"\xff\xd8\xff" + bytes([sof]) + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
            + b"\xff\xda" + b"\x00" * 64 + b"\xff\xd9")


def _j2k_codestream_header(width, height):
    return b"\xff\x4f\xff\x51" + struct.pack(">HHIIIIIIII", 41, 0, width, height, 0, 0, width, height, 0, 0) + bytes(64)


def test_compressed_frame_larger_than_rows_and_columns_is_refused_before_decoding(tmp_path, monkeypatch):
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

    small = np.zeros((512, 512), np.uint8)
    small[0, 0] = 1
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(lambda self: pytest.fail("decoded")))
    cases = {"jpeg.dcm": (_jpeg_frame_header(10_500, 10_000), JPEGBaseline8Bit),
             "j2k.dcm": (_j2k_codestream_header(10_500, 10_000), JPEG2000Lossless)}
    for name, (frame, syntax) in cases.items():
        path = _encapsulated(tmp_path / name, small, frame, syntax)
        with pytest.raises(InputError, match=rf"{name}: the compressed frame is 10500x10000 pixels, "
                                             r"but Rows/Columns say 512x512"):
            io.load_any(path)


def test_compressed_frame_of_unreadable_size_is_refused(tmp_path, monkeypatch):
    from pydicom.uid import JPEGBaseline8Bit

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(lambda self: pytest.fail("decoded")))
    path = _encapsulated(tmp_path / "x.dcm", np.zeros((64, 64), np.uint8), b"\x00" * 64, JPEGBaseline8Bit)
    with pytest.raises(InputError, match=r"x\.dcm: the size of the JPEG Baseline .* frame cannot be read"):
        io.load_any(path)


def test_compressed_frames_of_the_right_size_decode(tmp_path):
    import cv2
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit

    img, _ = synthetic_xray(48, 40)
    for name, ext, syntax, params in (("j.dcm", ".jpg", JPEGBaseline8Bit, [cv2.IMWRITE_JPEG_QUALITY, 95]),
                                      ("k.dcm", ".jp2", JPEG2000Lossless, [cv2.IMWRITE_JPEG2000_COMPRESSION_X1000, 1000])):
        ok, buf = cv2.imencode(ext, img, params)
        assert ok
        path = _encapsulated(tmp_path / name, img, buf.tobytes(), syntax)
        out = io.load_any(path)
        assert out.shape == (48, 40) and np.abs(out.astype(int) - img).mean() < 8, name


def test_frame_size_reads_jpeg_ls_and_jp2_boxes():
    from lungseg.imageheader import frame_size

    assert frame_size(_jpeg_frame_header(300, 200, sof=0xF7), "1.2.840.10008.1.2.4.80") == (300, 200)
    jp2 = (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + struct.pack(">I4s", 20, b"ftyp") + b"jp2 \x00\x00\x00\x00jp2 "
           + struct.pack(">I4s", 8 + 60, b"jp2c") + _j2k_codestream_header(300, 200)[:60])
    assert frame_size(jp2, "1.2.840.10008.1.2.4.90") == (300, 200)
    assert frame_size(b"\xff\xd8\xff\xd9", "1.2.840.10008.1.2.4.50") is None


def test_dicom_reader_does_not_import_lungseg_io():
    import ast
    import inspect

    import lungseg.dicom

    tree = ast.parse(inspect.getsource(lungseg.dicom))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    assert "io" not in imported


def _deflated(path, pixels):
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    write_dicom(path, pixels)
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def test_deflated_data_set_is_bounded_before_pydicom_inflates_it(tmp_path, monkeypatch):
    small, big = np.zeros((600, 600), np.uint16), np.zeros((1500, 1500), np.uint16)  # 0.7 MB and 4.5 MB inflated
    small[0, 0] = big[0, 0] = 1
    ok, bomb = _deflated(tmp_path / "z.dcm", small), _deflated(tmp_path / "b.dcm", big)
    assert bomb.stat().st_size < 100_000
    assert read_dicom(ok).pixels.shape == (600, 600)  # within the default limit: read as usual
    monkeypatch.setattr(io, "MAX_PIXELS", 10_000)  # allows 80 kB + 4 MB inflated
    monkeypatch.setattr(pydicom, "dcmread", lambda *a, **k: pytest.fail("inflated"))
    with pytest.raises(InputError, match=r"b\.dcm: deflated DICOM data set inflates to more than 4274304 bytes"):
        io.load_any(bomb)
