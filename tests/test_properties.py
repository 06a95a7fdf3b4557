"""Properties of pooling that hold whatever the parameters (hypothesis, no oracle):
the output-shape formula, min <= avg <= max, identity windows, separability, median against
np.median, and that input past the last window never matters (numbagg's test_property.py).
"""

import math

import numpy as np
import oracle
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import poolcore


def normalize(x, kwargs):
    """``(axes, k, s, p, d, ceil_mode)`` of a call drawn by :func:`oracle.pool_calls`, per axis."""
    kernel = kwargs["kernel"]
    if "axes" in kwargs:
        axes = tuple(a % x.ndim for a in kwargs["axes"])
    else:
        axes = tuple(range(x.ndim - len(kernel), x.ndim))
    m = len(axes)

    def per_axis(value):
        return (value,) * m if isinstance(value, int) else tuple(value)

    k = per_axis(kernel)
    s = k if kwargs.get("stride") is None else per_axis(kwargs["stride"])
    p = per_axis(kwargs.get("padding", 0))
    d = per_axis(kwargs.get("dilation", 1))
    return axes, k, s, p, d, kwargs.get("ceil_mode", False)


def one_axis(kwargs, axes, k, s, p, d, i):
    """The keyword arguments of the same call restricted to its i-th pooled axis."""
    out = {key: v for key, v in kwargs.items()
           if key not in ("kernel", "stride", "padding", "dilation", "axes")}
    return dict(out, kernel=k[i], stride=s[i], padding=p[i], dilation=d[i], axes=(axes[i],))


@given(case=oracle.pool_calls(dtypes=("float32", "int16", "bool")))
def test_output_shape_formula(backend, case):
    """PyTorch's length per pooled axis: floor (or ceil) of (n + 2p - d(k-1) - 1)/s, plus one,
    less one when a ceil_mode window would start in the right padding; other axes kept."""
    x, op, kwargs = case
    axes, k, s, p, d, ceil_mode = normalize(x, kwargs)
    expected = list(x.shape)
    for i, ax in enumerate(axes):
        n = x.shape[ax]
        q = (n + 2 * p[i] - d[i] * (k[i] - 1) - 1) / s[i]
        length = (math.ceil(q) if ceil_mode else math.floor(q)) + 1
        if ceil_mode and (length - 1) * s[i] - p[i] >= n:
            length -= 1
        expected[ax] = length
    out = poolcore.pool(x, op, backend=backend, **kwargs)
    assert out.shape == tuple(expected)
    wide = {"i": np.int64, "u": np.uint64}
    assert out.dtype == (wide[x.dtype.kind] if op == "sum" and x.dtype.kind in wide else x.dtype)


@given(case=oracle.adaptive_calls(dtypes=("float64", "uint8")))
def test_adaptive_output_shape(backend, case):
    x, op, kwargs = case
    sizes = kwargs["output_size"]
    axes = kwargs.get("axes", tuple(range(x.ndim - len(sizes), x.ndim)) if isinstance(
        sizes, tuple) else None)
    m = len(axes)
    sizes = (sizes,) * m if sizes is None or isinstance(sizes, int) else sizes
    expected = list(x.shape)
    for ax, size in zip(axes, sizes):
        expected[ax % x.ndim] = x.shape[ax] if size is None else size
    assert poolcore.adaptive_pool(x, op, backend=backend, **kwargs).shape == tuple(expected)


@given(case=oracle.pool_calls(ops=("avg",), padding=False, nonfinite=False,
                              dtypes=oracle.INT_DTYPES + oracle.FLOAT_DTYPES))
def test_avg_between_min_and_max(backend, case):
    """Without padding every window holds real elements only, so min <= avg <= max (exactly
    for integers and for float16/32, computed in float64; within rounding for float64)."""
    x, _, kwargs = case
    kwargs = {key: v for key, v in kwargs.items() if key != "count_include_pad"}
    avg = poolcore.pool(x, "avg", backend=backend, **kwargs)
    low = poolcore.pool(x, "min", backend=backend, **kwargs)
    high = poolcore.pool(x, "max", backend=backend, **kwargs)
    if x.dtype == np.float64:
        slack = 64 * np.finfo(np.float64).eps * np.maximum(np.abs(low), np.abs(high))
    else:
        slack = 0
    assert np.all(low - slack <= avg), (low, avg)
    assert np.all(avg <= high + slack), (avg, high)


@st.composite
def any_arrays(draw):
    """Small arrays of every dtype, NaN and inf and integer extremes included."""
    dtype = np.dtype(draw(st.sampled_from(oracle.DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4))
    return draw(hnp.arrays(dtype, shape, elements=oracle.values_for("max", dtype)))


@given(x=any_arrays(), op=st.sampled_from(("max", "min", "avg", "sum", "median")),
       ceil_mode=st.booleans(), dilation=st.integers(1, 3), data=st.data())
def test_kernel_one_is_identity(backend, x, op, ceil_mode, dilation, data):
    """kernel = stride = 1 returns the input (sum in its wide dtype); not lp, whose torch
    formula keeps |x| only for p = 1 and x >= 0."""
    if x.dtype == np.bool_ and op not in ("max", "min"):
        op = "max"
    axes = data.draw(st.permutations(range(x.ndim)))[: data.draw(st.integers(1, x.ndim))]
    out = poolcore.pool(x, op, 1, stride=1, dilation=dilation, ceil_mode=ceil_mode,
                        axes=axes, backend=backend)
    assert out.shape == x.shape
    assert np.array_equal(out, x, equal_nan=x.dtype.kind == "f")


@given(case=oracle.pool_calls(ops=("max", "min", "sum")), data=st.data())
def test_separable(backend, case, data):
    """Pooling axes together equals pooling them one after another (max, min, sum; sums of
    floats are left out, as a float sum rounded to the input dtype between passes differs)."""
    x, op, kwargs = case
    if op == "sum" and x.dtype.kind == "f":
        op = "max"
    axes, k, s, p, d, _ = normalize(x, kwargs)
    together = poolcore.pool(x, op, backend=backend, **kwargs)
    apart = x
    for i in data.draw(st.permutations(range(len(axes))), label="order"):
        apart = poolcore.pool(apart, op, backend=backend, **one_axis(kwargs, axes, k, s, p, d, i))
    assert together.dtype == apart.dtype
    assert np.array_equal(together, apart, equal_nan=x.dtype.kind == "f")


@given(case=oracle.pool_calls(ops=("median",), padding=False, ceil_modes=(False,),
                              dtypes=("float64", "float32", "float16", "int32", "uint16", "int8"),
                              bound=1e300))
def test_median_equals_np_median_on_full_windows(backend, case):
    """On windows that lie inside the input, median is np.median of the window (the mean of
    the middle two exact, then rounded once: to the dtype, or half away from zero for ints)."""
    x, _, kwargs = case
    axes, k, s, _, d, _ = normalize(x, kwargs)
    spans = [d_ * (k_ - 1) + 1 for k_, d_ in zip(k, d)]
    view = np.lib.stride_tricks.sliding_window_view(x.astype(np.float64), spans, axis=axes)
    index = [slice(None)] * view.ndim
    for i, ax in enumerate(axes):
        index[ax] = slice(None, None, s[i])
        index[x.ndim + i] = slice(None, None, d[i])
    windows = view[tuple(index)]
    windows = windows.reshape(windows.shape[: x.ndim] + (math.prod(windows.shape[x.ndim:]),))
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, as the contract says
        reference = np.median(windows, axis=-1) if windows.size else windows[..., 0]
    if x.dtype.kind in "iu":
        reference = np.trunc(reference + np.copysign(0.5, reference))  # exact for small ints
    out = poolcore.pool(x, "median", backend=backend, **kwargs)
    note(f"reference={reference!r}")
    assert np.array_equal(out, reference.astype(x.dtype), equal_nan=True)


@given(case=oracle.pool_calls())
def test_input_past_the_last_window_is_ignored(backend, case):
    """Elements past the last window's last tap (floor mode leaves a remainder) never change
    the output, whatever they hold (NaN, the dtype's extremes)."""
    x, op, kwargs = case
    axes, k, s, p, d, ceil_mode = normalize(x, kwargs)
    before = poolcore.pool(x, op, backend=backend, **kwargs)
    y = x.copy()
    for i, ax in enumerate(axes):
        reach = (before.shape[ax] - 1) * s[i] - p[i] + d[i] * (k[i] - 1) + 1
        index = [slice(None)] * x.ndim
        index[ax] = slice(reach, None)
        if x.dtype.kind == "f":
            y[tuple(index)] = np.nan
        elif x.dtype.kind == "b":
            y[tuple(index)] = ~y[tuple(index)]
        else:
            y[tuple(index)] = np.iinfo(x.dtype).max
    after = poolcore.pool(y, op, backend=backend, **kwargs)
    assert np.array_equal(before, after, equal_nan=x.dtype.kind == "f")
