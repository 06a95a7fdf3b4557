"""16 bits per channel colour, which Pillow has no mode for: decoding it whole, encoding it.

Pillow opens a 16-bit RGB(A) PNG or TIFF as 8-bit RGB(A) (Pillow#1888, #7723). ``decode`` gets
all 16 bits losslessly with Pillow's own decoder run twice, once per byte; ``png16`` and
``tiff16`` write them back (a small PNG encoder of our own; a TIFF through Pillow's IFD writer).
:mod:`poolcore.io` calls these; the modes they produce ("RGB;16", "RGBA;16", "LA;16") are
described there.

API (for poolcore.io)::

    decode(im, opener) -> (uint16 array, mode) | None     # before anything else loads ``im``
    check_not_wide(im, label) -> None                    # ReadError for layouts not decoded
    png16(a, dpi, icc, exif) -> bytes
    tiff16(a, fp, dpi, icc, exif, *, keep_tags, unit=2) -> None
"""

from __future__ import annotations

import struct
import sys
import zlib
from typing import BinaryIO

import numpy as np
from PIL import Image

from .errors import ReadError

__all__ = ["check_not_wide", "decode", "png16", "tiff16"]

# ---------------------------------------------------------------------- decoding

# Pillow's unpackers: "RGB;16B" keeps the first byte of each big-endian sample (the high one)
# and "RGB;16L" the second (the high one of little-endian data). Decoding the same data with
# the other one yields the low bytes: two runs of Pillow's decoder, unfiltering included, give
# the full 16 bits.
# libtiff hands Pillow native-order samples ("RGB;16N").
_OTHER_END = "B" if sys.byteorder == "little" else "L"
_SWAP = {"RGB;16B": "RGB;16L", "RGB;16L": "RGB;16B",
         "RGBA;16B": "RGBA;16L", "RGBA;16L": "RGBA;16B",
         "RGB;16N": "RGB;16" + _OTHER_END, "RGBA;16N": "RGBA;16" + _OTHER_END}


def _rawmode(tile) -> str | None:
    args = tile.args
    if isinstance(args, str):
        return args
    if isinstance(args, tuple) and args and isinstance(args[0], str):
        return args[0]
    return None


def _with_rawmode(tile, rawmode: str):
    args = tile.args
    new = rawmode if isinstance(args, str) else (rawmode, *args[1:])
    return tile._replace(args=new)


def decode(im, reopen):
    """(uint16 array, mode) for a 16-bit-per-channel colour image, else None (and ``im`` not
    loaded). ``im`` is open and not loaded yet; ``reopen()`` is a context manager that opens
    its file again, as an image of the same format whose header is parsed."""
    if not im.tile:
        return None
    raws = {_rawmode(t) for t in im.tile}
    if len(raws) != 1:
        return None
    raw = raws.pop()
    if raw == "LA;16B" and im.format == "PNG" and all(t.codec_name == "zip" for t in im.tile):
        # PNG gray+alpha, 16 bits: decode the 4 bytes of a pixel as R, G, B, A untouched.
        im.tile = [_with_rawmode(t, "RGBA") for t in im.tile]
        im.load()
        b = np.asarray(im).astype(np.uint16)
        out = np.empty(b.shape[:2] + (2,), np.uint16)
        np.left_shift(b[..., 0], 8, out=out[..., 0])
        out[..., 0] |= b[..., 1]
        np.left_shift(b[..., 2], 8, out=out[..., 1])
        out[..., 1] |= b[..., 3]
        return out, "LA;16"
    if raw not in _SWAP:
        return None
    im.load()
    hi = np.asarray(im)
    with reopen() as other:
        other.tile = [_with_rawmode(t, _SWAP[raw]) for t in other.tile]
        other.load()
        lo = np.asarray(other)
    out = hi.astype(np.uint16)
    out <<= 8
    out |= lo
    mode = "RGBA;16" if raw.startswith("RGBA") else "RGB;16"
    trns = im.info.get("transparency")
    if mode == "RGB;16" and isinstance(trns, tuple) and len(trns) == 3:
        alpha = np.where(np.all(out == np.asarray(trns, np.uint16), axis=-1), 0, 65535)
        out = np.concatenate([out, alpha.astype(np.uint16)[..., None]], axis=-1)
        mode = "RGBA;16"
    return out, mode


def check_not_wide(im, label: str) -> None:
    # Frames of an animation, or a TIFF layout we do not decode wide: refuse rather than
    # silently keep 8 of 16 bits.
    for t in im.tile:
        raw = _rawmode(t) or ""
        if ";16" in raw and im.mode in ("RGB", "RGBA"):
            raise ReadError(
                label,
                f"16-bit-per-channel colour ({raw}) in a layout Pillow can only read as 8-bit; "
                "convert it to a single-frame 16-bit PNG or TIFF, or to .npy",
            )


# ---------------------------------------------------------------------- encoding


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png16(a: np.ndarray, dpi, icc: bytes | None, exif: bytes | None) -> bytes:
    """A 16-bit-per-channel PNG (colour types 4, 2, 6) from an (H, W, C) uint16 array."""
    h, w, c = a.shape
    colour_type = {2: 4, 3: 2, 4: 6}[c]
    rows = np.ascontiguousarray(a, dtype=">u2").view(np.uint8).reshape(h, w * c * 2)
    # Filter "Sub" on every row (vectorised, one pass): much smaller than no filter on
    # photographic data, and needs no per-pixel Python loop as Paeth would.
    bpp = c * 2
    filtered = np.empty((h, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 1
    filtered[:, 1:bpp + 1] = rows[:, :bpp]
    np.subtract(rows[:, bpp:], rows[:, :-bpp], out=filtered[:, bpp + 1:])
    out = [b"\x89PNG\r\n\x1a\n",
           _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))]
    if icc:
        out.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if dpi:
        ppm = [max(1, round(d / 0.0254)) for d in dpi]
        out.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if exif:
        out.append(_png_chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00")))
    out.append(_png_chunk(b"IDAT", zlib.compress(filtered.tobytes(), 6)))
    out.append(_png_chunk(b"IEND", b""))
    return b"".join(out)


def tiff16(a: np.ndarray, fp: BinaryIO, dpi, icc: bytes | None, exif: bytes | None, *,
           keep_tags, unit: int = 2) -> None:
    """A little-endian, deflate-compressed 16-bit RGB(A) TIFF, through Pillow's IFD writer.
    Of ``exif``, the tags in ``keep_tags`` are written (the others describe another file's
    storage); its EXIF and GPS sub-IFDs are written nested. ``unit``: of ``dpi``, as TIFF's
    ResolutionUnit (2 inch, 1 none)."""
    from PIL import TiffImagePlugin, TiffTags  # here: only TIFF writes pay for importing them

    h, w, c = a.shape
    data = zlib.compress(np.ascontiguousarray(a, dtype="<u2").tobytes(), 6)
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    if exif:
        e = Image.Exif()
        e.load(exif)
        for tag, value in e.items():
            if tag in (0x8769, 0x8825):  # EXIF and GPS sub-IFDs, written nested
                sub = dict(e.get_ifd(tag))
                if sub:
                    ifd[tag] = sub
                    ifd.tagtype[tag] = TiffTags.LONG
            elif tag in keep_tags:
                ifd[tag] = value
    ifd[256] = w
    ifd[257] = h
    ifd[258] = (16,) * c
    ifd[259] = 8  # Adobe deflate
    ifd[262] = 2  # RGB
    ifd[277] = c
    ifd[278] = h
    ifd[279] = len(data)
    ifd[284] = 1
    if c == 4:
        ifd[338] = 2  # unassociated alpha
    if dpi:
        ifd[282] = TiffImagePlugin.IFDRational(round(dpi[0] * 1000), 1000)
        ifd[283] = TiffImagePlugin.IFDRational(round(dpi[1] * 1000), 1000)
        ifd[296] = unit
    if icc:
        ifd[34675] = icc
        ifd.tagtype[34675] = TiffTags.UNDEFINED
    # Pillow's IFD writer adds the end of the IFD and its data to StripOffsets: 0 puts the
    # strip right after them.
    ifd[273] = 0
    ifd.tagtype[273] = TiffTags.LONG
    fp.write(b"II*\x00" + struct.pack("<I", 8) + ifd.tobytes(8) + data)
