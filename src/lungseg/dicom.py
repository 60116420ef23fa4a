"""Reading single-frame grayscale DICOM X-rays (needs the ``dicom`` extra: ``pip install lungseg[dicom]``).

:func:`read_dicom` returns the pixels in MONOCHROME2 sense (higher value = brighter) after
the modality transform (rescale slope/intercept or modality LUT) and the VOI transform
(VOI LUT, else window centre/width) where the file has them, and the pixel spacing.
Multi-frame and colour files are refused; compressed pixel data that no installed
pydicom plugin can decode gives an error naming the plugin to install. The size limit and
the frame size of compressed pixel data (read from its JPEG / JPEG-LS / JPEG 2000 header,
which must match Rows and Columns) are checked by :mod:`lungseg.imageheader` before decoding.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import imageheader
from .errors import InputError, MissingExtraError

# pip packages that decode each compressed transfer syntax (see pydicom's decoder plugins).
_PLUGINS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",
}
_GRAY = ("MONOCHROME1", "MONOCHROME2")


@dataclass(frozen=True)
class DicomImage:
    """``pixels``: 2-D array, MONOCHROME2 sense; ``spacing``: (row, column) mm or None.

    ``spacing`` is Pixel Spacing (0028,0030) where present, else Imager Pixel Spacing
    (0018,1164), which is measured at the detector (it includes the X-ray magnification).
    """

    pixels: np.ndarray
    spacing: tuple[float, float] | None


def _pydicom():
    try:
        import pydicom
        from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing, get_decoder  # noqa: F401
    except ImportError as e:
        raise MissingExtraError(
            "reading DICOM files needs pydicom>=3.0: pip install lungseg[dicom]") from e
    return pydicom


def read_dicom(path, max_pixels: int | None = None) -> DicomImage:
    """Read a single-frame grayscale DICOM file; every problem raises :class:`InputError`."""
    pydicom = _pydicom()
    path = Path(path)
    ds = _open(pydicom, path, max_pixels)
    _check_pixel_module(ds, path, max_pixels)
    stored = _decode(pydicom, ds, path)
    pixels, (lo, hi) = _to_values(ds, stored, path)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        pixels = _invert(pixels, lo, hi)
    return DicomImage(pixels, _spacing(ds))


_DEFLATED = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian: the whole data set is zlib-compressed


def _check_deflated(pydicom, path: Path, max_pixels: int | None) -> None:
    """pydicom inflates a deflated data set whole, in memory: refuse one that would inflate past
    8 bytes per pixel of the pixel limit plus 4 MB, counted by inflating in bounded pieces."""
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:
        return  # no file meta (a bare data set): not deflated
    if str(meta.get("TransferSyntaxUID", "")) != _DEFLATED:
        return
    group_length = meta.get("FileMetaInformationGroupLength")
    if group_length is None:
        raise InputError(f"{path}: deflated DICOM without a file meta group length")
    limit = 8 * (imageheader.MAX_PIXELS if max_pixels is None else max_pixels) + (4 << 20)
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    try:
        with open(path, "rb") as f:
            f.seek(128 + 4 + 12 + int(group_length))  # preamble, 'DICM', (0002,0000) UL, the rest of group 2
            while total <= limit and (chunk := f.read(1 << 20)):
                while chunk and total <= limit:
                    total += len(inflater.decompress(chunk, 1 << 24))
                    chunk = inflater.unconsumed_tail
    except zlib.error as e:
        raise InputError(f"{path}: corrupt deflated DICOM data ({e})") from e
    if total > limit:
        raise InputError(f"{path}: deflated DICOM data set inflates to more than {limit} bytes "
                         "(the pixel limit's worth, lungseg.io.MAX_PIXELS)")


def _open(pydicom, path: Path, max_pixels: int | None = None):
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    _check_deflated(pydicom, path, max_pixels)
    try:
        return pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError:
        pass  # no 'DICM' preamble: try as a bare data set, as older files are written
    except Exception as e:  # truncated or corrupt header
        raise InputError(f"{path}: not a readable DICOM file ({e})") from e
    try:
        ds = pydicom.dcmread(path, force=True)
        if "PixelData" not in ds or "Rows" not in ds:
            raise ValueError("no image")
        return ds
    except Exception as e:
        raise InputError(f"{path}: not a DICOM file") from e


def _check_pixel_module(ds, path: Path, max_pixels: int | None) -> None:
    if "PixelData" not in ds:
        raise InputError(f"{path}: DICOM file without pixel data (truncated, or not an image)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise InputError(f"{path}: multi-frame DICOM ({frames} frames); only single-frame X-rays are supported")
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    samples = int(ds.get("SamplesPerPixel", 1))
    if samples != 1 or photometric not in _GRAY:
        raise InputError(f"{path}: colour DICOM (Photometric Interpretation {photometric or 'missing'}, "
                         f"{samples} samples per pixel); only grayscale (MONOCHROME1/2) X-rays are supported")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    imageheader.check_size(str(path), cols, rows, max_pixels)


def _check_frame(ds, syntax, path: Path) -> None:
    """The encapsulated frame's own size (from its codestream header) must be Rows x Columns."""
    from pydicom.encaps import generate_frames

    if str(syntax) in imageheader.DICOM_SIZE_FROM_ATTRIBUTES:
        return
    try:
        frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    except Exception as e:  # no items, truncated item, bad tags
        raise InputError(f"{path}: cannot read the encapsulated pixel data ({type(e).__name__}: {e})") from e
    size = imageheader.frame_size(frame, str(syntax))
    if size is None:
        raise InputError(f"{path}: the size of the {syntax.name} frame cannot be read from its header")
    rows, cols = int(ds.Rows), int(ds.Columns)
    if size != (cols, rows):
        raise InputError(f"{path}: the compressed frame is {size[0]}x{size[1]} pixels, but Rows/Columns "
                         f"say {cols}x{rows}")


def _decode(pydicom, ds, path: Path) -> np.ndarray:
    from pydicom.pixels import get_decoder

    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        try:
            available = get_decoder(syntax).is_available
        except NotImplementedError:
            raise InputError(f"{path}: pixel data in transfer syntax {syntax} that pydicom cannot decode") from None
        if not available:
            plugin = _PLUGINS.get(str(syntax), "a pydicom decoder plugin (pylibjpeg or python-gdcm)")
            raise InputError(f"{path}: pixel data compressed as {syntax.name}; no installed decoder can read it: "
                             f"pip install {plugin}")
        _check_frame(ds, syntax, path)
    try:
        arr = ds.pixel_array
    except Exception as e:  # truncated pixel data, corrupt codestream, inconsistent attributes
        raise InputError(f"{path}: cannot decode the DICOM pixel data ({type(e).__name__}: {e})") from e
    if arr.ndim != 2 or arr.shape != (int(ds.Rows), int(ds.Columns)):
        raise InputError(f"{path}: DICOM pixel array of shape {arr.shape}; expected one grayscale frame "
                         f"of {int(ds.Rows)}x{int(ds.Columns)} (Rows x Columns)")
    return arr


def _stored_range(ds) -> tuple[float, float]:
    bits = int(ds.get("BitsStored", ds.get("BitsAllocated", 16)))
    if int(ds.get("PixelRepresentation", 0)) == 1:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1


def _to_values(ds, stored: np.ndarray, path: Path):
    """Modality then VOI transform; returns (pixels, the (lo, hi) range they are defined on)."""
    from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing

    try:
        lo, hi = _stored_range(ds)
        if ds.get("ModalityLUTSequence"):
            lo, hi = 0, 2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1
        elif "RescaleSlope" in ds and "RescaleIntercept" in ds:
            slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
            lo, hi = sorted((lo * slope + intercept, hi * slope + intercept))
        values = apply_modality_lut(stored, ds)
        voi = ds.get("VOILUTSequence")
        if voi and voi[0].get("LUTDescriptor") is not None and voi[0].get("LUTData") is not None:
            values = apply_voi(values, ds)
            lo, hi = 0, 2 ** int(voi[0].LUTDescriptor[2]) - 1
        elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
            values = apply_windowing(values, ds)  # output spans the same (lo, hi) range
    except Exception as e:  # malformed LUT or window attributes
        raise InputError(f"{path}: invalid modality/VOI attributes ({type(e).__name__}: {e})") from e
    if values.dtype == np.float64:
        values = values.astype(np.float32)
    return values, (lo, hi)


def _invert(pixels: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """MONOCHROME1 -> MONOCHROME2: reflect the values within their range (exact for integers)."""
    if np.issubdtype(pixels.dtype, np.integer):
        out = int(lo) + int(hi) - pixels.astype(np.int64)
        info = np.iinfo(pixels.dtype)
        fits = info.min <= out.min() and out.max() <= info.max  # False only for values outside BitsStored
        return out.astype(pixels.dtype if fits else np.int32)
    return (np.float32(lo + hi) - pixels).astype(np.float32)


def _spacing(ds) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0:
            return row, col
    return None
