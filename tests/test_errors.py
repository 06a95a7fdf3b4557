"""Every error of the contract (issue 2): a TypeError or ValueError whose text names the
parameter, the offending value and the rule, never a numpy traceback or a wrong shape.

One ``pytest.raises(..., match=...)`` per message (as scipy's ``test_input_validation``).
"""

import re

import numpy as np
import pytest

import poolcore

X = np.zeros((4, 4))


def pool(*args, **kwargs):
    return lambda: poolcore.pool(*args, **kwargs)


def adaptive(*args, **kwargs):
    return lambda: poolcore.adaptive_pool(*args, **kwargs)


def _(text):
    """A literal piece of a message (values such as ``(2, 0)`` hold regex characters)."""
    return re.escape(text)


CASES = {
    # dtypes
    "object dtype": (pool(np.array([1, None]), "max", 1), TypeError,
                     _("`x` must have an integer, float or bool dtype, got object")),
    "complex dtype": (pool(np.zeros(4, complex), "max", 2), TypeError,
                      _("`x` must have an integer, float or bool dtype, got complex128")),
    "str dtype": (pool(np.array(["a", "b"]), "max", 1), TypeError,
                  _("`x` must have an integer, float or bool dtype, got <U1")),
    "bytes dtype": (pool(np.array([b"a", b"b"]), "max", 1), TypeError, _("got |S1")),
    "datetime dtype": (pool(np.zeros(4, "M8[s]"), "max", 2), TypeError,
                       _("got datetime64[s]")),
    "object dtype, adaptive": (adaptive(np.array([1, None]), "max", 1), TypeError,
                               _("`x` must have an integer, float or bool dtype, got object")),
    "complex dtype, adaptive": (adaptive(np.zeros(4, complex), "avg", 2), TypeError,
                                _("got complex128")),
    "bool with avg": (pool(np.zeros(4, bool), "avg", 2, axes=0), TypeError,
                      _("`x` of dtype bool can only be pooled with max or min, not 'avg'")),
    "bool with sum": (pool(np.zeros(4, bool), "sum", 2, axes=0), TypeError,
                      _("bool can only be pooled with max or min, not 'sum'")),
    "bool with lp": (pool(np.zeros(4, bool), "lp", 2, axes=0), TypeError,
                     _("bool can only be pooled with max or min, not 'lp'")),
    "bool with median": (pool(np.zeros(4, bool), "median", 2, axes=0), TypeError,
                         _("bool can only be pooled with max or min, not 'median'")),
    "bool with adaptive avg": (adaptive(np.zeros(4, bool), "avg", 2), TypeError,
                               _("bool can only be pooled with max or min, not 'avg'")),
    "0-d input": (pool(np.float64(1.0), "max", 1), ValueError,
                  _("`x` must have at least one dimension, got a 0-d array")),
    # window parameters
    "kernel < 1": (pool(X, "max", 0), ValueError,
                   _("`kernel` must be >= 1 on every pooled axis, got 0")),
    "kernel < 1 on one axis": (pool(X, "max", (2, 0)), ValueError,
                               _("`kernel` must be >= 1 on every pooled axis, got (2, 0)")),
    "negative kernel": (pool(X, "max", -3, axes=0), ValueError,
                        _("`kernel` must be >= 1 on every pooled axis, got -3")),
    "stride < 1": (pool(X, "max", 2, stride=(2, 0)), ValueError,
                   _("`stride` must be >= 1 on every pooled axis, got (2, 0)")),
    "dilation < 1": (pool(X, "max", 2, dilation=0), ValueError,
                     _("`dilation` must be >= 1 on every pooled axis, got 0")),
    "padding < 0": (pool(X, "max", 2, padding=-1), ValueError,
                    _("`padding` must be >= 0 on every pooled axis, got -1")),
    "too much padding": (pool(X, "max", 3, padding=2), ValueError,
                         _("`padding` must be at most half the (dilated) kernel") + ".*"
                         + _("= (1, 1), got 2")),
    # FIELD §1.2: torch's avg message for this call; our limit is the dilated kernel's.
    "too much padding, avg": (pool(X, "avg", 3, padding=(0, 2)), ValueError,
                              _("got (0, 2)")),
    "too much padding, dilated": (pool(np.zeros(10), "max", 3, padding=3, dilation=2, axes=0),
                                  ValueError, _("= (2,), got 3")),
    "output length < 1": (pool(np.zeros((2, 2)), "max", 3), ValueError,
                          _("output length must be >= 1, but axis 0 of length 2 with kernel=3,"
                            " stride=3, padding=0, dilation=1, ceil_mode=False gives 0")),
    "output length < 1, dilated": (pool(np.zeros(4), "avg", 2, dilation=4, axes=0), ValueError,
                                   _("axis 0 of length 4 with kernel=2") + ".*"
                                   + _("dilation=4")),
    "empty pooled axis": (pool(np.zeros((0, 4)), "max", 2, axes=0), ValueError,
                          _("axis 0 of length 0")),
    "float kernel": (pool(X, "max", 2.0), TypeError,
                     _("`kernel` must be an int or a sequence of ints, got 2.0")),
    "bool kernel": (pool(X, "max", True), TypeError,
                    _("`kernel` must be an int or a sequence of ints, got True")),
    "str kernel": (pool(X, "max", "2"), TypeError,
                   _("`kernel` must be an int or a sequence of ints, got '2'")),
    "float stride": (pool(X, "max", 2, stride=(1, 1.5)), TypeError,
                     _("`stride` must be an int or a sequence of ints, got 1.5")),
    "None padding": (pool(X, "max", 2, padding=None), TypeError,
                     _("`padding` must be an int or a sequence of ints, got None")),
    # beyond any axis: clear errors, never an overflow of the window arithmetic
    "huge stride": (pool(X, "max", 2, stride=2**63), ValueError,
                    _("`stride` must be at most 2**40 on every pooled axis (no array axis is "
                      "longer), got 9223372036854775808")),
    "huge kernel": (pool(np.zeros(10), "max", 2**62, padding=2**61, axes=0), ValueError,
                    _("`kernel` must be at most 2**40")),
    "huge padding and dilation": (pool(np.zeros(10), "max", 3, stride=1, padding=2**58,
                                       dilation=2**58, axes=0), ValueError,
                                  _("`padding` must be at most 2**40")),
    "empty kernel": (pool(np.zeros((2, 3, 4)), "max", ()), ValueError,
                     _("`kernel` (or `output_size`) must have one value per pooled axis, got an "
                       "empty sequence")),
    "empty output_size": (adaptive(np.zeros((2, 3, 4)), "max", ()), ValueError,
                          _("got an empty sequence")),
    # wrong number of per-axis values
    "kernel values != axes": (pool(X, "max", (2, 2, 2), axes=(0, 1)), ValueError,
                              _("`kernel` must have one value per pooled axis (2), got (2, 2, 2)")),
    "stride values != axes": (pool(X, "max", 2, stride=(1, 1, 1)), ValueError,
                              _("`stride` must have one value per pooled axis (2), got (1, 1, 1)")),
    "padding values != axes": (pool(X, "max", 2, padding=(0,)), ValueError,
                               _("`padding` must have one value per pooled axis (2), got (0,)")),
    "dilation values != axes": (pool(X, "max", (2, 2), dilation=[1, 1, 1]), ValueError,
                                _("`dilation` must have one value per pooled axis (2), "
                                  "got [1, 1, 1]")),
    "kernel longer than ndim": (pool(X, "max", (2, 2, 2)), ValueError,
                                _("`kernel` has 3 values but the input has only 2 dimension(s)")),
    # op
    "unknown op": (pool(X, "mean", 2), ValueError,
                   _("`op` must be one of max, min, avg, sum, lp, median for pool, got 'mean'")),
    "op not a string": (pool(X, 3, 2), ValueError, _("`op` must be one of") + ".*got 3"),
    "lp is not adaptive": (adaptive(X, "lp", 2), ValueError,
                           _("`op` must be one of max, min, avg, sum, median for adaptive_pool,"
                             " got 'lp'")),
    "unknown adaptive op": (adaptive(X, "MAX", 2), ValueError, _("got 'MAX'")),
    "lp with p=0": (pool(X, "lp", 2, p=0), ValueError,
                    _("`p` of lp must be non-zero and not NaN, got 0.0")),
    "lp with p=NaN": (pool(X, "lp", 2, p=float("nan")), ValueError,
                      _("`p` of lp must be non-zero and not NaN, got nan")),
    # axes
    "axis out of range": (pool(X, "max", 2, axes=(0, 2)), ValueError,
                          _("`axes` value 2 is out of range for an input with 2 dimension(s)")),
    "negative axis out of range": (pool(X, "max", 2, axes=(-3, 0)), ValueError,
                                   _("`axes` value -3 is out of range for an input with 2 "
                                     "dimension(s)")),
    "single axis out of range": (pool(X, "max", 2, axes=5), ValueError, _("`axes` value 5")),
    "repeated axis": (pool(X, "max", 2, axes=(1, -1)), ValueError,
                      _("`axes` must not repeat an axis, got (1, -1)")),
    "no axes": (pool(X, "max", 2, axes=()), ValueError,
                _("`axes` must name at least one axis, got ()")),
    "float axis": (pool(X, "max", 2, axes=1.0), TypeError,
                   _("`axes` must be an int or a sequence of ints, got 1.0")),
    "adaptive axis out of range": (adaptive(X, "max", 2, axes=(0, 7)), ValueError,
                                   _("`axes` value 7 is out of range")),
    # adaptive output_size
    "negative output_size": (adaptive(X, "max", -1), ValueError,
                             _("`output_size` must be >= 0 on every pooled axis, got -1")),
    "output_size values != axes": (adaptive(X, "max", (2, 2, 2), axes=(0, 1)), ValueError,
                                   _("`output_size` must have one value per pooled axis (2), "
                                     "got (2, 2, 2)")),
    "float output_size": (adaptive(X, "max", 2.5), TypeError,
                          _("`output_size` must be an int or a sequence of ints, got 2.5")),
    "output_size values > ndim": (adaptive(np.zeros((4, 4)), "avg", (2, 2, 2)), ValueError,
                                  _("`output_size` has 3 values but the input has only 2 "
                                    "dimension(s)")),
    "output no memory holds": (adaptive(np.zeros((4, 4)), "max", (2**31, 2**31)), ValueError,
                               _("`output_size` (2147483648, 2147483648) makes an output of "
                                 "4,611,686,018,427,387,904 elements, over 2**40")),
    "output_size past int64": (adaptive(np.zeros((4, 4)), "avg", 2**63), ValueError,
                               _("`output_size` 9223372036854775808 makes an output of")),
    "empty input, adaptive": (adaptive(np.zeros((0, 4)), "max", 2), ValueError,
                              _("adaptive pooling needs a non-empty input, but axis 0 is empty")),
    # backend
    "unknown backend": (pool(X, "max", 2, backend="cuda"), ValueError,
                        _("`backend` must be one of ('auto', 'numpy', 'fast'), got 'cuda'")),
    "unknown backend, adaptive": (adaptive(X, "max", 2, backend="torch"), ValueError,
                                  _("got 'torch'")),
}


@pytest.mark.parametrize(("call", "error", "match"), CASES.values(), ids=CASES.keys())
def test_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.parametrize("call", [pool(X, "max", 2, backend="fast"),
                                  adaptive(X, "avg", 2, backend="fast")])
def test_fast_backend_missing(call, monkeypatch):
    # As on a machine where the extension was not built (or POOLCORE_NO_FAST is set).
    monkeypatch.setattr(poolcore.backends, "_fast_backend", None)
    with pytest.raises(ValueError, match=_("`backend` 'fast' is not available") + ".*"
                       + _("available: numpy")):
        call()


def test_validated_calls_are_remembered_by_type_not_only_value():
    """pool_spec remembers validated calls; True == 1 == 1.0 and they hash alike, but only
    the int is a valid kernel, whatever was called before."""
    assert poolcore.pool(X, "max", 1).shape == (4, 4)
    assert poolcore.pool(X, "max", (1, 1)).shape == (4, 4)
    with pytest.raises(TypeError, match=_("got True")):
        poolcore.pool(X, "max", True)
    with pytest.raises(TypeError, match=_("got 1.0")):
        poolcore.pool(X, "max", 2, stride=1.0)
    assert poolcore.pool(X, "max", 2, stride=1).shape == (3, 3)
    with pytest.raises(TypeError, match=_("`kernel` must be an int or a sequence of ints")):
        poolcore.pool(X, "max", (True, 1))


def test_errors_are_raised_before_any_work():
    """A bad parameter is reported even when another one is also bad in a later check, and
    the input is left alone (never mutated by a failing call)."""
    x = np.arange(16.0).reshape(4, 4)
    before = x.copy()
    with pytest.raises(ValueError, match="`stride`"):
        poolcore.pool(x, "max", 2, stride=0, padding=5)
    np.testing.assert_array_equal(x, before)


def test_valid_edge_calls_do_not_raise(backend):
    """The limits themselves are valid: padding exactly half the dilated kernel, a window
    longer than the input with ceil_mode, an output size of 0, an empty non-pooled axis."""
    x = np.arange(10.0)
    out = poolcore.pool(x, "max", 3, stride=1, padding=2, dilation=2, axes=0, backend=backend)
    assert out.tolist() == [2, 3, 4, 5, 6, 7, 8, 9, 8, 9]  # taps -2, 0, 2 ... 7, 9, 11
    out = poolcore.pool(np.ones(1), "avg", 4, ceil_mode=True, axes=0, backend=backend)
    assert out.tolist() == [1.0]  # divided by the one real element: the overhang never counts
    assert poolcore.adaptive_pool(X, "max", 0, backend=backend).shape == (0, 0)
    empty = np.zeros((0, 4), np.uint8)
    for op in ("max", "avg", "sum", "median", "lp"):
        out = poolcore.pool(empty, op, 2, axes=1, backend=backend)
        assert out.shape == (0, 2)
    # 0-d integer arrays are ints, as numpy's own scalars
    assert poolcore.pool(X, "max", np.array(2), axes=np.array(1), backend=backend).shape == (4, 2)


@pytest.mark.parametrize("op", ["max", "min", "sum", "avg", "lp", "median"])
def test_windows_far_longer_than_the_axis(op, backend):
    """A dilation or kernel (padded by up to half of it) far beyond the axis is valid. Each
    window holds at most one real element here; the compiled engine, whose line buffers grow
    with the span, leaves such calls to numpy (once this crashed it)."""
    x = np.arange(1.0, 11.0)
    # avg over the one real tap; lp (as torch's: k * avg of x**p, padding counted) its norm
    out = poolcore.pool(x, op, 3, stride=1, padding=2**20, dilation=2**20, axes=0,
                        count_include_pad=op == "lp", backend=backend)
    np.testing.assert_allclose(out, x)
