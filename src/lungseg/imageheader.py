"""The boundary for untrusted image data: format, size and orientation read from headers, before decoding.

Every reader goes through here: :mod:`lungseg.io` calls :func:`check_image_file` on each image
file and :mod:`lungseg.dicom` calls :func:`check_size` and :func:`frame_size` on each DICOM, so
no pixel memory is allocated for an image above :data:`MAX_PIXELS` or of a format whose header
is not read. The format is found from the content, never from the file's suffix.

Accepted (header read): PNG, JPEG, TIFF (classic and BigTIFF), BMP, WebP (VP8, VP8L, VP8X),
PNM (P1-P6) and PFM. Other formats the decoder would read (JPEG 2000, GIF, AVIF/HEIF, HDR,
OpenEXR, JPEG XL, PAM, Sun raster) and unknown content are refused with an
:class:`~lungseg.errors.InputError`.
"""

from __future__ import annotations

import struct
from io import BytesIO
from typing import BinaryIO, NamedTuple

from .errors import InputError

# Largest image accepted, in pixels: 100 MP, five times a 4020x4892 detector image (19.7 MP).
# Change it with ``lungseg.io.MAX_PIXELS = n`` (the same value as ``lungseg.imageheader.MAX_PIXELS``).
MAX_PIXELS = 100_000_000
ACCEPTED = ("PNG", "JPEG", "TIFF", "BMP", "WebP", "PNM")
HEAD_BYTES = 4096  # read once per file: enough for every signature and the PNM/WebP/PNG headers

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic; 0xF7: JPEG-LS): they carry the size.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_JPEG_NO_LENGTH = {0x01, 0xD8, *range(0xD0, 0xD8)}  # markers without a length field
_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_ORIENTATION, _TIFF_TILE_W, _TIFF_TILE_H = 256, 257, 274, 322, 323
_TIFF_TYPES = {3: "H", 4: "I", 8: "h", 9: "i", 16: "Q", 17: "q"}  # SHORT LONG SSHORT SLONG LONG8 SLONG8
_BMP_HEADERS = {12, 40, 52, 56, 64, 108, 124}  # sizes of the known BMP info headers
_PNM_MAGIC = {b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"PF", b"Pf"}
_WHITESPACE = b" \t\r\n\v\f"
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
_J2K_CODESTREAM = b"\xff\x4f\xff\x51"  # SOC followed by SIZ
_HEIF_BRANDS = {b"avif", b"avis", b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"}


class Header(NamedTuple):
    """What a file's header says: format, width, height, orientation (EXIF/TIFF 1-8; 1: as stored)."""

    format: str
    width: int
    height: int
    orientation: int = 1


def check_size(name: str, width: int, height: int, max_pixels: int | None = None) -> None:
    """InputError when ``width x height`` is zero or above ``max_pixels`` (default :data:`MAX_PIXELS`)."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if width == 0 or height == 0:
        raise InputError(f"{name}: zero-size image ({width}x{height})")
    if width * height > limit:
        raise InputError(f"{name}: {width}x{height} = {width * height} pixels exceeds the limit of {limit} "
                         "(lungseg.io.MAX_PIXELS)")


def sniff_format(head: bytes) -> str | None:
    """The format named by a file's first bytes (accepted or not, see :data:`ACCEPTED`), else None."""
    if head.startswith(PNG_SIGNATURE):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head.startswith(b"BM") and len(head) >= 18 and struct.unpack("<I", head[14:18])[0] in _BMP_HEADERS:
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:2] in _PNM_MAGIC and len(head) > 2 and (head[2] in _WHITESPACE or head[2:3] == b"#"):
        return "PNM"
    if head.startswith(_JP2_SIGNATURE) or head.startswith(_J2K_CODESTREAM):
        return "JPEG 2000"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "AVIF/HEIF"
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "Radiance HDR"
    if head.startswith(b"\x76\x2f\x31\x01"):
        return "OpenEXR"
    if head.startswith(b"\xff\x0a") or head.startswith(b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return "JPEG XL"
    if head.startswith(b"P7") and head[2:3] in (b"\n", b" ", b"\r"):
        return "PAM"
    if head.startswith(b"\x59\xa6\x6a\x95"):
        return "Sun raster"
    return None


def read_header(f: BinaryIO) -> Header | None:
    """The :class:`Header` of the file open in ``f`` (any position) when its format is accepted
    and its header readable; None otherwise."""
    f.seek(0)
    head = f.read(HEAD_BYTES)
    fmt = sniff_format(head)
    reader = _READERS.get(fmt)
    if reader is None:
        return None
    try:
        return reader(f, head)
    except (struct.error, ValueError, OverflowError):  # cut short, or offsets past any file
        return None


def check_image_file(f: BinaryIO, name: str, max_pixels: int | None = None) -> Header:
    """The :class:`Header` of an image file, or InputError: unknown or unsupported format,
    unreadable header, zero size, or more pixels than ``max_pixels``. Reads only the header."""
    f.seek(0)
    fmt = sniff_format(f.read(HEAD_BYTES))
    if fmt is None:
        raise InputError(f"{name}: not an image file (format not recognised)")
    if fmt not in ACCEPTED:
        raise InputError(f"{name}: {fmt} images are not supported (accepted: {', '.join(ACCEPTED)}, DICOM)")
    header = read_header(f)
    if header is None:
        raise InputError(f"{name}: truncated or corrupt {fmt} file (its header gives no readable image size)")
    check_size(name, header.width, header.height, max_pixels)
    return header


def image_size(f: BinaryIO) -> tuple[int, int] | None:
    """``(width, height)`` from the header of the file open in ``f`` (any position), or None."""
    header = read_header(f)
    return None if header is None else (header.width, header.height)


# ---- DICOM: the frame inside encapsulated pixel data ---------------------------------------

_DICOM_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
               "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
_DICOM_J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
              "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
# Decoded to exactly Rows x Columns whatever the data say (RLE segments hold no size).
DICOM_SIZE_FROM_ATTRIBUTES = {"1.2.840.10008.1.2.5"}


def frame_size(frame: bytes, transfer_syntax: str) -> tuple[int, int] | None:
    """``(width, height)`` from the codestream header of one encapsulated DICOM frame
    (JPEG, JPEG-LS, JPEG 2000/HTJ2K), or None when it cannot be read or the syntax is another."""
    try:
        if transfer_syntax in _DICOM_JPEG:
            if not frame.startswith(b"\xff\xd8"):
                return None
            found = _jpeg_header(BytesIO(frame))
            return None if found is None else found[:2]
        if transfer_syntax in _DICOM_J2K:
            return _j2k_size(frame)
    except (struct.error, ValueError, OverflowError):
        return None
    return None


def _j2k_size(data: bytes) -> tuple[int, int] | None:
    """Size from the SIZ segment of a JPEG 2000 codestream, bare or inside a JP2 'jp2c' box."""
    if data.startswith(_JP2_SIGNATURE):
        pos = 0
        while pos + 8 <= len(data):
            length, box = struct.unpack(">I4s", data[pos:pos + 8])
            if box == b"jp2c":
                return _j2k_size(data[pos + 8:])
            if length == 1 and pos + 16 <= len(data):
                length = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
            if length < 8:
                return None
            pos += length
        return None
    if not data.startswith(_J2K_CODESTREAM) or len(data) < 24:
        return None
    xsiz, ysiz, x0, y0 = struct.unpack(">IIII", data[8:24])
    if xsiz <= x0 or ysiz <= y0:
        return None
    return xsiz - x0, ysiz - y0


# ---- one reader per accepted format: (file, first bytes) -> Header or None ------------------

def _png(f: BinaryIO, head: bytes) -> Header | None:
    if len(head) < 24 or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return Header("PNG", width, height)


def _jpeg(f: BinaryIO, head: bytes) -> Header | None:
    found = _jpeg_header(f)
    return None if found is None else Header("JPEG", *found)


def _jpeg_header(f: BinaryIO) -> tuple[int, int, int] | None:
    """(width, height, EXIF orientation) from the markers before the first scan, or None."""
    f.seek(2)
    size, orientation = None, 1
    while True:
        byte = f.read(1)
        if byte != b"\xff":
            return None  # end of file, or not at a marker: malformed
        marker = f.read(1)
        while marker == b"\xff":  # fill bytes
            marker = f.read(1)
        if not marker:
            return None
        code = marker[0]
        if code in _JPEG_NO_LENGTH:
            continue
        if code in (0xD9, 0xDA):  # end of image / start of scan: the frame header must have come
            return None if size is None else (*size, orientation)
        raw = f.read(2)
        if len(raw) < 2:
            return None
        length = struct.unpack(">H", raw)[0]
        if length < 2:
            return None
        if code in _JPEG_SOF:
            if size is not None or length < 8:
                return None  # two frame headers (which one a decoder uses is not ours to guess), or a short one
            body = f.read(5)
            if len(body) < 5:
                return None
            height, width = struct.unpack(">HH", body[1:5])
            if height == 0:
                return None  # height given later by a DNL marker
            size = (width, height)
            f.seek(length - 7, 1)
        elif code == 0xE1:  # APP1: Exif
            body = f.read(length - 2)
            if body.startswith(b"Exif\x00\x00") and orientation == 1:
                tags = _tiff_tags(BytesIO(body[6:]), {_TIFF_ORIENTATION})
                orientation = _orientation(tags)
        else:
            f.seek(length - 2, 1)


def _orientation(tags: dict | None) -> int:
    value = (tags or {}).get(_TIFF_ORIENTATION)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _tiff(f: BinaryIO, head: bytes) -> Header | None:
    tags = _tiff_tags(f, {_TIFF_WIDTH, _TIFF_HEIGHT, _TIFF_ORIENTATION, _TIFF_TILE_W, _TIFF_TILE_H})
    if tags is None:
        return None
    width, height = tags.get(_TIFF_WIDTH), tags.get(_TIFF_HEIGHT)
    if not isinstance(width, int) or not isinstance(height, int):
        return None
    tile_w, tile_h = tags.get(_TIFF_TILE_W, 0), tags.get(_TIFF_TILE_H, 0)
    if (_TIFF_TILE_W in tags or _TIFF_TILE_H in tags) and not (isinstance(tile_w, int) and isinstance(tile_h, int)):
        return None
    if tile_w * tile_h > max(width * height, 1 << 20):
        return None  # tiles larger than the image (and than 1 MP): the decoder would allocate them
    return Header("TIFF", width, height, _orientation(tags))


def _tiff_tags(f: BinaryIO, wanted: set[int]) -> dict[int, int | None] | None:
    """The ``wanted`` tags of the first IFD of the TIFF structure at the start of ``f``.

    A tag's value is its non-negative integer, or None where it is not one single integer of
    an integer type. None for the whole when the structure is unreadable or a wanted tag repeats.
    """
    f.seek(0)
    head = f.read(16)
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        end = "<" if head[:2] == b"II" else ">"
        offset = struct.unpack(end + "I", head[4:8])[0]
        count_fmt, entry_fmt, value_size = "H", "HHI4s", 4
    elif head[:4] in (b"II+\x00", b"MM\x00+") and len(head) == 16:
        end = "<" if head[:2] == b"II" else ">"
        if struct.unpack(end + "HH", head[4:8]) != (8, 0):
            return None
        offset = struct.unpack(end + "Q", head[8:16])[0]
        count_fmt, entry_fmt, value_size = "Q", "HHQ8s", 8
    else:
        return None
    f.seek(offset)
    raw = f.read(struct.calcsize(end + count_fmt))
    if len(raw) < struct.calcsize(end + count_fmt):
        return None
    entry_size = struct.calcsize(end + entry_fmt)
    tags: dict[int, int | None] = {}
    for _ in range(min(struct.unpack(end + count_fmt, raw)[0], 4096)):
        entry = f.read(entry_size)
        if len(entry) < entry_size:
            return None
        tag, typ, count, value = struct.unpack(end + entry_fmt, entry)
        if tag not in wanted:
            continue
        if tag in tags:
            return None
        fmt = _TIFF_TYPES.get(typ)
        number = None
        if fmt is not None and count == 1 and struct.calcsize(end + fmt) <= value_size:
            number = struct.unpack_from(end + fmt, value)[0]
            number = number if number >= 0 else None
        tags[tag] = number
    return tags


def _bmp(f: BinaryIO, head: bytes) -> Header | None:
    if len(head) < 26:
        return None
    header_size = struct.unpack("<I", head[14:18])[0]
    if header_size == 12:  # OS/2 bitmap core header
        return Header("BMP", *struct.unpack("<HH", head[18:22]))
    width, height = struct.unpack("<ii", head[18:26])
    if width < 0:
        return None
    return Header("BMP", width, abs(height))  # negative height: rows stored top-down


def _webp(f: BinaryIO, head: bytes) -> Header | None:
    chunk, data = head[12:16], head[20:30]
    if len(data) < 10:
        return None
    if chunk == b"VP8 ":  # lossy: 3-byte frame tag, start code, 14-bit sizes (2 scale bits above)
        if data[3:6] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[6:10])
        return Header("WebP", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":  # lossless: signature 0x2f, then width-1 and height-1 in 14 bits each
        if data[0] != 0x2F:
            return None
        bits = struct.unpack("<I", data[1:5])[0]
        return Header("WebP", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8X":  # extended: canvas width-1 and height-1 in 24 bits each (frames lie inside it)
        width = int.from_bytes(data[4:7], "little") + 1
        height = int.from_bytes(data[7:10], "little") + 1
        return Header("WebP", width, height)
    return None


def _pnm(f: BinaryIO, head: bytes) -> Header | None:
    """P1-P6 and PFM: magic, then width and height as decimal numbers, whitespace and '#' comments between."""
    pos, numbers = 2, []
    while len(numbers) < 2:
        while pos < len(head) and (head[pos] in _WHITESPACE or head[pos] == ord("#")):
            if head[pos] == ord("#"):
                while pos < len(head) and head[pos] not in b"\r\n":
                    pos += 1
            else:
                pos += 1
        start = pos
        while pos < len(head) and 48 <= head[pos] <= 57:
            pos += 1
        if pos == start or pos - start > 9 or pos >= len(head) or head[pos] not in _WHITESPACE:
            return None
        numbers.append(int(head[start:pos]))
    return Header("PNM", numbers[0], numbers[1])


_READERS = {"PNG": _png, "JPEG": _jpeg, "TIFF": _tiff, "BMP": _bmp, "WebP": _webp, "PNM": _pnm}
