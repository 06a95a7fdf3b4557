"""The compiled backend: the numpy backend's results, from C kernels (``poolcore._fast``).

Importing this module raises ImportError when the extension was not built (an install without
a compiler); :mod:`poolcore.backends` then offers numpy only. No validation happens here: the
front (:mod:`poolcore.api`) validated the call. This module holds the policy, the C side only
computes:

- which calls the kernels cover (:data:`COVERED`, :func:`supports`); the rest fall back to
  numpy per call;
- the canonical view of an array for the C engine: ``(outer, n0, G0, n1, G1, ..., I)`` with
  the pooled axes ``n_i`` and the other axes merged into the groups between them, in memory
  order when the op allows it (so a channels-last NCHW array pools as fast as NHWC);
- per axis, the strategy: numpy's own tap order (direct, or its doubling tree) where the
  result must be bit-identical to numpy's float sums; elsewhere direct taps for short windows
  and, for long ones, van Herk / Gil-Werman (O(1) per element) on bands of many values, and
  for max/min on lines of single values log2(k) vectorised doubling passes, which measured
  4-6x faster there than van Herk's serial prefix scans;
- for median, which is not separable, whether the windows of the last axis slide a
  histogram or are gathered one by one (:func:`_median_last_axis`);
- the dtype rules of the contract, shared with :mod:`poolcore.numpy_backend`.

Results equal numpy_backend's: bit for bit for max, min, median (but for the sign of a zero
present as both +0.0 and -0.0), sum and every integer result; float
avg and lp may differ by float rounding only where a long window uses van Herk / Gil-Werman
(and lp with p other than 1 or 2, whose x**p comes from the C library's pow, not numpy's).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

# ImportError here means the extension was not built: backends.py then offers numpy only
from . import _fast, numpy_backend
from .geometry import AdaptiveSpec, PoolSpec, Window, adaptive_bounds

# --------------------------------------------------------------------------- coverage

_INTS = frozenset("bBhHiIlLqQ")
_FLOATS = frozenset("efd")

#: (kind, op) -> dtypes the compiled kernels cover, as numpy ``dtype.char`` codes ('?' bool,
#: 'bBhHiIlLqQ' integers, 'efd' floats); everything else (lp with p = +-inf, integer lp with
#: p other than 1 and 2, long double) runs on numpy, per call.
COVERED: dict[tuple[str, str], frozenset[str]] = {
    ("pool", "max"): _INTS | _FLOATS | {"?"},
    ("pool", "min"): _INTS | _FLOATS | {"?"},
    ("pool", "sum"): _INTS | _FLOATS,
    ("pool", "avg"): _INTS | _FLOATS,
    # integer lp must be bit-identical: only p = 1 and 2, where x**p is exact; floats any
    # finite p (see supports)
    ("pool", "lp"): _INTS | _FLOATS,
    ("pool", "median"): _INTS | _FLOATS,
    ("adaptive_pool", "max"): _INTS | _FLOATS | {"?"},
    ("adaptive_pool", "min"): _INTS | _FLOATS | {"?"},
    ("adaptive_pool", "sum"): _INTS | _FLOATS,
    ("adaptive_pool", "avg"): _INTS | _FLOATS,
    ("adaptive_pool", "median"): _INTS | _FLOATS,
}

_KIND = {"max": 0, "min": 1, "sum": 2, "avg": 2}
_K_LP1, _K_LP2, _K_LPP, _K_MED = 3, 4, 5, 6
_FIN_STORE, _FIN_AVG, _FIN_LP = 0, 1, 2
_ST_DIRECT, _ST_TREE, _ST_GW, _ST_LOG, _ST_ADAPT, _ST_HIST = 0, 1, 2, 3, 4, 5

# long windows switch to van Herk / Gil-Werman (about 3 band ops per input position, where
# direct taps cost k/s): measured crossover k = 7 at stride 1, k = 11 at stride 2
_GW_MIN_TAPS = 7
# a dilated line is d interleaved classes, each its own chain: direct taps measured faster up
# to k = 15-23 (integer sums, d = 2-3; 1024x2048), van Herk from about here
_GW_MIN_TAPS_DILATED_LINE = 24
# band mode keeps ceil(k/s) suffix bands per thread; beyond this, stay direct
_GW_MAX_BAND_BYTES = 64 << 20
# the last axis runs on padded lines when a position holds at most this many values
_LINE_MAX_INNER = 16


def supports(kind: str, spec, dtype: np.dtype) -> bool:
    """Whether the compiled kernels run this call (else numpy does, per call)."""
    dtype = np.dtype(dtype)
    chars = COVERED.get((kind, spec.op))
    if chars is None or dtype.char not in chars or not dtype.isnative:
        return False
    if len(spec.axes) > _fast.MAX_AXES:
        return False
    if kind == "pool" and any(w.far_longer_than_axis for w in spec.windows):
        return False  # the engine's line buffers would grow with the span, not the input
    if spec.op == "lp":
        p = float(spec.p)
        if not np.isfinite(p):
            return False
        if dtype.kind in "iu" and p not in (1.0, 2.0):
            return False
    return True


def covered() -> list[tuple[str, str, str]]:
    """Every covered (kind, op, dtype name), for tests and docs."""
    return sorted({(kind, op, np.dtype(c).name) for (kind, op), chars in COVERED.items()
                   for c in chars})


# --------------------------------------------------------------------------- threads


# Threads a call may use at most (_fast.c's run_job splits no job further).
MAX_THREADS = 256


def _default_threads() -> int:
    env = os.environ.get("POOLCORE_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            n = 0
        if n >= 1:
            return min(n, MAX_THREADS)
    return max(1, min(os.cpu_count() or 1, MAX_THREADS))


_threads = _default_threads()


def set_threads(n: int | None) -> int:
    """Use ``n`` threads per call (None: POOLCORE_THREADS or the CPU count); returns the
    previous setting. The batch runner sets 1 in each worker process."""
    global _threads
    old = _threads
    if n is None:
        _threads = _default_threads()
    else:
        n = int(n)
        if not 1 <= n <= MAX_THREADS:
            raise ValueError(f"`threads` must be from 1 to {MAX_THREADS}, got {n}")
        _threads = n
    return old


def get_threads() -> int:
    return _threads


# --------------------------------------------------------------------------- dtype rules


def _is_float(dtype: np.dtype) -> bool:
    return dtype.kind == "f"


def _kernel_dtype(op: str, dtype: np.dtype) -> np.dtype:
    """The dtype the C kernel writes (float16 sums and averages come back as float64 and are
    rounded once by numpy, as the reference does)."""
    if op in ("max", "min", "median"):
        return dtype
    if op == "lp":
        return np.dtype(np.float64)
    if dtype.kind in "iu":
        return numpy_backend.accumulator(dtype) if op == "sum" else dtype
    return np.dtype(np.float64) if dtype.itemsize == 2 else dtype


# --------------------------------------------------------------------------- strategies


def _numpy_segments(w: Window, rows: int | None = None) -> tuple[tuple[int, int, int], ...]:
    """numpy's parts of one pass with its strategy for each: reduce_1d splits the outputs
    into left edge, interior and right edge, and the first pass of _separable also into bands
    of ``rows`` outputs; every part takes direct taps or the doubling tree as
    numpy_backend.uses_doubling says (from k and s alone)."""
    strategy = _ST_TREE if numpy_backend.uses_doubling(w.k, w.s) else _ST_DIRECT
    lo, hi = w.interior()
    bands = [(0, w.out)] if rows is None else [
        (o0, min(o0 + rows, w.out)) for o0 in range(0, w.out, rows)]
    out = []
    for first, stop in bands:
        for a, b in ((first, min(stop, lo)), (max(first, lo), min(stop, hi)),
                     (max(first, hi, lo), stop)):
            if a < b:
                out.append((a, b, strategy))
    return tuple(out)


def _numpy_band_rows(shape: Sequence[int], axis: int, acc_itemsize: int) -> int:
    """Outputs per band of numpy_backend._separable's first pass (BAND_BYTES of accumulator)."""
    row_bytes = math.prod(shape) // max(shape[axis], 1) * acc_itemsize
    return max(1, numpy_backend.BAND_BYTES // max(row_bytes, 1))


def _segments(w: Window, exact_float: int, line: bool, band_bytes: int,
              rows: int | None, minmax: bool) -> tuple:
    """Strategy of one axis: numpy's parts and order for float sums (bit-identical), else
    direct taps for short windows and van Herk / Gil-Werman for long ones. Float avg and lp
    (``exact_float == 1``) take van Herk too once numpy's tree would cost log2(k) >= 3 levels,
    on bands and lines alike."""
    gw_ok = w.k >= max(_GW_MIN_TAPS, 4 * w.s + 3) and (
        w.d == 1 or (line and w.k >= _GW_MIN_TAPS_DILATED_LINE))
    if not line and gw_ok:
        gw_ok = (-(-w.k // w.s) + 4) * band_bytes <= _GW_MAX_BAND_BYTES
    if exact_float:
        segs = _numpy_segments(w, rows)
        if exact_float == 1 and gw_ok and any(st == _ST_TREE for *_, st in segs):
            # van Herk on bands once numpy's tree would cost 3+ levels; on lines once the
            # tree's passes (levels + one-bits of k) reach 7: 2048 lines of 2048 at k = 31
            # went 8.9 -> 5.6 ms, while k = 8..12 and 16 measured faster on the tree; dilated
            # lines stay on it (van Herk measured no faster there at k = 15)
            tree_passes = w.k.bit_length() - 1 + w.k.bit_count()
            if (w.k >= 8 and not line) or (line and w.d == 1 and tree_passes >= 7):
                return ((0, w.out, _ST_GW),)
        return segs
    if line and minmax and w.k >= 4:
        # on a line of single values van Herk's prefix/suffix scans are serial chains; the
        # log2(k) doubling passes vectorise and measured 4-6x faster for k = 7..63
        return ((0, w.out, _ST_LOG),)
    return ((0, w.out, _ST_GW if gw_ok else _ST_DIRECT),)


def _median_last_axis(w, dtype: np.dtype, col: int) -> tuple[int, float]:
    """Strategy of the median's last pooled axis (the line its windows slide along) and the
    taps an output touches per tap of a column (the work estimate for threads); ``col`` is the
    real taps of a column (the window on the other pooled axes). 8-bit windows that overlap
    along a line of dilation 1 slide a histogram (2 s column updates per output, whatever k);
    so do 16-bit ones (two levels) when the window is large enough; the rest gather each
    window and select, k taps. Whatever this says, the C side takes a sorting network for
    3x3 and 5x5 stride-1 windows inside a line it sees laid out contiguously
    (_fast_median.h's net_k): only it sees the line's layout and a column's real taps."""
    if w.d != 1 or w.s >= w.k:
        return _ST_DIRECT, 2.0 * w.k
    if dtype.itemsize == 1:
        return _ST_HIST, 2.0 * w.s + 2.0
    taps = w.k * col
    # 16 bits: on full-range noise (the worst case) the median's walk over bins costs about
    # as much as gathering ~12 taps, twice that for even counts (the second middle is walked
    # to as well); 2048x2048 uint16, 2 threads: 5x5 0.40 -> 0.25 s, 1x13 0.22 -> 0.17 s, but
    # 3x3 0.14 -> 0.25 s, 4x4 0.25 -> 0.55 s, 1x12 0.21 -> 0.46 s, and 3x3x3 volumes (k = 3
    # along the line) 0.14 -> 0.26 s stay gathered. Smooth images gain more (5x5 0.09 s).
    if dtype.itemsize == 2 and dtype.kind in "iu" and w.k >= 5 and taps >= (12 if taps % 2 else 36):
        return _ST_HIST, 2.0 * w.s + 2.0
    return _ST_DIRECT, 2.0 * w.k


# --------------------------------------------------------------------------- canonical view


def _merge(dims: Sequence[tuple[int, int]]) -> tuple[int, int] | None:
    """One (size, stride) for a run of (size, stride) dims, or None when they do not chain."""
    dims = [d for d in dims if d[0] != 1]
    if not dims:
        return 1, 0
    size, stride = dims[-1]
    for sz, st in reversed(dims[:-1]):
        if st != size * stride:
            return None
        size *= sz
    return size, stride


def _order(shape: Sequence[int], strides: Sequence[int], axes: tuple[int, ...], fixed: bool
           ) -> list[int]:
    """Dims of the canonical view, outermost first, size-1 non-pooled dims left out.

    Memory order (descending |stride|) when it keeps the pooled axes in their pass order (or
    the op does not care about the order), else the given order with the pooled axes placed
    at their positions in pass order."""
    pooled = set(axes)
    keep = [a for a in range(len(shape)) if shape[a] != 1 or a in pooled]
    keys = {}
    nxt = 0
    for a in reversed(keep):
        if shape[a] != 1:
            nxt = -abs(strides[a])
        keys[a] = nxt
    mem = sorted(keep, key=lambda a: keys[a])  # stable: ties keep their order
    if not fixed or [a for a in mem if a in pooled] == list(axes):
        return mem
    slots = iter(axes)
    return [next(slots) if a in pooled else a for a in keep]


def _canonical(shape, strides, order, axes_set):
    """Group the dims of ``order``: (outer, [(n_axis, group) ...]); None if a group cannot be
    merged into one strided dim."""
    groups: list[list[tuple[int, int]]] = [[]]
    pooled: list[int] = []
    for a in order:
        if a in axes_set:
            pooled.append(a)
            groups.append([])
        else:
            groups[-1].append((shape[a], strides[a]))
    merged = [_merge(g) for g in groups]
    if any(m is None for m in merged):
        return None
    return pooled, merged


@dataclass(frozen=True)
class _AdaptiveAxis:
    """An adaptive axis in the shape of a Window for the engine: windows [starts, ends); k, s
    only size the engine's buffers (k covers the longest window, s the mean step)."""

    n: int
    out: int
    bounds: np.ndarray  # int64 (2, out): starts then ends

    @property
    def k(self) -> int:
        return int((self.bounds[1] - self.bounds[0]).max()) + 1

    @property
    def s(self) -> int:
        return max(1, -(-self.n // self.out))

    p = 0
    d = 1

    def counts(self, count_include_pad: bool = True) -> np.ndarray:
        return self.bounds[1] - self.bounds[0]


def _wraps(x: np.ndarray, op: str, volume: int) -> bool:
    """Whether a 64-bit integer average could wrap its sum: numpy then takes its exact path
    (numpy_backend.exact_accumulator), and so does this backend, by calling it."""
    dtype = x.dtype
    if op != "avg" or dtype.kind not in "iu" or dtype.itemsize != 8:
        return False
    acc = numpy_backend.accumulator(dtype, volume)
    return numpy_backend.exact_accumulator(x, acc, volume) != acc


# A thread's band: what lies below the outermost pooled axis, in an 8-byte accumulator (one
# image row, one plane of a volume). Past this, a call is run in pieces (_band_cut).
_BAND_CAP_BYTES = 1 << 24


def _band_cut(x: np.ndarray, axes) -> tuple[int, int] | None:
    """``(axis, pieces)`` to run a call in, when one thread's band would be over the cap (a
    (4, 50_000_000) array pooled along its 4: 400 MB a thread): the longest unpooled axis
    below the outermost pooled one, cut so that a piece's band fits. Pooling never looks
    across an unpooled axis, so the pieces give the same result."""
    if x.size * 8 <= _BAND_CAP_BYTES:  # no band can be over it (the common case, at once)
        return None
    order = sorted(range(x.ndim), key=lambda a: -abs(x.strides[a]))  # outer first
    first = min(axes, key=order.index)
    below = order[order.index(first) + 1:]
    band = math.prod(x.shape[a] for a in below) * 8
    free = [a for a in below if a not in axes and x.shape[a] > 1]
    if band <= _BAND_CAP_BYTES or not free:
        return None
    cut = max(free, key=lambda a: x.shape[a])
    return cut, min(x.shape[cut], -(-band // _BAND_CAP_BYTES))


def _finish_cut(x: np.ndarray, axes, op: str, out_shape) -> tuple[int, int] | None:
    """``(axis, pieces)`` for a call whose kernel writes float64 that is then finished into
    the result (lp's root and rounding, float16's cast), when that float64 output would be
    over the cap: the longest unpooled axis, cut so that it is never whole (a (64, 512, 512)
    float16 avg along its last two axes made a 128 MB float64 temporary for a 32 MB result).
    An array pooled along all its axes cannot be cut: it stays whole."""
    kdtype = _kernel_dtype(op, x.dtype)
    if kdtype == x.dtype or (op != "lp" and x.dtype.kind != "f"):
        return None  # the kernel writes the result itself
    out_bytes = math.prod(out_shape) * kdtype.itemsize
    free = [a for a in range(x.ndim) if a not in axes and x.shape[a] > 1]
    if out_bytes <= _BAND_CAP_BYTES or not free:
        return None
    cut = max(free, key=lambda a: x.shape[a])
    return cut, min(x.shape[cut], -(-out_bytes // _BAND_CAP_BYTES))


def _in_pieces(x: np.ndarray, axes, op: str, out_shape, call) -> np.ndarray:
    """``call(x)``, or ``call`` on pieces of ``x`` along an unpooled axis when one thread's band
    (:func:`_band_cut`) or the float64 output to finish (:func:`_finish_cut`) would be over the
    cap. Pooling never looks across an unpooled axis, so the pieces give the same result."""
    cut = _band_cut(x, axes) or _finish_cut(x, axes, op, out_shape)
    if cut is None:
        return call(x)

    def run(piece, part):
        res = call(piece)
        if part is not None:
            part[...] = res
        return res

    return numpy_backend.in_pieces(x, *cut, out_shape, None, run)


def pool(x: np.ndarray, spec: PoolSpec) -> np.ndarray:
    """N-D pooling of a validated call, as :func:`poolcore.numpy_backend.pool`."""
    if x.size == 0 or _wraps(x, spec.op, math.prod(w.k for w in spec.windows)):
        return numpy_backend.pool(x, spec)
    return _in_pieces(
        x, spec.axes, spec.op, spec.out_shape(x.shape),
        lambda piece: _run(piece, spec.op, spec.axes, spec.windows, spec.out_shape(piece.shape),
                           spec.count_include_pad, float(spec.p), adaptive=False))


def adaptive_pool(x: np.ndarray, spec: AdaptiveSpec) -> np.ndarray:
    """Adaptive pooling of a validated call, as :func:`poolcore.numpy_backend.adaptive_pool`:
    windows [floor(i*n/out), ceil((i+1)*n/out)), taps summed in order."""
    out_shape = spec.out_shape(x.shape)
    volume = math.prod(x.shape[a] for a in spec.axes)
    if x.size == 0 or 0 in out_shape or _wraps(x, spec.op, volume):
        return numpy_backend.adaptive_pool(x, spec)
    windows = []
    for a, o in zip(spec.axes, spec.sizes):
        starts, ends = adaptive_bounds(x.shape[a], o)
        windows.append(_AdaptiveAxis(x.shape[a], o, np.ascontiguousarray(
            np.stack([starts, ends]), dtype=np.int64)))
    return _in_pieces(
        x, spec.axes, spec.op, out_shape,
        lambda piece: _run(piece, spec.op, spec.axes, windows, spec.out_shape(piece.shape),
                           True, 2.0, adaptive=True))


class _Plan(NamedTuple):
    """Everything of a kernel call but the arrays: the output's shape and dtype in the
    canonical (input memory) order, the kernel's arguments, and the transpose back."""

    dst_shape: tuple[int, ...]
    kdtype: np.dtype
    kind: int
    fin: int
    volume: float
    outer: tuple[int, int, int]  # size, input stride, output stride
    axes_t: tuple
    line: bool
    perm: tuple[int, ...]


def _plan(shape, strides, dtype, op, axes, windows, out_shape, count_include_pad, p, adaptive
          ) -> _Plan | None:
    """Canonicalise and choose strategies; None when the input's dims do not merge."""
    # sums in double (float sum/avg, every lp) follow numpy's pass order and tap order;
    # max, min and integer sums do not depend on it, so they run in memory order
    exact = op == "lp" or (_is_float(dtype) and op in ("sum", "avg"))
    order = _order(shape, strides, axes, fixed=exact)
    canon = _canonical(shape, strides, order, set(axes))
    if canon is None:
        return None
    pooled, merged = canon
    win = dict(zip(axes, windows))

    # the output is laid out in the order of the canonical view (the input's memory order)
    kdtype = _kernel_dtype(op, dtype)
    rest = [a for a in range(len(shape)) if a not in order]
    full = order + rest
    dst_shape = tuple(out_shape[a] for a in full)
    dst_strides = _c_strides(dst_shape, kdtype.itemsize)
    dpos = {a: i for i, a in enumerate(full)}
    dst_groups: list[list[tuple[int, int]]] = [[]]
    for a in order:
        if a in win:
            dst_groups.append([])
        else:
            dst_groups[-1].append((dst_shape[dpos[a]], dst_strides[dpos[a]]))
    dmerged = [_merge(g) for g in dst_groups]

    fin = {"avg": _FIN_AVG, "lp": _FIN_LP}.get(op, _FIN_STORE)
    if op == "median":
        kind, acc_size = _K_MED, dtype.itemsize
    elif op == "lp":
        if p == 2.0:
            kind = _K_LP2
        elif p == 1.0:
            kind = _K_LP1 if dtype.kind in "iu" else _KIND["sum"]
        else:
            kind = _K_LPP
        acc_size = 8
    else:
        kind = _KIND[op]
        acc_size = 8 if op in ("sum", "avg") else (4 if dtype.char == "e" else dtype.itemsize)

    m = len(pooled)
    # median walks whole windows (no passes): never on padded lines
    line = merged[-1][0] <= _LINE_MAX_INNER and op != "median"
    volume = float(math.prod(w.k for w in windows)) if not adaptive else 1.0
    # float avg and float lp may use van Herk for long windows (rounding-level differences);
    # float sums and integer lp never (their results must be bit-identical)
    exact_level = 0
    if exact:
        exact_level = 2 if op == "sum" or dtype.kind in "iu" else 1
    axes_t = []
    for i, a in enumerate(pooled):
        w = win[a]
        g_size, g_stride = merged[i + 1]
        dg_stride = dmerged[i + 1][1]
        if op == "median":
            # every axis but the last only lists the real taps of its windows
            col = math.prod(min(win[b].k, shape[b]) for b in pooled[:-1])
            strategy, per_tap = (_median_last_axis(w, dtype, col) if i == m - 1
                                 else (_ST_DIRECT, 1.0))
            segs = ((0, w.out, strategy),)
            bounds = w.bounds if adaptive else None
            # for K_MED, `volume` is the estimated work per output (threads start on it)
            volume = per_tap * col
        elif adaptive:
            segs = ((0, w.out, _ST_ADAPT),)
            bounds = w.bounds
        else:
            band = math.prod(merged[j + 1][0] for j in range(i, m))
            band *= math.prod(shape[b] for b in pooled[i + 1:])
            rows = _numpy_band_rows(shape, a, 8) if exact and a == axes[0] else None
            segs = _segments(w, exact_level, line and i == m - 1, band * acc_size, rows,
                             op in ("max", "min"))
            bounds = None
        counts = None  # the kernel then counts k taps in every window
        if fin != _FIN_STORE and (adaptive or w.interior() != (0, w.out)):
            counts = np.ascontiguousarray(w.counts(count_include_pad), dtype=np.int64)
            counts.flags.writeable = False  # shared by every call of a cached plan
        axes_t.append((
            w.n, w.k, w.s, w.p, w.d, w.out, g_size,
            strides[a], g_stride, dst_strides[dpos[a]], dg_stride, segs, counts, bounds,
        ))
    outer = (merged[0][0], merged[0][1], dmerged[0][1])
    perm = tuple(sorted(range(len(full)), key=full.__getitem__))
    return _Plan(dst_shape, kdtype, kind, fin, volume, outer, tuple(axes_t), line, perm)


_cached_plan = functools.lru_cache(maxsize=64)(_plan)
# at most ~1 MB of divisors per cached plan (64 plans: 64 MB in the worst case)
_CACHED_PLAN_MAX_OUTPUTS = 1 << 17


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """The strides np.empty(shape) has (C order)."""
    strides = []
    step = itemsize
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return tuple(reversed(strides))


# Bytes of the kernel's float64 output finished at a time (lp's root, the cast to float16).
_FINISH_SLAB_BYTES = 1 << 22


def _run(x, op, axes, windows, out_shape, count_include_pad, p, adaptive) -> np.ndarray:
    """Plan (cached: a batch pools image after image of one size), run the kernel, finish as
    numpy_backend does."""
    dtype = x.dtype
    if not x.flags.aligned:
        x = x.copy()
    args = (op, tuple(axes), tuple(windows), tuple(out_shape), count_include_pad, p, adaptive)
    # adaptive windows hold arrays (unhashable), and a plan holds its divisors (8 bytes an
    # output): those and long axes are planned each time, so the cache stays small
    cached = not adaptive and sum(w.out for w in windows) <= _CACHED_PLAN_MAX_OUTPUTS
    plan = (_cached_plan if cached else _plan)(x.shape, x.strides, dtype, *args)
    if plan is None:  # groups that do not merge into one strided dim (rare): copy once
        x = np.ascontiguousarray(x)
        plan = _plan(x.shape, x.strides, dtype, *args)
    dst = np.empty(plan.dst_shape, plan.kdtype)
    _fast.pool(x, dst, plan.kind, plan.fin, p, plan.volume, _threads, *plan.outer,
               plan.axes_t, plan.line)
    if op != "lp" and (dst.dtype == dtype or dtype.kind != "f"):
        return dst.transpose(plan.perm)
    # lp's root and the cast back (float16 sums and averages: one rounding, as numpy) are
    # done slab by slab of the kernel's float64 output, straight into the result (the kernel's
    # output itself for float64 lp): whole, the rounding of integer lp took ~4 full-size
    # float64 and bool temporaries (2.3 GB for a 72 MB image).
    out = dst if dst.dtype == dtype else np.empty(dst.shape, dtype)
    step = max(1, _FINISH_SLAB_BYTES // max(1, dst[:1].nbytes))
    # NaN, inf and saturation are the contract's IEEE results, not warnings (as numpy_backend)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for i in range(0, dst.shape[0], step):
            part = dst[i:i + step]
            if op == "lp":
                np.power(part, 1.0 / p, out=part)
                if dtype.kind in "iu":
                    part = numpy_backend.float_to_int(part, dtype)
            if out is not dst:
                out[i:i + step] = part
    return out.transpose(plan.perm)
