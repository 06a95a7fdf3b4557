"""Pooling an :class:`poolcore.io.Item`: what an image needs beyond ``pool()`` on its array.

API (poolcore.batch builds on it)::

    pool_item(item, pipeline, *, linear_light=False, backend="auto") -> Item

Every frame is pooled over ``item.axes``. For images (channel-last, pooled over (0, 1)):

- alpha-weighted (premultiplied) pooling for ops that mix a window's values, so a transparent
  pixel's colour never bleeds into its neighbours;
- optional linear light: sRGB-encoded 8/16-bit values go through a lookup table to linear
  light before an averaging pipeline and are encoded back after it;
- the output keeps the input's dtype (rounded half up, clipped) and its DPI is scaled.

``.npy`` arrays are pooled with poolcore's dtype rules, nothing else. Reading and writing the
files is :mod:`poolcore.io`'s; the pooling itself is :func:`poolcore.pool`'s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from . import _pilview

if TYPE_CHECKING:
    from .io import Item

__all__ = ["pool_item"]

# Ops whose output mixes the values of a window. These are alpha-weighted: a transparent
# pixel's colour must not bleed into its neighbours. max/min pick one value and are left alone.
_MIXING = {"avg", "sum", "lp", "median"}
# Ops that need linear light: sums of intensities. max/min/median commute with the
# (monotonic) sRGB transfer curve, so converting for them would change nothing but the cost.
_LINEAR = {"avg", "sum", "lp"}
_KNOWN = {"max", "min"} | _MIXING


def _stage_ops(pipeline) -> list[str]:
    stages = getattr(pipeline, "stages", None)
    if stages is None:  # a plain callable: assume the worst (it averages)
        return ["avg"]
    ops = []
    for stage in stages:
        op = str(getattr(stage, "op", "avg")).removeprefix("adaptive_")
        ops.append(op if op in _KNOWN else "avg")  # unknown: treat as averaging (safe side)
    return ops


def pool_item(item: Item, pipeline, *, linear_light: bool = False, backend: str = "auto") -> Item:
    """Apply ``pipeline`` to every frame of ``item``; return a new Item (input untouched).

    ``pipeline`` is a :class:`poolcore.Pipeline` or any object callable as
    ``pipeline(x, axes=..., backend=...)`` with ``.stages[i].op``.

    Images:

    - With alpha (LA, RGBA) and an averaging stage (avg, sum, lp, median and their adaptive
      forms), colour is pooled premultiplied: colour*alpha and alpha are pooled, then divided,
      so a transparent pixel's colour never bleeds and a window with no opaque pixel gets
      colour 0. Pipelines of max/min only pool each channel independently.
    - ``linear_light``: 8/16-bit colour (L, LA, RGB, RGBA and their 16-bit forms) is decoded
      from sRGB to linear light before an averaging pipeline and encoded back after it. Alpha is
      not gamma-encoded and CMYK, I and F are not sRGB: those are left as they are.
    - The output dtype is the input's (floats rounded to nearest, clipped to the dtype's range:
      a ``sum`` saturates). DPI is divided by the input/output size ratio of each axis.

    ``.npy`` arrays are pooled over ``item.axes`` with poolcore's dtype rules, nothing else.
    """
    frames = item.all_frames
    if item.kind != "image":
        out = [pipeline(a, axes=item.axes, backend=backend) for a in frames]
        return replace(item, array=out[0], frames=out)
    ops = _stage_ops(pipeline)
    mixing = any(op in _MIXING for op in ops)
    linear = linear_light and any(op in _LINEAR for op in ops)
    out = [_pool_frame(a, item.mode or "", pipeline, mixing, linear, backend) for a in frames]
    dpi = item.dpi
    if dpi is not None:
        (h0, w0), (h1, w1) = frames[0].shape[:2], out[0].shape[:2]
        dpi = (dpi[0] * w1 / w0 if w0 else dpi[0], dpi[1] * h1 / h0 if h0 else dpi[1])
    return replace(item, array=out[0], frames=out, dpi=dpi)


_ALPHA_MODES = {"LA", "RGBA", "LA;16", "RGBA;16"}
_SRGB_MODES = {"L", "LA", "RGB", "RGBA", "I;16", "LA;16", "RGB;16", "RGBA;16"}


def _pool_frame(a, mode, pipeline, mixing, linear, backend) -> np.ndarray:
    axes = (0, 1)
    alpha = mode in _ALPHA_MODES and mixing
    linear = linear and mode in _SRGB_MODES
    if not alpha and not linear:
        full = _pilview.rgbx_base(a)  # RGB in RGBX storage: pool all 4 bytes, keep the layout
        out = _to_dtype(pipeline(a if full is None else full, axes=axes, backend=backend), a.dtype)
        return out if full is None else out[..., :3]
    top = np.float32(np.iinfo(a.dtype).max)
    if not alpha:
        lin = np.empty(a.shape, np.float32)
        _lut_into(_decode_lut(a.dtype), a, lin)
        pooled = pipeline(lin, axes=axes, backend=backend)
        del lin
        _encode_srgb(pooled)
        pooled *= top
        return _rounded(pooled, a.dtype)
    # Premultiplied: one float32 array with colour*weight in the colour channels and the
    # weight (alpha in [0, 1]) last, pooled in one call. float32 holds 65535*1 exactly enough,
    # and the backends sum floats in float64; it halves the working set of float64.
    if linear:
        work = np.empty(a.shape, np.float32)
        _lut_into(_decode_lut(a.dtype), a[..., :-1], work[..., :-1])
        work[..., -1] = a[..., -1]
    else:
        work = a.astype(np.float32)  # one contiguous conversion: faster than per channel
    weight = work[..., -1:]
    weight *= np.float32(1) / top
    work[..., :-1] *= weight
    pooled = pipeline(work, axes=axes, backend=backend)
    del work, weight
    colour, weight = pooled[..., :-1], pooled[..., -1:]
    # A window with no opacity at all has weight 0 and premultiplied colour 0 (every term was
    # colour*0): dividing by the smallest float instead of 0 gives it colour 0, no mask needed.
    colour /= np.maximum(weight, np.finfo(np.float32).tiny)
    if linear:
        _encode_srgb(colour)
        colour *= top
    weight *= top
    return _rounded(pooled, a.dtype)


def _rounded(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Our own non-negative float intermediate -> ``dtype``: round half up (= away from zero,
    as poolcore), clip, cast; in place, no temporaries."""
    a += 0.5
    np.floor(a, out=a)
    info = np.iinfo(dtype)
    np.clip(a, info.min, info.max, out=a)
    return a.astype(dtype)


_LUTS: dict[str, np.ndarray] = {}


def _decode_lut(dtype: np.dtype) -> np.ndarray:
    """sRGB-encoded integer -> linear light in [0, 1], one float32 per possible value."""
    key = np.dtype(dtype).str
    lut = _LUTS.get(key)
    if lut is None:
        top = np.iinfo(dtype).max
        v = np.arange(top + 1, dtype=np.float64) / top
        lut = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4).astype(np.float32)
        _LUTS[key] = lut
    return lut


def _lut_into(lut: np.ndarray, src: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = lut[src]`` in bands of rows: numpy turns the indices into intp (8 bytes
    each) first, which for a whole photo would be the largest array of the run."""
    band = max(1, (1 << 20) // max(1, src[0].size))
    for i in range(0, src.shape[0], band):
        out[i : i + band] = lut[src[i : i + band]]


def _encode_srgb(x: np.ndarray) -> None:
    """Linear light in [0, 1] -> sRGB-encoded in [0, 1] (IEC 61966-2-1), in place."""
    np.clip(x, 0, 1, out=x)
    low = x <= 0.0031308
    small = x[low] * 12.92
    np.power(x, 1 / 2.4, out=x)
    x *= 1.055
    x -= 0.055
    x[low] = small


def _to_dtype(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """A pipeline's output back in the image's dtype: integer results of another width (a
    sum) are clipped (saturate); a float result is rounded to nearest, ties away from zero."""
    dtype = np.dtype(dtype)
    if a.dtype == dtype:
        return a
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if a.dtype.kind == "f":
            a = np.trunc(a + np.copysign(0.5, a))
            a = np.nan_to_num(a, nan=0.0, copy=False)
        return np.clip(a, info.min, info.max).astype(dtype)
    return a.astype(dtype)
