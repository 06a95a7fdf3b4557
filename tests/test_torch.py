"""poolcore against PyTorch (torch.nn.functional), on everything torch accepts.

Parameters are drawn from what torch 2.13 CPU takes (../shared/FIELD.md §1): max pooling pads
at most kernel//2 of the raw kernel, average pooling has no dilation, avg_pool3d wants the
input at least as large as the kernel, lp_pool has neither padding nor dilation, and dtypes
follow §1.5. Max pooling is compared bit for bit; float averages within float32 rounding,
since torch accumulates float32 in float32 and we in float64. Integer avg differs on purpose
(we round to nearest, torch truncates toward zero): one test pins that difference.
"""

import math

import numpy as np
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import poolcore

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.torch

MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG_POOL = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
LP_POOL = {1: F.lp_pool1d, 2: F.lp_pool2d, 3: F.lp_pool3d}
ADAPTIVE = {
    "avg": {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d},
    "max": {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d},
}

# FIELD §1.5, CPU, contiguous input.
MAX_DTYPES = {
    1: ("float32", "float64", "float16"),
    2: ("float32", "float64", "float16", "uint8", "int8", "int16", "int32", "int64"),
    3: ("float32", "float64", "float16", "uint8", "int8", "int16", "int32", "int64"),
}
AVG_DTYPES = {1: ("float32", "float64", "float16"), 2: ("float32", "float64", "float16"),
              3: ("float32", "float64")}


def _elements(dtype, nonfinite):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        values = st.floats(-1000, 1000, width=8 * dtype.itemsize)
        if nonfinite:
            values = st.one_of(values, values, values, st.sampled_from([np.nan, np.inf, -np.inf]))
        return values
    return hnp.from_dtype(dtype)


@st.composite
def torch_calls(draw, kind):
    """``(x, kwargs, dim)`` with x of shape (N, C, *spatial) and kwargs for poolcore.pool over
    the last ``dim`` axes, valid for torch's ``kind`` ("max", "avg" or "lp") pooling."""
    dim = draw(st.integers(1, 3))
    ceil_mode = draw(st.booleans())
    k, s, p, d, shape = [], [], [], [], []
    for _ in range(dim):
        k_ = draw(st.integers(1, (5, 4, 3)[dim - 1]))
        d_ = draw(st.integers(1, 3)) if kind == "max" else 1
        p_ = draw(st.integers(0, k_ // 2)) if kind != "lp" else 0
        s_ = draw(st.integers(1, 3))
        span = d_ * (k_ - 1) + 1
        low = max(1, span - 2 * p_)
        if kind == "avg" and dim == 3:
            low = max(low, k_)  # FIELD §1.2: avg_pool3d wants input >= kernel
        shape.append(draw(st.integers(low, low + (6, 4, 2)[dim - 1])))
        for values, v in ((k, k_), (s, s_), (p, p_), (d, d_)):
            values.append(v)
    batch = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    if kind == "max":
        dtype = draw(st.sampled_from(MAX_DTYPES[dim]))
    elif kind == "avg":
        dtype = draw(st.sampled_from(AVG_DTYPES[dim]))
    else:
        dtype = draw(st.sampled_from(("float32", "float64")))
    kwargs = dict(kernel=tuple(k), stride=tuple(s), ceil_mode=ceil_mode)
    if kind != "lp":
        kwargs["padding"] = tuple(p)
    if kind == "max":
        kwargs["dilation"] = tuple(d)
    if kind == "avg":
        kwargs["count_include_pad"] = draw(st.booleans())
    if kind == "lp":
        power = draw(st.sampled_from((1.0, 2.0, 3.0, 1.5, 0.5, -1.0, math.inf, -math.inf)))
        kwargs["p"] = power
        # Integer values: sums of x**p are exact (or of one sign), so no order of summation
        # can turn a sum near zero into another sign (and the root into NaN).
        low = 0 if power < 0 else -5
        elements = st.integers(low, 5).map(float)
    else:
        elements = _elements(dtype, nonfinite=draw(st.booleans()))
    x = draw(hnp.arrays(dtype, batch + tuple(shape), elements=elements))
    return x, kwargs, dim


def _torch_args(kwargs):
    return dict(kernel_size=kwargs["kernel"], stride=kwargs["stride"],
                padding=kwargs.get("padding", 0), ceil_mode=kwargs["ceil_mode"])


def assert_close(ours, theirs, x, kwargs, rtol):
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    assert ours.dtype == theirs.dtype
    # The accumulation error torch may make: it sums float16 and float32 in float32.
    eps = np.finfo(np.float64 if x.dtype == np.float64 else np.float32).eps
    volume = math.prod(kwargs["kernel"])
    finite = np.abs(x[np.isfinite(x)].astype(np.float64))
    atol = 4 * volume * eps * (finite.max() if finite.size else 0.0)
    np.testing.assert_allclose(ours.astype(np.float64), theirs.astype(np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)


@given(case=torch_calls("max"))
def test_max_pool(backend, case):
    x, kwargs, dim = case
    note(f"{kwargs} {x.dtype} {x.shape}")
    expected = MAX_POOL[dim](torch.from_numpy(x), dilation=kwargs["dilation"],
                             **_torch_args(kwargs)).numpy()
    ours = poolcore.pool(x, "max", backend=backend, **kwargs)
    assert ours.dtype == expected.dtype and ours.shape == expected.shape
    assert np.array_equal(ours, expected, equal_nan=x.dtype.kind == "f")


@given(case=torch_calls("avg"))
def test_avg_pool(backend, case):
    x, kwargs, dim = case
    note(f"{kwargs} {x.dtype} {x.shape}")
    expected = AVG_POOL[dim](torch.from_numpy(x), count_include_pad=kwargs["count_include_pad"],
                             **_torch_args(kwargs)).numpy()
    ours = poolcore.pool(x, "avg", backend=backend, **kwargs)
    # float16: torch rounds its float32 result, we our float64 one: one float16 ulp apart
    assert_close(ours, expected, x, kwargs, rtol=2e-3 if x.dtype == np.float16 else 1e-5)


@given(case=torch_calls("lp"))
def test_lp_pool(backend, case):
    x, kwargs, dim = case
    note(f"{kwargs} {x.dtype} {x.shape}")
    # lp_pool1d multiplies by kernel_size itself: it must be an int, not a 1-tuple
    kernel, stride = (kwargs["kernel"], kwargs["stride"]) if dim > 1 else (
        kwargs["kernel"][0], kwargs["stride"][0])
    expected = LP_POOL[dim](torch.from_numpy(x), kwargs["p"], kernel, stride=stride,
                            ceil_mode=kwargs["ceil_mode"]).numpy()
    ours = poolcore.pool(x, "lp", backend=backend, **kwargs)
    assert_close(ours, expected, x, kwargs, rtol=1e-5 if x.dtype == np.float32 else 1e-12)


@st.composite
def adaptive_calls(draw):
    dim = draw(st.integers(1, 3))
    op = draw(st.sampled_from(("avg", "max")))
    shape, sizes = [], []
    for _ in range(dim):
        n = draw(st.integers(1, (12, 7, 5)[dim - 1]))
        shape.append(n)
        sizes.append(draw(st.integers(1, n + 2)))  # growing works too (FIELD §1.7)
    dtype = draw(st.sampled_from(("float32", "float64")))
    batch = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    elements = _elements(dtype, nonfinite=draw(st.booleans()))
    x = draw(hnp.arrays(dtype, batch + tuple(shape), elements=elements))
    return x, op, tuple(sizes), dim


@given(case=adaptive_calls())
def test_adaptive_pool(backend, case):
    x, op, sizes, dim = case
    note(f"{op} {sizes} {x.dtype} {x.shape}")
    expected = ADAPTIVE[op][dim](torch.from_numpy(x), sizes).numpy()
    ours = poolcore.adaptive_pool(x, op, sizes, backend=backend)
    if op == "max":
        assert ours.dtype == expected.dtype and ours.shape == expected.shape
        assert np.array_equal(ours, expected, equal_nan=True)
    else:
        assert_close(ours, expected, x, dict(kernel=x.shape[-dim:]), rtol=1e-5)


# ----------------------------------------------------------------------------- pinned cases


def test_integer_avg_rounds_where_torch_truncates(backend):
    """FIELD §0.1: torch's int64 avg truncates toward zero; ours rounds to nearest, ties away
    from zero (issue 2, deliberately). Both are pinned, so a change on either side shows."""
    x = np.array([[[1, 2, -1, -2, 3, 4, -3, -3, 2, 2, 3]]], np.int64)
    theirs = F.avg_pool1d(torch.from_numpy(x), 3, stride=1).numpy()
    ours = poolcore.pool(x, "avg", 3, stride=1, axes=-1, backend=backend)
    exact = np.lib.stride_tricks.sliding_window_view(x, 3, axis=-1).sum(axis=-1) / 3
    np.testing.assert_array_equal(theirs, np.trunc(exact).astype(np.int64))
    np.testing.assert_array_equal(ours, np.copysign(np.floor(np.abs(exact) + 0.5), exact))
    assert ours.dtype == theirs.dtype == np.int64
    assert (ours != theirs).any()
    x = np.array([[[1, 2, -1, -2, 3, 4, -3, -3]]], np.int64)
    assert F.avg_pool1d(torch.from_numpy(x), 2).numpy().tolist() == [[[1, -1, 3, -3]]]
    assert poolcore.pool(x, "avg", 2, axes=-1, backend=backend).tolist() == [[[2, -2, 4, -3]]]


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_ceil_overhang_divisor(backend, count_include_pad):
    """FIELD §0.4: the ceil_mode overhang past the padding is not in the divisor."""
    x = np.arange(6.0).reshape(1, 1, 6)
    kwargs = dict(stride=2, padding=1, ceil_mode=True, count_include_pad=count_include_pad)
    theirs = F.avg_pool1d(torch.from_numpy(x), 3, **kwargs).numpy()
    ours = poolcore.pool(x, "avg", 3, axes=-1, backend=backend, **kwargs)
    np.testing.assert_allclose(ours, theirs, rtol=1e-15)


def test_max_pool_nan_and_padding(backend):
    """FIELD §1.3: NaN wins, padding never wins (int8 -128 with padding stays -128)."""
    x = np.array([[[1, np.nan, 3, 4, np.nan, -np.inf]]], np.float32)
    theirs = F.max_pool1d(torch.from_numpy(x), 2).numpy()
    np.testing.assert_array_equal(poolcore.pool(x, "max", 2, axes=-1, backend=backend), theirs)
    y = np.full((1, 1, 3, 3), -128, np.int8)
    theirs = F.max_pool2d(torch.from_numpy(y), 3, stride=1, padding=1).numpy()
    np.testing.assert_array_equal(
        poolcore.pool(y, "max", 3, stride=1, padding=1, backend=backend), theirs
    )


def test_lp_pool_ceil_mode_over_scales(backend):
    """FIELD §1.6: torch's lp under ceil_mode divides the partial window by its clipped count,
    then multiplies by the full kernel: ones(5), p=2, k=2 gives sqrt(2) three times."""
    x = np.ones((1, 1, 5))
    theirs = F.lp_pool1d(torch.from_numpy(x), 2.0, 2, ceil_mode=True).numpy()
    ours = poolcore.pool(x, "lp", 2, p=2.0, ceil_mode=True, axes=-1, backend=backend)
    np.testing.assert_allclose(ours, theirs, rtol=1e-15)
    np.testing.assert_allclose(ours.ravel(), [math.sqrt(2)] * 3, rtol=1e-15)


def test_adaptive_zero_output_size(backend):
    """FIELD §1.7: an output size of 0 gives an empty axis, as torch."""
    x = np.arange(24.0).reshape(1, 1, 4, 6)
    theirs = F.adaptive_max_pool2d(torch.from_numpy(x), (0, 2)).numpy()
    ours = poolcore.adaptive_pool(x, "max", (0, 2), backend=backend)
    assert ours.shape == theirs.shape == (1, 1, 0, 2)
