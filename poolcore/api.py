"""The public front: validate a call once, pick a backend, run it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import backends
from .geometry import (
    ADAPTIVE_OPS,
    OPS,
    AdaptiveSpec,
    PoolSpec,
    adaptive_sizes,
    default_nd,
    make_windows,
    normalize_axes,
)

IntOrSeq = int | Sequence[int]
Backend = Literal["auto", "numpy", "fast"]


def _check_input(x: ArrayLike, op: str, ops: tuple[str, ...], fn: str) -> np.ndarray:
    if not isinstance(op, str) or op not in ops:
        raise ValueError(f"`op` must be one of {', '.join(ops)} for {fn}, got {op!r}")
    x = np.asarray(x)
    kind = x.dtype.kind
    if kind not in "biuf":
        raise TypeError(
            f"`x` must have an integer, float or bool dtype, got {x.dtype} "
            "(object, complex, string and datetime arrays cannot be pooled)"
        )
    if kind == "b" and op not in ("max", "min"):
        raise TypeError(f"`x` of dtype bool can only be pooled with max or min, not {op!r}")
    if x.ndim == 0:
        raise ValueError("`x` must have at least one dimension, got a 0-d array")
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    return x


def pool(
    x: ArrayLike,
    op: str,
    kernel: IntOrSeq,
    stride: IntOrSeq | None = None,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    *,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    p: float = 2.0,
    axes: int | Sequence[int] | None = None,
    backend: Backend = "auto",
) -> NDArray:
    """Pool ``x`` with windows of ``kernel`` elements along ``axes``, PyTorch's semantics.

    Parameters
    ----------
    x : array_like
        Any integer or float dtype; bool for max and min.
    op : {"max", "min", "avg", "sum", "lp", "median"}
    kernel, stride, padding, dilation : int or sequence of int
        One value, or one per pooled axis. ``stride=None`` means ``kernel``. Padding is at most
        half the dilated kernel. Padding never wins a max/min and is not a median element.
    ceil_mode : bool
        Round the output length up; the last window must still start inside the input or the
        left padding (PyTorch's rule).
    count_include_pad : bool
        For avg (and lp): divide by the taps on the input and the padding (not the ceil_mode
        overhang, as PyTorch's CPU kernel), else by the real elements only.
    p : float
        The power of ``lp`` (PyTorch's lp_pool formula; ``inf`` is the max of ``|x|``).
    axes : int or sequence of int, optional
        Pooled axes. Default: the last ``len(kernel)`` axes if ``kernel`` is a sequence, else
        the last ``min(2, x.ndim)``.
    backend : {"auto", "numpy", "fast"}

    Returns
    -------
    ndarray
        The input's dtype, except sum of integers (int64, or uint64 for unsigned). Integer avg,
        lp and even-count median round to nearest, ties away from zero (unlike PyTorch, which
        truncates); float16 is computed in float32 or wider.

    Examples
    --------
    >>> import numpy as np, poolcore
    >>> poolcore.pool(np.arange(16).reshape(4, 4), "max", 2)
    array([[ 5,  7],
           [13, 15]])
    >>> poolcore.pool(np.arange(6.0), "avg", 3, stride=2, padding=1, ceil_mode=True, axes=0)
    array([0.33333333, 2.        , 4.        , 2.5       ])
    """
    x = _check_input(x, op, OPS, "pool")
    spec = pool_spec(x.shape, op, kernel, stride, padding, dilation, ceil_mode=ceil_mode,
                     count_include_pad=count_include_pad, p=p, axes=axes)
    return backends.select(backend, "pool", spec, x.dtype).pool(x, spec)


# Validated specs of recent calls (a batch pools same-sized images with the same stages; a
# model pools the same shapes every step): validation costs more than a small pool itself.
_SPECS: dict[tuple, PoolSpec] = {}
_MAX_SPECS = 256


def pool_spec(
    shape: Sequence[int], op: str, kernel: IntOrSeq, stride: IntOrSeq | None = None,
    padding: IntOrSeq = 0, dilation: IntOrSeq = 1, *, ceil_mode: bool = False,
    count_include_pad: bool = True, p: float = 2.0, axes: int | Sequence[int] | None = None,
) -> PoolSpec:
    """The validated :func:`pool` call for an input of ``shape`` (its ``out_shape`` is the
    output's shape), without any data: what pipelines use to plan."""
    key = _plain_key(shape, op, kernel, stride, padding, dilation, ceil_mode,
                     count_include_pad, p, axes)
    spec = _SPECS.get(key) if key is not None else None
    if spec is None:
        spec = _pool_spec(shape, op, kernel, stride, padding, dilation, ceil_mode,
                          count_include_pad, p, axes)
        if key is not None:
            if len(_SPECS) >= _MAX_SPECS:
                _SPECS.clear()
            _SPECS[key] = spec
    return spec


def _plain_key(*args) -> tuple | None:
    """A cache key for arguments that are plain ints, bools, floats, strings, None or tuples of
    ints, typed (so that True, 1 and 1.0, which hash alike, never share a spec: one of them is
    an error); None for anything else, which is validated afresh."""
    key = []
    for value in args:
        kind = type(value)
        if kind is tuple:
            if not all(type(v) is int for v in value):
                return None
        elif kind not in (int, bool, float, str, type(None)):
            return None
        key.append((kind, value))
    return tuple(key)


def _pool_spec(shape, op, kernel, stride, padding, dilation, ceil_mode, count_include_pad, p,
               axes) -> PoolSpec:
    ax = normalize_axes(axes, len(shape), default_nd(kernel, len(shape)))
    windows = make_windows(shape, ax, kernel, stride, padding, dilation, ceil_mode)
    if op == "lp":
        p = float(p)
        if p == 0 or np.isnan(p):
            raise ValueError(f"`p` of lp must be non-zero and not NaN, got {p}")
    return PoolSpec(op, ax, windows, bool(count_include_pad), float(p))


def adaptive_spec(
    shape: Sequence[int], op: str, output_size: int | None | Sequence[int | None], *,
    axes: int | Sequence[int] | None = None,
) -> AdaptiveSpec:
    """The validated :func:`adaptive_pool` call for an input of ``shape``."""
    ax = normalize_axes(axes, len(shape), default_nd(output_size, len(shape)), "output_size")
    return AdaptiveSpec(op, ax, adaptive_sizes(shape, ax, output_size))


def adaptive_pool(
    x: ArrayLike,
    op: str,
    output_size: int | None | Sequence[int | None],
    *,
    axes: int | Sequence[int] | None = None,
    backend: Backend = "auto",
) -> NDArray:
    """Pool ``x`` to ``output_size`` along ``axes`` with PyTorch's adaptive windows.

    Output ``i`` of an axis of length ``n`` covers ``[floor(i*n/out), ceil((i+1)*n/out))``:
    windows may overlap, and ``out > n`` repeats elements. ``None`` keeps an axis; 0 gives an
    empty axis. ``op`` is one of max, min, avg, sum, median; dtype rules as :func:`pool`.

    Examples
    --------
    >>> import numpy as np, poolcore
    >>> poolcore.adaptive_pool(np.arange(10.0), "avg", 4, axes=0)
    array([1., 3., 6., 8.])
    """
    x = _check_input(x, op, ADAPTIVE_OPS, "adaptive_pool")
    spec = adaptive_spec(x.shape, op, output_size, axes=axes)
    return backends.select(backend, "adaptive_pool", spec, x.dtype).adaptive_pool(x, spec)
