"""Width and height of PNG, JPEG, TIFF and BMP files read from their headers, without decoding.

Used to refuse images above the pixel limit before any pixel memory is allocated.
Each reader returns ``(width, height)``, or None when the header is not one it knows
(the decoder then has the last word).
"""

from __future__ import annotations

import struct
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_NO_LENGTH = {0x01, 0xD8, *range(0xD0, 0xD8)}  # markers without a length field
_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257
_BMP_HEADERS = {12, 40, 52, 56, 64, 108, 124}  # sizes of the known BMP info headers


def sniff_format(head: bytes) -> str | None:
    """"PNG", "JPEG", "TIFF" or "BMP" from a file's first bytes, else None."""
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM") and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in _BMP_HEADERS:
        return "BMP"
    return None


def image_size(f: BinaryIO) -> tuple[int, int] | None:
    """``(width, height)`` from the header of the file open in ``f`` (any position), or None."""
    f.seek(0)
    head = f.read(32)
    fmt = sniff_format(head)
    if fmt == "PNG":
        return _png_size(head)
    if fmt == "JPEG":
        return _jpeg_size(f)
    if fmt == "TIFF":
        return _tiff_size(f, head)
    if fmt == "BMP":
        return _bmp_size(head)
    return None


def _png_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def _jpeg_size(f: BinaryIO) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        byte = f.read(1)
        if not byte:
            return None
        if byte != b"\xff":
            return None  # not at a marker: malformed, let the decoder report it
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _JPEG_NO_LENGTH:
            continue
        if code == 0xD9 or code == 0xDA:  # end of image / start of scan before any frame header
            return None
        raw = f.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0]
        if code in _JPEG_SOF:
            body = f.read(5)
            if len(body) < 5:
                return None
            height, width = struct.unpack(">HH", body[1:5])
            return (width, height) if height else None  # height 0: given later by a DNL marker
        f.seek(length - 2, 1)


def _tiff_size(f: BinaryIO, head: bytes) -> tuple[int, int] | None:
    end = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    if big:
        offset = struct.unpack(end + "Q", head[8:16])[0]
        count_fmt, entry_fmt, entry_size = "Q", "HHQ8s", 20
    else:
        offset = struct.unpack(end + "I", head[4:8])[0]
        count_fmt, entry_fmt, entry_size = "H", "HHI4s", 12
    f.seek(offset)
    raw = f.read(struct.calcsize(end + count_fmt))
    if len(raw) < struct.calcsize(end + count_fmt):
        return None
    n = struct.unpack(end + count_fmt, raw)[0]
    size = {}
    for _ in range(min(n, 4096)):
        entry = f.read(entry_size)
        if len(entry) < entry_size:
            return None
        tag, typ, _count, value = struct.unpack(end + entry_fmt, entry)
        if tag in (_TIFF_WIDTH, _TIFF_HEIGHT):
            fmt = {3: "H", 4: "I", 16: "Q"}.get(typ)
            if fmt is None:
                return None
            size[tag] = struct.unpack_from(end + fmt, value)[0]
    if _TIFF_WIDTH in size and _TIFF_HEIGHT in size:
        return size[_TIFF_WIDTH], size[_TIFF_HEIGHT]
    return None


def _bmp_size(head: bytes) -> tuple[int, int] | None:
    if len(head) < 26:
        return None
    header_size = struct.unpack("<I", head[14:18])[0]
    if header_size == 12:  # OS/2 bitmap core header
        return struct.unpack("<HH", head[18:22])
    width, height = struct.unpack("<ii", head[18:26])
    return abs(width), abs(height)  # negative height: rows stored top-down
