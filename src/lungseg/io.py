"""Reading X-ray images and masks from files, and writing outputs atomically.

``read_image`` returns a 2-D array in the file's own pixel units (uint8, uint16 or float32);
intensity scaling is left to :mod:`lungseg.preprocess`. :func:`load_image` takes anything
``lungseg.segment`` accepts (a path to PNG/JPEG/TIFF/BMP/DICOM, a PIL image, a numpy array)
and returns validated pixels plus the pixel spacing where the file records one. Every
unusable input raises :class:`~lungseg.errors.InputError` naming the input and the problem.
"""

from __future__ import annotations

import os
import re
import time
import tempfile
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from .errors import InputError
from .imageheader import image_size, sniff_format

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
# Largest image accepted, in pixels: 100 MP, five times a 4020x4892 detector image (19.7 MP).
# Files are checked from their header before decoding. Change it with ``lungseg.io.MAX_PIXELS = n``.
MAX_PIXELS = 100_000_000


class LoadedImage(NamedTuple):
    """Validated 2-D pixels in their own units and the (row, column) spacing in mm, or None."""

    pixels: np.ndarray
    spacing: tuple[float, float] | None


def to_grayscale(arr: np.ndarray, name: str = "<array>") -> np.ndarray:
    """HxW, HxWx1, HxWx3 (RGB) or HxWx4 (RGBA) -> HxW in the array's own units."""
    arr = np.asarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    elif arr.ndim == 3 and arr.shape[2] in (3, 4):
        rgb = arr[:, :, :3].astype(np.float32)
        gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        arr = gray.round().astype(arr.dtype) if np.issubdtype(arr.dtype, np.integer) else gray
    elif arr.ndim == 3:
        raise InputError(f"{name}: {arr.shape[2]} channels; expected 1, 3 or 4")
    elif arr.ndim != 2:
        raise InputError(f"{name}: array of shape {arr.shape}; expected HxW or HxWxC")
    return arr


def _check_size(name: str, width: int, height: int, max_pixels: int | None = None) -> None:
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if width == 0 or height == 0:
        raise InputError(f"{name}: zero-size image ({width}x{height})")
    if width * height > limit:
        raise InputError(f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of {limit} "
                         "(lungseg.io.MAX_PIXELS)")


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


def read_image(path, max_pixels: int | None = None) -> np.ndarray:
    """Read a PNG/JPEG/TIFF/BMP X-ray (8 or 16 bit, gray or colour) as a 2-D array.

    The size is checked against ``max_pixels`` (default :data:`MAX_PIXELS`) from the
    file's header before any pixel is decoded.
    """
    path = Path(path)
    _check_file(path)
    with open(path, "rb") as f:
        fmt = sniff_format(f.read(32))
        size = image_size(f)
        if size is not None:
            _check_size(str(path), *size, max_pixels)
        f.seek(0)
        data = f.read()
    if fmt == "JPEG" and not _jpeg_complete(data):
        raise InputError(f"{path}: truncated JPEG file (no end-of-image marker)")
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    del data
    if arr is None or arr.size == 0:
        if fmt is None:
            raise InputError(f"{path}: not an image file (format not recognised)")
        raise InputError(f"{path}: truncated or corrupt {fmt} file")
    if arr.ndim == 3 and arr.shape[2] in (3, 4):
        arr = arr[:, :, [2, 1, 0] + ([3] if arr.shape[2] == 4 else [])]  # OpenCV gives BGR(A)
    return to_grayscale(arr, str(path))


def read_mask(path) -> np.ndarray:
    """Read a mask file as uint8 0/1 (any non-zero pixel is lung)."""
    return (read_image(path) > 0).astype(np.uint8)


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


def validate_pixels(arr: np.ndarray, name: str, max_pixels: int | None = None) -> np.ndarray:
    """Refuse arrays that cannot be an X-ray: wrong dtype, tiny, huge, non-finite or constant."""
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name}: unsupported pixel type {arr.dtype}")
    h, w = arr.shape
    _check_size(name, w, h, max_pixels)
    if min(h, w) < 2:
        raise InputError(f"{name}: image is {w}x{h}; at least 2 pixels per side are needed")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(f"{name}: NaN or infinite pixel values")
    if arr.min() == arr.max():
        raise InputError(f"{name}: constant image (every pixel is {arr.flat[0]}); nothing to segment")
    return arr


def read_dicom(path) -> np.ndarray:
    """Read a single-frame grayscale DICOM as MONOCHROME2 values (see :mod:`lungseg.dicom`)."""
    from .dicom import read_dicom as _read

    return _read(path).pixels
