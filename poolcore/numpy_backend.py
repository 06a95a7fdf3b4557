"""The reference backend: vectorised numpy, always available.

N-D pooling of the separable ops (max, min, sum, avg, lp) is a chain of 1-D passes, one per
pooled axis (a box window is the product of 1-D windows, and max/min/sum are associative), as
scipy.ndimage's filters do. Each pass handles the windows that lie wholly inside the input from
strided views, and the few edge windows that touch padding from a small padded copy of the edge,
so no pass copies the whole input to pad it. Median is not separable and has its own gather.

No Python loop runs over pixels: loops run over taps of a window (short) or over the
O(log k) levels of the doubling scheme used for large kernels, whose cost per element does not
grow with k (the compiled backend uses van Herk / Gil-Werman instead).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np

from .geometry import AdaptiveSpec, PoolSpec, Window, adaptive_bounds

_UFUNC = {"max": np.maximum, "min": np.minimum, "sum": np.add}

# Separable passes over large inputs run in bands of about this many bytes of accumulator.
BAND_BYTES = 1 << 23
# Median gathers k-fold copies of the input; bound them to this many elements per band.
MEDIAN_BAND_ELEMENTS = 1 << 20


# --------------------------------------------------------------------------- dtype rules


def accumulator(dtype: np.dtype, volume: int | None = None) -> np.dtype:
    """Dtype in which sums run: float64 (or wider) for floats; for ints the narrowest integer
    that holds ``volume`` terms plus a rounding half without overflow (uint16 for 2x2 windows
    of uint8: exact, and a quarter of the memory traffic of int64), else 64-bit."""
    if dtype.kind == "f":
        return np.promote_types(dtype, np.float64)
    unsigned = dtype.kind == "u"
    if volume is not None:
        info = np.iinfo(dtype)
        need = (volume + 1) * max(abs(int(info.min)), int(info.max))
        for bits in (16, 32):
            candidate = np.dtype(f"{'u' if unsigned else 'i'}{bits // 8}")
            if bits > 8 * dtype.itemsize and need <= np.iinfo(candidate).max:
                return candidate
    return np.dtype(np.uint64 if unsigned else np.int64)


def exact_accumulator(x: np.ndarray, acc: np.dtype, volume: int) -> np.dtype:
    """``acc``, or object (exact Python ints) when a sum of ``volume`` elements of ``x`` plus a
    rounding half could overflow it. Only 64-bit inputs holding huge values take this slow
    path; it keeps integer avg exact over the whole range, where a 64-bit sum would wrap."""
    if acc.kind not in "iu" or x.size == 0:
        return acc
    info, limit = np.iinfo(x.dtype), int(np.iinfo(acc).max)
    if (volume + 1) * max(-int(info.min), int(info.max)) <= limit:
        return acc
    if (volume + 1) * max(-int(x.min()), int(x.max())) <= limit:
        return acc
    return np.dtype(object)


def identity(op: str, dtype: np.dtype):
    """The value padding takes in a pass: it never wins a max/min and adds nothing to a sum."""
    if op == "sum":
        return 0
    high = op == "min"
    if dtype.kind == "b":
        return high
    if dtype.kind == "f":
        return np.inf if high else -np.inf
    info = np.iinfo(dtype)
    return info.max if high else info.min


def round_half_away(v: np.ndarray) -> np.ndarray:
    """Round floats to the nearest integer, ties away from zero (as Pillow, OpenCV, libvips).

    From the fraction ``v - trunc(v)``, which is exact: ``floor(|v| + 0.5)`` rounds twice
    (0.49999999999999994 + 0.5 is 1.0, and 2**52 + 1 + 0.5 rounds to even, 2**52 + 2).
    """
    whole = np.trunc(v)
    return whole + np.copysign(np.abs(v - whole) >= 0.5, v)


def float_to_int(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round to nearest (ties away from zero), saturate to ``dtype``; NaN becomes 0."""
    info = np.iinfo(dtype)
    r = round_half_away(v)
    r = np.nan_to_num(r, nan=0.0, posinf=float(info.max), neginf=float(info.min))
    # float(info.max) may round up past the range for 64-bit ints; compare before casting.
    out = np.empty(r.shape, dtype)
    too_high = r >= float(info.max)
    too_low = r <= float(info.min)
    np.copyto(out, r, casting="unsafe")
    out[too_high] = info.max
    out[too_low] = info.min
    return out


def divide_round(total: np.ndarray, divisor: np.ndarray) -> np.ndarray:
    """Exact integer ``total / divisor`` rounded to nearest, ties away from zero."""
    divisor = np.maximum(divisor, 1).astype(total.dtype)  # an empty window sums to 0
    q = total // divisor
    r = total - q * divisor  # 0 <= r < divisor (floor division)
    twice = 2 * r
    # q >= 0: round up at exactly half; q < 0: the value is q + r/div < 0, so a half rounds
    # away from zero, i.e. down to q.
    if total.dtype.kind == "u":
        return q + (twice >= divisor)
    return q + ((twice > divisor) | ((twice == divisor) & (q >= 0)))


# --------------------------------------------------------------------------- 1-D passes


def _take(x: np.ndarray, axis: int, start: int, count: int, step: int) -> np.ndarray:
    index = [slice(None)] * x.ndim
    index[axis] = slice(start, start + (count - 1) * step + 1, step)
    return x[tuple(index)]


def _segment(
    x: np.ndarray, axis: int, lo: int, hi: int, fill, pre: Callable | None, dtype: np.dtype
) -> np.ndarray:
    """``pre(x[lo:hi])`` along ``axis`` as ``dtype``, with ``fill`` standing in for positions
    outside the input (padding, ceil_mode overhang). Only edge segments take this copy."""
    n = x.shape[axis]
    shape = list(x.shape)
    shape[axis] = hi - lo
    seg = np.full(shape, fill, dtype=dtype)
    a, b = max(lo, 0), min(hi, n)
    if a < b:
        dst = [slice(None)] * x.ndim
        dst[axis] = slice(a - lo, b - lo)
        real = _take(x, axis, a, b - a, 1)
        seg[tuple(dst)] = pre(real) if pre else real
    return seg


def uses_doubling(k: int, s: int) -> bool:
    """Whether a pass reduces its windows by the doubling scheme rather than by k direct taps:
    when k taps per output cost more than its (levels + one-bits of k) passes over the s inputs
    each output advances. It depends on k and s only, never on how many windows a band or an
    edge holds, so a float sum rounds the same whatever the array's size (and the compiled
    backend, which follows the same order, can call this very function)."""
    return k > 2 and k > (k.bit_length() - 1 + k.bit_count()) * s


def _valid_reduce(
    x: np.ndarray, axis: int, count: int, k: int, s: int, d: int, op: str, acc: np.dtype,
    pre: Callable[[np.ndarray], np.ndarray] | None,
) -> np.ndarray:
    """Reduce windows starting at 0, s, 2s, ... (``count`` of them, all inside ``x``)."""
    ufunc = _UFUNC[op]
    span = d * (k - 1) + 1
    length = (count - 1) * s + span
    if not uses_doubling(k, s):
        # Few taps: accumulate the k strided views of the taps.
        first = _take(x, axis, 0, count, s)
        res = pre(first).astype(acc, copy=False) if pre else first.astype(acc, copy=True)
        for j in range(1, k):
            tap = _take(x, axis, j * d, count, s)
            ufunc(res, pre(tap) if pre else tap, out=res, casting="unsafe")
        return res
    # Many taps: partial reductions over 1, 2, 4, ... taps (each level one pass over the row),
    # then each window combines the levels of k's binary digits. O(log k) work per element.
    level = _take(x, axis, 0, length, 1)
    level = (pre(level) if pre else level).astype(acc, copy=True)
    res = None
    offset = 0
    width = 1  # taps covered by one element of `level`
    while True:
        if k & width:
            part = _take(level, axis, offset * d, count, s)
            if res is None:
                res = part.copy()
            else:
                ufunc(res, part, out=res)
            offset += width
        if width * 2 > k:
            return res
        shift = width * d
        n = level.shape[axis]
        level = ufunc(_take(level, axis, 0, n - shift, 1), _take(level, axis, shift, n - shift, 1))
        width *= 2


def reduce_1d(
    x: np.ndarray, axis: int, w: Window, op: str, acc: np.dtype | None = None,
    pre: Callable[[np.ndarray], np.ndarray] | None = None, outputs: tuple[int, int] | None = None,
) -> np.ndarray:
    """One pass of ``op`` ('max', 'min' or 'sum') along ``axis`` over the windows ``w``.

    ``acc`` is the result dtype (default: the input's); ``pre`` maps input values first (|x|,
    x**p) without materialising the mapped input; ``outputs`` restricts the pass to the
    windows ``[o0, o1)`` (a band). Padding and ceil_mode overhang take the op's identity, so
    they never win a max and add nothing to a sum.
    """
    acc = np.dtype(acc or x.dtype)
    first, stop = outputs or (0, w.out)
    if w.far_longer_than_axis:
        return _reduce_real_taps(x, axis, w, op, acc, pre, first, stop)
    lo, hi = w.interior()
    # Edge segments hold mapped values already, in the dtype the mapping produces.
    seg_dtype = acc if pre is not None else x.dtype
    fill = identity(op, seg_dtype)
    shape = list(x.shape)
    shape[axis] = stop - first
    out = np.empty(shape, dtype=acc)
    # Windows before the interior, inside it, and after it; each part fills its slice of out.
    for o0, o1, inside in ((first, min(stop, lo), False), (max(first, lo), min(stop, hi), True),
                           (max(first, hi, lo), stop, False)):
        if o0 >= o1:
            continue
        start = o0 * w.s - w.p
        length = (o1 - 1 - o0) * w.s + w.span
        if inside:
            seg, seg_pre = _take(x, axis, start, length, 1), pre
        else:
            seg, seg_pre = _segment(x, axis, start, start + length, fill, pre, seg_dtype), None
        index = [slice(None)] * x.ndim
        index[axis] = slice(o0 - first, o1 - first)
        out[tuple(index)] = _valid_reduce(seg, axis, o1 - o0, w.k, w.s, w.d, op, acc, seg_pre)
    return out


def _reduce_real_taps(
    x: np.ndarray, axis: int, w: Window, op: str, acc: np.dtype,
    pre: Callable[[np.ndarray], np.ndarray] | None, first: int, stop: int,
) -> np.ndarray:
    """:func:`reduce_1d` for windows far longer than the axis: each window's real taps, one
    window at a time (at most ``n + 1`` of them), instead of edge segments as long as the span
    (a dilation of 2**30 on 10 elements once took 16 GB). A window without a real tap gets the
    op's identity, as padding gives it."""
    ufunc = _UFUNC[op]
    lo, hi = w.real_taps()
    starts = w.starts()
    shape = list(x.shape)
    shape[axis] = stop - first
    out = np.empty(shape, dtype=acc)
    fill = identity(op, acc)
    index = [slice(None)] * x.ndim
    for o in range(first, stop):
        index[axis] = o - first
        a, b = int(lo[o]), int(hi[o])
        if a >= b:
            out[tuple(index)] = fill
            continue
        taps = _take(x, axis, int(starts[o]) + a * w.d, b - a, w.d)
        taps = (pre(taps) if pre else taps).astype(acc, copy=False)
        out[tuple(index)] = ufunc.reduce(taps, axis=axis)
    return out


# --------------------------------------------------------------------------- N-D ops


def _broadcast_counts(ndim: int, axes, per_axis) -> np.ndarray:
    """The product of per-axis window counts, shaped to broadcast against the output."""
    total = np.ones([1] * ndim, dtype=np.int64)
    for ax, c in zip(axes, per_axis):
        shape = [1] * ndim
        shape[ax] = len(c)
        total = total * np.asarray(c, dtype=np.int64).reshape(shape)
    return total


def finish_mean(total: np.ndarray, counts: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``total / counts`` in ``dtype``: float division (0/0 is NaN), or exact integer division
    rounded to nearest with ties away from zero."""
    if counts.size and counts.min() == counts.max():
        counts = counts.reshape(-1)[:1].reshape(())  # one divisor: a scalar is much faster
    if dtype.kind == "u":  # non-negative: round half up is (total + counts//2) // counts
        counts = np.maximum(counts, 1).astype(total.dtype)
        np.add(total, counts // 2, out=total)
        np.floor_divide(total, counts, out=total)
        return total.astype(dtype)
    if dtype.kind == "i":
        return divide_round(total, counts).astype(dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        np.divide(total, counts, out=total)
    return total.astype(dtype, copy=False)


def in_pieces(x: np.ndarray, axis: int, pieces: int, out_shape, into, run) -> np.ndarray:
    """Pool ``x`` cut into ``pieces`` along ``axis``, an axis no window crosses (unpooled):
    ``run(piece, part)`` pools a piece into ``part``, its slice of the result, or returns its
    result when ``part`` is None (the first piece, whose dtype makes the result; ``into``, if
    given, is the result). Pooling never looks across an unpooled axis, so the pieces give
    the whole's result, with temporaries the size of a piece's."""
    step = -(-x.shape[axis] // pieces)
    out = into
    index = [slice(None)] * x.ndim
    for c0 in range(0, x.shape[axis], step):
        index[axis] = slice(c0, c0 + step)
        where = tuple(index)
        if out is None:
            first = run(x[where], None)
            out = np.empty(out_shape, first.dtype)
            out[where] = first
            del first
        else:
            run(x[where], out[where])
    return out


def _separable(
    x: np.ndarray, spec: PoolSpec, op: str, acc, pre=None, finish=None, into=None
) -> np.ndarray:
    """The 1-D passes of ``op`` over every pooled axis, then ``finish(band, outputs)``; the
    result is written into ``into`` if given.

    Large inputs run in bands of output rows along the first pooled axis, every pass and the
    finish done per band, so temporaries (the wider accumulator, ``pre``'s mapped taps) stay
    near BAND_BYTES instead of scaling with the input.
    """
    ax0, w0 = spec.axes[0], spec.windows[0]
    row_bytes = x.size // max(x.shape[ax0], 1) * np.dtype(acc or x.dtype).itemsize
    # One output row reads a window's span of input rows: when those alone are over the band
    # (a (40, 10**6) array pooled along its 40), the array is cut along its longest unpooled
    # axis first, and each piece runs in bands of its own.
    free = [a for a in range(x.ndim) if a not in spec.axes and x.shape[a] > 1]
    if free and row_bytes * min(w0.span, x.shape[ax0] + 2 * w0.p) > BAND_BYTES:
        cut = max(free, key=lambda a: x.shape[a])
        pieces = min(x.shape[cut], -(-row_bytes * min(w0.span, x.shape[ax0] + 2 * w0.p)
                                     // BAND_BYTES))
        return in_pieces(x, cut, pieces, spec.out_shape(x.shape), into,
                         lambda piece, part: _separable(piece, spec, op, acc, pre, finish,
                                                        into=part))
    rows = max(1, BAND_BYTES // max(row_bytes, 1))
    out = None
    for o0 in range(0, w0.out, rows):
        o1 = min(o0 + rows, w0.out)
        band = reduce_1d(x, ax0, w0, op, acc, pre, (o0, o1))
        for ax, w in zip(spec.axes[1:], spec.windows[1:]):
            band = reduce_1d(band, ax, w, op, acc)
        if finish is not None:
            band = finish(band, (o0, o1))
        if o0 == 0 and o1 == w0.out and into is None:
            return band
        if out is None:
            out = into if into is not None else np.empty(spec.out_shape(x.shape), band.dtype)
        index = [slice(None)] * x.ndim
        index[ax0] = slice(o0, o1)
        out[tuple(index)] = band
    return out


# NaN from inf - inf or from a negative base of a fractional power, inf from an overflowing
# float16 sum: the contract's IEEE results, not errors, so numpy's warnings are silenced.
_IEEE_RESULTS = dict(invalid="ignore", divide="ignore", over="ignore")


@np.errstate(**_IEEE_RESULTS)
def pool(x: np.ndarray, spec: PoolSpec) -> np.ndarray:
    """N-D pooling of a validated call (see :func:`poolcore.pool` for the semantics)."""
    op, dtype = spec.op, x.dtype
    if op in ("max", "min"):
        return _separable(x, spec, op, None)
    if op == "median":
        lo_hi = [w.real_taps() for w in spec.windows]
        groups = [_tap_groups(w.starts(), lo, hi, w.d) for w, (lo, hi) in zip(spec.windows, lo_hi)]
        return median_gather(x, spec.axes, groups, spec.out_shape(x.shape))
    volume = int(np.prod([w.k for w in spec.windows]))
    if op == "sum":
        out_dtype = accumulator(dtype) if dtype.kind in "iu" else dtype
        return _separable(x, spec, "sum", accumulator(dtype, volume),
                          finish=lambda band, _: band.astype(out_dtype, copy=False))
    per_axis = [w.counts(spec.count_include_pad) for w in spec.windows]

    def band_counts(outputs):
        # The divisor of a band's windows, made per band: the full product of per-axis counts
        # would be an int64 array as large as the output.
        o0, o1 = outputs
        return _broadcast_counts(x.ndim, spec.axes, [per_axis[0][o0:o1], *per_axis[1:]])

    if op == "avg":
        acc = exact_accumulator(x, accumulator(dtype, volume), volume)
        return _separable(x, spec, "sum", acc,
                          finish=lambda band, o: finish_mean(band, band_counts(o), dtype))
    return _lp(x, spec, band_counts, float(volume))


def _lp(x: np.ndarray, spec: PoolSpec, band_counts, volume: float) -> np.ndarray:
    """PyTorch's lp_pool (torch/nn/functional.py): ``(avg(x**p) * kernel_volume) ** (1/p)``,
    the average taken with the avg divisor rules, the sign of the sum kept (so an odd or
    fractional p on negative sums gives NaN, as torch); p = +-inf is max / min of |x|."""
    dtype = x.dtype
    work = np.promote_types(dtype, np.float64) if dtype.kind == "f" else np.dtype(np.float64)
    p = float(spec.p)

    def to_dtype(res):
        return float_to_int(res, dtype) if dtype.kind in "iu" else res.astype(dtype, copy=False)

    if np.isinf(p):
        return _separable(x, spec, "max" if p > 0 else "min", work,
                          pre=lambda v: np.abs(v.astype(work, copy=False)),
                          finish=lambda band, _: to_dtype(band))

    def finish(total, outputs):
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            # torch's sum starts at +0, so -0.0 terms ((-inf)**-1) sum to +0, whose root is +inf
            total += 0.0
            np.divide(total, band_counts(outputs), out=total)
            total *= volume
            return to_dtype(np.power(total, 1.0 / p, out=total))

    return _separable(x, spec, "sum", work, pre=lambda v: np.power(v.astype(work), p),
                      finish=finish)


# --------------------------------------------------------------------------- median


def _tap_groups(starts: np.ndarray, lo: np.ndarray, hi: np.ndarray, d: int):
    """Split one axis's windows into groups of equal real-tap pattern. Each group is
    ``(outputs, first, offsets)``: real tap j of output ``outputs[i]`` is at input position
    ``first[i] + offsets[j]`` (made into a matrix per tile only: for all outputs at once it
    would be as large as the gathered windows)."""
    groups = []
    keys = np.stack([lo, hi], axis=1)
    for key in np.unique(keys, axis=0):
        outputs = np.flatnonzero((keys == key).all(axis=1))
        groups.append((outputs, starts[outputs], np.arange(key[0], key[1], dtype=np.int64) * d))
    return groups


def _median_last(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Median along the last axis: the middle element, or the mean of the two middle ones
    (floats in float32 or wider, ints exactly with ties away from zero); NaN propagates."""
    t = v.shape[-1]
    if t == 0:
        return np.zeros(v.shape[:-1], dtype) if dtype.kind in "iu" else np.full(
            v.shape[:-1], np.nan, dtype)
    half = t // 2
    kth = (half - 1, half) if t % 2 == 0 else (half,)
    part = np.partition(v, kth, axis=-1)
    hi = part[..., half]
    if t % 2 == 0:
        lo = part[..., half - 1]
        if dtype.kind in "iu":
            # floor halves plus remainders: exact for every 64-bit value, no overflow
            a, b = lo // 2, hi // 2
            rem = (lo - 2 * a) + (hi - 2 * b)  # 0, 1 or 2
            mid = a + b + rem // 2
            odd = rem == 1  # the mean ends in .5: round away from zero
            up = odd & (mid >= 0)
            hi = (mid + up).astype(dtype)
        else:
            work = np.promote_types(dtype, np.float64)  # (a+b)/2 exact, then one rounding
            lo, hi = lo.astype(work), hi.astype(work)
            mid = (lo + hi) / 2
            # a + b overflows float64 only for huge a and b, whose halves are exact
            over = np.isinf(mid) & np.isfinite(lo) & np.isfinite(hi)
            if over.any():
                mid[over] = lo[over] / 2 + hi[over] / 2
            hi = mid.astype(dtype)
    if dtype.kind == "f":
        nan = np.isnan(v).any(axis=-1)
        if nan.any():
            hi = np.where(nan, np.array(np.nan, dtype), hi)
    return hi


def median_gather(x: np.ndarray, axes, groups, out_shape) -> np.ndarray:
    """Median over windows given per axis as tap groups (see :func:`_tap_groups`).

    Median is not separable (the median of medians is not the median), so each output gathers
    its whole N-D window. Windows are processed group by group (interior, each edge) and in
    tiles of outputs along the pooled axes, from the last one (whole rows while they fit), so
    the gathered copy stays near MEDIAN_BAND_ELEMENTS even where the first pooled axis has
    few outputs (a (2, 100000) signal with a (1, 101) window).
    """
    dtype = x.dtype
    m = len(axes)
    rest = [a for a in range(x.ndim) if a not in axes]
    xt = np.moveaxis(x, list(axes), list(range(x.ndim - m, x.ndim)))
    out = np.empty([out_shape[a] for a in rest] + [out_shape[a] for a in axes], dtype)
    rest_size = int(np.prod([x.shape[a] for a in rest], dtype=np.int64))
    if rest_size == 0:  # an empty non-pooled axis: nothing to gather (and reshape(-1) fails)
        return np.moveaxis(out, list(range(x.ndim - m, x.ndim)), list(axes))
    for combo in _product(groups):
        taps = int(np.prod([len(offsets) for _, _, offsets in combo], dtype=np.int64))
        budget = max(1, MEDIAN_BAND_ELEMENTS // max(1, rest_size * max(taps, 1)))
        tile = []  # outputs per tile along each pooled axis
        for outs, _, _ in reversed(combo):
            tile.append(max(1, min(len(outs), budget)))
            budget = max(1, budget // tile[-1])
        tile.reverse()
        corners = itertools.product(*(range(0, len(o), t) for (o, _, _), t in zip(combo, tile)))
        for corner in corners:
            parts = [(o[c:c + t], first[c:c + t, None] + offsets[None, :])
                     for (o, first, offsets), c, t in zip(combo, corner, tile)]
            index = []
            for i, (_, idx) in enumerate(parts):
                shape = [1] * (2 * m)
                shape[i], shape[m + i] = idx.shape
                index.append(idx.reshape(shape))
            gathered = xt[(Ellipsis, *index)]
            gathered = gathered.reshape(gathered.shape[: gathered.ndim - m] + (-1,))
            if taps == 0:
                gathered = gathered[..., :0]
            values = _median_last(gathered, dtype)
            out[(Ellipsis, *np.ix_(*[o for o, _ in parts]))] = values
    return np.moveaxis(out, list(range(x.ndim - m, x.ndim)), list(axes))


def _product(groups):
    combos = [[]]
    for axis_groups in groups:
        combos = [c + [g] for c in combos for g in axis_groups]
    return combos


# --------------------------------------------------------------------------- adaptive


def _adaptive_1d(x: np.ndarray, axis: int, n_out: int, op: str, acc) -> np.ndarray:
    starts, ends = adaptive_bounds(x.shape[axis], n_out)
    shape = list(x.shape)
    shape[axis] = n_out
    out = np.empty(shape, dtype=acc or x.dtype)
    ufunc = _UFUNC[op]
    lengths = ends - starts
    for length in np.unique(lengths):  # at most a few distinct window lengths
        outputs = np.flatnonzero(lengths == length)
        res = np.take(x, starts[outputs], axis=axis).astype(out.dtype, copy=False)
        for j in range(1, int(length)):
            ufunc(res, np.take(x, starts[outputs] + j, axis=axis), out=res, casting="unsafe")
        index = [slice(None)] * x.ndim
        index[axis] = outputs
        out[tuple(index)] = res
    return out


@np.errstate(**_IEEE_RESULTS)
def adaptive_pool(x: np.ndarray, spec: AdaptiveSpec) -> np.ndarray:
    """Adaptive pooling of a validated call (see :func:`poolcore.adaptive_pool`)."""
    op, dtype = spec.op, x.dtype
    out_shape = spec.out_shape(x.shape)
    if 0 in out_shape:
        res_dtype = accumulator(dtype) if op == "sum" and dtype.kind in "iu" else dtype
        return np.empty(out_shape, res_dtype)
    if op == "median":
        groups = []
        for ax, o in zip(spec.axes, spec.sizes):
            starts, ends = adaptive_bounds(x.shape[ax], o)
            lengths = ends - starts
            zeros = np.zeros_like(starts)
            groups.append(_tap_groups(starts, zeros, lengths, 1))
        return median_gather(x, spec.axes, groups, out_shape)
    acc = None if op in ("max", "min") else accumulator(dtype)
    if op == "avg":
        acc = exact_accumulator(x, acc, int(np.prod([x.shape[a] for a in spec.axes])))
    res = x
    for ax, o in zip(spec.axes, spec.sizes):
        res = _adaptive_1d(res, ax, o, "sum" if op == "avg" else op, acc)
    if op in ("max", "min"):
        return res
    if op == "sum":
        return res if dtype.kind in "iu" else res.astype(dtype, copy=False)
    per_axis = []
    for ax, o in zip(spec.axes, spec.sizes):
        starts, ends = adaptive_bounds(x.shape[ax], o)
        per_axis.append(ends - starts)
    return finish_mean(res, _broadcast_counts(x.ndim, spec.axes, per_axis), dtype)
