"""Reading X-ray images and masks from files, and writing outputs atomically.

``read_image`` returns a 2-D array in the file's own pixel units (uint8, uint16 or float32);
intensity scaling is left to :mod:`lungseg.preprocess`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
MAX_PIXELS = 100_000_000  # 100 MP: well above a 4020x4892 detector image (19.7 MP)


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


def read_image(path) -> np.ndarray:
    """Read a PNG/JPEG/TIFF/BMP X-ray (8 or 16 bit, gray or colour) as a 2-D array."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    data = np.fromfile(str(path), dtype=np.uint8)
    arr = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(f"{path}: not a readable image (truncated, corrupt or not an image file)")
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


def write_bytes_atomic(path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_any(image, name: str | None = None) -> np.ndarray:
    """A path, PIL image or numpy array -> validated 2-D pixel array in its own units."""
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        arr = read_dicom(path) if path.suffix.lower() in DICOM_SUFFIXES else read_image(path)
        name = name or str(path)
    elif hasattr(image, "mode") and hasattr(image, "size") and not isinstance(image, np.ndarray):
        name = name or "<PIL image>"
        arr = to_grayscale(np.asarray(image), name)
    else:
        name = name or "<array>"
        arr = np.asarray(image)
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        if arr.ndim == 3 and arr.shape[2] > 4:
            raise InputError(f"{name}: {arr.shape[2]} channels; at most 4 are supported")
        arr = to_grayscale(arr, name)
    return validate_pixels(arr, name)


def validate_pixels(arr: np.ndarray, name: str, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Refuse arrays that cannot be an X-ray: wrong dtype, tiny, huge, non-finite or constant."""
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name}: unsupported pixel type {arr.dtype}")
    h, w = arr.shape
    if h == 0 or w == 0:
        raise InputError(f"{name}: zero-size image ({w}x{h})")
    if min(h, w) < 2:
        raise InputError(f"{name}: image is {w}x{h}; at least 2 pixels per side are needed")
    if h * w > max_pixels:
        raise InputError(f"{name}: {w}x{h} = {h * w} pixels exceeds the limit of {max_pixels}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError(f"{name}: NaN or infinite pixel values")
    if arr.min() == arr.max():
        raise InputError(f"{name}: constant image (every pixel is {arr.flat[0]}); nothing to segment")
    return arr


def read_dicom(path) -> np.ndarray:
    """Read a single-frame grayscale DICOM as MONOCHROME2 values (see :mod:`lungseg.dicom`)."""
    from .dicom import read_dicom as _read

    return _read(path).pixels
