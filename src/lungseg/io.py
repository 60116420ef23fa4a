"""Reading X-ray images and masks from files, and writing outputs atomically.

``read_image`` returns a 2-D array in the file's own pixel units (uint8, uint16 or float32),
turned to its displayed orientation (EXIF/TIFF Orientation); intensity scaling is left to
:mod:`lungseg.preprocess`. :func:`load_image` takes anything ``lungseg.segment`` accepts (a
path to PNG/JPEG/TIFF/BMP/WebP/PNM/DICOM, a PIL image, a numpy array) and returns validated
pixels plus the pixel spacing where the file records one. Files pass the header checks of
:mod:`lungseg.imageheader` (format, pixel limit) before decoding. Every unusable input raises
:class:`~lungseg.errors.InputError` naming the input and the problem.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import tempfile
import types
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from . import imageheader
from .errors import InputError
from .imageheader import check_image_file, check_size, sniff_format

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".pbm", ".pgm", ".ppm", ".pnm", ".pfm"}
DICOM_SUFFIXES = {".dcm", ".dicom"}


class _IoModule(types.ModuleType):
    """``lungseg.io.MAX_PIXELS`` reads and sets :data:`lungseg.imageheader.MAX_PIXELS`, the one limit."""

    @property
    def MAX_PIXELS(self) -> int:  # noqa: N802 (a module constant)
        return imageheader.MAX_PIXELS

    @MAX_PIXELS.setter
    def MAX_PIXELS(self, value: int) -> None:  # noqa: N802
        imageheader.MAX_PIXELS = value


sys.modules[__name__].__class__ = _IoModule


class LoadedImage(NamedTuple):
    """Validated 2-D pixels in their own units and the (row, column) spacing in mm, or None."""

    pixels: np.ndarray
    spacing: tuple[float, float] | None


def _check_pixel_type(arr: np.ndarray, name: str) -> None:
    if np.iscomplexobj(arr):
        raise InputError(f"{name}: complex pixel values ({arr.dtype}); expected real numbers "
                         "(pass the magnitude or the real part)")
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name}: unsupported pixel type {arr.dtype}")


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luma of HxWx3 in the array's own units (wide integers and float64 kept in float64)."""
    dtype = rgb.dtype
    wide = dtype == np.float64 or (np.issubdtype(dtype, np.integer) and dtype.itemsize > 2)
    work = np.float64 if wide else np.float32
    gray = rgb.astype(work) @ np.array([0.299, 0.587, 0.114], dtype=work)
    if not np.issubdtype(dtype, np.integer):
        return gray
    info = np.iinfo(dtype)
    top = float(info.max)
    if int(top) > info.max:  # 2**63 - 1 and 2**64 - 1 round up in float64: the largest float below
        top = float(np.nextafter(top, 0.0))
    return np.clip(gray.round(), float(info.min), top).astype(dtype)


def to_grayscale(arr: np.ndarray, name: str = "<array>") -> np.ndarray:
    """HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) -> HxW in the array's own units.

    Complex and non-numeric arrays are refused; integers keep their type and full range.
    """
    arr = np.asarray(arr)
    _check_pixel_type(arr, name)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = _luma(arr[:, :, :3])
    elif arr.ndim == 3:
        raise InputError(f"{name}: {arr.shape[2]} channels; expected 1, 3 or 4")
    elif arr.ndim != 2:
        raise InputError(f"{name}: array of shape {arr.shape}; expected HxW or HxWxC")
    return arr


_check_size = check_size  # the one pixel-limit check, in lungseg.imageheader


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")


def _jpeg_complete(data: bytes) -> bool:
    """True when an end-of-image marker follows the last scan (entropy data cannot hold one)."""
    last_scan = data.rfind(b"\xff\xda")
    return last_scan != -1 and data.find(b"\xff\xd9", last_scan) != -1


# libjpeg reports damaged entropy-coded data only as warnings on stderr and decodes on (grey rows).
_JPEG_CORRUPT = (b"Corrupt JPEG data", b"Premature end of JPEG file")
_STDERR_LOCK = threading.Lock()  # fd 2 is redirected while a JPEG decodes: one at a time per process


def _decode_jpeg(buf: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
    """``cv2.imdecode`` with libjpeg's corrupt-data warnings caught from stderr; other output passes on."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable fd 2: decode unchecked
            return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), []
        try:
            with tempfile.TemporaryFile() as tmp:
                os.dup2(tmp.fileno(), 2)
                try:
                    arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
                finally:
                    os.dup2(saved, 2)
                tmp.seek(0)
                lines = tmp.read().splitlines(keepends=True)
        finally:
            os.close(saved)
    warnings = [ln.decode(errors="replace").strip() for ln in lines if ln.startswith(_JPEG_CORRUPT)]
    other = b"".join(ln for ln in lines if not ln.startswith(_JPEG_CORRUPT))
    if other:
        os.write(2, other)
    return arr, warnings


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels -> displayed pixels for an EXIF/TIFF Orientation value 1-8 (axes 0 and 1)."""
    if orientation in (5, 6, 7, 8):
        arr = np.swapaxes(arr, 0, 1)  # 5: transpose; 6, 7, 8 are it followed by a flip
    flips = {2: (1,), 3: (0, 1), 4: (0,), 6: (1,), 7: (0, 1), 8: (0,)}.get(orientation, ())
    if flips:
        arr = np.flip(arr, flips)
    return np.ascontiguousarray(arr) if orientation != 1 else arr


def read_image(path, max_pixels: int | None = None) -> np.ndarray:
    """Read a PNG/JPEG/TIFF/BMP/WebP/PNM X-ray (8 or 16 bit or float, gray or colour) as a 2-D array.

    The format and size are checked by :func:`lungseg.imageheader.check_image_file` (pixel limit
    ``max_pixels``, default ``MAX_PIXELS``) before any pixel is decoded; other formats are refused.
    JPEG and TIFF are turned to their displayed orientation (EXIF / TIFF Orientation tag), so the
    mask is too. Damaged JPEG data (libjpeg's corrupt-data warnings) is an InputError.
    """
    path = Path(path)
    _check_file(path)
    with open(path, "rb") as f:
        header = check_image_file(f, str(path), max_pixels)
        f.seek(0)
        data = f.read()
    fmt = header.format
    if fmt == "JPEG" and not _jpeg_complete(data):
        raise InputError(f"{path}: truncated JPEG file (no end-of-image marker)")
    buf = np.frombuffer(data, np.uint8)
    if fmt == "JPEG":
        arr, warnings = _decode_jpeg(buf)
        if warnings:
            raise InputError(f"{path}: truncated or corrupt JPEG data ({warnings[0]})")
    else:
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    del data, buf
    if arr is None or arr.size == 0:
        raise InputError(f"{path}: truncated or corrupt {fmt} file")
    turned = fmt == "TIFF"  # OpenCV's TIFF decoder applies the Orientation tag itself; for JPEG we do
    size = (header.width, header.height)
    if turned and header.orientation >= 5:
        size = size[::-1]
    if arr.shape[:2] != size[::-1]:
        raise InputError(f"{path}: decoded {arr.shape[1]}x{arr.shape[0]} pixels, but the {fmt} header says "
                         f"{size[0]}x{size[1]}")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, [2, 1, 0] + ([3] if arr.shape[2] == 4 else [])]  # OpenCV gives BGR(A)
    if not turned:
        arr = _orient(arr, header.orientation)
    return to_grayscale(arr, str(path))


def read_mask(path) -> np.ndarray:
    """Read a mask file as uint8 0/1, thresholded at half its range.

    0/1 and 0/1/2 label masks (largest value 2 or less) count every non-zero pixel as lung;
    others (0/255, JPEG masks with compression noise, 16-bit, float) count pixels above half
    their largest value, so JPEG ringing around the lungs is not scored as lung.
    """
    m = read_image(path)
    top = float(m.max()) if m.size else 0.0
    if top <= 0:
        return np.zeros(m.shape, np.uint8)
    if np.issubdtype(m.dtype, np.floating) or top > 2:
        return (m > top / 2).astype(np.uint8)
    return (m > 0).astype(np.uint8)


def write_png_atomic(path, image: np.ndarray) -> None:
    """Write ``image`` as PNG to ``path`` via a temporary file in the same folder and a rename."""
    path = Path(path)
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise InputError(f"{path}: could not encode image of shape {image.shape}")
    write_bytes_atomic(path, buf.tobytes())


def _new_file_mode() -> int:
    """The mode ``open()`` would give a new file: 0666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # what write_bytes_atomic's mkstemp names


def remove_stale_temp_files(folder, older_than_s: float = 0.0) -> list[Path]:
    """Delete temporary files of :func:`write_bytes_atomic`'s naming left in ``folder`` by a killed run.

    Only regular files whose name matches ``.<name>.<8 chars>.tmp`` (and older than
    ``older_than_s`` seconds) are touched; returns what was removed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    now = time.time()
    for p in folder.iterdir():
        if TEMP_PATTERN.match(p.name) and p.is_file() and not p.is_symlink():
            try:
                if now - p.stat().st_mtime >= older_than_s:
                    p.unlink()
                    removed.append(p)
            except OSError:
                pass
    return removed


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _new_file_mode())  # mkstemp makes 0600; a written file gets the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def is_dicom_file(path: Path) -> bool:
    """A DICOM by suffix, or by the 'DICM' marker after the 128-byte preamble."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return sniff_format(head) is None and head[128:132] == b"DICM"


def _pil_to_array(image, name: str) -> np.ndarray:
    """A PIL image of any mode -> numpy array (palette and exotic modes via RGB(A))."""
    mode = image.mode
    if mode in ("LA", "La", "PA"):
        image = image.convert("RGBA") if mode == "PA" else image.getchannel(0)
    elif mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode not in ("1", "L", "I", "F", "RGB", "RGBA", "RGBX", "RGBa") and not mode.startswith("I;16"):
        try:
            image = image.convert("RGB")
        except (ValueError, OSError) as e:
            raise InputError(f"{name}: PIL image mode {mode} cannot be converted to gray ({e})") from e
    try:
        return np.asarray(image)
    except (OSError, ValueError) as e:  # lazily loaded file that is truncated or corrupt
        raise InputError(f"{name}: cannot read the PIL image's pixels ({e})") from e


def load_image(image, name: str | None = None, max_pixels: int | None = None) -> LoadedImage:
    """A path, PIL image or numpy array -> :class:`LoadedImage` (validated 2-D pixels, spacing)."""
    spacing = None
    if isinstance(image, (bytes, bytearray, memoryview)):
        raise InputError(f"{name or '<bytes>'}: a {type(image).__name__} object is not an image; pass a path "
                         "(str or pathlib.Path), a PIL image or a numpy array (to read encoded bytes, save "
                         "them to a file first)")
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        name = name or str(path)
        _check_file(path)
        if is_dicom_file(path):
            from .dicom import read_dicom as _read_dicom

            dicom = _read_dicom(path, max_pixels)
            arr, spacing = dicom.pixels, dicom.spacing
        else:
            arr = read_image(path, max_pixels)
    elif hasattr(image, "mode") and hasattr(image, "size") and not isinstance(image, np.ndarray):
        name = name or "<PIL image>"
        _check_size(name, *image.size, max_pixels)
        arr = to_grayscale(_pil_to_array(image, name), name)
    else:
        name = name or "<array>"
        arr = np.asarray(image)
        _check_pixel_type(arr, name)
        if arr.ndim in (2, 3):
            _check_size(name, arr.shape[1], arr.shape[0], max_pixels)
        if arr.ndim == 3 and arr.shape[2] > 4:
            raise InputError(f"{name}: {arr.shape[2]} channels; at most 4 are supported (HxWxC, channels last)")
        arr = to_grayscale(arr, name)
    if arr.dtype == bool:  # a 0/1 picture (bool array, PIL mode "1")
        arr = arr.astype(np.uint8)
    return LoadedImage(validate_pixels(arr, name, max_pixels), spacing)


def load_any(image, name: str | None = None) -> np.ndarray:
    """A path, PIL image or numpy array -> validated 2-D pixel array in its own units."""
    return load_image(image, name).pixels


# Float images whose largest |value| lies outside 2**-100 .. 2**100 cannot be carried in float32
# (the network input type) with room to spare: they are scaled by a power of two, which is exact.
_FLOAT_RANGE = (2.0 ** -100, 2.0 ** 100)


def validate_pixels(arr: np.ndarray, name: str, max_pixels: int | None = None) -> np.ndarray:
    """Refuse arrays that cannot be an X-ray: wrong dtype, tiny, huge, non-finite or constant.

    Every finite image is accepted at any scale: integers (int64/uint64 included) as they are,
    floats beyond float32's safe range scaled by an exact power of two (segmentation does not
    depend on linear scaling).
    """
    _check_pixel_type(arr, name)
    if arr.dtype == bool:
        raise InputError(f"{name}: unsupported pixel type {arr.dtype}")
    h, w = arr.shape
    _check_size(name, w, h, max_pixels)
    if min(h, w) < 2:
        raise InputError(f"{name}: image is {w}x{h}; at least 2 pixels per side are needed")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(f"{name}: NaN or infinite pixel values")
    lo, hi = arr.min(), arr.max()
    if lo == hi:
        raise InputError(f"{name}: constant image (every pixel is {arr.flat[0]}); nothing to segment")
    if np.issubdtype(arr.dtype, np.floating):
        peak = max(abs(float(lo)), abs(float(hi)))
        if not _FLOAT_RANGE[0] <= peak <= _FLOAT_RANGE[1]:
            arr = np.ldexp(arr.astype(np.float64), -int(np.frexp(peak)[1]))  # largest |value| in [0.5, 1)
    return arr


def read_dicom(path) -> np.ndarray:
    """Read a single-frame grayscale DICOM as MONOCHROME2 values (see :mod:`lungseg.dicom`)."""
    from .dicom import read_dicom as _read

    return _read(path).pixels
