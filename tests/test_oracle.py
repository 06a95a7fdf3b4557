"""poolcore.pool and poolcore.adaptive_pool against the independent oracle (tests/oracle.py).

Hand-checked cases first (the tables of ../shared/FIELD.md §0 and §1, each value checked by
hand or measured on PyTorch there): they hold both the oracle and the library to the contract.
Then hypothesis draws valid calls over shapes, axes, dtypes, ops, parameters and memory layouts
and compares every backend with the oracle: bit-equal where the contract is exact (max, min,
median, integer outputs, sums of integers), within a rounding bound for float avg, sum and lp.
"""

import math
from fractions import Fraction

import numpy as np
import oracle
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import poolcore
from poolcore import numpy_backend

NAN, INF = math.nan, math.inf


# ----------------------------------------------------------------------------- comparison


def _describe(x, op, kwargs):
    return (
        f"op={op!r} kwargs={kwargs} dtype={x.dtype} shape={x.shape} "
        f"strides={x.strides}\ninput={x!r}"
    )


def assert_matches(actual, expected, op, x, kwargs, adaptive=False):
    """``actual`` equals the oracle's ``expected``: dtype, shape, and values (bit-equal where
    the contract is exact; within a bound of the float64 rounding of sums elsewhere)."""
    where = _describe(x, op, kwargs)
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}\n{where}"
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}\n{where}"
    if op == "lp" and expected.dtype.kind in "iu":
        # Integer lp rounds a float result: where that result is, in real arithmetic, exactly
        # halfway (6**-2 summed 16 times, then **-0.5, is 1.5), float rounding in another
        # order may land on either side. Either neighbour of such a tie is right.
        real = oracle.pool(x.astype(np.float64), op, **kwargs)
        info = np.iinfo(expected.dtype)
        real = np.clip(np.nan_to_num(real, nan=0.0), float(info.min), float(info.max))
        diff = np.abs(actual.astype(np.float64) - real)
        tie = np.abs(np.abs(real - np.trunc(real)) - 0.5) <= 1e-9 * np.maximum(1, np.abs(real))
        ok = np.array_equal(actual, expected) or bool(np.all((actual == expected)
                                                             | (tie & (diff <= 0.5 + 1e-6))))
        assert ok, f"\nactual  ={actual!r}\nexpected={expected!r}\n{where}"
        return
    if op in ("max", "min", "median") or expected.dtype.kind in "biu":
        # Exact. (array_equal does not tell 0.0 from -0.0; the contract says nothing of signs
        # of zero.)
        ok = np.array_equal(actual, expected, equal_nan=expected.dtype.kind == "f")
        assert ok, f"\nactual  ={actual!r}\nexpected={expected!r}\n{where}"
        return
    assert_float_close(actual, expected, op, x, kwargs, adaptive, where)


def assert_float_close(actual, expected, op, x, kwargs, adaptive, where):
    dtype = expected.dtype
    nan = np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), nan, err_msg=f"NaN positions\n{where}")
    inf = np.isinf(expected)
    np.testing.assert_array_equal(actual[inf], expected[inf], err_msg=f"infinities\n{where}")
    finite = ~(nan | inf)
    a = actual[finite].astype(np.float64)
    e = expected[finite].astype(np.float64)
    eps = float(np.finfo(dtype).eps)
    rtol = 2 * eps  # one rounding of a float64 result to the output dtype
    atol = float(np.finfo(dtype).smallest_subnormal)
    if op in ("avg", "sum"):
        # Sums in float64 in another order: |error| <= terms * eps64 * (sum or avg of |x|).
        magnitude = np.abs(x.astype(np.float64))
        if adaptive:
            scale = oracle.adaptive_pool(magnitude, op, **kwargs)
        else:
            scale = oracle.pool(magnitude, op, **kwargs)
        terms = max(magnitude.size, 1)
        atol = atol + 2 * terms * np.finfo(np.float64).eps * scale[finite]
    else:  # lp: sums of x**p are exact or of one sign; the root adds a few ulps
        rtol = max(rtol, 64 * float(np.finfo(np.float64).eps))
    bad = ~(np.abs(a - e) <= atol + rtol * np.abs(e))
    assert not bad.any(), (
        f"\nactual  ={a[bad]!r}\nexpected={e[bad]!r}\nfull actual={actual!r}\n"
        f"full expected={expected!r}\n{where}"
    )


def check_pool(x, op, kwargs, backend):
    expected = oracle.pool(x, op, **kwargs)
    actual = poolcore.pool(x, op, backend=backend, **kwargs)
    assert_matches(actual, expected, op, x, kwargs)


def check_adaptive(x, op, kwargs, backend):
    expected = oracle.adaptive_pool(x, op, **kwargs)
    actual = poolcore.adaptive_pool(x, op, backend=backend, **kwargs)
    assert_matches(actual, expected, op, x, kwargs, adaptive=True)


# ----------------------------------------------------------------------------- hand cases

A5, A6, A10 = np.arange(5.0), np.arange(6.0), np.arange(10.0)

# (input, op, kwargs, expected); kwargs apply to a 1-D input along axis 0.
HAND_CASES = [
    # FIELD §0.3 / §2.1 (pytorch#57178): the last ceil window must start inside the input,
    # even at padding 0: 32 -> 16, not the doc formula's 17.
    (np.arange(32.0), "max", dict(kernel=1, stride=2, ceil_mode=True), np.arange(0.0, 32, 2)),
    # FIELD §0.4 / §1.4: the avg divisor counts the padding but not the ceil overhang.
    (A6, "avg", dict(kernel=3, stride=2, padding=1, ceil_mode=True),
     [1 / 3, 2, 4, 2.5]),
    (A6, "avg", dict(kernel=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
     [0.5, 2, 4, 5]),
    (np.ones(5), "avg", dict(kernel=2, ceil_mode=True), [1, 1, 1]),
    # FIELD §1.2: ceil_mode output lengths (max over arange(n)).
    (A5, "max", dict(kernel=2, stride=2, ceil_mode=True), [1, 3, 4]),
    (A6, "max", dict(kernel=3, stride=2, padding=1, ceil_mode=True), [1, 3, 5, 5]),
    (np.arange(4.0), "max", dict(kernel=2, stride=2, padding=1, ceil_mode=True), [0, 2, 3]),
    (A5, "max", dict(kernel=3, stride=2, ceil_mode=True), [2, 4]),
    (A10, "max", dict(kernel=3, stride=2, padding=1, dilation=2, ceil_mode=True),
     [3, 5, 7, 9, 9]),
    # ... and the same without ceil_mode (the floor formula).
    (A5, "max", dict(kernel=2, stride=2), [1, 3]),
    (A6, "max", dict(kernel=3, stride=2, padding=1), [1, 3, 5]),
    # Dilated overhang, generalised: taps at 3 and 5 of n=5; only the tap at 3 counts.
    (A5, "avg", dict(kernel=2, stride=3, dilation=2, ceil_mode=True), [1, 3]),
    # FIELD §1.3: padding never wins, even for integers (int8 -128 stays -128); NaN wins.
    (np.full(4, -128, np.int8), "max", dict(kernel=3, stride=1, padding=1),
     np.full(4, -128, np.int8)),
    (np.full(4, 127, np.int8), "min", dict(kernel=3, stride=1, padding=1),
     np.full(4, 127, np.int8)),
    (np.array([1, NAN, 3, 4, NAN, -INF]), "max", dict(kernel=2), [NAN, 4, NAN]),
    (np.array([1, NAN, 3, 4, NAN, -INF]), "min", dict(kernel=2), [NAN, 3, NAN]),
    (np.array([1, NAN, 3, 4]), "avg", dict(kernel=2), [NAN, 3.5]),
    (np.array([1, NAN, 3, 4]), "median", dict(kernel=2), [NAN, 3.5]),
    # FIELD §0.1 / §1.4: integer avg rounds to nearest, ties away from zero (torch: [1,-1,3,-3]).
    (np.array([1, 2, -1, -2, 3, 4, -3, -3]), "avg", dict(kernel=2), [2, -2, 4, -3]),
    (np.array([2, 2, 3, 2, 3, 3], np.int64), "avg", dict(kernel=3), [2, 3]),  # torch: [2, 2]
    (np.array([254, 255], np.uint8), "avg", dict(kernel=2), np.array([255], np.uint8)),
    (np.array([-128, -127], np.int8), "avg", dict(kernel=2), np.array([-128], np.int8)),
    # FIELD §1.6: lp is torch's signed formula.
    (np.array([-1.0, -2, 3, -5]), "lp", dict(kernel=2, p=1.0), [-3, -2]),
    (np.array([-1.0, -2, 3, -5]), "lp", dict(kernel=2, p=3.0), [NAN, NAN]),
    (np.array([-1.0, -2, 3, -5]), "lp", dict(kernel=2, p=2.0), [math.sqrt(5), math.sqrt(34)]),
    (np.array([-1.0, -2, 3, -5]), "lp", dict(kernel=2, p=INF), [2, 5]),
    (np.array([-1.0, -2, 3, -5]), "lp", dict(kernel=2, p=-INF), [1, 3]),
    (np.ones(5), "lp", dict(kernel=2, p=2.0, ceil_mode=True), [math.sqrt(2)] * 3),  # over-scaled
    (np.array([3, 4], np.int16), "lp", dict(kernel=2, p=2.0), np.array([5], np.int16)),
    # (-inf)**-1 is -0.0, and a sum starting at +0 (torch's) makes it +0: the root is +inf.
    (np.array([-INF, -2.0]), "lp", dict(kernel=1, p=-1.0), [INF, -2]),
    # median: real elements only; an even count averages the middle two.
    (np.array([5.0, 1, 4, 2]), "median", dict(kernel=4), [3]),
    (np.array([5.0, 1, 4, 2]), "median", dict(kernel=3, stride=1, padding=1),
     [3, 4, 2, 3]),
    (np.array([1, 2, -1, -2], np.int32), "median", dict(kernel=2), np.array([2, -2], np.int32)),
    (np.array([2**63 - 1, 2**63 - 2], np.int64), "median", dict(kernel=2),
     np.array([2**63 - 1], np.int64)),
    # sum of integers widens: no overflow of uint8.
    (np.array([200, 200, 200], np.uint8), "sum", dict(kernel=3), np.array([600], np.uint64)),
    (np.array([-100, -100], np.int8), "sum", dict(kernel=2), np.array([-200], np.int64)),
    # bool: max is "any", min is "all".
    (np.array([False, True, False, False]), "max", dict(kernel=2), [True, False]),
    (np.array([True, True, False, True]), "min", dict(kernel=2), [True, False]),
]

# A dilated window of padding only (n=2, k=2, d=3, p=2: window 1 has taps at -1 and 2; windows
# 0 and 2 hold one real element each, at 1 and 0).
ALL_PAD = dict(kernel=2, stride=1, padding=2, dilation=3)
I32 = np.iinfo(np.int32)
HAND_CASES += [
    (np.array([5.0, 7.0]), "max", ALL_PAD, [7, -INF, 5]),
    (np.array([5.0, 7.0]), "min", ALL_PAD, [7, INF, 5]),
    (np.array([5.0, 7.0]), "sum", ALL_PAD, [7, 0, 5]),
    (np.array([5.0, 7.0]), "avg", ALL_PAD, [3.5, 0, 2.5]),
    (np.array([5.0, 7.0]), "avg", dict(ALL_PAD, count_include_pad=False), [7, NAN, 5]),
    (np.array([5.0, 7.0]), "median", ALL_PAD, [7, NAN, 5]),
    (np.array([5.0, 7.0]), "lp", dict(ALL_PAD, p=2.0), [7, 0, 5]),
    (np.array([5.0, 7.0]), "lp", dict(ALL_PAD, p=INF), [7, -INF, 5]),
    (np.array([5.0, 7.0]), "lp", dict(ALL_PAD, p=-INF), [7, INF, 5]),
    (np.array([5, 7], np.int32), "max", ALL_PAD, np.array([7, I32.min, 5], np.int32)),
    (np.array([5, 7], np.int32), "min", ALL_PAD, np.array([7, I32.max, 5], np.int32)),
    (np.array([5, 7], np.int32), "avg", dict(ALL_PAD, count_include_pad=False),
     np.array([7, 0, 5], np.int32)),
    (np.array([5, 7], np.int32), "median", ALL_PAD, np.array([7, 0, 5], np.int32)),
    (np.array([True, True]), "max", ALL_PAD, [True, False, True]),
    (np.array([False, False]), "min", ALL_PAD, [False, True, False]),
]


def _expected_array(x, op, expected):
    return np.asarray(expected, dtype=oracle.result_dtype(op, x.dtype))


def _assert_same(actual, expected):
    assert actual.dtype == expected.dtype
    if expected.dtype.kind == "f":  # hand values such as 1/3 and sqrt(5) are float64 roundings
        np.testing.assert_allclose(actual, expected, rtol=1e-15, atol=0)
    else:
        np.testing.assert_array_equal(actual, expected, strict=True)


@pytest.mark.parametrize(("x", "op", "kwargs", "expected"), HAND_CASES)
def test_hand_cases_oracle(x, op, kwargs, expected):
    expected = _expected_array(x, op, expected)
    _assert_same(oracle.pool(x, op, axes=0, **kwargs), expected)


@pytest.mark.parametrize(("x", "op", "kwargs", "expected"), HAND_CASES)
def test_hand_cases(backend, x, op, kwargs, expected):
    expected = _expected_array(x, op, expected)
    _assert_same(poolcore.pool(x, op, axes=0, backend=backend, **kwargs), expected)


ADAPTIVE_HAND_CASES = [
    # FIELD §1.7: n=10 -> 4 has windows (0,3), (2,5), (5,8), (7,10).
    (A10, "avg", 4, [1, 3, 6, 8]),
    (A10, "max", 4, [2, 4, 7, 9]),
    (A10, "min", 4, [0, 2, 5, 7]),
    (A10, "sum", 4, [3, 9, 18, 24]),
    (A10, "median", 4, [1, 3, 6, 8]),
    (np.arange(3.0), "avg", 5, [0, 0.5, 1, 1.5, 2]),  # growing
    # Integer windows (0,4), (3,7), (6,10) have means 1.5, 4.5, 7.5: ties away from zero.
    (np.arange(10), "avg", 3, [2, 5, 8]),
    (-np.arange(10), "avg", 3, [-2, -5, -8]),
]


@pytest.mark.parametrize(("x", "op", "size", "expected"), ADAPTIVE_HAND_CASES)
def test_adaptive_hand_cases(backend, x, op, size, expected):
    expected = np.asarray(expected, dtype=oracle.result_dtype(op, x.dtype))
    for actual in (oracle.adaptive_pool(x, op, size, axes=0),
                   poolcore.adaptive_pool(x, op, size, axes=0, backend=backend)):
        _assert_same(actual, expected)


def test_adaptive_sizes_zero_and_none(backend):
    x = np.arange(24.0).reshape(1, 1, 4, 6)
    # FIELD §1.7: an output size of 0 gives an empty axis; None keeps the axis.
    out = poolcore.adaptive_pool(x, "max", (0, 2), backend=backend)
    assert out.shape == (1, 1, 0, 2)
    assert oracle.adaptive_pool(x, "max", (0, 2)).shape == (1, 1, 0, 2)
    out = poolcore.adaptive_pool(x, "max", (None, 2), backend=backend)
    np.testing.assert_array_equal(out, x.reshape(1, 1, 4, 2, 3).max(axis=-1))
    out = poolcore.adaptive_pool(np.arange(6, dtype=np.uint8), "sum", 0, axes=0, backend=backend)
    assert out.shape == (0,) and out.dtype == np.uint64


def test_default_axes(backend):
    x = np.arange(2 * 3 * 4 * 4, dtype=np.float64).reshape(2, 3, 4, 4)
    # An int kernel pools the last two axes; a sequence pools the last len(kernel) axes.
    assert poolcore.pool(x, "max", 2, backend=backend).shape == (2, 3, 2, 2)
    assert poolcore.pool(x, "max", (2,), backend=backend).shape == (2, 3, 4, 2)
    assert poolcore.pool(x, "max", (3, 2, 2), backend=backend).shape == (2, 1, 2, 2)
    assert poolcore.pool(np.arange(6.0), "sum", 2, backend=backend).tolist() == [1, 5, 9]
    for kernel in (2, (2,), (3, 2, 2)):
        np.testing.assert_array_equal(
            poolcore.pool(x, "max", kernel, backend=backend), oracle.pool(x, "max", kernel)
        )


def test_integer_rounding_is_exact(backend):
    """Ties away from zero computed exactly, not through float64 (2**53 + 1 is not a float)."""
    big = 2**62 + 1
    x = np.array([big, big + 1, -big, -big - 1], np.int64)
    out = poolcore.pool(x, "avg", 2, axes=0, backend=backend)
    assert out.tolist() == [big + 1, -big - 1]
    u = np.array([2**64 - 1, 2**64 - 2], np.uint64)
    assert poolcore.pool(u, "avg", 2, axes=0, backend=backend).tolist() == [2**64 - 1]
    assert poolcore.pool(u, "median", 2, axes=0, backend=backend).tolist() == [2**64 - 1]


def test_integer_lp_rounding_is_exact(backend):
    # lp is computed in float64; rounding that float must not add its own error: 2**52 + 1
    # is an integer already, and 0.49999999999999994 rounds to 0.
    x = np.array([2**52 + 1], np.int64)
    assert poolcore.pool(x, "lp", 1, p=1.0, axes=0, backend=backend).tolist() == [2**52 + 1]
    assert poolcore.pool(x, "lp", 1, p=INF, axes=0, backend=backend).tolist() == [2**52 + 1]
    # int8 lp saturates: |-128| is 128.
    y = np.array([-128, -128], np.int8)
    assert poolcore.pool(y, "lp", 2, p=INF, axes=0, backend=backend).tolist() == [127]


def test_float_median_of_huge_values(backend):
    # The mean of the middle two must not overflow: (a + b) / 2 with a + b > float max.
    x = np.array([1e308, 1.5e308, 1.7e308, 1.6e308])
    out = poolcore.pool(x, "median", 2, axes=0, backend=backend)
    exact = [float((Fraction(a) + Fraction(b)) / 2) for a, b in ((1e308, 1.5e308),
                                                                  (1.7e308, 1.6e308))]
    np.testing.assert_array_equal(out, exact)
    np.testing.assert_array_equal(oracle.pool(x, "median", 2, axes=0), exact)
    f16 = np.array([60000, 65504], np.float16)
    assert poolcore.pool(f16, "median", 2, axes=0, backend=backend).tolist() == [62752.0]


@pytest.mark.parametrize("op", oracle.POOL_OPS)
def test_empty_batch(backend, op):
    """An empty non-pooled axis gives an empty output of the right shape and dtype (median
    once failed in a reshape)."""
    x = np.zeros((3, 0, 5), np.int16)
    expected = oracle.pool(x, op, 2, axes=(0, 2))
    actual = poolcore.pool(x, op, 2, axes=(0, 2), backend=backend)
    assert actual.shape == expected.shape == (1, 0, 2)
    assert actual.dtype == expected.dtype


# ----------------------------------------------------------------------------- hypothesis


@given(case=oracle.pool_calls(), layout=st.sampled_from(oracle.LAYOUTS))
def test_pool_matches_oracle(backend, case, layout):
    x, op, kwargs = case
    xv = oracle.with_layout(x, layout)
    before = xv.copy()
    note(_describe(xv, op, kwargs))
    expected = oracle.pool(x, op, **kwargs)
    actual = poolcore.pool(xv, op, backend=backend, **kwargs)
    assert_matches(actual, expected, op, x, kwargs)
    # Never mutate the input (bottleneck's tests/input_modification_test.py).
    assert xv.dtype == before.dtype and xv.tobytes() == before.tobytes()


@st.composite
def far_longer_windows(draw):
    """Calls whose first pooled axis has windows many times its length (a dilation in the
    thousands, padding up to half the span): the backends' per-window path for them."""
    n = draw(st.integers(1, 6))
    k = draw(st.integers(2, 5))
    d = draw(st.integers(-(-(4 * n + 4097) // (k - 1)), 6000))
    span = d * (k - 1) + 1
    p = draw(st.integers((span - n + 1) // 2, span // 2))  # out >= 1 needs n + 2p >= span
    s = draw(st.integers(1, 3))
    op = draw(st.sampled_from(oracle.POOL_OPS))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int32, np.uint8]))
    x = draw(hnp.arrays(dtype, (n, draw(st.integers(2, 4))),
                        elements=oracle.values_for(op, np.dtype(dtype), nonfinite=False)))
    kwargs = dict(kernel=(k, 2), stride=(s, 1), padding=(p, 0), dilation=(d, 1),
                  ceil_mode=draw(st.booleans()), axes=(0, 1))
    if op == "avg":
        kwargs["count_include_pad"] = draw(st.booleans())
    return x, op, kwargs


@given(case=far_longer_windows())
def test_windows_far_longer_than_the_axis_match_oracle(backend, case):
    x, op, kwargs = case
    note(_describe(x, op, kwargs))
    assert poolcore.geometry.make_windows(
        x.shape, (0,), kwargs["kernel"][0], kwargs["stride"][0], kwargs["padding"][0],
        kwargs["dilation"][0], kwargs["ceil_mode"])[0].far_longer_than_axis
    expected = oracle.pool(x, op, **kwargs)
    actual = poolcore.pool(x, op, backend=backend, **kwargs)
    assert_matches(actual, expected, op, x, kwargs)


@given(case=oracle.adaptive_calls(), layout=st.sampled_from(oracle.LAYOUTS))
def test_adaptive_matches_oracle(backend, case, layout):
    x, op, kwargs = case
    xv = oracle.with_layout(x, layout)
    before = xv.copy()
    note(_describe(xv, op, kwargs))
    expected = oracle.adaptive_pool(x, op, **kwargs)
    actual = poolcore.adaptive_pool(xv, op, backend=backend, **kwargs)
    assert_matches(actual, expected, op, x, kwargs, adaptive=True)
    assert xv.dtype == before.dtype and xv.tobytes() == before.tobytes()


@given(case=oracle.pool_calls(ops=("max", "min", "avg", "median", "lp"),
                              dtypes=oracle.FLOAT_DTYPES, nonfinite=True))
def test_pool_nan_inf_matches_oracle(backend, case):
    """NaN and inf in every float op: NaN propagates, inf - inf is NaN, and no warning (the
    suite turns warnings into errors)."""
    x, op, kwargs = case
    check_pool(x, op, kwargs, backend)


@given(case=oracle.pool_calls(dtypes=("int64", "uint64")))
def test_pool_64_bit_integers_match_oracle(backend, case):
    """The whole 64-bit range: sums, means and medians of huge values must stay exact."""
    x, op, kwargs = case
    check_pool(x, op, kwargs, backend)


@st.composite
def long_axis_calls(draw):
    """Kernels up to 40 taps on a long axis: where the numpy backend switches from adding the
    k taps to its O(log k) doubling scheme (only worth it for many windows of many taps)."""
    op = draw(st.sampled_from(oracle.POOL_OPS))
    dtype = np.dtype(draw(st.sampled_from(("float64", "int32", "uint8", "bool")
                                          if op in ("max", "min") else ("float64", "int32"))))
    k = draw(st.integers(3, 40))
    d = draw(st.integers(1, 2))
    span = d * (k - 1) + 1
    p = draw(st.integers(0, span // 2))
    s = draw(st.integers(1, 3))
    ceil_mode = draw(st.booleans())
    n = draw(st.integers(max(1, span - 2 * p), span + 120))
    rows = draw(st.integers(1, 2))
    kwargs = dict(kernel=k, stride=s, padding=p, dilation=d, ceil_mode=ceil_mode, axes=(-1,))
    if op in ("avg", "lp"):
        kwargs["count_include_pad"] = draw(st.booleans())
    if op == "lp":
        kwargs["p"] = draw(st.sampled_from(oracle.LP_POWERS))
    power = kwargs.get("p")
    x = draw(hnp.arrays(dtype, (rows, n), elements=oracle.values_for(op, dtype, power, False)))
    return x, op, kwargs


@given(case=long_axis_calls())
def test_large_kernels_match_oracle(backend, case):
    x, op, kwargs = case
    check_pool(x, op, kwargs, backend)


@given(case=oracle.pool_calls(), bytes_=st.sampled_from([1, 8, 64]))
def test_bands_match_oracle(case, bytes_):
    """The numpy backend processes large inputs in bands of output rows (separable passes)
    and of windows (median); tiny band sizes make every small case run in many bands."""
    x, op, kwargs = case
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(numpy_backend, "BAND_BYTES", bytes_)
        mp.setattr(numpy_backend, "MEDIAN_BAND_ELEMENTS", bytes_)
        check_pool(x, op, kwargs, "numpy")


def test_numpy_temporaries_stay_near_the_band():
    """Bands bound the reference's temporaries even where one output row is large: a long
    signal pooled along a short axis (cut along the long one), a median whose first pooled
    axis has a single output (tiled along the last)."""
    import tracemalloc

    rng = np.random.default_rng(5)
    cases = [(rng.random((40, 250_000), dtype=np.float32), "sum", dict(kernel=33, stride=1,
                                                                         axes=0)),
             (rng.random((2, 100_000)), "median", dict(kernel=(1, 101), stride=1))]
    for x, op, kwargs in cases:
        tracemalloc.start()
        try:
            out = poolcore.pool(x, op, backend="numpy", **kwargs)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        # before: 225 MiB for the sum, 339 MB for the median
        assert peak < out.nbytes + 48 * 2**20, (op, peak / 2**20)
        np.testing.assert_array_equal(out, poolcore.pool(x, op, backend="fast", **kwargs)
                                      if "fast" in poolcore.available_backends() else out)


# ----------------------------------------------------------------------------- the oracle itself


@given(case=oracle.pool_calls(ops=("max", "sum", "median"), dtypes=("float64", "int32"),
                              padding=False, ceil_modes=(False,), max_ndim=3, nonfinite=False,
                              bound=1e300))
def test_oracle_matches_sliding_window_view(case):
    """A second opinion on the oracle where windows are whole: numpy's sliding_window_view
    (as scipy's TestVectorizedFilter), strided and dilated by slicing."""
    x, op, kwargs = case
    axes = kwargs.get("axes", oracle.default_axes(kwargs["kernel"], x.ndim))
    axes = tuple(a % x.ndim for a in axes)
    m = len(axes)

    def per_axis(name, default):
        v = kwargs.get(name, default)
        return (v,) * m if isinstance(v, int) else v

    k, d = per_axis("kernel", 1), per_axis("dilation", 1)
    s = per_axis("stride", None) if kwargs.get("stride") is not None else k
    spans = [d_ * (k_ - 1) + 1 for k_, d_ in zip(k, d)]
    view = np.lib.stride_tricks.sliding_window_view(x, spans, axis=axes)
    index = [slice(None)] * x.ndim + [slice(None)] * m
    for i, ax in enumerate(axes):
        index[ax] = slice(None, None, s[i])
        index[x.ndim + i] = slice(None, None, d[i])
    windows = view[tuple(index)]
    window_axes = tuple(range(x.ndim, x.ndim + m))
    expected = oracle.pool(x, op, **kwargs)
    if op == "max":
        np.testing.assert_array_equal(windows.max(axis=window_axes), expected)
    elif op == "sum":
        np.testing.assert_allclose(windows.sum(axis=window_axes), expected, rtol=1e-12)
    else:
        flat = windows.reshape(windows.shape[: x.ndim] + (math.prod(windows.shape[x.ndim:]),))
        reference = np.median(flat.astype(np.float64), axis=-1)
        if x.dtype.kind == "i":  # ties away from zero
            reference = np.copysign(np.floor(np.abs(reference) + 0.5), reference)
        np.testing.assert_array_equal(reference.astype(x.dtype), expected)


@pytest.mark.parametrize(
    ("n", "k", "s", "p", "d", "ceil_mode", "expected"),
    [
        (32, 1, 2, 0, 1, True, 16),
        (32, 1, 2, 0, 1, False, 16),
        (5, 2, 2, 0, 1, True, 3),
        (6, 3, 2, 1, 1, True, 4),
        (10, 3, 2, 1, 2, True, 5),
        (25, 2, 2, 0, 1, False, 12),  # pytorch#6842: floor drops the last row
        (25, 2, 2, 0, 1, True, 13),
        (1, 4, 4, 0, 1, True, 1),  # a window longer than the input, kept by ceil_mode
        (1, 4, 4, 0, 1, False, 0),
    ],
)
def test_output_length(n, k, s, p, d, ceil_mode, expected):
    assert oracle.output_length(n, k, s, p, d, ceil_mode) == expected
