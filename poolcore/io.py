"""Reading and writing the files poolimg pools, images (via Pillow) and ``.npy`` tensors, as
:class:`Item`: decoding, metadata, which format can hold what, encoding.

API (stable; poolcore.batch and the CLI build on it)::

    read(source, *, layout=None, max_pixels=None, name=None) -> Item
    write(item, path, *, format=None, quality=None, overwrite=False) -> str   # atomic
    encode(item, fp, *, format=None, quality=None, name=None) -> None  # to a binary file
    write_bytes(item, *, format=None, quality=None) -> bytes  # for ``-o -`` (stdout)
    check_format(item, path, format=None, *, sizes=None) -> str  # write()'s format; WriteError
    format_for_path(path) -> str | None      # "PNG", "JPEG", ..., "NPY"; None if not ours
    normalize_format(fmt) -> str             # "jpg", ".tif", "PNG" -> "JPEG", "TIFF", "PNG"
    frame_mode(array, item_mode) -> str      # one frame's mode (a TIFF's pages may differ)
    fit_imagej(exif, depth, z_step) -> bytes # an ImageJ description fitted to a pooled stack
    Item                                     # dataclass: array, axes, kind, mode, frames, ...
    PoolIOError > ReadError(ValueError), WriteError(ValueError), OutputExistsError(FileExistsError)
    SUPPORTED_EXTENSIONS, LAYOUTS

``source`` is a path, ``bytes`` or a binary file object (the CLI passes ``sys.stdin.buffer``
for ``-``).

Images become channel-last arrays whose axes (0, 1) are pooled (by
:func:`poolcore.imaging.pool_item`):

=================  ===============================  ======================================
file               array                            ``Item.mode``
=================  ===============================  ======================================
L, LA, RGB, RGBA,  uint8 (H, W) or (H, W, C)        the same
CMYK
I;16 (16-bit gray) uint16 (H, W)                    "I;16" (big-endian I;16B read as native)
I                  int32 (H, W)                     "I"
F (float TIFF)     float32 (H, W)                   "F"
16-bit RGB(A)/LA   uint16 (H, W, C)                 "RGB;16", "RGBA;16", "LA;16" (not Pillow
PNG or TIFF                                         modes: Pillow would cut them to 8 bits)
P, PA              uint8 RGB or RGBA                "RGB" / "RGBA": a palette index is a
                                                    label, averaging labels is meaningless
1                  uint8 (0 or 255)                 "L"
=================  ===============================  ======================================

A palette or gray/RGB image with a transparent colour (tRNS) gains an alpha channel, so the
transparency survives pooling. EXIF orientation is applied on read (as
``PIL.ImageOps.exif_transpose``) and the tag reset to 1; ICC profile, EXIF and DPI are carried
to the output, DPI divided by the pooling factor (in ``pool_item``). Every frame of animated
GIF/WebP/PNG and multi-page TIFF is read, with its duration.

16-bit-per-channel colour: Pillow has no such mode and opens a 16-bit RGB PNG as 8-bit RGB
(Pillow#1888, #7723); :mod:`poolcore._wide16` decodes it losslessly and encodes it back (PNG, or
TIFF through Pillow's IFD writer).

``.npy``: read with ``allow_pickle=False`` (an object array fails, never unpickles) and
memory-mapped; the last two axes are pooled unless ``layout`` names them (see ``LAYOUTS``;
the pooled axes are the spatial letters d, h, w).

Writes are atomic (:mod:`poolcore.atomic`): the target appears whole or not at all, never
clobbers a file that appeared meanwhile unless ``overwrite``, and gets the permissions a plain
``open()`` would give it. The errors live in :mod:`poolcore.errors` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageFile

from . import _pilview, _wide16
from .atomic import atomic_file
from .errors import OutputExistsError, PoolIOError, ReadError, WriteError

__all__ = [
    "LAYOUTS",
    "SUPPORTED_EXTENSIONS",
    "Item",
    "OutputExistsError",
    "PoolIOError",
    "ReadError",
    "WriteError",
    "check_format",
    "encode",
    "format_for_path",
    "frame_mode",
    "normalize_format",
    "read",
    "write",
    "write_bytes",
]

# ---------------------------------------------------------------------- formats

#: File extensions poolimg reads and writes, and the Pillow format (or "NPY") of each.
SUPPORTED_EXTENSIONS = {
    ".png": "PNG",
    ".apng": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".gif": "GIF",
    ".npy": "NPY",
}
_FORMAT_NAMES = {ext.lstrip("."): fmt for ext, fmt in SUPPORTED_EXTENSIONS.items()}
_FORMAT_NAMES.update({fmt.lower(): fmt for fmt in SUPPORTED_EXTENSIONS.values()})
_IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF")
#: The extension written for each format (used in messages).
_EXTENSION = {"PNG": "png", "JPEG": "jpg", "TIFF": "tif", "BMP": "bmp", "WEBP": "webp",
              "GIF": "gif", "NPY": "npy"}

#: Layouts of ``.npy`` arrays: one letter per axis; d, h, w are pooled.
LAYOUTS = ("hw", "hwc", "chw", "nchw", "nhwc", "dhw", "cdhw", "ncdhw")
_SPATIAL = "dhw"


def normalize_format(fmt: str) -> str:
    """``"jpg"``, ``".JPEG"``, ``"tif"`` ... -> the canonical name ("JPEG", "TIFF", ...)."""
    key = str(fmt).strip().lower().lstrip(".")
    try:
        return _FORMAT_NAMES[key]
    except KeyError:
        raise ValueError(
            f"unsupported output format {fmt!r}; expected one of "
            f"{', '.join(sorted(set(_EXTENSION.values()) | {'jpeg', 'tiff'}))}"
        ) from None


def format_for_path(path: str | os.PathLike) -> str | None:
    """The format a path's extension names, or None when it is not a file poolimg handles."""
    return SUPPORTED_EXTENSIONS.get(os.path.splitext(os.fspath(path))[1].lower())


# ---------------------------------------------------------------------- the item


@dataclass
class Item:
    """One file in memory: the array to pool plus what is needed to write it back.

    ``frames`` holds every frame (pages, animation frames) and ``frames[0]`` is ``array``; when
    they disagree (``array`` was replaced), ``array`` wins for the first frame.
    """

    array: np.ndarray
    axes: tuple[int, ...]
    kind: str  # "image" | "npy"
    mode: str | None = None  # see the table in the module docstring; None for npy
    format: str | None = None  # "PNG", "JPEG", "TIFF", "BMP", "WEBP", "GIF", "NPY"
    frames: list[np.ndarray] = field(default_factory=list)
    durations: list[int] | None = None  # milliseconds per frame (animations)
    loop: int | None = None  # animation loop count (0 = forever); None: not set
    icc_profile: bytes | None = None
    exif: bytes | None = None  # "Exif\0\0" + TIFF data; orientation reset to 1
    dpi: tuple[float, float] | None = None  # (x, y), after orientation
    # the unit of dpi: "inch", or "none" for a TIFF's unitless resolution (ImageJ and
    # tifffile store pixels per micron so, the unit in the description), kept in TIFF only
    resolution_unit: str = "inch"
    layout: str | None = None  # "hw"/"hwc" for images, "dhw" for a stack of pages as a
    # volume (array (D, H, W[, C]), axes (0, 1, 2)); the npy layout if one was given
    compression: str | None = None  # TIFF compression to reuse when writing TIFF
    orientation: int = 1  # the EXIF orientation that was applied on read
    source: str | None = None  # where it was read from (messages; never overwritten)

    def __post_init__(self) -> None:
        if not self.frames:
            self.frames = [self.array]
        self.axes = tuple(self.axes)

    @property
    def all_frames(self) -> list[np.ndarray]:
        """Every frame, ``array`` first."""
        return [self.array, *self.frames[1:]]

    @property
    def pages(self) -> list[np.ndarray]:
        """The 2-D images a file holds: every frame, or a volume's slices along D."""
        return list(self.array) if self.layout == "dhw" else self.all_frames

    @property
    def pixels(self) -> int:
        """What a batch pooled, for MPix/s reports: H*W per image frame (a pixel's channels
        are one pixel), every element of an array (an NCHW tensor is N*C planes)."""
        if self.kind == "npy":
            return sum(a.size for a in self.all_frames)
        total = 0
        for a in self.all_frames:
            n = 1
            for ax in self.axes:
                n *= a.shape[ax]
            total += n
        return total


# ---------------------------------------------------------------------- reading


def read(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    layout: str | None = None,
    max_pixels: int | None = None,
    name: str | None = None,
) -> Item:
    """Read an image (PNG, JPEG, TIFF, BMP, WebP, GIF) or a ``.npy`` array.

    Parameters
    ----------
    source : path, bytes or binary file object
        The format is recognised from the content, not the extension.
    layout : str, optional
        For ``.npy``: one of ``LAYOUTS``; its d, h, w axes are pooled. Default: the last
        two axes. For images only ``"dhw"`` counts, and only for a multi-page TIFF: its pages
        become one (D, H, W[, C]) volume pooled over its first three axes, written back as
        pages; otherwise an image is (H, W) or (H, W, C), each frame pooled on its own.
    max_pixels : int, optional
        Largest image (width * height of any frame) to decode; images only (a ``.npy`` is
        memory-mapped, its size is no bomb). Default: Pillow's decompression-bomb limit,
        ``2 * PIL.Image.MAX_IMAGE_PIXELS`` (about 179 Mpx); images between 1x and 2x Pillow's
        limit are read without its warning. Pillow's own check is off while a header is
        parsed or a frame sought (its limit is a module global, changed under a lock for that
        moment only); this limit is checked instead, before anything is decoded.
    name : str, optional
        What to call the source in errors (default: the path, or ``<stream>``).

    Raises
    ------
    ReadError
        Naming the file and the reason: missing, unreadable, corrupt, truncated, unsupported
        format or mode, over the pixel limit, object-dtype ``.npy``, bad layout.
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or int(max_pixels) < 1):
        raise ValueError(f"`max_pixels` must be a positive integer, got {max_pixels!r}")
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"`layout` must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        label = name or path
        try:
            f = open(path, "rb")
            try:
                head = f.read(8)
                f.seek(0)
            except BaseException:
                f.close()
                raise
        except OSError as e:
            raise ReadError(label, f"cannot read: {e.strerror or e}") from None
        if not head:
            f.close()
            raise ReadError(label, "empty file (0 bytes)")
        if head.startswith(b"\x93NUMPY"):
            f.close()
            return _read_npy(path, label, layout)
        return _read_image(_opener(path, f), label, max_pixels, layout == "dhw")
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:  # a file object: pipes are not seekable, so take it all
        data = source.read()
        name = name or getattr(source, "name", None)
        if not isinstance(name, str):
            name = None
    label = name or "<stream>"
    if not data:
        raise ReadError(label, "empty input (0 bytes)")
    if data.startswith(b"\x93NUMPY"):
        return _read_npy(io.BytesIO(data), label, layout)
    return _read_image(lambda: io.BytesIO(data), label, max_pixels, layout == "dhw")


def _opener(path: str, first: BinaryIO):
    """Opens ``path`` for the decoder: the first call hands over ``first`` (already open for
    the format sniff: one open less per file), later ones (a second look at a 16-bit PNG, a
    bomb's header) open it again."""
    pending = [first]

    def opener() -> BinaryIO:
        return pending.pop() if pending else open(path, "rb")

    return opener


def _read_npy(src, label: str, layout: str | None) -> Item:
    try:
        # The header first: an object dtype is refused before anything is loaded, with a
        # reason that says why (numpy's own message talks about allow_pickle).
        if isinstance(src, str):
            with open(src, "rb") as f:
                shape, dtype = _npy_header(f)
        else:
            shape, dtype = _npy_header(src)
            src.seek(0)
        if dtype.hasobject:
            raise ReadError(label, _OBJECT_NPY)
        if dtype.kind not in "biuf":
            raise ReadError(label, f"a .npy of dtype {dtype} cannot be pooled")
        # Memory-mapped: pooling reads each element once and a tensor larger than RAM still
        # pools (an empty array cannot be mapped; a stream has no file to map).
        mmap = "r" if isinstance(src, str) and math.prod(shape) > 0 else None
        arr = np.load(src, mmap_mode=mmap, allow_pickle=False)
    except ReadError:
        raise
    except (ValueError, OSError, EOFError) as e:
        text = str(e)
        if isinstance(e, EOFError) or any(
            s in text for s in ("mmap length", "cannot reshape", "EOF", "requested")
        ):
            raise ReadError(label, f"truncated .npy (the data is shorter than its header "
                                   f"says): {text}") from None
        raise ReadError(label, f"corrupt .npy: {text}") from None
    if arr.ndim == 0:
        raise ReadError(label, "a 0-d .npy has no axis to pool")
    if layout is not None:
        if len(layout) != arr.ndim:
            raise ReadError(
                label,
                f"layout {layout!r} names {len(layout)} axes but the array has shape "
                f"{arr.shape} ({arr.ndim} axes)",
            )
        axes = tuple(i for i, c in enumerate(layout) if c in _SPATIAL)
    else:
        axes = tuple(range(max(0, arr.ndim - 2), arr.ndim))
    return Item(arr, axes, "npy", format="NPY", layout=layout, source=label)


_OBJECT_NPY = (
    "object-dtype .npy: loading it would unpickle Python objects, which poolimg never does "
    "(allow_pickle=False)"
)


def _npy_header(f) -> tuple[tuple[int, ...], np.dtype]:
    from numpy.lib import format as npformat

    version = npformat.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = npformat.read_array_header_1_0(f)
    else:
        shape, _, dtype = npformat.read_array_header_2_0(f)
    return shape, dtype


# Pillow's limit is a module global; it is switched off for a header or a seek (_unchecked)
# under this lock, so that two threads do not restore each other's value and no read sees it
# off by accident.
_PIXELS_LOCK = threading.RLock()

# EXIF orientation -> the transpose that makes the image upright (ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# TIFF tags that describe the picture rather than its storage: the ones kept from a TIFF's
# main IFD as "EXIF" (the rest, strip offsets, sizes, bits, would corrupt another file).
_DESCRIPTIVE_TAGS = {269, 270, 271, 272, 274, 285, 305, 306, 315, 316, 33432, 34665, 34853}


def _bomb_message(what: str, limit: int, needed: int | None) -> str:
    """``what`` is over the pixel limit; ``needed``: the limit that would let it through
    (None: unknown before all frames are read)."""
    value = "N" if needed is None else str(needed)
    tail = ", N at least the pixels of all its frames" if needed is None else ""
    return (
        f"{what}, over the limit of {limit:,} pixels that guards against decompression bombs; "
        f"if you trust this file, raise the limit with --max-pixels {value} (max_pixels={value} "
        f"in Python){tail}"
    )


def _pixels(size: tuple[int, int], n_frames: int = 1) -> tuple[str, int]:
    w, h = size
    n = w * h * n_frames
    if n_frames == 1:
        return f"image is {w}x{h} = {n:,} pixels", n
    return f"its {n_frames} frames of {w}x{h} = {n:,} pixels are pooled at once", n


def _read_image(opener, label: str, max_pixels: int | None, volume: bool) -> Item:
    if max_pixels is None:
        with _PIXELS_LOCK:  # not while another read has Pillow's check off (_unchecked)
            pillow = Image.MAX_IMAGE_PIXELS
        limit = 2 * pillow if pillow else None  # where Pillow itself would refuse
    else:
        limit = int(max_pixels)
    return _decode(opener, label, limit, volume)


@contextlib.contextmanager
def _unchecked() -> Iterator[None]:
    """Pillow's decompression-bomb check off, for parsing a header or seeking a frame: our
    own (_check_size) then judges the size, against ``limit``, before anything is decoded.
    Pillow's check warns from 1x its limit and refuses from 2x, from a module global: a
    warning filter (process state, not thread-safe before Python 3.14) or a raised global
    for the whole decode would touch what other threads see for as long as a decode takes;
    this holds the lock only while Pillow reads a header."""
    with _PIXELS_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


@contextlib.contextmanager
def _opened(opener, formats=_IMAGE_FORMATS) -> Iterator[Image.Image]:
    """The image in the file ``opener()`` opens, its header parsed (see :func:`_unchecked`)."""
    with opener() as fp:
        with _unchecked():
            im = Image.open(fp, formats=formats)
        with im:
            yield im


def _decode(opener, label: str, limit: int | None, volume: bool) -> Item:
    try:
        with _opened(opener) as im:
            return _decode_open(im, opener, label, limit, volume)
    except PoolIOError:
        raise
    except MemoryError:
        raise
    except Image.UnidentifiedImageError:
        raise ReadError(
            label,
            "not a recognised image or .npy (corrupt, or a format other than PNG, JPEG, TIFF, "
            "BMP, WebP, GIF and .npy)",
        ) from None
    except OSError as e:
        if e.errno is not None:  # the file system, not the data
            raise ReadError(label, e.strerror or str(e)) from None
        text = str(e)
        kind = "truncated image" if "truncated" in text else "corrupt image data"
        raise ReadError(label, f"{kind}: {text}") from None
    except Exception as e:
        # Pillow's plugins raise SyntaxError, ValueError, struct.error, IndexError... on
        # damaged data: whatever it is, the file is the problem, and the message says so.
        raise ReadError(label, f"corrupt image data: {type(e).__name__}: {e}") from None


def _check_size(im, label: str, limit: int | None) -> None:
    if limit is not None and im.size[0] * im.size[1] > limit:
        what, n = _pixels(im.size)
        raise ReadError(label, _bomb_message(what, limit, n))


def _decode_open(im: ImageFile.ImageFile, opener, label, limit, volume: bool) -> Item:
    fmt = im.format
    if fmt == "MPO":  # a JPEG with extra pictures (phones: previews, depth maps)
        fmt = "JPEG"
    with _unchecked():  # a GIF's frames are counted by seeking them
        n_frames = 1 if fmt == "JPEG" else int(getattr(im, "n_frames", 1))
    _check_size(im, label, limit)  # before anything is decoded
    if limit is not None and fmt in _CANVAS and n_frames * im.size[0] * im.size[1] > limit:
        # every frame is the canvas's size: refused before any decode (a TIFF's pages may be
        # smaller, a thumbnail after the image: counted below as they are read)
        what, n = _pixels(im.size, n_frames)
        raise ReadError(label, _bomb_message(what, limit, n))
    volume = volume and fmt == "TIFF" and n_frames > 1  # a stack of pages, not one image
    if volume:
        _check_imagej_stack(im, label)
    # Pillow turns a TIFF upright itself as it loads it and drops the tag, but its resolution
    # tags stay the file's: the turn is noted before the load.
    tiff_turn = im.tag_v2.get(0x0112, 1) if fmt == "TIFF" else 1
    # The first frame is decoded before the metadata is read: a PNG's getexif() would load
    # it anyway, and the 16-bit path must swap the decoder's rawmode before any load.
    wide = (_wide16.decode(im, lambda: _opened(opener, (im.format,))) if n_frames == 1
            else None)
    if wide is None:
        _wide16.check_not_wide(im, label)
        im.load()
    if fmt != "TIFF" or 0x0112 in im.tag_v2 or tiff_turn not in _TRANSPOSE:
        tiff_turn = 1  # not applied by Pillow: the EXIF below says what this module applies

    # Metadata is taken while the file is open: a TIFF's EXIF sub-IFDs are read lazily.
    exif = im.getexif()
    orientation = exif.get(0x0112, 1)
    orientation = orientation if orientation in _TRANSPOSE else 1
    exif_bytes = _clean_exif(exif, from_tiff=fmt == "TIFF")
    icc = im.info.get("icc_profile") or None
    dpi, unit = _dpi(im.info.get("dpi")), "inch"
    if fmt == "TIFF" and 282 not in im.tag_v2:
        dpi = None  # Pillow reports (1, 1) for a TIFF without resolution tags
    elif fmt == "TIFF" and im.tag_v2.get(296) == 1:  # no absolute unit (ImageJ: per micron)
        dpi, unit = _dpi(im.info.get("resolution")), "none"
    if dpi is None and fmt in ("PNG", "WEBP"):
        # no pHYs: the EXIF's resolution, if any (Pillow does this for JPEG itself), so that
        # it is scaled with the pixels rather than kept and wrong by the pooling factor
        dpi = _exif_dpi(exif)
    applied = orientation if orientation != 1 else tiff_turn  # by this module, or Pillow
    if dpi and applied in (5, 6, 7, 8):
        dpi = (dpi[1], dpi[0])  # a quarter turn swaps the axes
    loop = im.info.get("loop")
    compression = im.info.get("compression") if fmt == "TIFF" else None

    frames, modes, durations = [], [], []
    total = 0  # pixels of all frames: 80 frames of 3000x3000 are 720 Mpx, in a 320 kB GIF
    for index in range(n_frames):
        if index:
            with _unchecked():  # GIF frames may grow the canvas: checked just below
                im.seek(index)
            _check_size(im, label, limit)
        total += im.size[0] * im.size[1]
        if limit is not None and total > limit:
            what = (f"its {n_frames} frames are pooled at once, and the first {index + 1} "
                    f"already hold {total:,} pixels")
            raise ReadError(label, _bomb_message(what, limit, None))
        if index:
            _wide16.check_not_wide(im, label)
            im.load()
        durations.append(im.info.get("duration"))
        if wide is not None:
            array, mode = wide
            if orientation != 1:
                array = _transpose_array(array, orientation)
        else:
            frame = im.transpose(_TRANSPOSE[orientation]) if orientation != 1 else im
            # A single frame may share Pillow's memory; a later frame of an animation is
            # decoded into that same memory, so frames of several are copied.
            array, mode = _frame_array(frame, label, share=n_frames == 1)
        if volume:  # each page straight into the stack: no list of pages beside it
            if index == 0:
                stack = np.empty((n_frames, *array.shape), array.dtype)
                modes.append(mode)
            elif (mode, array.shape) != (modes[0], stack.shape[1:]):
                raise ReadError(label, f"--layout dhw stacks its pages into a volume, but page "
                                f"{index + 1} is {mode} {array.shape} and page 1 {modes[0]} "
                                f"{stack.shape[1:]}")
            stack[index] = array
            continue
        frames.append(array)
        modes.append(mode)
    if volume:
        return Item(stack, (0, 1, 2), "image", mode=modes[0], format=fmt, icc_profile=icc,
                    exif=exif_bytes, dpi=dpi, resolution_unit=unit, layout="dhw",
                    compression=compression,
                    orientation=applied, source=label)
    frames, modes = _unify(frames, modes, label)
    animated = n_frames > 1
    if animated and fmt == "WEBP" and modes[0] == "RGBA" and all(
        f[..., 3].min() == 255 for f in frames
    ):
        # libwebp's animation encoder stores changed rectangles over a transparent canvas,
        # so an animation of opaque RGB frames comes back flagged RGBA: it is RGB.
        frames = [np.ascontiguousarray(f[..., :3]) for f in frames]
        modes = ["RGB"] * len(frames)
    first = frames[0]
    return Item(
        array=first,
        axes=(0, 1),
        kind="image",
        mode=modes[0],
        format=fmt,
        frames=frames,
        durations=[int(d or 0) for d in durations]
        if animated and any(d is not None for d in durations) else None,
        loop=int(loop) if loop is not None and animated else None,
        icc_profile=icc,
        exif=exif_bytes,
        dpi=dpi,
        resolution_unit=unit,
        layout="hw" if first.ndim == 2 else "hwc",
        compression=compression,
        orientation=applied,
        source=label,
    )


def _imagej_fields(description) -> dict[str, str] | None:
    """The ``key=value`` lines of an ImageJ TIFF description (``ImageJ=1.54f\nimages=6\n
    slices=6\nunit=micron\nspacing=0.5\n...``); None for any other description."""
    if not isinstance(description, str) or not description.startswith("ImageJ="):
        return None
    return dict(line.split("=", 1) for line in description.splitlines() if "=" in line)


def _check_imagej_stack(im, label: str) -> None:
    """Refuse to make a volume of an ImageJ hyperstack: its pages interleave channels and time
    points, which pooling along the pages would average together as if they were z."""
    fields = _imagej_fields(im.tag_v2.get(270)) or {}
    try:
        channels, frames = int(fields.get("channels", 1)), int(fields.get("frames", 1))
    except ValueError:
        return
    if channels > 1 or frames > 1:
        raise ReadError(
            label, f"is an ImageJ hyperstack ({channels} channel(s), {fields.get('slices', 1)} "
            f"slice(s), {frames} time point(s)): --layout dhw would pool its channels and time "
            "points along z with the slices; save one stack per channel and time point first")


def fit_imagej(exif: bytes | None, depth: int, z_step: float) -> bytes | None:
    """``exif`` (a TIFF's descriptive tags, :attr:`Item.exif`) with an ImageJ description
    fitted to a volume pooled to ``depth`` slices ``z_step`` slices apart: ``images`` and
    ``slices`` counted again, ``spacing`` (the z calibration) multiplied. Anything else is
    returned as it is."""
    if not exif:
        return exif
    e = Image.Exif()
    e.load(exif)
    text = e.get(270)
    if _imagej_fields(text) is None:
        return exif
    lines = []
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if key in ("images", "slices"):
            value = str(depth)
        elif key == "spacing":
            with contextlib.suppress(ValueError):
                value = format(float(value) * z_step, ".10g")
        lines.append(key + sep + value)
    e[270] = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    return e.tobytes()


def _dpi(value) -> tuple[float, float] | None:
    try:
        x, y = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (x, y) if x > 0 and y > 0 else None


# EXIF ResolutionUnit (tag 296): 2 inches, 3 centimetres; 1 (none) gives no DPI.
_PER_INCH = {2: 1.0, 3: 2.54}


def _exif_dpi(exif: Image.Exif) -> tuple[float, float] | None:
    """Dots per inch from EXIF XResolution/YResolution (tags 282/283) and their unit."""
    try:
        factor = _PER_INCH.get(int(exif.get(296, 2)))
        return _dpi((float(exif[282]) * factor, float(exif[283]) * factor)) if factor else None
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _clean_exif(exif: Image.Exif, from_tiff: bool) -> bytes | None:
    if not exif:
        return None
    if from_tiff:
        # A TIFF's "EXIF" is its whole main IFD: keep only the descriptive tags.
        for tag in list(exif):
            if tag not in _DESCRIPTIVE_TAGS:
                del exif[tag]
    if 0x0112 in exif:
        exif[0x0112] = 1  # the pixels are upright now
    if not exif:
        return None
    try:
        return exif.tobytes()
    except Exception:  # unparseable maker junk: drop EXIF rather than fail the file
        return None


def _transpose_array(a: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation on an (H, W[, C]) array, as the PIL transposes of _TRANSPOSE."""
    if orientation in (2, 4):
        a = a[:, ::-1] if orientation == 2 else a[::-1]
    elif orientation == 3:
        a = a[::-1, ::-1]
    elif orientation == 5:
        a = a.swapaxes(0, 1)
    elif orientation == 6:
        a = a.swapaxes(0, 1)[:, ::-1]
    elif orientation == 7:
        a = a.swapaxes(0, 1)[::-1, ::-1]
    elif orientation == 8:
        a = a.swapaxes(0, 1)[::-1]
    return np.ascontiguousarray(a)


# ---- one frame to an array

_AS_IS = {"L", "LA", "RGB", "RGBA", "CMYK", "F", "I"}
_CONVERT = {"1": "L", "P": "RGB", "PA": "RGBA", "RGBX": "RGB", "RGBa": "RGBA", "La": "LA",
            "YCbCr": "RGB", "HSV": "RGB"}


def _frame_array(frame: Image.Image, label: str, share: bool = False
                 ) -> tuple[np.ndarray, str]:
    mode = frame.mode
    trns = frame.info.get("transparency")
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        a = np.asarray(frame).astype(np.uint16, copy=False)  # big-endian -> native
        if isinstance(trns, int):  # 16-bit gray with a transparent value
            alpha = np.where(a == trns, 0, 65535).astype(np.uint16)
            return np.stack([a, alpha], axis=-1), "LA;16"
        return a, "I;16"
    if mode.startswith("I;"):  # signed/12-bit variants: int32 holds them all
        frame, mode = frame.convert("I"), "I"
    elif mode == "P":
        mode = "RGBA" if trns is not None or frame.palette.mode == "RGBA" else "RGB"
        frame = frame.convert(mode)
    elif mode in ("L", "RGB") and trns is not None:
        mode = "LA" if mode == "L" else "RGBA"
        frame = frame.convert(mode)
    elif mode in _CONVERT:
        mode = _CONVERT[mode]
        frame = frame.convert(mode)
    elif mode not in _AS_IS:
        raise ReadError(label, f"unsupported image mode {mode!r}")
    a = _pilview.view(frame) if share else None  # no copy (L, RGB, RGBA)
    if a is None:
        a = np.asarray(frame)
    if mode == "I":
        a = a.astype(np.int32, copy=False)
    elif mode == "F":
        a = a.astype(np.float32, copy=False)
    return a, mode


def _unify(frames: list[np.ndarray], modes: list[str], label: str):
    """Animation frames may come in different modes (a GIF's first frame is P, the others
    RGB or RGBA): promote them all to the widest so the frames stack and encode alike. Pages
    of other mixes (a TIFF of L and F pages) keep their own: each frame's dtype and channels
    tell its mode (:func:`frame_mode`), but for CMYK, which only ``Item.mode`` tells from
    RGBA: a mix with CMYK is refused."""
    if len(set(modes)) <= 1:
        return frames, modes
    if "CMYK" in modes:
        kinds = ", ".join(dict.fromkeys(modes))
        raise ReadError(label, f"its frames have different modes ({kinds}); a CMYK frame "
                        "must not be mixed with others: split the file")
    if not set(modes) <= {"L", "LA", "RGB", "RGBA"}:
        return frames, modes
    has_alpha = any(m in ("LA", "RGBA") for m in modes)
    colour = any(m in ("RGB", "RGBA") for m in modes)
    target = ("RGBA" if has_alpha else "RGB") if colour else "LA"
    out = []
    for a, m in zip(frames, modes):
        if m != target:
            a = _convert_array(a, m, target)
        out.append(a)
    return out, [target] * len(out)


def _convert_array(a: np.ndarray, mode: str, target: str) -> np.ndarray:
    gray = mode in ("L", "LA")
    colour = a[..., 0] if mode == "LA" else a
    if gray:
        colour = np.repeat(colour[..., None], 3, axis=-1) if target != "LA" else colour[..., None]
    else:
        colour = a[..., :3]
    parts = [colour]
    if target in ("LA", "RGBA"):
        alpha = a[..., -1:] if mode in ("LA", "RGBA") else np.full(a.shape[:2] + (1,), 255,
                                                                    np.uint8)
        parts.append(alpha)
    return np.concatenate(parts, axis=-1)


# ---------------------------------------------------------------------- writing

# Modes each format stores without loss. Others are refused with a suggestion rather than
# converted behind the user's back (RGBA -> JPEG would drop alpha, I;16 -> GIF would be noise).
_CAN_HOLD = {
    "PNG": {"L", "LA", "RGB", "RGBA", "I;16", "RGB;16", "RGBA;16", "LA;16"},
    "JPEG": {"L", "RGB", "CMYK"},
    "TIFF": {"L", "LA", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "RGB;16", "RGBA;16"},
    "BMP": {"L", "RGB"},
    "WEBP": {"L", "LA", "RGB", "RGBA"},  # gray is stored as RGB
    "GIF": {"L", "LA", "RGB", "RGBA"},  # quantised to 256 colours: GIF's nature
}
_MULTI_FRAME = {"PNG", "TIFF", "WEBP", "GIF"}
_SUGGEST = {
    "LA": "png, tiff or webp", "RGBA": "png, tiff or webp", "CMYK": "jpg or tiff",
    "I;16": "png or tiff", "I": "tiff or npy", "F": "tiff or npy",
    "RGB;16": "png or tiff", "RGBA;16": "png or tiff", "LA;16": "png",
}
_WHY = {
    "LA": "alpha", "RGBA": "alpha", "CMYK": "CMYK", "I;16": "16-bit samples",
    "I": "32-bit integer samples", "F": "float samples", "RGB;16": "16-bit colour",
    "RGBA;16": "16-bit colour with alpha", "LA;16": "16-bit gray with alpha",
}
# Formats whose frames all have the canvas's size (a TIFF's pages need not).
_CANVAS = ("GIF", "WEBP", "PNG")
_JPEG_MARKER_BYTES = 65533  # an APP1 segment's payload: EXIF must fit in one
_DEFAULT_QUALITY = 90  # Pillow's 75 softens JPEG/WebP visibly; 90 is the common choice


def frame_mode(a: np.ndarray, hint: str | None) -> str:
    """The mode of one frame, from its dtype and channels (``hint``, the item's mode, tells
    CMYK from RGBA)."""
    c = 1 if a.ndim == 2 else a.shape[-1] if a.ndim == 3 else -1
    if a.dtype == np.uint8:
        modes = {1: "L", 2: "LA", 3: "RGB", 4: "CMYK" if hint == "CMYK" else "RGBA"}
    elif a.dtype == np.uint16:
        modes = {1: "I;16", 2: "LA;16", 3: "RGB;16", 4: "RGBA;16"}
    elif a.dtype == np.int32:
        modes = {1: "I"}
    elif a.dtype == np.float32:
        modes = {1: "F"}
    else:
        modes = {}
    if c not in modes:
        return f"{a.dtype}{list(a.shape)}"  # not writable as an image; the check says so
    return modes[c]


def _target_format(item: Item, path: str | None, format: str | None) -> str:
    if format is not None:
        return normalize_format(format)
    if path is not None:
        fmt = format_for_path(path)
        if fmt is not None:
            return fmt
    if item.format is None:
        raise WriteError(path or "<stream>", "no output format: pass format=")
    return item.format


def check_format(item: Item, path: str | os.PathLike | None, format: str | None = None, *,
                 sizes: list[tuple[int, ...]] | None = None) -> str:
    """The format :func:`write` would give ``item`` at ``path`` (``None``: a stream); raises
    WriteError when that format cannot hold it (RGBA as JPEG, 16-bit as WebP, frames as PNG,
    an empty image...). Pooling keeps an image's mode and frames, so an input can be checked
    before it is pooled: ``sizes`` are then the shapes its frames will have."""
    label = os.fspath(path) if path is not None else "<stream>"
    fmt = _target_format(item, label if path is not None else None, format)
    _check_writable(item, fmt, label, sizes)
    return fmt


def _check_writable(item: Item, fmt: str, label: str,
                    sizes: list[tuple[int, ...]] | None = None) -> None:
    if fmt == "NPY":
        frames = item.all_frames
        if len(frames) > 1 and len({(a.shape, a.dtype) for a in frames}) > 1:
            raise WriteError(label, "frames of different sizes cannot be stacked into one .npy")
        return
    if item.kind != "image":
        raise WriteError(
            label, f"a .npy array of shape {item.array.shape} can only be written as .npy, "
                   f"not as {_EXTENSION[fmt]}")
    for shape in sizes or [a.shape for a in item.all_frames]:
        if 0 in shape:
            raise WriteError(label, f"the pooled image would be empty, of shape "
                             f"{tuple(shape)}: an image needs a pixel (.npy holds empty arrays)")
    if fmt == "JPEG" and item.exif and len(item.exif) > _JPEG_MARKER_BYTES:
        raise WriteError(label, f"its EXIF metadata ({len(item.exif):,} bytes) is over what a "
                         f"JPEG holds ({_JPEG_MARKER_BYTES:,}); --strip drops it, or write it as "
                         f"png, webp or tiff")
    frames = item.pages
    # a volume's page count is its pooled depth (when checked before pooling: sizes[0][0])
    pages = sizes[0][0] if sizes and item.layout == "dhw" else len(frames)
    if pages > 1 and fmt not in _MULTI_FRAME:
        raise WriteError(
            label, f"{fmt} holds one image but this has {pages} frames; use "
                   f"--format gif, webp, png or tiff")
    for a in frames:
        mode = frame_mode(a, item.mode)
        if mode not in _CAN_HOLD[fmt]:
            why = _WHY.get(mode, "this kind of data")
            suggest = _SUGGEST.get(mode, "npy")
            flatten = ", or --background COLOR to flatten the alpha" if mode in (
                "LA", "RGBA") else ""
            raise WriteError(
                label, f"{fmt} cannot hold mode {mode} ({why}); use --format {suggest}{flatten}")
        if mode in ("RGB;16", "RGBA;16", "LA;16") and pages > 1:
            raise WriteError(label, "16-bit colour is written as a single frame only")


def write(
    item: Item,
    path: str | os.PathLike,
    *,
    format: str | None = None,
    quality: int | None = None,
    overwrite: bool = False,
) -> str:
    """Write ``item`` to ``path`` atomically; return the path written.

    The format is ``format`` if given, else the one the path's extension names, else the
    input's. ``quality`` is for JPEG/WebP (default 90). An existing ``path`` is replaced only
    with ``overwrite=True``; the item's own source file is never replaced.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    WriteError
        The format cannot hold the item (e.g. RGBA as JPEG), the target is a directory or is
        the input, or its directory does not exist.
    """
    path = os.fspath(path)
    fmt = check_format(item, path, format)
    if os.path.isdir(path):
        raise WriteError(path, "is a directory")
    if item.source and os.path.exists(path) and _same_file(item.source, path):
        raise WriteError(path, "is the input file; poolimg never overwrites an input")
    if not overwrite and os.path.lexists(path):
        raise OutputExistsError(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise WriteError(path, f"directory {directory} does not exist")
    with atomic_file(path, overwrite=overwrite) as f:
        _encode(item, f, fmt, quality)  # check_format above checked it
    return path


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def write_bytes(item: Item, *, format: str | None = None, quality: int | None = None) -> bytes:
    """The encoded file as bytes (for ``-o -``: write them to ``sys.stdout.buffer``)."""
    buf = io.BytesIO()
    encode(item, buf, format=format, quality=quality)
    return buf.getvalue()


def encode(
    item: Item,
    fp: BinaryIO,
    *,
    format: str | None = None,
    quality: int | None = None,
    name: str | None = None,
) -> None:
    """Encode ``item`` into the open binary file ``fp`` (default format: the input's)."""
    fmt = normalize_format(format) if format is not None else _target_format(item, None, None)
    _check_writable(item, fmt, name or "<stream>")
    _encode(item, fp, fmt, quality)


def _encode(item: Item, fp: BinaryIO, fmt: str, quality: int | None) -> None:
    """:func:`encode` once ``fmt`` is known to hold ``item`` (:func:`write` checked it before
    creating its temporary file)."""
    if quality is not None and (isinstance(quality, bool) or not 1 <= int(quality) <= 100):
        raise ValueError(f"`quality` must be an integer from 1 to 100, got {quality!r}")
    if fmt == "NPY":
        frames = item.all_frames  # a volume is one array
        arr = frames[0] if len(frames) == 1 else np.stack(frames)
        np.save(fp, np.asarray(arr), allow_pickle=False)
        return
    frames = item.pages
    mode = frame_mode(frames[0], item.mode)
    size = (frames[0].shape[1], frames[0].shape[0])
    inch_dpi = item.dpi if item.resolution_unit == "inch" else None
    exif = _exif_for(item.exif, fmt, inch_dpi, size)
    icc = item.icc_profile
    if mode in ("RGB;16", "RGBA;16", "LA;16"):
        if fmt == "PNG":
            fp.write(_wide16.png16(frames[0], inch_dpi, icc, exif))
        else:
            _wide16.tiff16(frames[0], fp, item.dpi, icc, exif, keep_tags=_DESCRIPTIVE_TAGS,
                           unit=1 if item.resolution_unit == "none" else 2)
        return
    images = [_to_pil(a, item.mode, fmt) for a in frames]
    if icc and mode in ("L", "LA") and images[0].mode not in ("L", "LA") and (
        _icc_space(icc) == b"GRAY"
    ):
        icc = None  # gray stored as RGB (WebP): a gray profile would not fit
    params: dict = {}
    if icc and fmt != "BMP" and fmt != "GIF":
        params["icc_profile"] = icc
    if exif and fmt in ("PNG", "JPEG", "TIFF", "WEBP"):
        params["exif"] = exif
    if inch_dpi and fmt in ("PNG", "JPEG", "TIFF", "BMP"):
        params["dpi"] = inch_dpi
    elif item.dpi and fmt == "TIFF":  # unitless: no other format holds that
        params.update(x_resolution=item.dpi[0], y_resolution=item.dpi[1], resolution_unit=1)
    if fmt in ("JPEG", "WEBP"):
        params["quality"] = _DEFAULT_QUALITY if quality is None else int(quality)
    if fmt == "TIFF" and item.compression in _TIFF_COMPRESSIONS:
        params["compression"] = item.compression
    if len(images) > 1:
        params["save_all"] = True
        params["append_images"] = images[1:]
        if item.durations and fmt != "TIFF":
            params["duration"] = list(item.durations)
        if item.loop is not None and fmt != "TIFF":
            params["loop"] = item.loop
        elif fmt in ("WEBP", "PNG"):
            # No loop count (a GIF without one, TIFF pages) plays once; WebP and APNG would
            # default to forever. GIF's own default, no count, is once.
            params["loop"] = 1
        if fmt == "GIF" and images[0].mode in ("RGBA", "LA"):
            # Each frame is complete: clear the previous one, or it shows through the holes.
            params["disposal"] = 2
    images[0].save(fp, format=fmt, **params)


_TIFF_COMPRESSIONS = {"raw", "tiff_lzw", "tiff_adobe_deflate", "tiff_deflate", "packbits"}


def _icc_space(icc: bytes) -> bytes:
    return icc[16:20].strip() if len(icc) >= 20 else b""


def _to_pil(a: np.ndarray, hint: str | None, fmt: str) -> Image.Image:
    mode = frame_mode(a, hint)
    size = (a.shape[1], a.shape[0])
    rgbx = _pilview.rgbx_base(a) if mode == "RGB" else None
    if rgbx is not None:
        if fmt in ("JPEG", "WEBP"):  # their encoders take RGBX as RGB: no copy at all
            return Image.frombuffer("RGBX", size, rgbx, "raw", "RGBX", 0, 1)
        return Image.frombytes("RGB", size, rgbx, "raw", "RGBX")  # a plain copy, no unpacking
    if mode == "CMYK":
        im = Image.frombuffer("CMYK", size, np.ascontiguousarray(a), "raw", "CMYK", 0, 1)
    else:
        im = Image.fromarray(np.ascontiguousarray(a))
    if fmt == "WEBP" and mode in ("L", "LA"):
        im = im.convert("RGB" if mode == "L" else "RGBA")
    elif fmt == "GIF" and mode == "LA":
        im = im.convert("RGBA")
    return im


def _exif_for(exif: bytes | None, fmt: str, dpi, size: tuple[int, int]) -> bytes | None:
    """The item's EXIF fitted to the output: resolution and pixel dimensions updated. A WebP
    holds a resolution only in its EXIF: one is made for it (with --strip too, which keeps the
    DPI)."""
    webp_dpi = fmt == "WEBP" and bool(dpi)
    if (not exif and not webp_dpi) or fmt in ("BMP", "GIF", "NPY"):
        return None
    try:
        e = Image.Exif()
        if exif:
            e.load(exif)
        if webp_dpi and 282 not in e:
            e[296] = 2  # inches; the values are set just below
            e[282] = e[283] = 0
        if fmt == "TIFF":
            for tag in list(e):
                if tag not in _DESCRIPTIVE_TAGS:
                    del e[tag]
        elif dpi:
            from PIL import TiffImagePlugin  # 7 ms of start-up that JPEG and PNG runs skip

            per_inch = _PER_INCH.get(int(e.get(296, 2)), 1.0)  # the EXIF's own unit
            for tag, value in ((282, dpi[0]), (283, dpi[1])):
                if tag in e:
                    e[tag] = TiffImagePlugin.IFDRational(round(value / per_inch * 1000), 1000)
        sub = e.get_ifd(0x8769)
        if 0xA002 in sub:
            sub[0xA002], sub[0xA003] = size
        return e.tobytes()
    except Exception:  # keep the bytes we had rather than fail the write
        return exif
