"""Zero-copy numpy views of decoded Pillow images, through Pillow's Arrow export.

``np.asarray(image)`` goes through ``Image.tobytes()``: Pillow packs its pixels into 64 kB
chunks, joins them into one bytes object, and numpy wraps that; two passes over the image
and two full-size allocations per file (about 0.3-0.5 ms of a ~4 ms JPEG round trip at
1000x750). Pillow >= 11.2 exports its own storage as an Arrow array instead: one block of
``width * height`` pixels, 1 byte each for L, 4 for RGB (RGBX) and RGBA. :func:`view` wraps
that block without copying; the array keeps the export (and so Pillow's memory) alive, and
is read-only.

Pillow splits images over 16 MB into several blocks, which it cannot export: for those, and
for an older Pillow or any layout not recognised here, :func:`view` returns None and the
caller copies as before. :func:`poolcore.batch.tune_for_batch` raises the block size to 1 GB,
so that a batch keeps every image of up to 1 GB in one block.
"""

from __future__ import annotations

import ctypes

import numpy as np

__all__ = ["rgbx_base", "view"]


class _ArrowSchema(ctypes.Structure):
    pass


_ArrowSchema._fields_ = [
    ("format", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("metadata", ctypes.c_char_p),
    ("flags", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowSchema))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]


class _ArrowArray(ctypes.Structure):
    pass


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64),
    ("null_count", ctypes.c_int64),
    ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64),
    ("n_children", ctypes.c_int64),
    ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))),
    ("dictionary", ctypes.c_void_p),
    ("release", ctypes.c_void_p),
    ("private_data", ctypes.c_void_p),
]

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

# mode -> (Arrow format of the array, of its child or None, bytes per pixel, bands kept)
_LAYOUTS = {
    "L": (b"C", None, 1, 1),
    "RGB": (b"+w:4", b"C", 4, 3),  # RGBX: the fourth byte is padding
    "RGBA": (b"+w:4", b"C", 4, 4),
}


class _Pixels:
    """Hands numpy the block through the array interface and holds the export: numpy keeps
    this object as the array's base, so the memory lives as long as the array."""

    __slots__ = ("__array_interface__", "_export")

    def __init__(self, interface: dict, export: tuple) -> None:
        self.__array_interface__ = interface
        self._export = export


def view(im) -> np.ndarray | None:
    """The pixels of the loaded image ``im`` (mode L, RGB or RGBA) as a read-only uint8 array of
    shape (h, w) or (h, w, bands), sharing Pillow's memory; None when that cannot be done."""
    layout = _LAYOUTS.get(im.mode)
    w, h = im.size
    if layout is None or w == 0 or h == 0 or not hasattr(im, "__arrow_c_array__"):
        return None
    fmt, child_fmt, pixel, bands = layout
    try:
        export = im.__arrow_c_array__()
    except (ValueError, TypeError, OSError):  # several blocks ("rows are not contiguous")
        return None
    schema = _ArrowSchema.from_address(_capsule_pointer(export[0], b"arrow_schema"))
    array = _ArrowArray.from_address(_capsule_pointer(export[1], b"arrow_array"))
    if schema.format != fmt or array.length != w * h or array.null_count > 0:
        return None
    offset = array.offset * pixel
    if child_fmt is not None:  # a fixed-size list: the bytes are its child's
        if schema.n_children != 1 or array.n_children != 1:
            return None
        if schema.children[0].contents.format != child_fmt:
            return None
        array = array.children[0].contents
        if array.length < (offset // pixel + w * h) * pixel:
            return None
        offset += array.offset
    if array.n_buffers != 2 or not array.buffers[1]:
        return None
    data = array.buffers[1] + offset
    if pixel == 1:
        shape, strides = (h, w), (w, 1)
    else:
        shape, strides = (h, w, pixel), (w * pixel, pixel, 1)
    interface = {"version": 3, "data": (data, True), "shape": shape, "typestr": "|u1",
                 "strides": strides}
    full = np.asarray(_Pixels(interface, export))
    return full if bands == pixel else full[..., :bands]


def rgbx_base(a: np.ndarray) -> np.ndarray | None:
    """The contiguous (h, w, 4) uint8 array of which ``a`` is ``[..., :3]``: RGB pixels in
    Pillow's RGBX layout (as :func:`view` gives them, and as poolcore.imaging pools them);
    None for any other array. Pooling it pools RGB and the padding byte alike, and Pillow
    takes it back without unpacking every pixel."""
    b = a.base
    if (
        a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8
        or not isinstance(b, np.ndarray) or b.dtype != np.uint8
        or b.shape != a.shape[:2] + (4,) or not b.flags.c_contiguous or a.strides != b.strides
        or a.__array_interface__["data"][0] != b.__array_interface__["data"][0]
    ):
        return None
    return b
