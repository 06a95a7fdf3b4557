"""An independent oracle for poolcore: slow, plain and obviously right.

It shares no code with poolcore (as bottleneck's ``bottleneck/slow/move.py`` shares none with its
C kernels): a Python loop over every output element, which lists the real input positions of
its window on each pooled axis, slices them out with ``np.ix_`` and reduces them with plain
Python arithmetic. Integers are handled as exact Python ints and rounded with exact fractions.

The contract it implements is issue 2 (with PyTorch's semantics, ../shared/FIELD.md §1):

* Axis of length ``n``, kernel ``k``, stride ``s``, padding ``p``, dilation ``d``: window ``o``
  has taps ``j = 0 .. k-1`` at ``o*s - p + j*d``; a tap outside ``[0, n)`` is padding (or the
  ceil_mode overhang past the right padding) and is never an element of the window.
* Output length: ``floor((n + 2p - d(k-1) - 1) / s) + 1`` (ceil with ``ceil_mode``), and with
  ``ceil_mode`` the last window must start inside the input or the left padding.
* Padding at most ``(d(k-1) + 1) // 2``.
* max / min: the max / min of the real elements; NaN wins; no real element gives -inf / +inf
  for floats, the dtype's min / max for ints, False / True for bool.
* sum: exact; integers give int64 (uint64 for unsigned input), wrapping modulo 2**64 as numpy
  integer arithmetic does (the contract says nothing about overflow of a sum).
* avg: the sum divided by the divisor: with ``count_include_pad`` the taps whose position is
  ``< n + p`` (padding counted, ceil_mode overhang not: PyTorch's AvgPoolKernel.cpp
  ``pool_size = min(start + k, n + p) - start``, counted in taps so that it holds with dilation),
  else the real elements; the N-D divisor is the product of the per-axis divisors.
  Floats: NaN for 0/0; integers: exact, rounded to nearest with ties away from zero, 0 for 0/0.
* lp: PyTorch's lp_pool: ``(avg(x**p) * prod(kernel)) ** (1/p)``, the avg with the divisor
  rules above (padding adds 0 to the sum of x**p), the sign kept (negative ** (1/p) is NaN unless
  1/p is an odd integer); ``p = inf``: max |x| (-inf for no real element), ``p = -inf``: min |x|
  (+inf for no real element). Computed in float64.
* median: of the real elements; an even count averages the middle two (exactly, then one
  rounding); NaN wins; no real element gives NaN for floats, 0 for ints.
* Integer outputs of avg, lp and even-count median: rounded to nearest, ties away from zero,
  saturated to the dtype; NaN becomes 0.
* float16 (and float32) inputs are computed in float64 and rounded once to the input dtype.
* adaptive: output ``i`` of an axis of length ``n`` pooled to ``out`` covers
  ``[floor(i*n/out), ceil((i+1)*n/out))``; ops max, min, avg, sum, median (avg divides by the
  window's size).
"""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import product

import numpy as np

POOL_OPS = ("max", "min", "avg", "sum", "lp", "median")
ADAPTIVE_OPS = ("max", "min", "avg", "sum", "median")


# ----------------------------------------------------------------------------- parameters


def _per_axis(value, m):
    if isinstance(value, (int, np.integer)):
        return (int(value),) * m
    value = tuple(int(v) for v in value)
    if len(value) != m:
        raise ValueError(f"expected {m} values, got {value}")
    return value


def default_axes(kernel, ndim):
    """None means: the last len(kernel) axes for a sequence kernel, else the last min(2, ndim)."""
    m = min(2, ndim) if isinstance(kernel, (int, np.integer)) else len(kernel)
    return tuple(range(ndim - m, ndim))


def _axes(axes, kernel, ndim):
    if axes is None:
        return default_axes(kernel, ndim)
    if isinstance(axes, (int, np.integer)):
        axes = (axes,)
    out = tuple(int(a) % ndim for a in axes)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axes {axes}")
    return out


def output_length(n, k, s, p, d, ceil_mode):
    """PyTorch's output length, written out from its documentation."""
    span = d * (k - 1) + 1
    if ceil_mode:
        out = math.ceil(Fraction(n + 2 * p - span, s)) + 1
        # "Sliding windows that would start in the right padded region are ignored."
        while out > 0 and (out - 1) * s - p >= n:
            out -= 1
    else:
        out = math.floor(Fraction(n + 2 * p - span, s)) + 1
    return out


def window_positions(o, n, k, s, p, d):
    """The real input positions of window ``o`` (in tap order) and its avg divisors
    ``(count_include_pad=True, count_include_pad=False)``."""
    taps = [o * s - p + j * d for j in range(k)]
    real = [t for t in taps if 0 <= t < n]
    with_pad = [t for t in taps if t < n + p]  # left padding always counts, overhang never
    return real, len(with_pad), len(real)


def adaptive_window(i, n, out):
    start = (i * n) // out  # floor(i*n/out)
    end = -((-(i + 1) * n) // out)  # ceil((i+1)*n/out)
    return list(range(start, end))


def result_dtype(op, dtype):
    dtype = np.dtype(dtype)
    if op == "sum" and dtype.kind == "i":
        return np.dtype(np.int64)
    if op == "sum" and dtype.kind == "u":
        return np.dtype(np.uint64)
    return dtype.newbyteorder("=")


# ----------------------------------------------------------------------------- scalars


def round_to_int(value, dtype):
    """A float (or Fraction) as ``dtype``: nearest, ties away from zero, saturated; NaN -> 0."""
    info = np.iinfo(dtype)
    if isinstance(value, float):
        if math.isnan(value):
            return 0
        if math.isinf(value):
            return int(info.max) if value > 0 else int(info.min)
        value = Fraction(value)  # exact: no rounding error before the rounding itself
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    r = magnitude if value >= 0 else -magnitude
    return min(max(r, int(info.min)), int(info.max))


def _floats(values):
    return [float(v) for v in values]


def _max(values, dtype):
    if dtype.kind == "b":
        return any(bool(v) for v in values)
    if dtype.kind in "iu":
        return max((int(v) for v in values), default=int(np.iinfo(dtype).min))
    vals = _floats(values)
    if any(math.isnan(v) for v in vals):
        return math.nan
    return max(vals, default=-math.inf)


def _min(values, dtype):
    if dtype.kind == "b":
        return all(bool(v) for v in values)
    if dtype.kind in "iu":
        return min((int(v) for v in values), default=int(np.iinfo(dtype).max))
    vals = _floats(values)
    if any(math.isnan(v) for v in vals):
        return math.nan
    return min(vals, default=math.inf)


def _sum(values, dtype):
    if dtype.kind in "iu":
        total = sum(int(v) for v in values) % 2**64  # numpy's wrapping 64-bit arithmetic
        if dtype.kind == "i" and total >= 2**63:
            total -= 2**64
        return total
    total = 0.0
    for v in _floats(values):
        total += v
    return total


def _avg(values, divisor, dtype):
    if dtype.kind in "iu":
        if divisor == 0:
            return 0
        return round_to_int(Fraction(sum(int(v) for v in values), divisor), dtype)
    total = 0.0
    for v in _floats(values):
        total += v
    return math.nan if divisor == 0 else total / divisor


def _float_pow(base, exponent):
    """IEEE pow as C computes it (Python's ** raises where C gives inf, NaN or a complex)."""
    with np.errstate(all="ignore"):
        return float(np.power(np.float64(base), np.float64(exponent)))


def _lp(values, divisor, volume, p, dtype):
    absolute = [abs(v) for v in _floats(values)]
    if p == math.inf:
        value = math.nan if any(map(math.isnan, absolute)) else max(absolute, default=-math.inf)
    elif p == -math.inf:
        value = math.nan if any(map(math.isnan, absolute)) else min(absolute, default=math.inf)
    else:
        total = 0.0
        for v in _floats(values):
            total += _float_pow(v, p)
        mean = math.nan if divisor == 0 else total / divisor
        # torch: (sign(mean) * relu(|mean|)) * kernel_volume, then ** (1/p); the sign
        # product is the identity on every number, so it is left out here.
        value = _float_pow(mean * volume, 1.0 / p)
    return round_to_int(value, dtype) if dtype.kind in "iu" else value


def _median(values, dtype):
    if dtype.kind in "iu":
        vals = sorted(int(v) for v in values)
        if not vals:
            return 0
        half = len(vals) // 2
        if len(vals) % 2:
            return vals[half]
        return round_to_int(Fraction(vals[half - 1] + vals[half], 2), dtype)
    vals = _floats(values)
    if not vals or any(math.isnan(v) for v in vals):
        return math.nan
    vals.sort()
    half = len(vals) // 2
    if len(vals) % 2:
        return vals[half]
    a, b = vals[half - 1], vals[half]
    if math.isinf(a) or math.isinf(b):
        return (a + b) / 2  # inf, or NaN for -inf and +inf
    # The exact mean, rounded once to the output dtype below.
    return Fraction(a) / 2 + Fraction(b) / 2


def _reduce(op, values, dtype, divisor=None, volume=None, p=2.0):
    if op == "max":
        return _max(values, dtype)
    if op == "min":
        return _min(values, dtype)
    if op == "sum":
        return _sum(values, dtype)
    if op == "avg":
        return _avg(values, divisor, dtype)
    if op == "lp":
        return _lp(values, divisor, volume, p, dtype)
    if op == "median":
        return _median(values, dtype)
    raise ValueError(f"unknown op {op!r}")


def _store(out, index, value):
    if isinstance(value, Fraction):
        # np.float16 / float32 / float64 of an exact value: one rounding (Fraction -> float64 is
        # correctly rounded; float64 -> float16/32 then rounds again, but the mean of two values
        # of that dtype is exact in float64, so the second rounding is the only one).
        value = float(value)
    with np.errstate(over="ignore"):  # a float16 sum past 65504 is inf, as IEEE rounds it
        out[index] = value


# ----------------------------------------------------------------------------- pooling


def pool(x, op, kernel, stride=None, padding=0, dilation=1, *, ceil_mode=False,
         count_include_pad=True, p=2.0, axes=None):
    """The contract of :func:`poolcore.pool`, one output element at a time."""
    x = np.asarray(x)
    if op not in POOL_OPS:
        raise ValueError(f"unknown op {op!r}")
    dtype = x.dtype
    axes = _axes(axes, kernel, x.ndim)
    m = len(axes)
    k = _per_axis(kernel, m)
    s = k if stride is None else _per_axis(stride, m)
    pad = _per_axis(padding, m)
    d = _per_axis(dilation, m)
    lengths = []
    for i, ax in enumerate(axes):
        if pad[i] > (d[i] * (k[i] - 1) + 1) // 2:
            raise ValueError("padding larger than half the dilated kernel")
        length = output_length(x.shape[ax], k[i], s[i], pad[i], d[i], ceil_mode)
        if length < 1:
            raise ValueError("output length < 1")
        lengths.append(length)

    out_shape = list(x.shape)
    for ax, length in zip(axes, lengths):
        out_shape[ax] = length
    out = np.empty(out_shape, result_dtype(op, dtype))
    volume = math.prod(k)
    for index in product(*(range(n) for n in out_shape)):
        selection = [[i] for i in index]
        divisor = 1
        for i, ax in enumerate(axes):
            real, with_pad, n_real = window_positions(
                index[ax], x.shape[ax], k[i], s[i], pad[i], d[i]
            )
            selection[ax] = real
            divisor *= with_pad if count_include_pad else n_real
        values = x[np.ix_(*selection)].ravel().tolist()
        _store(out, index, _reduce(op, values, dtype, divisor, volume, float(p)))
    return out


def adaptive_pool(x, op, output_size, *, axes=None):
    """The contract of :func:`poolcore.adaptive_pool`, one output element at a time."""
    x = np.asarray(x)
    if op not in ADAPTIVE_OPS:
        raise ValueError(f"unknown op {op!r}")
    dtype = x.dtype
    sizes = output_size
    if sizes is None or isinstance(sizes, (int, np.integer)):
        axes = _axes(axes, 0, x.ndim)  # an int (or None) is treated as an int kernel
        sizes = (sizes,) * len(axes)
    else:
        axes = _axes(axes, sizes, x.ndim)
        if len(sizes) != len(axes):
            raise ValueError("one output size per axis")
    out_shape = list(x.shape)
    for ax, size in zip(axes, sizes):
        out_shape[ax] = x.shape[ax] if size is None else int(size)
    out = np.empty(out_shape, result_dtype(op, dtype))
    for index in product(*(range(n) for n in out_shape)):
        selection = [[i] for i in index]
        for ax in axes:
            selection[ax] = adaptive_window(index[ax], x.shape[ax], out_shape[ax])
        values = x[np.ix_(*selection)].ravel().tolist()
        _store(out, index, _reduce(op, values, dtype, divisor=len(values)))
    return out


# ----------------------------------------------------------------------------- valid calls
# Hypothesis strategies that draw only *valid* calls (no assume(): fast-histogram's tests show
# what rejection costs). They live beside the oracle because they encode the same rules.

INT_DTYPES = ("uint8", "int8", "int16", "uint16", "int32", "int64", "uint64")
FLOAT_DTYPES = ("float16", "float32", "float64")
DTYPES = INT_DTYPES + FLOAT_DTYPES + ("bool",)
LP_POWERS = (1.0, 2.0, 3.0, 4.0, 0.5, 1.5, -1.0, -2.0, math.inf, -math.inf)
LAYOUTS = ("C", "F", "strided", "reversed", "swapped", "transposed")


def _strategies():
    from hypothesis import strategies as st
    from hypothesis.extra import numpy as hnp

    return st, hnp


def _other_side():
    """Length of a non-pooled axis: mostly 1 to 3, sometimes 0 (an empty batch)."""
    st, _ = _strategies()
    return st.sampled_from((1, 2, 3, 1, 2, 3, 0))


def axis_params(draw, m, ceil_mode, with_padding=True, with_dilation=True):
    """``(k, s, p, d, min_n)`` for one pooled axis; ``min_n`` is the shortest length that
    still gives an output (shorter than the window is fine with ceil_mode)."""
    st, _ = _strategies()
    k = draw(st.integers(1, (5, 3, 3)[m - 1]))
    d = draw(st.integers(1, (3, 2, 2)[m - 1])) if with_dilation else 1
    span = d * (k - 1) + 1
    p = draw(st.integers(0, span // 2)) if with_padding else 0
    s = draw(st.integers(1, 4))
    min_n = max(1, span - 2 * p - (s - 1 if ceil_mode else 0))
    return k, s, p, d, min_n


def _maybe_scalar(draw, values):
    """An int when every axis has the same value (and the draw says so), else a tuple."""
    st, _ = _strategies()
    if len(set(values)) == 1 and draw(st.booleans()):
        return values[0]
    return tuple(values)


def values_for(op, dtype, p=None, nonfinite=True, bound=None):
    """Elements for ``op`` on ``dtype``: the whole range where the contract is exact, bounded
    where float sums of other orders could overflow, small values for lp (so sums of x**p are
    exact, and never cancel inexactly for negative p)."""
    st, hnp = _strategies()
    dtype = np.dtype(dtype)
    if op == "lp":
        low = 0 if (p is not None and p < 0) or dtype.kind == "u" else -8
        small = st.integers(low, 8)
        if dtype.kind == "f":
            special = st.sampled_from([math.nan, math.inf, -math.inf]) if nonfinite else small
            return st.one_of(small.map(float), special) if nonfinite else small.map(float)
        return small
    if dtype.kind == "f":
        if bound is not None or (dtype.itemsize == 8 and op in ("avg", "sum")):
            bound = min(1e300 if bound is None else bound, float(np.finfo(dtype).max))
            finite = hnp.from_dtype(dtype, min_value=-bound, max_value=bound)
            if not nonfinite:
                return finite
            special = st.sampled_from([math.nan, math.inf, -math.inf])
            return st.one_of(finite, finite, finite, special)  # mostly finite
        return hnp.from_dtype(dtype, allow_nan=nonfinite, allow_infinity=nonfinite)
    if dtype.kind == "b":
        return hnp.from_dtype(dtype)
    info = np.iinfo(dtype)
    extremes = st.sampled_from([int(info.min), int(info.min) + 1, int(info.max) - 1,
                                int(info.max)])
    return st.one_of(hnp.from_dtype(dtype), extremes)  # saturation, wide sums


def _array(draw, dtype, shape, elements):
    _, hnp = _strategies()
    return draw(hnp.arrays(dtype, shape, elements=elements))


def _op_dtype_axes(draw, ops, dtypes, max_ndim):
    """The start of every generated call: an op, a dtype it accepts (bool only for max/min),
    a number of dimensions and 1 to 3 distinct pooled axes in random order."""
    st, _ = _strategies()
    op = draw(st.sampled_from(ops))
    allowed = [t for t in dtypes if t != "bool" or op in ("max", "min")]
    dtype = np.dtype(draw(st.sampled_from(allowed)))
    ndim = draw(st.integers(1, max_ndim))
    m = draw(st.integers(1, min(ndim, 3)))
    return op, dtype, ndim, list(draw(st.permutations(range(ndim)))[:m])


def pool_calls(ops=POOL_OPS, dtypes=DTYPES, max_ndim=4, padding=True, dilation=True,
               ceil_modes=(False, True), nonfinite=None, bound=None):
    """Strategy of ``(x, op, kwargs)``: a valid :func:`poolcore.pool` call on a small array."""
    st, _ = _strategies()

    @st.composite
    def build(draw):
        op, dtype, ndim, axes = _op_dtype_axes(draw, ops, dtypes, max_ndim)
        m = len(axes)
        ceil_mode = draw(st.sampled_from(ceil_modes))
        params = [axis_params(draw, m, ceil_mode, padding, dilation) for _ in range(m)]
        shape = [draw(_other_side()) for _ in range(ndim)]
        for ax, (_, _, _, _, min_n) in zip(axes, params):
            shape[ax] = draw(st.integers(min_n, min_n + (5, 3, 2)[m - 1]))
        k, s, pad, d = (tuple(v[i] for v in params) for i in range(4))
        kwargs = dict(kernel=_maybe_scalar(draw, k))
        if k != s or draw(st.booleans()):
            kwargs["stride"] = _maybe_scalar(draw, s)
        if any(pad) or draw(st.booleans()):
            kwargs["padding"] = _maybe_scalar(draw, pad)
        if any(v != 1 for v in d) or draw(st.booleans()):
            kwargs["dilation"] = _maybe_scalar(draw, d)
        if ceil_mode or draw(st.booleans()):
            kwargs["ceil_mode"] = ceil_mode
        if op in ("avg", "lp"):
            kwargs["count_include_pad"] = draw(st.booleans())
        power = None
        if op == "lp":
            power = draw(st.sampled_from(LP_POWERS))
            kwargs["p"] = power
        if axes == list(range(ndim - m, ndim)) and draw(st.booleans()):
            kwargs["kernel"] = tuple(k)  # the default axes follow a sequence kernel
        else:
            kwargs["axes"] = tuple(a - ndim if draw(st.booleans()) else a for a in axes)
        allow = draw(st.booleans()) if nonfinite is None else nonfinite
        x = _array(draw, dtype, tuple(shape), values_for(op, dtype, power, allow, bound))
        return x, op, kwargs

    return build()


def adaptive_calls(ops=ADAPTIVE_OPS, dtypes=DTYPES, max_ndim=4, nonfinite=None):
    """Strategy of ``(x, op, kwargs)``: a valid :func:`poolcore.adaptive_pool` call."""
    st, _ = _strategies()

    @st.composite
    def build(draw):
        op, dtype, ndim, axes = _op_dtype_axes(draw, ops, dtypes, max_ndim)
        m = len(axes)
        shape = [draw(_other_side()) for _ in range(ndim)]
        sizes = []
        for ax in axes:
            n = shape[ax] = draw(st.integers(1, (9, 6, 4)[m - 1]))
            sizes.append(draw(st.one_of(st.integers(1, n + 2), st.sampled_from([0, None]))))
        if axes == list(range(ndim - m, ndim)) and draw(st.booleans()):
            kwargs = dict(output_size=tuple(sizes))
        else:
            axes = tuple(a - ndim if draw(st.booleans()) else a for a in axes)
            kwargs = dict(output_size=_maybe_scalar(draw, sizes), axes=axes)
        allow = draw(st.booleans()) if nonfinite is None else nonfinite
        x = _array(draw, dtype, tuple(shape), values_for(op, dtype, None, allow))
        return x, op, kwargs

    return build()


def with_layout(x, layout):
    """An array equal to ``x`` with another memory layout (the input forms bottleneck's
    tests/util.py feeds every function)."""
    if layout == "C":
        return np.ascontiguousarray(x)
    if layout == "F":
        return np.asfortranarray(x)
    if layout == "strided":  # every other element of a larger buffer
        big = np.zeros(tuple(2 * n for n in x.shape), x.dtype)
        view = big[tuple(slice(None, None, 2) for _ in x.shape)]
        view[...] = x
        return view
    if layout == "reversed":  # negative strides
        index = tuple(slice(None, None, -1) for _ in x.shape)
        return np.ascontiguousarray(x[index])[index]
    if layout == "swapped":  # non-native byte order
        return x.astype(x.dtype.newbyteorder("S"))
    if layout == "transposed":  # a transposed view of a contiguous array
        perm = tuple(reversed(range(x.ndim)))
        return np.ascontiguousarray(x.transpose(perm)).transpose(perm)
    raise ValueError(layout)
