"""The arithmetic of pooling windows, one axis at a time.

Everything a backend needs to know about *where* windows lie lives here, validated once, so that
no backend repeats it: per-axis parameters normalised to tuples, PyTorch's output-length rule,
the divisor counts of average pooling and the adaptive window bounds.

A pooled axis of length ``n`` with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d``
has windows ``o = 0 .. out-1`` whose taps sit at ``o*s - p + j*d`` for ``j = 0 .. k-1``; taps
outside ``[0, n)`` are padding (or, with ``ceil_mode``, overhang past the right padding).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Operations of :func:`poolcore.pool` and of :func:`poolcore.adaptive_pool`.
OPS = ("max", "min", "avg", "sum", "lp", "median")
ADAPTIVE_OPS = ("max", "min", "avg", "sum", "median")


def _as_int(name: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be an int or a sequence of ints, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(
            f"`{name}` must be an int or a sequence of ints, got {value!r}"
        ) from None


def _is_sequence(value: object) -> bool:
    """A list, tuple or 1-d+ array (not a str, not a 0-d array, which is one int)."""
    if isinstance(value, np.ndarray):
        return value.ndim > 0
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def as_tuple(name: str, value: int | Sequence[int], nd: int) -> tuple[int, ...]:
    """``value`` as one int per pooled axis; an int applies to every axis."""
    if isinstance(value, (str, bytes)):
        raise TypeError(f"`{name}` must be an int or a sequence of ints, got {value!r}")
    if _is_sequence(value):
        items = tuple(_as_int(name, v) for v in value)
        if len(items) != nd:
            raise ValueError(
                f"`{name}` must have one value per pooled axis ({nd}), got {value!r}"
            )
        return items
    return (_as_int(name, value),) * nd


def default_nd(kernel: object, ndim: int) -> int:
    """How many axes a call pools when ``axes`` is None: len(kernel) for a sequence, else
    the last ``min(2, ndim)`` axes (an image's H and W, a signal's only axis)."""
    if _is_sequence(kernel):
        if len(kernel) == 0:
            raise ValueError("`kernel` (or `output_size`) must have one value per pooled axis, "
                             "got an empty sequence")
        return len(kernel)
    return min(2, ndim)


def normalize_axes(axes: int | Sequence[int] | None, ndim: int, nd: int,
                   sized_by: str = "kernel") -> tuple[int, ...]:
    """Pooled axes as non-negative ints; None means the last ``nd`` axes (``nd``: the length
    of the parameter ``sized_by``, named in the error)."""
    if axes is None:
        if nd > ndim:
            raise ValueError(
                f"`{sized_by}` has {nd} values but the input has only {ndim} dimension(s)"
            )
        return tuple(range(ndim - nd, ndim))
    raw = tuple(axes) if _is_sequence(axes) else (axes,)
    if len(raw) == 0:
        raise ValueError("`axes` must name at least one axis, got ()")
    out = []
    for a in raw:
        a = _as_int("axes", a)
        if not -ndim <= a < ndim:
            raise ValueError(
                f"`axes` value {a} is out of range for an input with {ndim} dimension(s)"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"`axes` must not repeat an axis, got {axes!r}")
    return tuple(out)


#: The largest kernel, stride, padding or dilation: larger than any axis of an array in
#: memory, and small enough that the window arithmetic never leaves int64.
MAX_PARAMETER = 1 << 40


def output_length(n: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's ``pooling_output_shape_pad_lr`` (aten/src/ATen/native/Pool.h)::

        out = floor_or_ceil((n + 2p - d(k-1) - 1) / s) + 1
        with ceil_mode, the last window must start inside the input or the left padding.

    The second rule also holds at padding 0 (n=32, k=1, s=2, ceil gives 16, not 17).
    """
    numerator = n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)
    out = numerator // s + 1  # Python's // floors, as torch's div_rtn
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _clip(a: np.ndarray, hi: int) -> np.ndarray:
    """``a`` clipped to [0, hi] in place (np.clip's dispatch costs more than the work here)."""
    np.maximum(a, 0, out=a)
    return np.minimum(a, hi, out=a)


@dataclass(frozen=True)
class Window:
    """The windows of one pooled axis: length ``n`` pooled to ``out``."""

    n: int
    k: int
    s: int
    p: int
    d: int
    out: int

    @property
    def span(self) -> int:
        """Distance from a window's first tap to one past its last: ``d*(k-1) + 1``."""
        return self.d * (self.k - 1) + 1

    @property
    def far_longer_than_axis(self) -> bool:
        """Whether the window spans many times its axis (a huge dilation, or padding of up to
        half a huge kernel): there are at most ``n + 1`` windows and few real taps in each,
        so the backends reduce the real taps of each window instead of sliding over a padded
        line as long as the span."""
        return self.span > 4 * self.n + 4096

    def starts(self, first: int = 0, stop: int | None = None) -> np.ndarray:
        """Position of each window's first tap (negative inside the left padding), for the
        windows ``[first, stop)`` (default: all)."""
        stop = self.out if stop is None else stop
        return np.arange(first, stop, dtype=np.int64) * self.s - self.p

    def real_taps(self, first: int = 0, stop: int | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Per window (of ``[first, stop)``, default all), the taps ``j`` in ``[lo, hi)`` that
        fall on real elements (lo == hi when a dilated window holds only padding)."""
        starts = self.starts(first, stop)
        d = self.d
        lo = _clip(-(starts // d), self.k)  # first j with start + j*d >= 0
        hi = _clip(-((starts - self.n) // d), self.k)  # first j with start + j*d >= n
        return lo, np.maximum(hi, lo)

    def counts(self, count_include_pad: bool) -> np.ndarray:
        """Divisor of average pooling per window, as PyTorch's CPU kernel counts it
        (aten/src/ATen/native/cpu/AvgPoolKernel.cpp): with ``count_include_pad`` the taps that
        land on the input or the padding, but not the ceil_mode overhang past the right
        padding; without it, the taps on real elements only. Generalised to dilation by
        counting taps rather than positions."""
        # Windows wholly inside the input count k either way: only the edges are computed
        # (a 10**8-long axis took seconds of integer divisions).
        counts = np.full(self.out, self.k, dtype=np.int64)
        lo_in, hi_in = (min(v, self.out) for v in self.interior())
        for first, stop in ((0, lo_in), (max(lo_in, hi_in), self.out)):
            if first >= stop:
                continue
            if count_include_pad:
                starts = self.starts(first, stop)
                # taps j with start + j*d < n + p (padding on the left is always counted)
                counts[first:stop] = _clip(-((starts - (self.n + self.p)) // self.d), self.k)
            else:
                lo, hi = self.real_taps(first, stop)
                counts[first:stop] = hi - lo
        return counts

    def interior(self) -> tuple[int, int]:
        """Outputs ``[lo, hi)`` whose windows lie wholly inside the input."""
        lo = -(-self.p // self.s)  # ceil(p / s)
        last_start = self.n - self.span  # largest start that still fits
        hi = (last_start + self.p) // self.s + 1 if last_start >= 0 else 0
        hi = min(hi, self.out)
        return lo, max(lo, hi)


def _as_given(value) -> str:
    """A window parameter as the caller wrote it: 0 as 0, (2, 0) or [2, 0] as (2, 0)."""
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        return str(tuple(int(v) for v in value))
    except (TypeError, ValueError):
        return repr(value)


def make_windows(
    shape: Sequence[int],
    axes: Sequence[int],
    kernel: int | Sequence[int],
    stride: int | Sequence[int] | None,
    padding: int | Sequence[int],
    dilation: int | Sequence[int],
    ceil_mode: bool,
) -> tuple[Window, ...]:
    """Validate the window parameters of a call and return one :class:`Window` per axis."""
    nd = len(axes)
    k = as_tuple("kernel", kernel, nd)
    s = k if stride is None else as_tuple("stride", stride, nd)
    p = as_tuple("padding", padding, nd)
    d = as_tuple("dilation", dilation, nd)
    # messages quote the value as given (`-k 0` says "got 0"), not its per-axis tuple
    given = {"kernel": kernel, "stride": kernel if stride is None else stride,
             "padding": padding, "dilation": dilation}
    for name, values in (("kernel", k), ("stride", s), ("dilation", d)):
        if any(v < 1 for v in values):
            raise ValueError(f"`{name}` must be >= 1 on every pooled axis, got "
                             f"{_as_given(given[name])}")
    if any(v < 0 for v in p):
        raise ValueError(f"`padding` must be >= 0 on every pooled axis, got {_as_given(padding)}")
    for name, values in (("kernel", k), ("stride", s), ("padding", p), ("dilation", d)):
        if any(v > MAX_PARAMETER for v in values):
            raise ValueError(f"`{name}` must be at most 2**40 on every pooled axis (no array "
                             f"axis is longer), got {_as_given(given[name])}")
    half = tuple((d_ * (k_ - 1) + 1) // 2 for k_, d_ in zip(k, d))
    if any(p_ > h for p_, h in zip(p, half)):
        raise ValueError(
            f"`padding` must be at most half the (dilated) kernel, floor((dilation*(kernel-1)+1)/2)"
            f" = {half}, got {_as_given(padding)}"
        )
    windows = []
    for i, ax in enumerate(axes):
        n = int(shape[ax])
        out = output_length(n, k[i], s[i], p[i], d[i], bool(ceil_mode))
        if out < 1:
            raise ValueError(
                f"output length must be >= 1, but axis {ax} of length {n} with kernel={k[i]},"
                f" stride={s[i]}, padding={p[i]}, dilation={d[i]}, ceil_mode={bool(ceil_mode)}"
                f" gives {out}"
            )
        windows.append(Window(n, k[i], s[i], p[i], d[i], out))
    return tuple(windows)


def adaptive_bounds(n: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive windows as PyTorch: ``start = floor(i*n/out)``, ``end = ceil((i+1)*n/out)``,
    in exact integer arithmetic (the float formula of older kernels drifts on large sizes)."""
    i = np.arange(out, dtype=np.int64)
    return (i * n) // out, -((-(i + 1) * n) // out)


def adaptive_sizes(
    shape: Sequence[int], axes: Sequence[int], output_size: int | None | Sequence[int | None]
) -> tuple[int, ...]:
    """Validate ``output_size`` (an int, or one int or None per axis; None keeps the axis)."""
    nd = len(axes)
    if output_size is None or not _is_sequence(output_size):
        values = (output_size,) * nd
    else:
        values = tuple(output_size)
        if len(values) != nd:
            raise ValueError(
                f"`output_size` must have one value per pooled axis ({nd}), got {output_size!r}"
            )
    sizes = []
    for ax, v in zip(axes, values):
        n = int(shape[ax])
        if n < 1:
            raise ValueError(f"adaptive pooling needs a non-empty input, but axis {ax} is empty")
        o = n if v is None else _as_int("output_size", v)
        if o < 0:
            raise ValueError(
                f"`output_size` must be >= 0 on every pooled axis, got {output_size!r}"
            )
        sizes.append(o)
    # Checked before any window bounds are made (int64 arrays of one entry per output): an
    # output no memory holds is refused here, not by the OOM killer half-way.
    total = 1
    for ax, n in enumerate(shape):
        total *= sizes[axes.index(ax)] if ax in axes else int(n)
    if total > MAX_PARAMETER:
        raise ValueError(
            f"`output_size` {output_size!r} makes an output of {total:,} elements, over "
            f"2**40; no memory holds it"
        )
    return tuple(sizes)


def with_sizes(shape: Sequence[int], axes: Sequence[int], sizes: Sequence[int]) -> tuple[int, ...]:
    """``shape`` with the lengths of ``axes`` replaced by ``sizes``."""
    out = list(shape)
    for ax, n in zip(axes, sizes):
        out[ax] = n
    return tuple(out)


@dataclass(frozen=True)
class PoolSpec:
    """A validated :func:`poolcore.pool` call: what a backend receives."""

    op: str
    axes: tuple[int, ...]
    windows: tuple[Window, ...]
    count_include_pad: bool = True
    p: float = 2.0

    def out_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return with_sizes(shape, self.axes, [w.out for w in self.windows])


@dataclass(frozen=True)
class AdaptiveSpec:
    """A validated :func:`poolcore.adaptive_pool` call."""

    op: str
    axes: tuple[int, ...]
    sizes: tuple[int, ...]

    def out_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return with_sizes(shape, self.axes, self.sizes)
