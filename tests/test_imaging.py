"""poolcore.imaging.pool_item: alpha-weighted (premultiplied) pooling, linear light, the
output dtype and DPI, any pipeline-like object."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

from poolcore import Pipeline, pool
from poolcore import io as pio
from poolcore.imaging import pool_item
from poolcore.io import Item

SAMPLES = pathlib.Path(__file__).resolve().parent.parent / "sample_images"
RNG = np.random.default_rng(12345)
AVG2 = Pipeline.parse("avg(2)")


def u8(*shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


# ---------------------------------------------------------------------- dpi


def test_dpi_scaled_per_axis_by_the_pipeline():
    item = pio.read(SAMPLES / "photo.jpg")
    assert item.dpi == (300, 300)
    out = pool_item(item, Pipeline.parse("max((2, 3))"))
    assert out.array.shape == (200, 200, 3)
    assert out.dpi == pytest.approx((100, 150))


@pytest.mark.parametrize("text, dpi", [
    ("avg(7)", 300 / 7),  # 400x600 is no multiple of 7: the pitch is still 7 pixels
    ("max(3, stride=1)", 300),  # overlapping windows one pixel apart keep the pitch
    ("max(3, stride=2, padding=1, ceil_mode=True)", 150),
    ("adaptive_avg((100, 300))", (150, 75)),  # (x, y): 600/300 wide, 400/100 high
])
def test_dpi_divided_by_the_stride_not_the_size_ratio(text, dpi):
    out = pool_item(pio.read(SAMPLES / "photo.jpg"), Pipeline.parse(text))
    expected = dpi if isinstance(dpi, tuple) else (dpi, dpi)
    assert out.dpi == pytest.approx(expected)


# ---------------------------------------------------------------------- alpha


def test_alpha_weighted_average_matches_pillow_reduce():
    a = np.array([[[255, 0, 0, 255], [0, 255, 0, 0]]], np.uint8)
    item = Item(a, (0, 1), "image", mode="RGBA", format="PNG")
    out = pool_item(item, Pipeline.parse("avg((1, 2))"))
    np.testing.assert_array_equal(out.array, [[[255, 0, 0, 128]]])
    np.testing.assert_array_equal(out.array, np.asarray(Image.fromarray(a).reduce((2, 1))))


def test_alpha_weighted_is_the_exact_premultiplied_mean():
    a = u8(32, 48, 4)
    a[..., 3] = np.where(RNG.random((32, 48)) < 0.3, 0, a[..., 3])
    item = Item(a, (0, 1), "image", mode="RGBA", format="PNG")
    ours = pool_item(item, Pipeline.parse("avg(4)")).array.astype(int)
    blocks = a.astype(np.float64).reshape(8, 4, 12, 4, 4).transpose(0, 2, 1, 3, 4)
    blocks = blocks.reshape(8, 12, 16, 4)
    alpha = blocks[..., 3].sum(axis=-1)
    colour = (blocks[..., :3] * blocks[..., 3:]).sum(axis=2)
    colour = np.divide(colour, alpha[..., None], out=np.zeros_like(colour),
                       where=alpha[..., None] > 0)
    np.testing.assert_array_equal(ours[..., :3], np.floor(colour + 0.5))
    np.testing.assert_array_equal(ours[..., 3], np.floor(alpha / 16 + 0.5))
    # Pillow's reduce agrees up to its 8-bit premultiplied intermediate (exact where opaque)
    pillow = np.asarray(Image.fromarray(a).reduce(4)).astype(int)
    solid = pillow[..., 3] >= 128
    assert np.abs(ours - pillow)[solid].max() <= 2


def test_transparent_everywhere_window_has_colour_zero_and_max_is_per_channel():
    a = np.zeros((2, 4, 2), np.uint8)
    a[..., 0] = 200  # colour under alpha 0 in the left window
    a[:, 2:] = (90, 255)
    item = Item(a, (0, 1), "image", mode="LA", format="PNG")
    np.testing.assert_array_equal(pool_item(item, AVG2).array, [[[0, 0], [90, 255]]])
    # max/min only: channels independently, the hidden colour is what max picks
    np.testing.assert_array_equal(
        pool_item(item, Pipeline.parse("max(2)")).array, [[[200, 0], [90, 255]]])


def test_no_green_bleed_in_rgba_sample():
    item = pio.read(SAMPLES / "rgba.png")
    assert (item.array[item.array[..., 3] == 0][:, 1] == 255).all()  # hidden green
    ours = pool_item(item, Pipeline.parse("avg(4)")).array
    naive = pool(item.array, "avg", 4, axes=(0, 1))
    seen = ours[..., 3] > 0
    assert ours[seen][:, 1].max() <= 60  # the discs' own green is 30 and 60
    assert naive[seen][:, 1].max() > 150  # what the test guards against


def test_alpha_weighting_in_16_bit_is_exact():
    a = np.array([[[65535, 0, 0, 65535], [0, 65535, 0, 0]]], np.uint16)
    item = Item(a, (0, 1), "image", mode="RGBA;16", format="PNG")
    np.testing.assert_array_equal(
        pool_item(item, Pipeline.parse("avg((1, 2))")).array, [[[65535, 0, 0, 32768]]])
    # ties round up in alpha (14709.5) and colour, which float32 weights got wrong
    a = np.array([[[0, 23998], [0, 5421]]], np.uint16)
    out = pool_item(Item(a, (0, 1), "image", mode="LA;16"), Pipeline.parse("avg((1, 2))"))
    np.testing.assert_array_equal(out.array, [[[0, 14710]]])


def _window_reference(a: np.ndarray, k: int) -> np.ndarray:
    """Alpha-weighted avg over k x k windows, stride k, one window at a time, in Fractions."""
    from fractions import Fraction

    h, w, c = a.shape
    out = np.zeros((h // k, w // k, c), np.int64)
    for i in range(h // k):
        for j in range(w // k):
            win = a[i * k:(i + 1) * k, j * k:(j + 1) * k].reshape(-1, c).astype(object)
            weight = sum(win[:, -1])
            for ch in range(c - 1):
                mean = Fraction(sum(win[:, ch] * win[:, -1]), weight) if weight else 0
                out[i, j, ch] = int(mean + Fraction(1, 2))  # half up
            out[i, j, -1] = int(Fraction(weight, k * k) + Fraction(1, 2))
    return out


@pytest.mark.parametrize("dtype, mode", [(np.uint8, "LA"), (np.uint8, "RGBA"),
                                         (np.uint16, "RGBA;16")])
def test_alpha_weighted_avg_is_exact_ties_included(dtype, mode):
    top = np.iinfo(dtype).max
    c = 2 if mode.startswith("LA") else 4
    # few distinct values, so that many windows hold exact ties
    a = (RNG.integers(0, 5, (24, 36, c)) * (top // 4)).astype(dtype)
    a[..., -1][RNG.random((24, 36)) < 0.2] = 0
    out = pool_item(Item(a, (0, 1), "image", mode=mode), Pipeline.parse("avg(2)")).array
    np.testing.assert_array_equal(out, _window_reference(a, 2))


@pytest.mark.parametrize("pipeline", ["max(2)", "min(3, stride=2)", "median(3)", "sum(2)",
                                      "lp(2, p=3)", "avg(2) | avg(2)",
                                      "avg(3, stride=2, padding=1, count_include_pad=False)",
                                      "adaptive_avg((5, 7)) | max(2)"])
def test_an_opaque_alpha_channel_changes_nothing(pipeline):
    """Only avg weights by alpha; every other op pools each channel on its own (median as
    Pillow's MedianFilter does). So an opaque image pools as the same image without alpha."""
    rgb = u8(20, 28, 3)
    rgba = np.concatenate([rgb, np.full((20, 28, 1), 255, np.uint8)], axis=-1)
    pipe = Pipeline.parse(pipeline)
    plain = pool_item(Item(rgb, (0, 1), "image", mode="RGB"), pipe).array
    with_alpha = pool_item(Item(rgba, (0, 1), "image", mode="RGBA"), pipe).array
    np.testing.assert_array_equal(with_alpha[..., :3], plain)


def test_median_pools_each_channel_on_its_own():
    b = np.array([[[255, 255], [0, 255], [200, 60]]], np.uint8)
    item = Item(b, (0, 1), "image", mode="LA", format="PNG")
    np.testing.assert_array_equal(pool_item(item, Pipeline.parse("median((1, 3))")).array,
                                  [[[200, 255]]])


def test_every_stage_yields_the_images_dtype_with_or_without_alpha():
    # as two runs would: 1,2 -> 2 (1.5 up), 3,3 -> 3; then 2,3 -> 3 (2.5 up)
    x = np.array([[1, 2, 3, 3]], np.uint8)
    la = np.stack([x, np.full_like(x, 255)], axis=-1)
    pipe = Pipeline.parse("avg((1, 2)) | avg((1, 2))")
    assert pool_item(Item(x, (0, 1), "image", mode="L"), pipe).array.tolist() == [[3]]
    assert pool_item(Item(la, (0, 1), "image", mode="LA"), pipe).array.tolist() == [[[3, 255]]]
    assert pool_item(Item(la, (0, 1), "image", mode="LA"), pipe, linear_light=True
                     ).array[..., 1].tolist() == [[255]]


# ---------------------------------------------------------------------- linear light


def _checkerboard(n: int, top: int, dtype) -> np.ndarray:
    return ((np.indices((n, n)).sum(axis=0) % 2) * top).astype(dtype)


def test_linear_light_checkerboard():
    item = Item(_checkerboard(512, 255, np.uint8), (0, 1), "image", mode="L", format="PNG")
    naive = pool_item(item, Pipeline.parse("avg(16)"))
    linear = pool_item(item, Pipeline.parse("avg(16)"), linear_light=True)
    assert naive.array.shape == linear.array.shape == (32, 32)
    assert set(np.unique(naive.array)) <= {127, 128}
    assert set(np.unique(linear.array)) <= {187, 188}
    assert linear.array.dtype == np.uint8
    # max commutes with the transfer curve: no conversion, same result
    np.testing.assert_array_equal(
        pool_item(item, Pipeline.parse("max(16)"), linear_light=True).array, 255)


def test_linear_light_16_bit_and_rgba():
    item = Item(_checkerboard(64, 65535, np.uint16), (0, 1), "image", mode="I;16")
    out = pool_item(item, Pipeline.parse("avg(8)"), linear_light=True).array
    assert out.dtype == np.uint16 and abs(int(out[0, 0]) - round(0.7354 * 65535)) < 10
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = _checkerboard(2, 255, np.uint8)[..., None]
    rgba[..., 3] = 255
    rgba[1, 1] = (0, 255, 0, 0)  # transparent: neither its colour nor its darkness counts
    item = Item(rgba, (0, 1), "image", mode="RGBA")
    out = pool_item(item, AVG2, linear_light=True).array
    # linear mean of 0, 1, 1 = 2/3 -> sRGB 0.8360 -> 213; alpha 3/4 -> 191
    np.testing.assert_array_equal(out, [[[213, 213, 213, 191]]])


def test_linear_light_identity_and_skipped_for_float_and_cmyk():
    a = u8(16, 16, 3)
    item = Item(a, (0, 1), "image", mode="RGB")
    np.testing.assert_array_equal(
        pool_item(item, Pipeline.parse("avg(1)"), linear_light=True).array, a)
    for mode, arr in (("F", RNG.random((8, 8)).astype(np.float32)), ("CMYK", u8(8, 8, 4))):
        item = Item(arr, (0, 1), "image", mode=mode)
        np.testing.assert_array_equal(
            pool_item(item, AVG2, linear_light=True).array, pool_item(item, AVG2).array)


# ---------------------------------------------------------------------- dtypes, pipelines


def test_output_dtype_is_input_dtype_and_sum_saturates():
    a = np.full((4, 4), 200, np.uint8)
    item = Item(a, (0, 1), "image", mode="L")
    out = pool_item(item, Pipeline.parse("sum(2)")).array
    assert out.dtype == np.uint8 and (out == 255).all()
    out = pool_item(item, Pipeline.parse("lp(2, p=2)")).array
    assert out.dtype == np.uint8


def test_pooling_uses_the_backend_argument(monkeypatch):
    from poolcore import pipeline

    seen = []
    call = pipeline.Stage.__call__

    def spy(self, x, axes=None, backend="auto"):
        seen.append((self.op, axes, backend))
        return call(self, x, axes=axes, backend=backend)

    monkeypatch.setattr(pipeline.Stage, "__call__", spy)
    pool_item(Item(u8(2, 2), (0, 1), "image", mode="L"), AVG2, backend="numpy")
    assert seen == [("avg", (0, 1), "numpy")]
    seen.clear()
    pool_item(Item(u8(2, 2, 2), (0, 1), "image", mode="LA"), AVG2, backend="numpy")
    assert seen == [("sum", (0, 1), "numpy"), ("sum", (0, 1), "numpy"),
                    ("avg", (0, 1), "numpy")]


# ---------------------------------------------------------------------- RGBX storage


@pytest.mark.parametrize("pipeline", ["avg(2)", "max(3, stride=2, padding=1)", "median(3)",
                                      "sum(2)", "adaptive_avg((5, 7)) | min(2)"])
def test_rgb_in_rgbx_storage_pools_like_a_plain_array(pipeline):
    """An RGB image viewed in Pillow's 4-byte pixels is pooled with its padding byte and comes
    back in that layout; its RGB values are those of pooling the plain (h, w, 3) array."""
    from poolcore import _pilview

    full = u8(37, 53, 4)
    view = full[..., :3]
    assert _pilview.rgbx_base(view) is full
    pipe = Pipeline.parse(pipeline)
    out = pool_item(Item(array=view, axes=(0, 1), kind="image", mode="RGB"), pipe).array
    plain = pool_item(Item(array=view.copy(), axes=(0, 1), kind="image", mode="RGB"), pipe).array
    np.testing.assert_array_equal(out, plain, strict=True)
    if pipeline in ("avg(2)", "sum(2)"):  # outputs in C order keep the layout for the writer
        assert _pilview.rgbx_base(out) is not None


def test_rgbx_base_is_only_the_first_three_bytes_of_contiguous_pixels():
    from poolcore import _pilview

    full = u8(6, 5, 4)
    assert _pilview.rgbx_base(full[..., :3]) is full
    for a in (full, full[..., 1:], full[..., :2], full[:, ::2, :3], full[..., :3].copy(),
              full.astype(np.uint16)[..., :3], full[::-1][..., :3]):
        assert _pilview.rgbx_base(a) is None



# ---------------------------------------------------------------------- flatten


def test_flatten_is_exact_for_every_alpha_mode():
    from fractions import Fraction

    from poolcore.imaging import flatten

    for mode, dtype, c in (("RGBA", np.uint8, 4), ("LA", np.uint8, 2),
                           ("RGBA;16", np.uint16, 4), ("LA;16", np.uint16, 2)):
        top = np.iinfo(dtype).max
        a = RNG.integers(0, top + 1, (5, 7, c)).astype(dtype)
        for background in ((200, 200, 200), (10, 20, 30)):
            out = flatten(Item(a, (0, 1), "image", mode=mode), background)
            gray = c == 2 and background[0] == background[1] == background[2]
            assert out.mode == {(False, False): "RGB", (True, False): "L",
                                (False, True): "RGB;16", (True, True): "I;16"}[
                                    (gray, dtype == np.uint16)]
            want = np.zeros(out.array.shape, np.int64).reshape(5, 7, -1)
            for i, j in np.ndindex(5, 7):
                alpha = int(a[i, j, -1])
                for ch in range(want.shape[-1]):
                    colour = int(a[i, j, min(ch, c - 2)])
                    bg = background[ch] * (top // 255)
                    want[i, j, ch] = int(Fraction(colour * alpha + bg * (top - alpha), top)
                                         + Fraction(1, 2))
            np.testing.assert_array_equal(out.array.reshape(want.shape), want)
    rgb = u8(3, 3, 3)
    item = Item(rgb, (0, 1), "image", mode="RGB")
    assert flatten(item, (255, 255, 255)) is item  # nothing to flatten


def test_flatten_decides_per_frame():
    from poolcore.imaging import flatten

    la = np.array([[[100, 0], [100, 255]]], np.uint8)
    page16 = np.array([[1000, 2000]], np.uint16)  # its last column is not alpha
    item = Item(la, (0, 1), "image", mode="LA", frames=[la, page16])
    out = flatten(item, (255, 255, 255))
    assert out.mode == "L"
    np.testing.assert_array_equal(out.frames[0], [[255, 100]])
    assert out.frames[1] is page16
