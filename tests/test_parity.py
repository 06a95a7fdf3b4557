"""Parity: the compiled backend gives the numpy reference's results (bottleneck's move_test.py).

Every covered op x dtype x parameter runs on "fast" and "numpy" and must agree, dtype included:
bit for bit for max, min, sum, median and every integer result (float sums too: the C engine
follows numpy's tap order), within float rounding for float avg and lp. Failure messages name op,
parameters, dtype, shape, strides and axes.

Skipped as a module only when the extension is missing and POOLCORE_REQUIRE_FAST is unset; with
POOLCORE_REQUIRE_FAST=1 a missing extension fails every test here (a silent fallback would hide
a broken build: msgpack-python#481).
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import os
import sys
import time
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import poolcore
from poolcore import numpy_backend

HAVE_FAST = "fast" in poolcore.available_backends()
if not HAVE_FAST and not os.environ.get("POOLCORE_REQUIRE_FAST"):
    pytest.skip("the compiled backend is not built here", allow_module_level=True)
if HAVE_FAST:
    from poolcore import _fast, fast_backend

pytestmark = pytest.mark.fast


@pytest.fixture(autouse=True)
def _require_fast():
    if not HAVE_FAST:
        pytest.fail(
            "POOLCORE_REQUIRE_FAST is set but the compiled backend is missing "
            f"(available: {poolcore.available_backends()}): the build lost poolcore._fast"
        )


INTS = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FLOATS = ["float16", "float32", "float64"]
DTYPES = ["bool", *INTS, *FLOATS]
OPS = ["max", "min", "sum", "avg", "lp", "median"]
RTOL = {"float16": 2e-3, "float32": 2e-6, "float64": 1e-11}


def ops_for(dtype) -> list[str]:
    return ["max", "min"] if np.dtype(dtype).kind == "b" else OPS


def exact(op: str, dtype) -> bool:
    """Where the contract asks for bit-identical results."""
    return op in ("max", "min", "sum", "median") or np.dtype(dtype).kind != "f"


def check(x: np.ndarray, op: str, note: str = "", **kw) -> np.ndarray:
    """Run ``op`` on both backends and compare; returns the fast result."""
    ctx = (f"op={op} dtype={x.dtype} shape={x.shape} strides={x.strides} {kw} {note}").strip()
    try:
        ref = poolcore.pool(x, op, backend="numpy", **kw)
    except (ValueError, TypeError) as e:
        with pytest.raises(type(e)):
            poolcore.pool(x, op, backend="fast", **kw)
        return None
    got = poolcore.pool(x, op, backend="fast", **kw)
    assert got.dtype == ref.dtype, f"dtype {got.dtype} != {ref.dtype}: {ctx}"
    assert got.shape == ref.shape, f"shape {got.shape} != {ref.shape}: {ctx}"
    if exact(op, x.dtype):
        np.testing.assert_array_equal(got, ref, err_msg=ctx, strict=True)
        if got.dtype.kind == "f" and op == "sum":  # the sign of zeros too
            same = np.isnan(ref) | (np.signbit(got) == np.signbit(ref))
            assert same.all(), f"sign of zero differs: {ctx}"
    else:
        rtol = RTOL[x.dtype.name]
        scale = np.nanmax(np.abs(ref[np.isfinite(ref)]), initial=0.0)
        np.testing.assert_allclose(
            got.astype(np.float64), ref.astype(np.float64), rtol=rtol,
            atol=rtol * float(scale), equal_nan=True, err_msg=ctx,
        )
        assert np.array_equal(np.isnan(got), np.isnan(ref)), f"NaN positions differ: {ctx}"
        fin = np.isfinite(ref)
        assert np.array_equal(got[~fin], ref[~fin], equal_nan=True), f"inf differs: {ctx}"
    return got


def check_adaptive(x: np.ndarray, op: str, output_size, note: str = "", **kw) -> np.ndarray:
    """adaptive_pool on both backends: bit-identical (taps are summed in numpy's order)."""
    ctx = f"adaptive op={op} dtype={x.dtype} shape={x.shape} strides={x.strides} " \
          f"output_size={output_size} {kw} {note}"
    ref = poolcore.adaptive_pool(x, op, output_size, backend="numpy", **kw)
    got = poolcore.adaptive_pool(x, op, output_size, backend="fast", **kw)
    assert got.dtype == ref.dtype and got.shape == ref.shape, ctx
    np.testing.assert_array_equal(got, ref, err_msg=ctx, strict=True)
    return got


def sample(dtype, shape, rng, special: bool = True) -> np.ndarray:
    """Values that exercise the dtype: NaN, +-inf and signed zeros for floats, the extremes
    for integers (max/min must keep them; 64-bit sums wrap as numpy's do)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.kind == "f":
        x = (rng.standard_normal(shape) * 8).astype(dtype)
        if special and x.size:
            flat = x.reshape(-1)
            r = rng.random(flat.size)
            flat[r < 0.03] = np.nan
            flat[(r >= 0.03) & (r < 0.05)] = np.inf
            flat[(r >= 0.05) & (r < 0.07)] = -np.inf
            flat[(r >= 0.07) & (r < 0.12)] = -0.0
        return x
    info = np.iinfo(dtype)
    x = rng.integers(max(info.min, -200), min(info.max, 200), shape, endpoint=True).astype(dtype)
    if special and x.size:
        flat = x.reshape(-1)
        r = rng.random(flat.size)
        flat[r < 0.05] = info.max
        flat[(r >= 0.05) & (r < 0.1)] = info.min
    return x


def op_kwargs(op: str, dtype) -> list[dict]:
    if op != "lp":
        return [{}]
    if np.dtype(dtype).kind == "f":
        return [{"p": 1.0}, {"p": 2.0}, {"p": 3.0}]
    return [{"p": 1.0}, {"p": 2.0}]


# --------------------------------------------------------------------------- coverage


def test_covered_table_is_what_supports_says():
    """The covered (op, dtype) set is data; supports() agrees with it for every pair."""
    x = np.zeros((4, 4))
    windows = poolcore.geometry.make_windows(x.shape, (0, 1), 2, None, 0, 1, False)
    for op, dtype in itertools.product([*OPS, "median"], DTYPES):
        spec = poolcore.geometry.PoolSpec(op, (0, 1), windows)
        expected = np.dtype(dtype).char in fast_backend.COVERED.get(("pool", op), ())
        assert fast_backend.supports("pool", spec, np.dtype(dtype)) == expected, (op, dtype)
    for op, dtype in itertools.product(["max", "min", "sum", "avg", "median"], DTYPES):
        spec = poolcore.geometry.AdaptiveSpec(op, (0, 1), (2, 3))
        expected = np.dtype(dtype).char in fast_backend.COVERED.get(("adaptive_pool", op), ())
        assert fast_backend.supports("adaptive_pool", spec, np.dtype(dtype)) == expected
    assert ("pool", "max", "bool") in fast_backend.covered()
    assert ("adaptive_pool", "avg", "uint8") in fast_backend.covered()
    for dtype in [*INTS, *FLOATS]:
        assert ("pool", "median", dtype) in fast_backend.covered()
        assert ("adaptive_pool", "median", dtype) in fast_backend.covered()


def test_uncovered_calls_fall_back_to_numpy():
    """lp with p = inf (or integer lp with other p) runs on numpy per call, even with
    backend="fast", and gives the reference's results."""
    rng = np.random.default_rng(0)
    x = sample("float32", (9, 11), rng)
    for op, kw in [("lp", {"p": np.inf}), ("lp", {"p": -np.inf})]:
        check(x, op, kernel=3, stride=2, **kw)
    check(sample("int16", (9, 11), rng), "lp", kernel=2, p=3.0)


def test_median_runs_compiled(monkeypatch):
    """backend="fast" runs median (plain and adaptive) in C: numpy's gather is never called;
    long double, which the kernels do not cover, still falls back to it."""
    calls = []
    gather = numpy_backend.median_gather
    monkeypatch.setattr(numpy_backend, "median_gather",
                        lambda *a, **kw: calls.append(a[0].dtype) or gather(*a, **kw))
    rng = np.random.default_rng(1)
    for dtype in ("uint8", "int16", "float16", "float64"):
        x = sample(dtype, (9, 11, 3), rng)
        poolcore.pool(x, "median", 3, stride=1, padding=1, axes=(0, 1), backend="fast")
        poolcore.adaptive_pool(x, "median", (4, 5), axes=(0, 1), backend="fast")
    assert calls == []
    poolcore.pool(np.zeros((4, 4), np.longdouble), "median", 2, backend="fast")
    assert calls == [np.dtype(np.longdouble)]


# --------------------------------------------------------------------------- fixed grids


@pytest.mark.parametrize(("k", "s", "d"), list(itertools.product([1, 2, 3, 4, 5, 15, 31],
                                                                 [1, 2, 3], [1, 2, 3])))
def test_grid_1d(k, s, d):
    """Every padding and both modes for one (kernel, stride, dilation), on signals whose length
    puts windows in every position (left padding, interior, overhang)."""
    rng = np.random.default_rng(k * 100 + s * 10 + d)
    span = d * (k - 1) + 1
    for p in range(0, span // 2 + 1):
        n = max(1, span - 2 * p) + int(rng.integers(0, 2 * s + 3))
        for dtype in ("float64", "int16", "uint8"):
            x = sample(dtype, (3, n), rng)
            for op, ceil, cip in itertools.product(ops_for(dtype), (False, True), (False, True)):
                if cip and op not in ("avg", "lp"):
                    continue
                for extra in op_kwargs(op, dtype):
                    check(x, op, kernel=k, stride=s, padding=p, dilation=d, ceil_mode=ceil,
                          count_include_pad=cip, axes=1, **extra)


@pytest.mark.parametrize("layout", ["hwc", "hw", "nchw", "nhwc"])
@pytest.mark.parametrize("dtype", ["uint8", "float32", "int32"])
def test_grid_2d_images(layout, dtype):
    """2-D pooling of images and tensors; uint8 HWC with 2x2/3x3 stride 2 hits the fused
    kernels, the rest the generic engine."""
    rng = np.random.default_rng(zlib.crc32(f"{layout}{dtype}".encode()))
    shapes = {"hwc": ((23, 37, 3), (0, 1)), "hw": ((31, 18), (0, 1)),
              "nchw": ((2, 3, 19, 26), (2, 3)), "nhwc": ((2, 17, 21, 4), (1, 2))}
    shape, axes = shapes[layout]
    x = sample(dtype, shape, rng)
    for k, s, ceil in itertools.product([1, 2, 3, 4, 5, 15], [1, 2, 3], [False, True]):
        for p in sorted({0, 1, k // 2}):
            if p > k // 2:
                continue
            for op in ops_for(dtype):
                for cip in ((False, True) if op == "avg" else (True,)):
                    check(x, op, kernel=k, stride=s, padding=p, ceil_mode=ceil,
                          count_include_pad=cip, axes=axes)


@pytest.mark.parametrize("channels", [1, 3, 4])
@pytest.mark.parametrize("op", ["max", "min", "avg"])
def test_fused_uint8_kernels_match_generic(channels, op):
    """The fused uint8 kernels (2x2 and 3x3, stride 2) equal the generic engine and numpy,
    with and without AVX2, on sizes around the vector widths and on strided rows."""
    rng = np.random.default_rng(channels * 7 + len(op))
    old = _fast.config()
    try:
        for h, w in [(2, 2), (3, 3), (5, 33), (8, 64), (9, 65), (17, 130), (4, 200)]:
            base = rng.integers(0, 256, (h + 2, w, channels), dtype=np.uint8)
            for x in (base[1:-1], base[1:-1, :, :1] if channels > 1 else base[1:-1]):
                x = x if channels > 1 else x[..., 0]
                for k, p, ceil, cip in itertools.product((2, 3), (0, 1), (False, True),
                                                         (False, True)):
                    kw = dict(kernel=k, stride=2, padding=p, ceil_mode=ceil,
                              count_include_pad=cip, axes=(0, 1))
                    results = []
                    for hot, avx2 in ((True, True), (True, False), (False, True)):
                        _fast.config(hot=hot, avx2=avx2)
                        results.append(check(x, op, note=f"hot={hot} avx2={avx2}", **kw))
                    if results[0] is not None:
                        for r in results[1:]:
                            np.testing.assert_array_equal(r, results[0])
    finally:
        _fast.config(**{k: old[k] for k in ("hot", "avx2")})


def _guarded_bytes(nbytes: int, rng) -> np.ndarray:
    """``nbytes`` random bytes that end right before an unreadable page, so a kernel reading
    past them crashes the test."""
    npages = -(-nbytes // mmap.PAGESIZE) + 1
    buf = np.frombuffer(mmap.mmap(-1, npages * mmap.PAGESIZE), np.uint8)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    guard = buf.ctypes.data + (npages - 1) * mmap.PAGESIZE
    assert libc.mprotect(guard, mmap.PAGESIZE, 0) == 0, os.strerror(ctypes.get_errno())
    data = buf[(npages - 1) * mmap.PAGESIZE - nbytes:(npages - 1) * mmap.PAGESIZE]
    data[:] = rng.integers(0, 256, nbytes, dtype=np.uint8)
    return data


def _guarded_rgbx(h: int, w: int, rng, row_pad: int = 0) -> np.ndarray:
    """An (h, w, 3) uint8 view with RGBX strides (4 * w + row_pad, 4, 1) over exactly the bytes it
    covers, (h - 1) * row stride + (w - 1) * 4 + 3: no pad byte after the last pixel, and a
    guard page right after it."""
    rs = 4 * w + row_pad
    data = _guarded_bytes((h - 1) * rs + (w - 1) * 4 + 3, rng)
    return np.lib.stride_tricks.as_strided(data, (h, w, 3), (rs, 4, 1), writeable=False)


def _rgbx_views(h: int, w: int, rng):
    yield "rgbx", rng.integers(0, 256, (h, w, 4), dtype=np.uint8)[..., :3]
    if sys.platform == "linux":
        yield "tight", _guarded_rgbx(h, w, rng)
        if w % 3 == 0:  # rows not 4 * w apart (a crop of a wider image)
            yield "tight+row_pad", _guarded_rgbx(h, w, rng, row_pad=5)


def _check_hot_modes(x, op, note="", **kw):
    """``check`` with the fused kernels on (AVX2 and scalar) and off: all equal numpy."""
    old = _fast.config()
    try:
        results = []
        for hot, avx2 in ((True, True), (True, False), (False, True)):
            _fast.config(hot=hot, avx2=avx2)
            results.append(check(x, op, note=f"{note} hot={hot} avx2={avx2}", **kw))
        if results[0] is not None:
            for r in results[1:]:
                np.testing.assert_array_equal(r, results[0], strict=True)
    finally:
        _fast.config(**{k: old[k] for k in ("hot", "avx2")})


@pytest.mark.parametrize("op", ["max", "min", "avg"])
def test_fused_uint8_rgbx_views(op):
    """RGB seen in RGBX storage (pixels 4 bytes apart, as Pillow keeps RGB): the fused kernels
    take it and equal numpy, on every width up to 70 (vector edges and scalar tails), every
    padding, both modes; the "tight" views end at the last pixel's third byte, before a guard
    page, so a vector load past the view would crash here."""
    rng = np.random.default_rng(len(op))
    for w in range(1, 71):
        h = 1 + w % 7 if w % 5 else 2 + w // 5  # short rows mostly, a few taller
        for name, x in _rgbx_views(h, w, rng):
            for k, ceil in itertools.product((2, 3), (False, True)):
                for p in range(k // 2 + 1):
                    for cip in ((False, True) if op == "avg" else (True,)):
                        _check_hot_modes(x, op, note=f"layout={name}", kernel=k, stride=2,
                                         padding=p, ceil_mode=ceil, count_include_pad=cip,
                                         axes=(0, 1))


@pytest.mark.skipif(sys.platform != "linux", reason="guard pages by mprotect (Linux here)")
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_fused_uint8_packed_rows_end_at_a_guard_page(channels):
    """Packed images (pixels C bytes apart) that end right before a guard page, on every width
    up to 100: the fused kernels' last vector block of a row (started early so that its loads
    stay in the row) and their scalar edges equal numpy and never read past the image."""
    rng = np.random.default_rng(channels)
    for w in range(1, 101):
        h = 2 + w % 5
        x = _guarded_bytes(h * w * channels, rng).reshape(h, w, channels)
        x = x if channels > 1 else x[..., 0]
        for op, k, ceil in itertools.product(("max", "avg"), (2, 3), (False, True)):
            for p in range(k // 2 + 1):
                _check_hot_modes(x, op, note=f"w={w}", kernel=k, stride=2, padding=p,
                                 ceil_mode=ceil, axes=(0, 1))


@given(st.sampled_from(["max", "min", "avg"]), st.integers(1, 70), st.integers(1, 70),
       st.sampled_from([2, 3]), st.data())
def test_hypothesis_fused_uint8_rgbx(op, h, w, k, data):
    p = data.draw(st.integers(0, k // 2), label="padding")
    kw = dict(kernel=k, stride=2, padding=p, ceil_mode=data.draw(st.booleans(), label="ceil"),
              count_include_pad=data.draw(st.booleans(), label="cip"), axes=(0, 1))
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    if data.draw(st.booleans(), label="extremes"):  # the rounding edges of avg
        x = np.where(x & 1, np.uint8(255), np.uint8(0)).astype(np.uint8)
    _check_hot_modes(x[..., :3], op, **kw)


def test_fused_kernel_runs_on_rgbx_views():
    """The RGBX view really takes the fused kernel: as fast as a contiguous array (the generic
    engine, which it fell to before, is about 10x slower). The module exposes no counter, so
    this is a timing with a wide margin (best of several runs, 3x)."""
    if not _fast.config()["avx2"]:
        pytest.skip("no AVX2 here: the fused kernel is scalar and not much faster")
    old_threads, old = fast_backend.set_threads(1), _fast.config()
    rng = np.random.default_rng(15)
    v = rng.integers(0, 256, (300, 400, 4), dtype=np.uint8)[..., :3]

    def best(hot):
        _fast.config(hot=hot)
        times = []
        for _ in range(15):
            t = time.perf_counter()
            poolcore.pool(v, "avg", 2, axes=(0, 1), backend="fast")
            times.append(time.perf_counter() - t)
        return min(times)

    try:
        generic, hot = best(False), best(True)
    finally:
        fast_backend.set_threads(old_threads)
        _fast.config(hot=old["hot"])
    assert hot * 3 < generic, f"fused {hot * 1e3:.3f} ms vs generic {generic * 1e3:.3f} ms"


@pytest.mark.parametrize("op", OPS)
def test_volumes(op):
    """3-D pooling (DHW, NCDHW), anisotropic parameters."""
    rng = np.random.default_rng(3)
    for dtype, shape, axes in [("float32", (7, 9, 11), (0, 1, 2)),
                               ("int16", (2, 3, 6, 7, 8), (2, 3, 4)),
                               ("float64", (5, 4, 6, 2), (0, 1, 2))]:
        x = sample(dtype, shape, rng)
        for k, s, p, d in [((2, 2, 2), 2, 0, 1), ((3, 1, 2), (1, 2, 1), (1, 0, 1), 1),
                           ((2, 3, 2), 1, 0, (2, 1, 1)), ((3, 3, 3), 2, 1, 1)]:
            for ceil in (False, True):
                for extra in op_kwargs(op, dtype):
                    check(x, op, kernel=k, stride=s, padding=p, dilation=d, ceil_mode=ceil,
                          axes=axes, **extra)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_and_op(dtype):
    rng = np.random.default_rng(len(dtype))
    x = sample(dtype, (13, 17, 2), rng)
    for op in ops_for(dtype):
        for kw in ({"kernel": 3, "stride": 2, "padding": 1},
                   {"kernel": 2, "ceil_mode": True},
                   {"kernel": (4, 3), "stride": 1, "dilation": (1, 2)},
                   {"kernel": 7, "stride": 1, "padding": 3, "axes": (0, 1)}):
            for extra in op_kwargs(op, dtype):
                check(x, op, **kw, **extra)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adaptive(dtype):
    """Adaptive windows (overlapping, repeated when growing), every dtype, 1-D to 3-D."""
    rng = np.random.default_rng(21 + len(dtype))
    for shape, axes, sizes in [((10,), (0,), [4, 1, 10, 13, 3]),
                               ((17, 23, 3), (0, 1), [(4, 5), (17, None), (1, 1), (40, 7)]),
                               ((2, 3, 9, 11), (2, 3), [(3, 3), (9, 2), (5, 22)]),
                               ((7, 6, 9), (0, 1, 2), [(2, 3, 4), (7, 1, 9)]),
                               ((9, 70), (1,), [7, 64, 71])]:
        x = sample(dtype, shape, rng)
        for op in (["max", "min"] if dtype == "bool" else ["max", "min", "sum", "avg", "median"]):
            for size in sizes:
                check_adaptive(x, op, size, axes=axes)
                check_adaptive(np.asfortranarray(x), op, size, note="fortran", axes=axes)
    check_adaptive(sample(dtype, (5, 6), rng), "max", (0, 3))  # an empty output axis


# --------------------------------------------------------------------------- layouts


def _layouts(x: np.ndarray):
    yield "c", x
    yield "fortran", np.asfortranarray(x)
    yield "strided", np.repeat(np.repeat(x, 2, axis=0), 3, axis=-1)[::2, ..., ::3]
    yield "reversed", x[::-1, ..., ::-1].copy()[::-1, ..., ::-1]
    yield "negative", x[::-1]
    yield "swapped", x.astype(x.dtype.newbyteorder())
    buf = np.zeros(x.nbytes + 1, np.uint8)
    unaligned = np.frombuffer(buf.data, x.dtype, count=x.size, offset=1).reshape(x.shape)
    unaligned[...] = x
    yield "unaligned", unaligned
    yield "broadcast", np.broadcast_to(x[:1], x.shape)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "uint16", "bool"])
def test_layouts(dtype):
    rng = np.random.default_rng(11)
    x = sample(dtype, (10, 12, 3), rng)
    for name, v in _layouts(x):
        for op in ops_for(dtype):
            for axes in ((0, 1), (1, 0), (1, 2), (0, 2), (2,)):
                check(v, op, note=f"layout={name}", kernel=2 if len(axes) == 1 else (3, 2),
                      stride=(2,) * len(axes) if len(axes) > 1 else 1, axes=axes)


def test_channels_last_nchw_view():
    """An NHWC buffer seen as NCHW (torch's channels_last) pools in memory order."""
    rng = np.random.default_rng(5)
    nhwc = rng.standard_normal((2, 16, 20, 8)).astype(np.float32)
    nchw = nhwc.transpose(0, 3, 1, 2)
    for op in OPS:
        got = check(nchw, op, kernel=3, stride=2, padding=1, axes=(2, 3))
        assert got.shape == (2, 8, 8, 10)


def test_float_sums_keep_numpy_pass_order():
    """Float sums are rounded in the order of `axes`, as the reference does, also when that is
    not the memory order, and across the reference's row bands (made small here)."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal((40, 30, 3)) * 10 ** rng.uniform(-8, 8, (40, 30, 3)))
    for axes in ((0, 1), (1, 0), (2, 0, 1)):
        k = (5, 4, 1)[: len(axes)] if len(axes) == 3 else (5, 4)
        check(x, "sum", kernel=k, stride=1, axes=axes)
        check(x.astype(np.float32), "sum", kernel=k, stride=1, padding=1 if 1 in k else 0,
              axes=axes)


def test_float_sums_across_reference_bands(monkeypatch):
    monkeypatch.setattr(numpy_backend, "BAND_BYTES", 2048)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((57, 40)) * 10 ** rng.uniform(-6, 6, (57, 40))
    for k, s, p in [(4, 1, 2), (9, 1, 4), (5, 2, 2), (15, 1, 7), (31, 3, 15)]:
        check(x, "sum", kernel=k, stride=s, padding=p, axes=(0, 1))
        check(x, "avg", kernel=k, stride=s, padding=p, axes=(0, 1))


def test_wide_groups_and_long_lines():
    """Band mode on the last axis (many values per position) and long 1-D lines (chunked)."""
    rng = np.random.default_rng(12)
    wide = sample("float32", (21, 19, 40), rng)
    line = sample("int32", (30001,), rng)
    for op in OPS:
        check(wide, op, kernel=(5, 7), stride=(1, 2), padding=(2, 3), axes=(0, 1))
        check(line, op, kernel=31, stride=3, padding=5, ceil_mode=True, axes=0)
        check(line, op, kernel=2, stride=1, axes=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_float_avg_long_windows_on_lines(dtype):
    """Float avg over a long window of a line takes van Herk / Gil-Werman (blocks of k, four
    at a time) instead of numpy's tree: within rounding of the reference, NaN and inf in the
    same places, for lines that end in a full group of four blocks, a partial one, and less."""
    rng = np.random.default_rng(13)
    for k, s, p in [(8, 1, 0), (9, 2, 4), (15, 1, 7), (31, 1, 0), (31, 5, 15), (33, 3, 2)]:
        for n in (k + 3, 4 * k, 4 * k + 1, 9 * k + 5, 2048):
            x = sample(dtype, (2, n), rng)
            for ceil, cip in itertools.product((False, True), (False, True)):
                check(x, "avg", kernel=k, stride=s, padding=p, ceil_mode=ceil,
                      count_include_pad=cip, axes=1)
    square = sample(dtype, (70, 90), rng, special=False)
    check(square, "avg", kernel=15, stride=1, axes=(0, 1))
    check(square, "avg", kernel=31, stride=1, padding=15, axes=(0, 1))
    # lines of several values per position (HWC), and dilated lines (classes mod d interleaved)
    hwc = sample(dtype, (6, 300, 3), rng)
    ints = sample("int32", (6, 300, 3), rng)
    for k, s, d in [(15, 1, 1), (31, 2, 1), (9, 1, 2), (31, 1, 2), (25, 3, 3)]:
        for x in (hwc, ints, ints[..., 0], hwc[..., 0]):
            for op in ("sum", "avg", "max"):
                check(x, op, kernel=(1, k), stride=(1, s), dilation=(1, d), padding=(0, 2),
                      axes=(0, 1))


def test_int64_avg_without_wrapping():
    """64-bit averages whose sums could wrap go to numpy's exact path; others stay in C."""
    x = np.array([[2**62, 2**62, 2**62 + 3], [2**62, 5, 2**63 - 1]], np.int64)
    check(x, "avg", kernel=2, stride=1)
    check(x.astype(np.uint64) * 2, "avg", kernel=(1, 2), stride=1)
    check(np.arange(24, dtype=np.int64).reshape(4, 6) - 7, "avg", kernel=3, padding=1)


def test_empty_and_size_one_axes():
    rng = np.random.default_rng(13)
    for shape, axes in [((0, 5, 6), (1, 2)), ((3, 1, 6), (1, 2)), ((1, 1), (0, 1)),
                        ((4, 5, 1), (0, 1))]:
        x = sample("float32", shape, rng)
        for op in OPS:
            check(x, op, kernel=(1, 2) if shape[axes[0]] == 1 else 2, axes=axes)


def test_cached_plans_follow_shape_strides_and_dtype():
    """Calls that share a plan (same shape, strides, dtype and parameters) and calls that differ
    only in strides or dtype each get their own right answer; the cached divisors stay intact."""
    rng = np.random.default_rng(15)
    base = sample("uint8", (30, 42, 3), rng)
    kw = dict(kernel=3, stride=2, padding=1, axes=(0, 1))
    for x in (base, base.copy()[::-1], sample("uint8", (30, 42, 3), rng),
              np.ascontiguousarray(base.transpose(1, 0, 2))[:30, :, :],
              base.astype(np.uint16), np.asfortranarray(base)):
        for op in ("avg", "max", "sum"):
            check(x, op, **kw)
            check(x, op, **kw)  # the second call runs on the cached plan
    assert fast_backend._cached_plan.cache_info().hits > 0
    # a long axis is planned afresh each time: its divisors are not kept alive by the cache
    before = fast_backend._cached_plan.cache_info()
    long = sample("float32", (fast_backend._CACHED_PLAN_MAX_OUTPUTS * 2 + 2,), rng)
    check(long, "avg", kernel=2)
    after = fast_backend._cached_plan.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)


# --------------------------------------------------------------------------- median


def _median_values(dtype, rng, size) -> np.ndarray:
    """Few distinct values (ties, equal middles), the dtype's extremes (even counts whose
    mean must not overflow: both middles at the top of the range), NaN, inf, signed zeros,
    the largest finite floats and float16 subnormals."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        info = np.finfo(dtype)
        pool = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.5, 2.5, info.max,
                         -info.max, info.max * 0.75, info.tiny, info.smallest_subnormal,
                         3 * info.smallest_subnormal, 1 + info.eps], dtype)
    else:
        info = np.iinfo(dtype)
        pool = np.array(sorted({info.min, info.min + 1, -1 if info.min else 0, 0, 1, 2, 3,
                                info.max - 1, info.max}), dtype)
    return pool[rng.integers(0, pool.size, size)]


@pytest.mark.parametrize("dtype", [*INTS, *FLOATS])
def test_median_extremes_and_even_counts(dtype):
    """Even counts average the middle two exactly (integers at both ends of their range,
    ties away from zero; floats in double, rounded once: float16 halves too), NaN wins,
    padding is never an element, dilated windows of padding only give 0 or NaN."""
    rng = np.random.default_rng(zlib.crc32(dtype.encode()))
    pairs = _median_values(dtype, rng, (4000, 2))
    check(pairs, "median", kernel=(1, 2), axes=(0, 1))  # every pair's mean
    if dtype == "float16":  # every rounding of a half-way mean (random halves, no specials)
        bits = rng.integers(0, 0x7c00, (20000, 2), dtype=np.uint16)
        bits |= (rng.integers(0, 2, bits.shape, dtype=np.uint16) << 15).astype(np.uint16)
        check(bits.view(np.float16), "median", kernel=(1, 2), axes=(0, 1))
    x = _median_values(dtype, rng, (9, 14, 2))
    for k, s, p, d, ceil in [(2, 1, 1, 1, False), (4, 1, 2, 1, True), (3, 2, 1, 2, True),
                             (2, 3, 1, 3, True), (5, 1, 2, 1, False), ((2, 5), 1, (1, 2), 1, True)]:
        check(x, "median", kernel=k, stride=s, padding=p, dilation=d, ceil_mode=ceil, axes=(0, 1))
        check(x[::-1, ::-2], "median", kernel=k, stride=s, padding=p, dilation=d,
              ceil_mode=ceil, axes=(1, 0))
    check(x, "median", kernel=(9, 3, 2), stride=1, padding=(4, 1, 1), axes=(0, 1, 2))


@pytest.mark.parametrize("dtype", [*INTS, *FLOATS])
@pytest.mark.parametrize("k", [3, 5])
def test_median_network(dtype, k):
    """3x3 and 5x5 stride-1 windows inside a contiguous line take a sorting network
    (vectorised; the AVX2 build where there is one, and the baseline one): edges, padding,
    ceil_mode, a 3-D window of k*k taps, NaN and extremes. Interleaved channels (HWC,
    C = 2..5) take it as one flat run of all channels, on one thread or several; strided
    views (pixels 4 values apart, every other column) take the general paths."""
    rng = np.random.default_rng(zlib.crc32(dtype.encode()) + 9 + k)
    h = k // 2
    x = _median_values(dtype, rng, (23, 70))
    for p, ceil in ((0, False), (h, False), (1, True)):
        _check_hot_modes(x, "median", kernel=k, stride=1, padding=p, ceil_mode=ceil)
    if dtype in INTS:  # many distinct values too
        check(rng.integers(0, 100, (17, 40)).astype(dtype), "median", kernel=k, stride=1,
              padding=h)
    check(_median_values(dtype, rng, (2, 3, 17, 40)), "median", kernel=k, stride=1, padding=h)
    check(_median_values(dtype, rng, (5, 6, 33)), "median", kernel=(k, 1, k), stride=1,
          axes=(0, 1, 2))
    check(x[:, ::2], "median", kernel=k, stride=1, padding=h)
    old_threads, old = fast_backend.get_threads(), _fast.config()
    try:
        for threads in (1, 3):
            fast_backend.set_threads(threads)
            _fast.config(min_work=1 if threads > 1 else old["min_work"])
            for c in (2, 3, 4, 5):
                hwc = _median_values(dtype, rng, (12, 19, c))
                for p, ceil in ((0, False), (h, False), (1, True)):
                    _check_hot_modes(hwc, "median", kernel=k, stride=1, padding=p,
                                     ceil_mode=ceil, axes=(0, 1))
                check(hwc[:, :, : c - 1], "median", kernel=k, stride=1, padding=h, axes=(0, 1))
                check(hwc[:, ::2], "median", kernel=k, stride=1, padding=h, axes=(0, 1))
                check(_median_values(dtype, rng, (2, 9, 4, c)), "median", kernel=k, stride=1,
                      padding=h, axes=(1, 2))
            check(_median_values(dtype, rng, (k, k - 1, 3)), "median", kernel=k, stride=1,
                  padding=h, axes=(0, 1))  # a line shorter than k: no inside, all gathered
    finally:
        fast_backend.set_threads(old_threads)
        _fast.config(min_work=old["min_work"])


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_median_sliding_histogram(dtype):
    """8-bit windows that overlap along the last axis slide a histogram: every stride below
    the kernel, paddings, ceil_mode, lines split into units over threads (one pooled axis),
    dilation on the other axes, adaptive windows, and HWC and NCHW layouts; the strides that
    do not overlap gather instead. All equal numpy."""
    rng = np.random.default_rng(len(dtype))
    x = _median_values(dtype, rng, (23, 41, 3))
    wide = sample(dtype, (23, 41, 3), rng, special=False)
    old_threads, old = fast_backend.get_threads(), _fast.config()
    try:
        fast_backend.set_threads(3)
        _fast.config(min_work=1)
        for v in (x, wide, np.ascontiguousarray(wide.transpose(2, 0, 1))):
            axes = (0, 1) if v.shape[-1] == 3 else (1, 2)
            for k, s, ceil in itertools.product((2, 3, 4, 7, 15), (1, 2, 3, 5), (False, True)):
                for p in sorted({0, k // 2}):
                    check(v, "median", kernel=k, stride=s, padding=p, ceil_mode=ceil, axes=axes)
            check(v, "median", kernel=(3, 5), stride=1, dilation=(2, 1), padding=(2, 2),
                  axes=axes)
            check(v, "median", kernel=(3, 5), stride=1, dilation=(3, 1), padding=(3, 0),
                  ceil_mode=True, axes=axes)
            check(v, "median", kernel=9, stride=1, padding=4, axes=axes[1])
            check(v, "median", kernel=9, stride=2, padding=4, axes=axes[0])
            for size in ((5, 7), (23, 41), (40, 90), (1, 1), (None, 3)):
                check_adaptive(v, "median", size, axes=axes)
    finally:
        fast_backend.set_threads(old_threads)
        _fast.config(min_work=old["min_work"])



@pytest.mark.parametrize("dtype", ["uint16", "int16"])
def test_median_sliding_histogram_16bit(dtype):
    """16-bit windows large enough for `_median_last_axis` slide a two-level histogram: values
    at the dtype's extremes and ties, full-range noise (the median changes block), values near
    one block edge (and, for int16, near zero: negatives map below the positives), flat
    regions at both extremes, odd and even counts, paddings, ceil_mode, dilation on the other
    axis, one pooled axis (lines split over threads), adaptive windows. All equal numpy."""
    dt = np.dtype(dtype)
    info = np.iinfo(dt)
    hist = fast_backend._ST_HIST
    geom = type("W", (), {"k": 5, "s": 1, "d": 1})
    assert fast_backend._median_last_axis(geom, dt, 5)[0] == hist  # 5x5: the histogram
    assert fast_backend._median_last_axis(geom, dt, 1)[0] != hist  # 1x5: gathered
    rng = np.random.default_rng(16 + len(dtype))
    shape = (29, 47, 2)
    x = _median_values(dtype, rng, shape)
    wide = rng.integers(info.min, info.max + 1, shape, dtype=dt)
    near = (rng.integers(-300, 300, shape) + (0 if info.min else 256)).astype(dt)
    flat = x.copy()
    flat[4:20, 9:40] = info.max
    flat[:, :9] = info.min
    flat[22:, 30:] = 3
    old_threads, old = fast_backend.get_threads(), _fast.config()
    try:
        fast_backend.set_threads(3)
        _fast.config(min_work=1)
        for v in (x, wide, near, flat, np.ascontiguousarray(near.transpose(2, 0, 1))):
            axes = (0, 1) if v.shape[-1] == 2 else (1, 2)
            for k, s, ceil in itertools.product((5, 6, 7, 9), (1, 2, 4), (False, True)):
                for p in sorted({0, k // 2}):
                    check(v, "median", kernel=k, stride=s, padding=p, ceil_mode=ceil, axes=axes)
            check(v, "median", kernel=(3, 7), stride=1, dilation=(2, 1), padding=(2, 3),
                  axes=axes)
            check(v, "median", kernel=(4, 9), stride=(1, 2), dilation=(3, 1), padding=(3, 0),
                  ceil_mode=True, axes=axes)
            check(v, "median", kernel=15, stride=1, padding=7, axes=axes[1])
            check(v, "median", kernel=13, stride=3, padding=6, ceil_mode=True, axes=axes[1])
            for size in ((5, 10), (3, 8), (29, 12), (None, 6)):
                check_adaptive(v, "median", size, axes=axes)
        big = rng.integers(info.min, info.max + 1, (96, 160), dtype=dt)
        big[20:60, 30:100] = info.max  # a flat plateau the median walks onto and off
        check(big, "median", kernel=7, stride=1, padding=3)
        check(big, "median", kernel=8, stride=1, padding=4)
    finally:
        fast_backend.set_threads(old_threads)
        _fast.config(min_work=old["min_work"])

def _windows(draw, axes, shape: list, kernels, strides, longer: int) -> dict:
    """Kernel, stride, padding and dilation per pooled axis; each axis of ``shape`` is drawn
    long enough for its window (at most ``longer`` more)."""
    k, s, p, d = [], [], [], []
    for a in axes:
        kk = draw(kernels)
        dd = draw(st.integers(1, 3))
        span = dd * (kk - 1) + 1
        pp = draw(st.integers(0, span // 2))
        k.append(kk), d.append(dd), p.append(pp), s.append(draw(strides))
        shape[a] = draw(st.integers(max(1, span - 2 * pp), max(1, span - 2 * pp) + longer))
    return dict(kernel=k, stride=s, padding=p, dilation=d)


@st.composite
def median_cases(draw):
    dtype = draw(st.sampled_from([*INTS, *FLOATS]))
    ndim = draw(st.integers(1, 3))
    nd = draw(st.integers(1, ndim))
    axes = tuple(draw(st.permutations(range(ndim)))[:nd])
    shape = list(draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=1, max_side=5)))
    kw = _windows(draw, axes, shape, st.integers(1, 8), st.integers(1, 4), longer=12)
    kw.update(ceil_mode=draw(st.booleans()), axes=axes)
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    x = _median_values(dtype, np.random.default_rng(seed), tuple(shape))
    if draw(st.booleans(), label="full range"):
        x = draw(hnp.arrays(dtype, tuple(shape)))
    layout = draw(st.sampled_from(["c", "f", "reversed", "swapped"]))
    if layout == "f":
        x = np.asfortranarray(x)
    elif layout == "reversed":
        x = x[::-1]
    elif layout == "swapped":
        x = x.astype(x.dtype.newbyteorder())
    return x, kw


@given(median_cases(), st.data())
def test_hypothesis_median_parity(case, data):
    """Median on both backends, bit for bit: every integer and float dtype, their extremes,
    NaN and inf, even counts, padding, dilation, ceil_mode, 1-3 pooled axes in any order;
    adaptive windows over the same axes."""
    x, kw = case
    check(x, "median", **kw)
    sizes = tuple(data.draw(st.one_of(st.none(), st.integers(1, 2 * x.shape[a] + 1)))
                  for a in kw["axes"])
    check_adaptive(x, "median", sizes, axes=kw["axes"])


# --------------------------------------------------------------------------- threads


@pytest.mark.parametrize("op", OPS)
def test_threads_match_one_thread(op):
    """Work split over threads (forced on small inputs) gives the single-thread result."""
    rng = np.random.default_rng(14)
    old_threads, old = fast_backend.get_threads(), _fast.config()
    try:
        for x, kw in [(sample("float32", (3, 37, 41), rng), dict(kernel=3, stride=2, padding=1)),
                      (sample("uint8", (45, 61, 3), rng), dict(kernel=2, axes=(0, 1))),
                      (sample("uint8", (45, 61, 4), rng)[..., :3],  # RGBX: the fused kernel
                       dict(kernel=3, stride=2, padding=1, axes=(0, 1))),
                      (sample("int16", (5001,), rng), dict(kernel=15, stride=1, padding=7)),
                      (sample("float64", (33, 40), rng), dict(kernel=9, stride=1, padding=4)),
                      # one long line, split into pieces: float sums (van Herk blocks) too
                      (sample("float64", (100_003,), rng), dict(kernel=31, stride=1)),
                      (sample("float64", (2, 30_001, 2), rng), dict(kernel=7, stride=1,
                                                                    padding=3, axes=1))]:
            fast_backend.set_threads(1)
            one = poolcore.pool(x, op, backend="fast", **kw)
            for n in (2, 3, 7):
                fast_backend.set_threads(n)
                _fast.config(min_work=1)
                many = poolcore.pool(x, op, backend="fast", **kw)
                _fast.config(min_work=old["min_work"])
                np.testing.assert_array_equal(many, one, err_msg=f"{op} {x.dtype} {kw} {n}",
                                              strict=True)
            check(x, op, **kw)
    finally:
        fast_backend.set_threads(old_threads)
        _fast.config(min_work=old["min_work"])


@pytest.mark.parametrize("op", OPS)
def test_calls_cut_into_pieces_match(op, monkeypatch):
    """A call whose per-thread band would be over the cap runs in pieces along an unpooled
    axis below the outermost pooled one (forced here with a tiny cap): the same result."""
    monkeypatch.setattr(fast_backend, "_BAND_CAP_BYTES", 64)
    rng = np.random.default_rng(15)
    for x, kw in [(sample("float32", (6, 301, 7), rng), dict(kernel=3, stride=2, padding=1,
                                                              axes=(0,))),
                  (sample("uint8", (9, 40, 5), rng), dict(kernel=(2, 3), axes=(0, 2))),
                  (sample("int16", (7, 50), rng)[:, ::-2], dict(kernel=2, axes=(0,)))]:
        assert fast_backend._band_cut(x, tuple(a % x.ndim for a in kw["axes"])) is not None
        check(x, op, **kw)


@pytest.mark.parametrize("dtype,op", [("float16", "avg"), ("float16", "sum"),
                                      ("uint8", "lp"), ("float32", "lp"), ("int16", "lp")])
def test_float64_outputs_to_finish_run_in_pieces(dtype, op, monkeypatch):
    """A kernel output that is finished into the result (lp, float16 sums and averages) is
    cut along an unpooled axis when over the cap (forced here with a tiny cap): the same
    bits as whole, for pool and adaptive pooling; with no unpooled axis it stays whole."""
    rng = np.random.default_rng(18)
    x = sample(dtype, (3, 5, 31, 17), rng)
    calls = [lambda: poolcore.pool(x, op, 3, stride=(2, 1), padding=1, backend="fast")]
    if op != "lp":
        calls.append(lambda: poolcore.adaptive_pool(x, op, (7, 9), backend="fast"))
    whole = [f() for f in calls]
    monkeypatch.setattr(fast_backend, "_BAND_CAP_BYTES", 64)
    assert fast_backend._finish_cut(x, (2, 3), op, (3, 5, 16, 17)) == (1, 5)
    assert fast_backend._finish_cut(x[0, 0], (0, 1), op, (16, 17)) is None
    for f, w in zip(calls, whole):
        np.testing.assert_array_equal(f(), w, strict=True)


def test_lp_is_finished_without_full_size_temporaries():
    """lp's root and rounding run slab by slab: the float64 kernel output is the one
    full-size temporary (integer lp made four more)."""
    import tracemalloc

    x = np.random.default_rng(16).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    poolcore.pool(x[:8, :8], "lp", 3, stride=1, padding=1, axes=(0, 1), backend="fast")
    tracemalloc.start()
    try:
        out = poolcore.pool(x, "lp", 3, stride=1, padding=1, axes=(0, 1), backend="fast")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the output, its float64 form, slabs of 4 MB; before: ~32x the output
    assert peak < 9 * out.nbytes + 16 * 2**20, peak / out.nbytes


def test_float64_lp_is_finished_in_the_kernels_output():
    """float64 lp takes its root in place: the kernel's output is the result (it was
    copied into a second full-size array)."""
    import tracemalloc

    x = np.random.default_rng(17).random((1000, 1000))
    tracemalloc.start()
    try:
        out = poolcore.pool(x, "lp", 3, stride=1, padding=1, backend="fast")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * out.nbytes, peak / out.nbytes
    assert np.array_equal(out, poolcore.pool(x, "lp", 3, stride=1, padding=1, backend="numpy"))


def test_set_threads():
    old = fast_backend.set_threads(3)
    try:
        assert fast_backend.get_threads() == 3
        with pytest.raises(ValueError, match="threads"):
            fast_backend.set_threads(0)
        fast_backend.set_threads(None)
        assert fast_backend.get_threads() >= 1
    finally:
        fast_backend.set_threads(old)


# --------------------------------------------------------------------------- hypothesis


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    op = draw(st.sampled_from(ops_for(dtype)))
    ndim = draw(st.integers(1, 4))
    nd = draw(st.integers(1, min(ndim, 3)))
    axes = tuple(draw(st.permutations(range(ndim)))[:nd])
    shape = list(draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=1, max_side=6)))
    kw = _windows(draw, axes, shape, st.sampled_from([1, 2, 3, 4, 5, 7, 15]),
                  st.integers(1, 3), longer=9)
    kw.update(ceil_mode=draw(st.booleans()), count_include_pad=draw(st.booleans()), axes=axes)
    if op == "lp":
        choices = [1.0, 2.0, 3.0, 0.5] if np.dtype(dtype).kind == "f" else [1.0, 2.0]
        kw["p"] = draw(st.sampled_from(choices))
    if np.dtype(dtype).kind == "f":
        elements = st.floats(width=np.dtype(dtype).itemsize * 8, allow_subnormal=False)
    else:
        elements = None
    x = draw(hnp.arrays(dtype, tuple(shape), elements=elements))
    layout = draw(st.sampled_from(["c", "f", "reversed", "swapped"]))
    if layout == "f":
        x = np.asfortranarray(x)
    elif layout == "reversed":
        x = x[..., ::-1]
    elif layout == "swapped":
        x = x.astype(x.dtype.newbyteorder())
    return x, op, kw


@given(cases())
def test_hypothesis_parity(case):
    x, op, kw = case
    check(x, op, **kw)


@given(cases(), st.data())
def test_hypothesis_adaptive_parity(case, data):
    x, op, kw = case
    if op == "lp":
        op = "avg"
    sizes = tuple(data.draw(st.one_of(st.none(), st.integers(0, 2 * x.shape[a] + 1)))
                  for a in kw["axes"])
    check_adaptive(x, op, sizes, axes=kw["axes"])
