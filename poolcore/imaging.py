"""Pooling an :class:`poolcore.io.Item`: what an image needs beyond ``pool()`` on its array.

API (poolcore.batch builds on it)::

    pool_item(item, pipeline, *, linear_light=False, backend="auto") -> Item
    flatten(item, background) -> Item    # alpha composited onto an (r, g, b) colour

Every frame is pooled over ``item.axes``. For images (channel-last, pooled over (0, 1)), stage
by stage:

- alpha-weighted (premultiplied) averaging, so a transparent pixel's colour never bleeds into
  its neighbours, computed in integers: exact, ties rounded up;
- optional linear light: sRGB-encoded 8/16-bit colour goes through a lookup table to linear
  light for the stages that sum intensities and is encoded back after each;
- every stage yields an image of the input's dtype (rounded half up, clipped), as if each were
  a run of its own; the DPI is scaled.

``.npy`` arrays are pooled with poolcore's dtype rules, nothing else. Reading and writing the
files is :mod:`poolcore.io`'s; the pooling itself is :func:`poolcore.pool`'s.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from . import _pilview
from .io import fit_imagej, frame_mode
from .pipeline import Stage

if TYPE_CHECKING:
    from .io import Item
    from .pipeline import Pipeline

__all__ = ["flatten", "pool_item"]

# Ops that sum intensities: in linear light these differ from sRGB. max/min/median commute with
# the (monotonic) sRGB transfer curve, so converting for them would change nothing but the cost.
_LINEAR = {"avg", "sum", "lp"}
_ALPHA_MODES = {"LA", "RGBA", "LA;16", "RGBA;16"}
_SRGB_MODES = {"L", "LA", "RGB", "RGBA", "I;16", "LA;16", "RGB;16", "RGBA;16"}
# c*alpha of one channel fits the next unsigned width: 255*255 < 2**16, 65535**2 < 2**32
_PREMULTIPLIED = {np.dtype(np.uint8): np.uint16, np.dtype(np.uint16): np.uint32}


def pool_item(item: Item, pipeline: Pipeline, *, linear_light: bool = False,
              backend: str = "auto") -> Item:
    """Apply ``pipeline`` (a :class:`poolcore.Pipeline`) to every frame of ``item``; return a
    new Item (input untouched).

    Images, stage by stage:

    - With alpha (LA, RGBA and their 16-bit forms), ``avg`` and ``adaptive_avg`` weight colour
      by alpha (premultiplied): the sums of colour*alpha and of alpha over each window are
      divided, in integers, so a transparent pixel's colour never bleeds and a window with no
      opacity gets colour 0; alpha itself is averaged. Every other op (max, min, median, sum,
      lp) pools each channel on its own, as Pillow's filters do: a fully opaque image pools as
      the same image without alpha.
    - ``linear_light``: for the stages that sum intensities (avg, sum, lp), 8/16-bit colour
      (L, LA, RGB, RGBA and their 16-bit forms) is decoded from sRGB to linear light (float32)
      and encoded back after the stage. Alpha is not gamma-encoded and CMYK, I and F are not
      sRGB: those are left as they are.
    - Each stage yields the input's dtype (floats rounded half up, clipped to the dtype's
      range: a ``sum`` saturates), as if each stage were its own run, so ``avg(2) | avg(2)``
      may differ from ``avg(4)`` by one level. DPI is divided by the stride along each axis
      (:meth:`Pipeline.scale`).

    ``.npy`` arrays are pooled over ``item.axes`` with poolcore's dtype rules, nothing else.
    """
    frames = item.all_frames
    if item.kind != "image":
        out = [pipeline(a, axes=item.axes, backend=backend) for a in frames]
        return replace(item, array=out[0], frames=out)
    out = []
    for a in frames:
        mode = _mode(a, item)
        for stage in pipeline.stages:
            a = _pool_stage(a, mode, stage, linear_light, backend, item.axes)
        out.append(a)
    dpi, exif = item.dpi, item.exif
    if dpi is not None or item.layout == "dhw":  # the metadata that says the pixel pitch
        scale = pipeline.scale(frames[0].shape, item.axes)
        if dpi is not None:
            h, w = item.axes[-2:]  # of (0, 1), or of a volume's (0, 1, 2)
            dpi = (dpi[0] / scale[w], dpi[1] / scale[h])
        if item.layout == "dhw":  # an ImageJ stack's slice count and z spacing
            exif = fit_imagej(exif, out[0].shape[0], scale[0])
    return replace(item, array=out[0], frames=out, dpi=dpi, exif=exif)


def _mode(a: np.ndarray, item: Item) -> str:
    """A frame's mode: a TIFF's pages may differ (an L and an F page); a volume has one."""
    return (item.mode or "") if item.layout == "dhw" else frame_mode(a, item.mode)


def flatten(item: Item, background: tuple[int, int, int]) -> Item:
    """``item`` composited onto an opaque ``background`` (8-bit RGB): alpha is gone, so the
    image can be written as JPEG or BMP. Exact in integers, rounded half up; gray stays gray
    on a gray background, else becomes RGB. Frames without alpha are left as they are."""
    if item.kind != "image":
        return item
    out, modes = [], []
    for a in item.all_frames:
        mode = _mode(a, item)
        if mode in _ALPHA_MODES:
            gray = mode.startswith("LA") and len(set(background)) == 1
            a = _flatten(a, background, gray)
            wide = mode.endswith(";16")
            mode = ("I;16" if wide else "L") if gray else ("RGB;16" if wide else "RGB")
        out.append(a)
        modes.append(mode)
    if all(a is b for a, b in zip(out, item.all_frames)):
        return item
    return replace(item, array=out[0], frames=out, mode=modes[0])


def _flatten(a: np.ndarray, background: tuple[int, int, int], gray: bool) -> np.ndarray:
    top = int(np.iinfo(a.dtype).max)
    bg = np.array(background[:1] if gray else background, np.uint64) * (top // 255)
    channels = 1 if gray else 3
    out = np.empty(a.shape[:-1] + (channels,), a.dtype)
    for band in _bands(a):
        part = a[band]
        alpha = part[..., -1:].astype(np.uint64)
        colour = part[..., :-1].astype(np.uint64)  # gray on a colour: broadcast to 3
        mixed = colour * alpha + bg * (top - alpha) + top // 2
        out[band] = mixed // top
    return out[..., 0] if gray else out


def _pool_stage(a: np.ndarray, mode: str, stage: Stage, linear_light: bool, backend: str,
                axes: tuple[int, ...]) -> np.ndarray:
    """One stage on one frame (or volume), back in its dtype."""
    op = stage.base_op
    has_alpha = mode in _ALPHA_MODES
    linear = linear_light and mode in _SRGB_MODES and op in _LINEAR
    if has_alpha and op == "avg":
        return _alpha_weighted(a, stage, linear, backend, axes)
    if linear:
        return _in_linear_light(a, stage, has_alpha, backend, axes)
    full = _pilview.rgbx_base(a)  # RGB in RGBX storage: pool all 4 bytes, keep the layout
    out = _to_dtype(stage(a if full is None else full, axes=axes, backend=backend), a.dtype)
    return out if full is None else out[..., :3]


def _in_linear_light(a: np.ndarray, stage: Stage, has_alpha: bool, backend: str,
                     axes: tuple[int, ...]) -> np.ndarray:
    colour = a[..., :-1] if has_alpha else a
    lin = np.empty(colour.shape, np.float32)
    _lut_into(_decode_lut(a.dtype), colour, lin)
    pooled = stage(lin, axes=axes, backend=backend)
    del lin
    pooled = _from_linear(pooled, a.dtype)
    if not has_alpha:
        return pooled
    alpha = _to_dtype(stage(a[..., -1:], axes=axes, backend=backend), a.dtype)
    return np.concatenate([pooled, alpha], axis=-1)


def _alpha_weighted(a: np.ndarray, stage: Stage, linear: bool, backend: str,
                    axes: tuple[int, ...]) -> np.ndarray:
    """An averaging stage on colour + alpha: colour = sum(colour*alpha) / sum(alpha) over each
    window (the window's count cancels, padding included), alpha = the stage's average."""
    sums = _summing(stage)
    alpha = a[..., -1:]
    alpha_sum = sums(alpha, axes=axes, backend=backend)  # uint64: exact
    if linear:
        work = np.empty(a.shape[:-1] + (a.shape[-1] - 1,), np.float32)
        _lut_into(_decode_lut(a.dtype), a[..., :-1], work)
        work *= alpha  # alpha's integer values are exact in float32
        total = sums(work, axes=axes, backend=backend)  # the backends sum in float64
        del work
        total /= np.maximum(alpha_sum, 1).astype(np.float32)
        colour = _from_linear(total, a.dtype)
    else:
        # In integers: 255*255 (65535**2) fits uint16 (uint32), the window sums uint64, and
        # floor((2s + w) / 2w) is s/w rounded half up, exactly. No opacity: s = 0, colour 0.
        work = a[..., :-1].astype(_PREMULTIPLIED[a.dtype])
        work *= alpha
        total = sums(work, axes=axes, backend=backend)
        del work
        total *= 2
        total += alpha_sum
        total //= np.maximum(alpha_sum * 2, 1)
        colour = total.astype(a.dtype)
    averaged = _to_dtype(stage(alpha, axes=axes, backend=backend), a.dtype)
    return np.concatenate([colour, averaged], axis=-1)


def _summing(stage: Stage) -> Stage:
    """The stage's windows with ``sum`` for its op (same kernel, stride, padding, ...)."""
    kw = stage.kwargs
    kw.pop("count_include_pad", None)  # a sum has no divisor
    return Stage.make("adaptive_sum" if stage.is_adaptive else "sum", **kw)


def _from_linear(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Linear light in [0, 1] (float32, ours: changed in place) -> sRGB-encoded ``dtype``."""
    _encode_srgb(x)
    x *= np.float32(np.iinfo(dtype).max)
    return _rounded(x, dtype)


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


def _bands(a: np.ndarray):
    """Slices of about a million elements along ``a``'s first axis: work done band by band
    keeps its wide temporaries small (a whole photo's would be the largest arrays of a run)."""
    rows = max(1, (1 << 20) // max(1, a[0].size if len(a) else 1))
    for i in range(0, a.shape[0], rows):
        yield slice(i, i + rows)


def _lut_into(lut: np.ndarray, src: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = lut[src]``, by bands: numpy turns the indices into intp first."""
    for band in _bands(src):
        out[band] = lut[src[band]]


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
