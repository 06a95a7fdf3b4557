"""Pipeline: parsing (safe, with pointed errors), canonical text, TOML, application order."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import poolcore
from poolcore import Pipeline
from poolcore.pipeline import Stage


@pytest.mark.parametrize(
    "text",
    [
        "max(3, stride=2, padding=1) | avg(2)",
        "lp(2, p=3.0)",
        "lp((2, 3), p=inf, ceil_mode=True)",
        "adaptive_avg((64, 64))",
        "adaptive_max((None, 3))",
        "median(3, stride=1, padding=1)",
        "avg(3, stride=2, padding=1, count_include_pad=False)",
        "min(2, dilation=2) | sum(2) | adaptive_median(4)",
    ],
)
def test_str_parses_back_to_an_equal_pipeline(text):
    pipe = Pipeline.parse(text)
    assert Pipeline.parse(str(pipe)) == pipe
    assert str(Pipeline.parse(str(pipe))) == str(pipe)


def test_canonical_text_drops_defaults_and_spacing():
    pipe = Pipeline.parse("max( 3 ,stride=2,padding=0, dilation=1 , ceil_mode=False)|avg(2)")
    assert str(pipe) == "max(3, stride=2) | avg(2)"
    assert Pipeline.parse("max(2, 2)") == Pipeline.parse("max(2, stride=2)")


def test_pipeline_applies_stages_in_order():
    x = np.random.default_rng(0).random((3, 17, 19))
    pipe = Pipeline.parse("max(3, stride=2, padding=1) | avg(2)")
    expected = poolcore.pool(poolcore.pool(x, "max", 3, 2, 1), "avg", 2)
    np.testing.assert_array_equal(pipe(x), expected)
    assert pipe.output_shape(x.shape) == expected.shape
    np.testing.assert_array_equal(
        pipe(x, axes=(0, 1)), poolcore.pool(poolcore.pool(x, "max", 3, 2, 1, axes=(0, 1)), "avg", 2,
                                            axes=(0, 1))
    )


def test_adaptive_and_lp_stages_call_the_library():
    x = np.random.default_rng(1).random((10, 12))
    np.testing.assert_array_equal(
        Pipeline.parse("adaptive_avg((4, None))")(x), poolcore.adaptive_pool(x, "avg", (4, None))
    )
    np.testing.assert_array_equal(
        Pipeline.parse("lp(2, p=3)")(x), poolcore.pool(x, "lp", 2, p=3)
    )


def test_scale_is_the_step_between_outputs_per_axis():
    # strides multiply, whatever the rows left over (400 = 2 * 3 * 66 + 4)
    assert Pipeline.parse("avg(2) | max(3, stride=3)").scale((600, 400, 3), axes=(0, 1)) == (
        6.0, 6.0, 1.0,
    )
    # an overlapping window with stride 1 keeps the pixel pitch; padding changes nothing
    assert Pipeline.parse("max(3, stride=1, padding=1)").scale((50, 40)) == (1.0, 1.0)
    assert Pipeline.parse("avg((2, 3), ceil_mode=True)").scale((7, 7)) == (2.0, 3.0)
    # adaptive windows have no fixed stride: input over output length
    assert Pipeline.parse("avg(2) | adaptive_max((10, 4))").scale((60, 40)) == (6.0, 10.0)


def test_adaptive_stages_keep_their_none_axes_when_parsed():
    """A kept axis (None) is no size when a stage is checked: only the stage's own sizes meet
    the output cap."""
    stage = Pipeline.parse("adaptive_avg((None, None, 4))")
    assert stage.output_shape((3, 10, 12)) == (3, 10, 4)
    assert Pipeline.parse("adaptive_max((None, 4000000))").output_shape((2, 5)) == (2, 4000000)
    with pytest.raises(ValueError, match="over 2\\*\\*40"):
        Pipeline.parse("adaptive_max((2097152, 2097152))")


def test_single_is_the_cli_shorthand():
    assert Pipeline.single("max", 3, stride=2, padding=1) == Pipeline.parse(
        "max(3, stride=2, padding=1)"
    )
    assert Pipeline.single("adaptive_avg", (8, 8)) == Pipeline.parse("adaptive_avg((8, 8))")


@pytest.mark.parametrize(
    ("text", "error", "match"),
    [
        ("", ValueError, "empty"),
        ("max(3, strid=2)", ValueError, r"stage 1 `max\(3, strid=2\)`: unknown parameter 'strid'"),
        ("max(2) | foo(2)", ValueError, r"stage 2 `foo\(2\)`: unknown op 'foo'"),
        ("max(0)", ValueError, r"stage 1 .*`kernel` must be >= 1"),
        ("max(3, padding=2)", ValueError, r"`padding` must be at most half"),
        ("max(2) || avg(2)", ValueError, "stage 2 is empty"),
        ("max(2", ValueError, "not a stage call"),
        ("max(__import__('os').getcwd())", ValueError, "must be a number"),
        ("avg(2, p=3)", ValueError, "unknown parameter 'p'"),
        ("max(2, 3, 4, 5, 6)", ValueError, "too many positional values"),
        ("adaptive_avg()", ValueError, "needs `output_size`"),
        ("max(2, ceil_mode=1)", TypeError, "`ceil_mode` must be true or false, got 1"),
        ("lp(2, p=0)", ValueError, "`p` of lp must be non-zero"),
        ("max(2, stride=2, stride=3)", ValueError, "given twice"),
        ("max(2.5)", TypeError, "`kernel` must be an int"),
        ("max", ValueError, "expected `op"),
    ],
)
def test_parse_errors_name_the_stage_and_word(text, error, match):
    with pytest.raises(error, match=match):
        Pipeline.parse(text)


def test_parse_never_evaluates(tmp_path):
    marker = tmp_path / "touched"
    with pytest.raises(ValueError):
        Pipeline.parse(f"max(open({str(marker)!r}, 'w'))")
    assert not marker.exists()


def test_from_file_text_and_tables(tmp_path):
    text = tmp_path / "text.toml"
    text.write_text('pipeline = "max(3, stride=2, padding=1) | avg(2)"\n')
    tables = tmp_path / "tables.toml"
    tables.write_text(
        '[[stages]]\nop = "max"\nkernel = 3\nstride = 2\npadding = 1\n\n'
        '[[stages]]\nop = "avg"\nkernel = [2, 2]\n'
    )
    assert Pipeline.from_file(text) == Pipeline.parse("max(3, stride=2, padding=1) | avg(2)")
    assert Pipeline.from_file(tables) == Pipeline.parse("max(3, stride=2, padding=1) | avg((2, 2))")


def test_from_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("pipeline = [")
    with pytest.raises(ValueError, match="bad.toml: not valid TOML"):
        Pipeline.from_file(bad)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text('[[stages]]\nop = "max"\nkernal = 3\n')
    match = r"wrong.toml: stage 1 \(max\): unknown parameter 'kernal'"
    with pytest.raises(ValueError, match=match):
        Pipeline.from_file(wrong)


def test_stage_objects_are_hashable_and_plain():
    stage = Stage.make("max", kernel=[2, 2], stride=None)
    assert stage.kwargs == {"kernel": (2, 2)}
    assert hash(Pipeline([stage])) == hash(Pipeline.parse("max((2, 2))"))


ops = st.sampled_from(["max", "min", "avg", "sum", "median", "lp"])


@st.composite
def stage_texts(draw):
    op = draw(ops)
    k = draw(st.integers(1, 5))
    s = draw(st.integers(1, 4))
    pad = draw(st.integers(0, k // 2))
    parts = [str(k), f"stride={s}", f"padding={pad}"]
    if draw(st.booleans()):
        parts.append("ceil_mode=True")
    if op == "lp":
        parts.append(f"p={draw(st.sampled_from(['1', '2', '3.5', 'inf']))}")
    return f"{op}({', '.join(parts)})"


@given(st.lists(stage_texts(), min_size=1, max_size=4))
def test_random_pipelines_round_trip(stages):
    pipe = Pipeline.parse(" | ".join(stages))
    assert Pipeline.parse(str(pipe)) == pipe
