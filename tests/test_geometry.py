"""geometry: PyTorch's output-length rule, avg divisors, interior ranges, adaptive bounds."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from poolcore.geometry import (
    Window,
    adaptive_bounds,
    as_tuple,
    make_windows,
    normalize_axes,
    output_length,
)


@pytest.mark.parametrize(
    ("n", "k", "s", "p", "d", "ceil", "expected"),
    [
        (32, 1, 2, 0, 1, True, 16),  # pytorch#57178: the doc formula says 17
        (5, 2, 2, 0, 1, True, 3),
        (6, 3, 2, 1, 1, True, 4),
        (4, 2, 2, 1, 1, True, 3),
        (5, 3, 2, 0, 1, True, 2),
        (10, 3, 2, 1, 2, True, 5),
        (25, 2, 2, 0, 1, False, 12),  # pytorch#6842: floor drops the last row
        (25, 2, 2, 0, 1, True, 13),
        (1, 4, 4, 0, 1, True, 1),  # pytorch#88464 (once -2); torch 2.13 gives 1
    ],
)
def test_output_length_matches_pytorch(n, k, s, p, d, ceil, expected):
    assert output_length(n, k, s, p, d, ceil) == expected


def test_counts_follow_pytorchs_cpu_kernel():
    w = make_windows((6,), (0,), 3, 2, 1, 1, True)[0]
    assert w.out == 4
    np.testing.assert_array_equal(w.counts(True), [3, 3, 3, 2])  # overhang not counted
    np.testing.assert_array_equal(w.counts(False), [2, 3, 3, 1])


def test_all_padding_window_has_no_real_taps():
    w = make_windows((3,), (0,), 2, 1, 1, 4, False)[0]  # taps at -1 and 3
    lo, hi = w.real_taps()
    assert w.out == 1 and (hi - lo).tolist() == [0]


@st.composite
def windows(draw):
    n = draw(st.integers(1, 40))
    k = draw(st.integers(1, 6))
    d = draw(st.integers(1, 3))
    p = draw(st.integers(0, (d * (k - 1) + 1) // 2))
    s = draw(st.integers(1, 5))
    ceil = draw(st.booleans())
    out = output_length(n, k, s, p, d, ceil)
    if out < 1:
        n += d * (k - 1) + 1
        out = output_length(n, k, s, p, d, ceil)
    return Window(n, k, s, p, d, out)


@given(windows())
def test_window_bookkeeping_agrees_with_a_loop(w):
    lo, hi = w.real_taps()
    inc = w.counts(True)
    start_lo, start_hi = w.interior()
    for o in range(w.out):
        taps = [o * w.s - w.p + j * w.d for j in range(w.k)]
        real = [j for j, t in enumerate(taps) if 0 <= t < w.n]
        assert hi[o] - lo[o] == len(real)
        assert real == list(range(lo[o], hi[o]))
        assert inc[o] == sum(t < w.n + w.p for t in taps)
        assert (start_lo <= o < start_hi) == (len(real) == w.k)
    # the last window starts inside the input or the left padding
    assert (w.out - 1) * w.s - w.p < w.n


@given(st.integers(1, 200), st.integers(1, 300))
def test_adaptive_bounds_are_floor_and_ceil(n, out):
    starts, ends = adaptive_bounds(n, out)
    for i in range(out):
        assert starts[i] == (i * n) // out
        assert ends[i] == -((-(i + 1) * n) // out)
        assert ends[i] > starts[i]


def test_huge_adaptive_sizes_stay_exact():
    n, out = 2**40 + 3, 2**20 + 1
    starts, ends = adaptive_bounds(n, np.int64(out))
    assert int(starts[-1]) == ((out - 1) * n) // out
    assert int(ends[-1]) == n


def test_normalisers():
    assert as_tuple("kernel", 3, 2) == (3, 3)
    assert as_tuple("kernel", (3, np.int64(2)), 2) == (3, 2)
    assert normalize_axes(None, 4, 2) == (2, 3)
    assert normalize_axes((-1, 0), 4, 2) == (3, 0)
