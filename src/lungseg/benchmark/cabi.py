"""The C++ runtime's C ABI (``cpp/include/lungseg/lungseg.h``) through ctypes, to time it from Python.

Only what the benchmark needs: create a segmenter for a model file, segment one uint8 or
uint16 pixel buffer into a mask, destroy. Follows C ABI 2 (``lungseg_abi_version() >= 2``:
every buffer passed with its size in bytes); an older library is refused by name. The library is found through ``LUNGSEG_CPP_LIB``
or in the build folder that ``scripts/test_cpp.sh`` writes (``build/cpp/cpp/liblungseg.so``).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np

BACKENDS = {"onnxruntime": 1, "libtorch": 2, "tensorrt": 3}
DEVICES = {"cpu": 0, "cuda": 1}
PIXEL_TYPES = {np.dtype(np.uint8): 1, np.dtype(np.uint16): 2}
SEGMENT_RAW = 0x2
REPO = Path(__file__).resolve().parents[3]


UNSUPPORTED = 4  # LUNGSEG_ERROR_UNSUPPORTED: backend or device not built in
ABI_VERSION = 2  # LUNGSEG_ABI_VERSION of the header these bindings follow


class CabiError(RuntimeError):
    """A C ABI call returned an error status; the message is the library's own."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class _Options(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_uint32), ("backend", ctypes.c_int32), ("device", ctypes.c_int32),
                ("device_index", ctypes.c_int32), ("num_threads", ctypes.c_int32), ("reserved", ctypes.c_uint32),
                ("max_pixels", ctypes.c_uint64),
                # ABI 2: lungseg_options_init() sets struct_size to the full size
                ("extent", ctypes.c_int32), ("create_flags", ctypes.c_uint32), ("expected_sha256", ctypes.c_char_p)]


def find_library() -> Path | None:
    """The lungseg C++ shared library, or None when it has not been built."""
    env = os.environ.get("LUNGSEG_CPP_LIB")
    candidates = [Path(env)] if env else []
    candidates += [Path.cwd() / "build/cpp/cpp/liblungseg.so", REPO / "build/cpp/cpp/liblungseg.so"]
    return next((p for p in candidates if p.is_file()), None)


def _bind(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    if not hasattr(lib, "lungseg_abi_version"):
        raise FileNotFoundError(f"{path} is a lungseg library before C ABI {ABI_VERSION}: rebuild it")
    lib.lungseg_abi_version.restype = ctypes.c_uint32
    if lib.lungseg_abi_version() < ABI_VERSION:
        raise FileNotFoundError(f"{path} has C ABI {lib.lungseg_abi_version()}, below the {ABI_VERSION} these bindings need")
    lib.lungseg_options_init.argtypes = [ctypes.POINTER(_Options)]
    lib.lungseg_last_error.restype = ctypes.c_char_p
    lib.lungseg_backend_available.argtypes = [ctypes.c_int32]
    lib.lungseg_create.argtypes = [ctypes.c_char_p, ctypes.POINTER(_Options), ctypes.POINTER(ctypes.c_void_p)]
    lib.lungseg_destroy.argtypes = [ctypes.c_void_p]
    lib.lungseg_destroy.restype = None
    # lungseg_segment(seg, pixels, pixels_size, pixel_type, width, height, row_stride, mask, mask_size, flags)
    lib.lungseg_segment.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int32,
                                    ctypes.c_uint32, ctypes.c_uint32, ctypes.c_size_t, ctypes.c_void_p,
                                    ctypes.c_size_t, ctypes.c_uint32]
    return lib


class CppSegmenter:
    """One C++ segmenter: ``segment(pixels [H, W] uint8/uint16, raw=False) -> mask uint8 [H, W]``."""

    def __init__(self, model_path, backend: str, device: str = "cpu", threads: int = 0, library=None):
        path = Path(library) if library else find_library()
        if path is None:
            raise FileNotFoundError("the C++ runtime is not built (bash scripts/test_cpp.sh builds build/cpp)")
        self.lib = _bind(path)
        self.library = path
        if not self.lib.lungseg_backend_available(BACKENDS[backend]):
            raise FileNotFoundError(f"{path.name} was built without the {backend} backend")
        opts = _Options()
        self.lib.lungseg_options_init(ctypes.byref(opts))
        opts.backend, opts.device, opts.num_threads = BACKENDS[backend], DEVICES[device], int(threads)
        handle = ctypes.c_void_p()
        status = self.lib.lungseg_create(str(model_path).encode(), ctypes.byref(opts), ctypes.byref(handle))
        if status != 0:
            raise CabiError(status, self.lib.lungseg_last_error().decode(errors="replace"))
        self.handle = handle

    def segment(self, pixels: np.ndarray, raw: bool = False) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels)
        if pixels.dtype not in PIXEL_TYPES:
            raise TypeError(f"the C ABI takes uint8 or uint16 pixels, not {pixels.dtype}")
        h, w = pixels.shape
        mask = np.empty((h, w), np.uint8)
        status = self.lib.lungseg_segment(self.handle, pixels.ctypes.data, pixels.nbytes, PIXEL_TYPES[pixels.dtype],
                                          w, h, 0, mask.ctypes.data, mask.nbytes, SEGMENT_RAW if raw else 0)
        if status != 0:
            raise CabiError(status, self.lib.lungseg_last_error().decode(errors="replace"))
        return mask

    def close(self) -> None:
        if getattr(self, "handle", None):
            self.lib.lungseg_destroy(self.handle)
            self.handle = None

    def __del__(self):
        self.close()
