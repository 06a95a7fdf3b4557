"""poolcore.io: reading and writing images and .npy files, with their metadata (pooled with
poolcore.imaging.pool_item in between; its own rules are tested in test_imaging.py)."""

from __future__ import annotations

import io
import os
import pathlib
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps, TiffImagePlugin, TiffTags

from poolcore import Pipeline, _wide16, atomic, pool
from poolcore import io as pio
from poolcore.imaging import pool_item

SAMPLES = pathlib.Path(__file__).resolve().parent.parent / "sample_images"
RNG = np.random.default_rng(12345)
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
AVG2 = Pipeline.parse("avg(2)")


def encode_pil(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def save(tmp_path, name: str, data: bytes) -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def u8(*shape):
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def u16(*shape):
    return RNG.integers(0, 65536, shape, dtype=np.uint16)


def opened(path) -> Image.Image:
    """Image.open without keeping the file open (ResourceWarnings are errors here)."""
    return Image.open(io.BytesIO(pathlib.Path(path).read_bytes()))


def files_in(directory) -> list[str]:
    return sorted(os.listdir(directory))


# ---------------------------------------------------------------------- modes


def _image(kind: str) -> Image.Image:
    if kind == "L":
        return Image.fromarray(u8(8, 6))
    if kind == "LA":
        return Image.fromarray(u8(8, 6, 2))
    if kind == "RGB":
        return Image.fromarray(u8(8, 6, 3))
    if kind == "RGBA":
        return Image.fromarray(u8(8, 6, 4))
    if kind == "CMYK":
        return Image.frombuffer("CMYK", (6, 8), u8(8, 6, 4), "raw", "CMYK", 0, 1)
    if kind == "I;16":
        return Image.fromarray(u16(8, 6))
    if kind == "I":
        return Image.fromarray(RNG.integers(-(2**31), 2**31 - 1, (8, 6), dtype=np.int32))
    if kind == "F":
        return Image.fromarray(RNG.standard_normal((8, 6)).astype(np.float32) * 1e4)
    if kind == "1":
        return Image.fromarray(u8(8, 6) > 127)
    if kind.startswith("P"):
        im = Image.fromarray(u8(8, 6) % 4).convert("L").point(lambda v: v)
        p = Image.new("P", (6, 8))
        p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * (252 * 3))
        p.paste(im)
        return p
    raise AssertionError(kind)


LOSSLESS = [
    # (mode made, format, mode read, dtype, channels)
    ("L", "PNG", "L", np.uint8, None),
    ("LA", "PNG", "LA", np.uint8, 2),
    ("RGB", "PNG", "RGB", np.uint8, 3),
    ("RGBA", "PNG", "RGBA", np.uint8, 4),
    ("I;16", "PNG", "I;16", np.uint16, None),
    ("L", "TIFF", "L", np.uint8, None),
    ("LA", "TIFF", "LA", np.uint8, 2),
    ("RGB", "TIFF", "RGB", np.uint8, 3),
    ("RGBA", "TIFF", "RGBA", np.uint8, 4),
    ("CMYK", "TIFF", "CMYK", np.uint8, 4),
    ("I;16", "TIFF", "I;16", np.uint16, None),
    ("I", "TIFF", "I", np.int32, None),
    ("F", "TIFF", "F", np.float32, None),
    ("L", "BMP", "L", np.uint8, None),
    ("RGB", "BMP", "RGB", np.uint8, 3),
    ("1", "PNG", "L", np.uint8, None),
    ("P", "PNG", "RGB", np.uint8, 3),
    ("P", "GIF", "RGB", np.uint8, 3),
]


@pytest.mark.parametrize("made, fmt, mode, dtype, channels", LOSSLESS)
def test_mode_round_trip_lossless(tmp_path, made, fmt, mode, dtype, channels):
    im = _image(made)
    src = save(tmp_path, f"in.{fmt.lower()}", encode_pil(im, fmt))
    item = pio.read(src)
    shape = (8, 6) if channels is None else (8, 6, channels)
    assert (item.kind, item.mode, item.format) == ("image", mode, fmt)
    assert item.array.dtype == dtype and item.array.shape == shape and item.axes == (0, 1)
    pooled = pool_item(item, AVG2)
    assert pooled.array.dtype == dtype and pooled.array.shape == (4, 3) + shape[2:]
    out = pio.write(pooled, tmp_path / f"out.{fmt.lower()}")
    back = pio.read(out)
    assert back.mode == mode and back.format == fmt
    if fmt == "GIF":  # quantised to a palette on write: only the shape is promised
        assert back.array.shape == pooled.array.shape
    else:
        np.testing.assert_array_equal(back.array, pooled.array)
    # the input item was not touched
    np.testing.assert_array_equal(pio.read(src).array, item.array)


@pytest.mark.parametrize("made, fmt, mode, channels", [
    ("RGB", "JPEG", "RGB", 3), ("L", "JPEG", "L", None), ("CMYK", "JPEG", "CMYK", 4),
    ("RGB", "WEBP", "RGB", 3), ("RGBA", "WEBP", "RGBA", 4),
])
def test_mode_round_trip_lossy(tmp_path, made, fmt, mode, channels):
    data = encode_pil(_image(made), fmt)
    item = pio.read(data)
    shape = (8, 6) if channels is None else (8, 6, channels)
    assert (item.mode, item.array.dtype, item.array.shape) == (mode, np.uint8, shape)
    pooled = pool_item(item, AVG2)
    back = pio.read(pio.write_bytes(pooled))
    assert (back.mode, back.format, back.array.shape) == (mode, fmt, (4, 3) + shape[2:])


def test_big_endian_16_bit_tiff_is_native_uint16():
    a = u16(5, 7)
    im = Image.frombytes("I;16B", (7, 5), a.astype(">u2").tobytes())
    data = encode_pil(im, "TIFF")
    assert data[:2] == b"MM" and Image.open(io.BytesIO(data)).mode == "I;16B"
    item = pio.read(data)
    assert item.mode == "I;16" and item.array.dtype == np.dtype("uint16")
    np.testing.assert_array_equal(item.array, a)


def test_palette_with_transparency_becomes_rgba():
    p = _image("P")
    item = pio.read(encode_pil(p, "PNG", transparency=3))
    assert item.mode == "RGBA"
    idx = np.asarray(p)
    np.testing.assert_array_equal(item.array[..., 3], np.where(idx == 3, 0, 255))
    np.testing.assert_array_equal(item.array[idx == 0][:, :3], [[255, 0, 0]] * (idx == 0).sum())


def test_gray_and_rgb_with_a_transparent_colour_gain_alpha():
    gray = Image.fromarray(np.array([[0, 7], [7, 9]], np.uint8))
    item = pio.read(encode_pil(gray, "PNG", transparency=7))
    assert item.mode == "LA"
    np.testing.assert_array_equal(item.array[..., 1], [[255, 0], [0, 255]])
    rgb = Image.fromarray(np.array([[[1, 2, 3], [4, 5, 6]]], np.uint8))
    item = pio.read(encode_pil(rgb, "PNG", transparency=(4, 5, 6)))
    assert item.mode == "RGBA"
    np.testing.assert_array_equal(item.array[..., 3], [[255, 0]])


def test_palette_pooling_averages_colours_not_indices():
    # indices 0 (red) and 2 (blue) average to purple; their index mean (1) would be green
    p = Image.new("P", (2, 1))
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 2)
    item = pio.read(encode_pil(p, "PNG"))
    out = pool_item(item, Pipeline.parse("avg((1, 2))"))
    np.testing.assert_array_equal(out.array, [[[128, 0, 128]]])


# ---------------------------------------------------------------------- 16-bit colour


def _png_filter(raw: np.ndarray, bpp: int, kinds) -> bytes:
    """PNG-filter rows of bytes with the given filter types (test encoder: loops are fine)."""
    out = []
    prev = np.zeros(raw.shape[1], np.int64)
    for row, kind in zip(raw.astype(np.int64), kinds):
        left = np.concatenate([np.zeros(bpp, np.int64), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int64), prev[:-bpp]])
        if kind == 0:
            f = row
        elif kind == 1:
            f = row - left
        elif kind == 2:
            f = row - prev
        elif kind == 3:
            f = row - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            f = row - pred
        out.append(bytes([kind]) + (f % 256).astype(np.uint8).tobytes())
        prev = row
    return b"".join(out)


def png16(a: np.ndarray, colour_type: int, *, interlace=False, trns=None) -> bytes:
    """A 16-bit PNG with every filter type in turn (and Adam7 if asked)."""
    h, w = a.shape[:2]
    c = 1 if a.ndim == 2 else a.shape[2]
    raw = a.astype(">u2").reshape(h, w * c).view(np.uint8).reshape(h, w * c * 2)
    bpp = 2 * c
    if not interlace:
        data = _png_filter(raw, bpp, [i % 5 for i in range(h)])
    else:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                  (1, 0, 2, 2), (0, 1, 1, 2)]
        data = b""
        pix = raw.reshape(h, w, bpp)
        for x0, y0, dx, dy in passes:
            sub = pix[y0::dy, x0::dx]
            if sub.size:
                rows = sub.reshape(sub.shape[0], -1)
                data += _png_filter(rows, bpp, [(i + 2) % 5 for i in range(rows.shape[0])])

    chunk = _chunk
    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, int(interlace))
    extra = chunk(b"tRNS", struct.pack(">3H", *trns)) if trns is not None else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra
            + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("interlace", [False, True], ids=["progressive", "adam7"])
@pytest.mark.parametrize("c, colour_type, mode", [(3, 2, "RGB;16"), (4, 6, "RGBA;16"),
                                                  (2, 4, "LA;16")])
def test_16_bit_colour_png_is_read_losslessly(interlace, c, colour_type, mode):
    a = u16(11, 13, c)
    assert Image.open(io.BytesIO(png16(a, colour_type))).mode in ("RGB", "RGBA")  # Pillow: 8-bit
    item = pio.read(png16(a, colour_type, interlace=interlace))
    assert item.mode == mode and item.array.dtype == np.uint16
    np.testing.assert_array_equal(item.array, a)


def test_16_bit_rgb_png_with_transparent_colour():
    a = u16(4, 5, 3)
    a[1, 2] = (1000, 2000, 3000)
    item = pio.read(png16(a, 2, trns=(1000, 2000, 3000)))
    assert item.mode == "RGBA;16"
    expected = np.full((4, 5), 65535)
    expected[1, 2] = 0
    np.testing.assert_array_equal(item.array[..., 3], expected)


def tiff16(a: np.ndarray, byteorder: bytes) -> bytes:
    """An uncompressed 16-bit RGB(A) TIFF in either byte order (Pillow cannot write one)."""
    h, w, c = a.shape
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=byteorder)
    for tag, value in ((256, w), (257, h), (258, (16,) * c), (259, 1), (262, 2), (277, c),
                       (278, h), (279, a.nbytes), (284, 1)):
        ifd[tag] = value
    if c == 4:
        ifd[338] = 2
    ifd[273] = 0
    ifd.tagtype[273] = TiffTags.LONG
    head = byteorder + (b"*\x00" if byteorder == b"II" else b"\x00*")
    head += struct.pack("<I" if byteorder == b"II" else ">I", 8)
    return head + ifd.tobytes(8) + a.astype("<u2" if byteorder == b"II" else ">u2").tobytes()


@pytest.mark.parametrize("byteorder", [b"II", b"MM"])
@pytest.mark.parametrize("c", [3, 4])
def test_16_bit_colour_tiff_is_read_losslessly(byteorder, c):
    a = u16(6, 9, c)
    item = pio.read(tiff16(a, byteorder))
    assert item.mode == ("RGB;16" if c == 3 else "RGBA;16")
    np.testing.assert_array_equal(item.array, a)


def test_16_bit_gray_alpha_tiff_is_refused_clearly(tmp_path):
    # Pillow cannot read a 16-bit gray+alpha TIFF back, so io refuses to write one.
    item = pio.Item(u16(4, 4, 2), (0, 1), "image", mode="LA;16", format="PNG")
    with pytest.raises(pio.WriteError, match=r"x.tiff: TIFF cannot hold mode LA;16 .*--format png"):
        pio.write(item, tmp_path / "x.tiff")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fmt", "c", "mode"),
    [("png", 3, "RGB;16"), ("png", 4, "RGBA;16"), ("png", 2, "LA;16"),
     ("tiff", 3, "RGB;16"), ("tiff", 4, "RGBA;16")],
)
def test_16_bit_colour_writes_back_losslessly_with_metadata(tmp_path, fmt, c, mode):
    a = u16(10, 12, c)
    exif = Image.Exif()
    exif[0x010F] = "maker"
    exif.get_ifd(0x8769)[0x9003] = "2020:01:01 00:00:00"
    item = pio.Item(a, (0, 1), "image", mode=mode, format="PNG", dpi=(300.0, 100.0),
                    icc_profile=SRGB, exif=exif.tobytes())
    pooled = pool_item(item, AVG2)
    back = pio.read(pio.write(pooled, tmp_path / f"out.{fmt}"))
    assert back.mode == mode
    np.testing.assert_array_equal(back.array, pooled.array)
    assert back.icc_profile == SRGB
    assert back.dpi == pytest.approx((150, 50), abs=0.05)  # PNG: dots per metre
    e = Image.Exif()
    e.load(back.exif)
    assert e[0x010F] == "maker" and e.get_ifd(0x8769)[0x9003] == "2020:01:01 00:00:00"


def test_16_bit_colour_to_jpeg_is_refused(tmp_path):
    item = pio.Item(u16(4, 4, 3), (0, 1), "image", mode="RGB;16", format="PNG")
    with pytest.raises(pio.WriteError, match=r"out\.jpg: JPEG cannot hold mode RGB;16 .*png or"):
        pio.write(item, tmp_path / "out.jpg")
    assert files_in(tmp_path) == []


# ---------------------------------------------------------------------- metadata


def test_exif_rotation_applied_and_reset(tmp_path):
    item = pio.read(SAMPLES / "rotated_exif6.jpg")
    raw = opened(SAMPLES / "rotated_exif6.jpg")
    assert raw.size == (400, 300) and raw.getexif()[0x0112] == 6
    assert item.array.shape == (400, 300, 3) and item.orientation == 6  # upright: portrait
    expected = np.asarray(ImageOps.exif_transpose(raw))
    np.testing.assert_array_equal(item.array, expected)
    pooled = pool_item(item, AVG2)
    out = pio.write(pooled, tmp_path / "out.jpg")
    back = opened(out)
    assert back.size == (150, 200)
    exif = back.getexif()
    assert exif[0x0112] == 1 and exif[0x010F] == "poolcore sample maker"
    assert exif.get_ifd(0x8769)[0x9003] == "2024:06:01 12:00:00"
    assert back.info["icc_profile"] == item.icc_profile
    assert back.info["dpi"] == (100, 100)
    assert pio.read(out).orientation == 1


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_matches_exif_transpose(orientation):
    a = u8(6, 10, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode_pil(Image.fromarray(a), "PNG", exif=exif.tobytes(), dpi=(100, 200))
    item = pio.read(data)
    expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    np.testing.assert_array_equal(item.array, np.asarray(expected))
    turned = orientation >= 5
    assert item.dpi == pytest.approx((200, 100) if turned else (100, 200), abs=0.01)


def test_exif_orientation_applied_to_16_bit_colour():
    a = u16(4, 6, 3)
    exif = Image.Exif()
    exif[0x0112] = 8
    raw = png16(a, 2)
    with_exif = raw[:-12] + _chunk(b"eXIf", exif.tobytes()[6:]) + raw[-12:]  # before IEND
    item = pio.read(with_exif)
    assert item.orientation == 8
    np.testing.assert_array_equal(item.array, np.rot90(a))  # ImageOps' ROTATE_90


def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.mark.parametrize("fmt", ["png", "jpg", "tif", "webp"])
def test_icc_exif_dpi_carried_and_dpi_scaled(tmp_path, fmt):
    exif = Image.Exif()
    exif[0x010F] = "cam"
    exif[0x0112] = 1
    exif[282] = 300
    exif[283] = 300
    exif.get_ifd(0x8769)[0xA002] = 12
    exif.get_ifd(0x8769)[0xA003] = 8
    src = Image.fromarray(u8(8, 12, 3))
    data = encode_pil(src, "PNG", icc_profile=SRGB, exif=exif.tobytes(), dpi=(300, 300))
    item = pio.read(data)
    pooled = pool_item(item, Pipeline.parse("avg(4)"))
    assert pooled.dpi == pytest.approx((75, 75), abs=0.01)
    back = opened(pio.write(pooled, tmp_path / f"out.{fmt}"))
    assert back.info["icc_profile"] == SRGB
    e = back.getexif()
    assert e[0x010F] == "cam"
    assert e.get_ifd(0x8769)[0xA002] == 3 and e.get_ifd(0x8769)[0xA003] == 2
    if fmt != "webp":  # WebP has no DPI field
        assert back.info["dpi"] == pytest.approx((75, 75), abs=0.05)
        if fmt != "tif":
            assert float(e[282]) == pytest.approx(75)


@pytest.mark.parametrize("fmt", ["png", "jpg"])
@pytest.mark.parametrize("unit, value", [(2, 300), (3, 118.11)])  # 300 dpi, in inches or cm
def test_exif_resolution_is_scaled_in_its_own_unit(tmp_path, fmt, unit, value):
    """An image whose resolution is only in its EXIF (a PNG without pHYs, a JPEG without JFIF
    density) is read with that DPI; pooled by 2, its outputs declare half of it, and the EXIF
    keeps its unit (a centimetre value is not overwritten by an inch one)."""
    exif = Image.Exif()
    exif[296] = unit
    exif[282] = exif[283] = value
    src = Image.fromarray(u8(8, 12, 3))
    data = encode_pil(src, "PNG" if fmt == "png" else "JPEG", exif=exif.tobytes())
    with Image.open(io.BytesIO(data)) as check:
        assert fmt == "jpg" or "dpi" not in check.info  # no pHYs: EXIF alone says it
    item = pio.read(data)
    assert item.dpi == pytest.approx((300, 300), abs=0.05)
    back = opened(pio.write(pool_item(item, Pipeline.parse("avg(2)")), tmp_path / f"o.{fmt}"))
    assert back.info["dpi"] == pytest.approx((150, 150), abs=0.05)
    e = back.getexif()
    assert int(e[296]) == unit
    assert float(e[282]) == pytest.approx(value / 2, abs=0.01)


def test_tiff_without_resolution_has_no_dpi():
    assert pio.read(encode_pil(Image.fromarray(u8(4, 4)), "TIFF")).dpi is None


def _tiff_tags(**tags) -> TiffImagePlugin.ImageFileDirectory_v2:
    ifd = TiffImagePlugin.ImageFileDirectory_v2()
    for tag, value in tags.items():
        ifd[int(tag[1:])] = value
    return ifd


@pytest.mark.parametrize("kind", ["L", "RGB;16"])
def test_tiff_unitless_resolution_is_kept_and_scaled(tmp_path, kind):
    """ImageJ and tifffile store a calibration as pixels per micron with ResolutionUnit 1
    (none): pooled by 2, the output TIFF says half of it, still without a unit; formats that
    cannot say "no unit" get no resolution rather than a wrong one in inches."""
    tags = _tiff_tags(t282=TiffImagePlugin.IFDRational(5), t283=TiffImagePlugin.IFDRational(4),
                      t296=1)
    if kind == "L":
        data = encode_pil(Image.fromarray(u8(8, 12)), "TIFF", tiffinfo=tags)
    else:
        buf = io.BytesIO()
        _wide16.tiff16(u16(8, 12, 3), buf, (5, 4), None, None, keep_tags=(), unit=1)
        data = buf.getvalue()
    item = pio.read(data)
    assert (item.dpi, item.resolution_unit) == ((5, 4), "none")
    pooled = pool_item(item, AVG2)
    with opened(pio.write(pooled, tmp_path / "o.tif")) as back:
        assert (float(back.tag_v2[282]), float(back.tag_v2[283])) == (2.5, 2.0)
        assert back.tag_v2[296] == 1
    with opened(pio.write(pooled, tmp_path / "o.png")) as png:
        assert "dpi" not in png.info


def test_tiff_orientation_turns_its_dpi_too():
    """Pillow turns an oriented TIFF upright as it loads it; its resolution tags are the
    file's, so a quarter turn swaps them, as for a JPEG."""
    tags = _tiff_tags(t274=6, t282=TiffImagePlugin.IFDRational(300),
                      t283=TiffImagePlugin.IFDRational(100), t296=2)
    item = pio.read(encode_pil(Image.fromarray(u8(4, 6)), "TIFF", tiffinfo=tags))
    assert item.array.shape == (6, 4)
    assert item.dpi == (100, 300) and item.orientation == 6


IMAGEJ = "ImageJ=1.54f\nimages=6\nslices=6\nunit=micron\nspacing=0.5\nloop=false\n"


def test_imagej_stack_description_follows_the_pooled_volume(tmp_path):
    pages = [Image.fromarray(np.full((8, 10), i * 1000, np.uint16)) for i in range(6)]
    tags = _tiff_tags(t270=IMAGEJ, t282=TiffImagePlugin.IFDRational(5),
                      t283=TiffImagePlugin.IFDRational(5), t296=1)
    data = encode_pil(pages[0], "TIFF", tiffinfo=tags, save_all=True, append_images=pages[1:])
    pooled = pool_item(pio.read(data, layout="dhw"), Pipeline.parse("avg((3, 2, 2))"))
    with opened(pio.write(pooled, tmp_path / "o.tif")) as back:
        assert back.n_frames == 2
        assert back.tag_v2[270] == IMAGEJ.replace("=6", "=2").replace("0.5", "1.5")
        assert float(back.tag_v2[282]) == 2.5 and back.tag_v2[296] == 1
    # pooled page by page, the stack keeps its six slices and its description
    flat = pool_item(pio.read(data), AVG2)
    with opened(pio.write(flat, tmp_path / "flat.tif")) as back:
        assert back.n_frames == 6 and back.tag_v2[270] == IMAGEJ


def test_imagej_hyperstack_is_not_made_a_volume():
    """A hyperstack's pages interleave channels (and time points): averaging them along the
    pages would mix the channels."""
    pages = [Image.fromarray(u8(4, 4)) for _ in range(4)]
    desc = "ImageJ=1.54f\nimages=4\nchannels=2\nslices=2\nhyperstack=true\n"
    data = encode_pil(pages[0], "TIFF", tiffinfo=_tiff_tags(t270=desc), save_all=True,
                      append_images=pages[1:])
    with pytest.raises(pio.ReadError, match=r"ImageJ hyperstack \(2 channel\(s\), 2 slice"):
        pio.read(data, layout="dhw")
    assert pio.read(data).layout == "hw"  # page by page it is fine


# ---------------------------------------------------------------------- frames


def test_animated_gif_every_frame_with_durations(tmp_path):
    item = pio.read(SAMPLES / "animated.gif")
    assert len(item.frames) == 4 and item.frames[0] is item.array
    assert item.durations == [80, 120, 160, 200] and item.loop == 0
    assert all(f.shape == (120, 160, 3) for f in item.frames)
    pooled = pool_item(item, AVG2)
    assert [f.shape for f in pooled.frames] == [(60, 80, 3)] * 4
    for fmt in ("gif", "webp", "png"):
        back = pio.read(pio.write(pooled, tmp_path / f"out.{fmt}"))
        assert len(back.frames) == 4, fmt
        assert back.durations == [80, 120, 160, 200] and back.loop == 0, fmt
        assert back.array.shape == (60, 80, 3)


def test_an_animation_that_plays_once_still_plays_once(tmp_path):
    frames = [Image.new("RGB", (8, 8), (i * 40, 0, 0)) for i in range(3)]
    data = encode_pil(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=90)
    pooled = pool_item(pio.read(data), AVG2)
    assert pooled.loop is None  # a GIF without a loop count plays once
    for fmt, once in (("gif", None), ("webp", 1), ("png", 1)):  # WebP, APNG: 0 is forever
        with Image.open(pio.write(pooled, tmp_path / f"once.{fmt}")) as im:
            assert im.info.get("loop") == once, fmt


def test_animated_webp_rgba_frames(tmp_path):
    frames = [Image.fromarray(u8(10, 12, 4)) for _ in range(3)]
    data = encode_pil(frames[0], "WEBP", save_all=True, append_images=frames[1:],
                      duration=[50, 60, 70], loop=3, lossless=True)
    item = pio.read(data)
    assert item.mode == "RGBA" and len(item.frames) == 3
    assert item.durations == [50, 60, 70] and item.loop == 3
    for got, made in zip(item.frames, frames):
        a = np.asarray(made)
        visible = a[..., 3] > 0  # WebP may drop the colour under alpha 0
        np.testing.assert_array_equal(got[visible], a[visible])
    back = pio.read(pio.write(pool_item(item, AVG2), tmp_path / "out.webp"))
    assert len(back.frames) == 3 and back.durations == [50, 60, 70] and back.loop == 3


def test_gif_with_transparency_is_rgba_in_every_frame(tmp_path):
    frames = []
    for i in range(3):
        a = np.zeros((16, 16, 4), np.uint8)
        a[4:12, 2 + 3 * i : 6 + 3 * i] = (250, 200, 0, 255)
        frames.append(Image.fromarray(a))
    data = encode_pil(frames[0], "GIF", save_all=True, append_images=frames[1:],
                      duration=[100, 100, 100], disposal=2)
    item = pio.read(data)
    assert item.mode == "RGBA" and len(item.frames) == 3
    for i, f in enumerate(item.frames):
        assert f.shape == (16, 16, 4)
        assert f[0, 0, 3] == 0 and f[8, 3 + 3 * i, 3] == 255
    back = pio.read(pio.write(item, tmp_path / "out.gif"))
    for i, f in enumerate(back.frames):  # cleared between frames: no trail of old balls
        assert f[8, 3 + 3 * i, 3] == 255
        if i:
            assert f[8, 3 * i - 1, 3] == 0


def test_multipage_tiff_pages_of_different_sizes_and_modes(tmp_path):
    pages = [Image.fromarray(u8(4, 5)), Image.fromarray(np.ones((6, 8), np.float32))]
    data = encode_pil(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    item = pio.read(data)
    assert [(f.shape, f.dtype) for f in item.frames] == [((4, 5), np.uint8), ((6, 8), np.float32)]
    pooled = pool_item(item, AVG2)
    back = pio.read(pio.write(pooled, tmp_path / "out.tif"))
    assert [(f.shape, f.dtype) for f in back.frames] == [((2, 2), np.uint8), ((3, 4), np.float32)]
    with pytest.raises(pio.WriteError, match="JPEG holds one image but this has 2 frames"):
        pio.write(pooled, tmp_path / "out.jpg")


def test_each_page_is_pooled_in_its_own_mode_and_cmyk_is_not_mixed():
    # page 1's alpha is alpha, not sRGB gray (the first page is I;16, without alpha)
    gray = Image.fromarray(np.full((4, 4), 3000, np.uint16))
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 100
    rgba[..., 3] = [[64, 128] * 2] * 4
    data = encode_pil(gray, "TIFF", save_all=True, append_images=[Image.fromarray(rgba)])
    item = pio.read(data)
    out = pool_item(item, AVG2, linear_light=True)
    np.testing.assert_array_equal(out.frames[1][..., 3], 96)
    np.testing.assert_array_equal(out.frames[1][..., :3], 100)
    # CMYK and RGBA frames look alike (4 x uint8): such a file is refused, not misread
    data = encode_pil(Image.fromarray(rgba), "TIFF", save_all=True,
                      append_images=[Image.new("CMYK", (4, 4))])
    with pytest.raises(pio.ReadError, match=r"stack\.tif: its frames have different modes "
                       r"\(RGBA, CMYK\); a CMYK frame must not be mixed"):
        pio.read(data, name="stack.tif")


def test_layout_dhw_reads_a_tiff_stack_as_one_volume(tmp_path):
    vol = RNG.integers(0, 65536, (6, 8, 10)).astype(np.uint16)
    pages = [Image.fromarray(p) for p in vol]
    data = encode_pil(pages[0], "TIFF", save_all=True, append_images=pages[1:],
                      compression="tiff_lzw")
    item = pio.read(data, layout="dhw")
    assert item.layout == "dhw" and item.axes == (0, 1, 2) and item.mode == "I;16"
    np.testing.assert_array_equal(item.array, vol)
    assert len(item.pages) == 6 and item.pixels == vol.size
    pooled = pool_item(item, AVG2)  # 2x2x2, exact: a mean of integers rounded half up
    sums = vol.astype(np.int64).reshape(3, 2, 4, 2, 5, 2).sum(axis=(1, 3, 5))
    np.testing.assert_array_equal(pooled.array, (2 * sums + 8) // 16)
    back = pio.read(pio.write(pooled, tmp_path / "small.tif"), layout="dhw")
    np.testing.assert_array_equal(back.array, pooled.array)
    assert back.compression == "tiff_lzw"
    assert pio.read(pio.write(pooled, tmp_path / "small.npy")).array.shape == (3, 4, 5)
    # without the layout the pages are frames, each pooled in 2-D
    assert [f.shape for f in pool_item(pio.read(data), AVG2).frames] == [(4, 5)] * 6
    # pages that do not stack
    data = encode_pil(pages[0], "TIFF", save_all=True, append_images=[Image.new("L", (10, 8))])
    with pytest.raises(pio.ReadError, match=r"--layout dhw stacks its pages into a volume, but "
                       r"page 2 is L \(8, 10\) and page 1 I;16 \(8, 10\)"):
        pio.read(data, layout="dhw")


def test_layout_dhw_is_for_stacks_of_pages_and_pools_them_as_frames_are():
    # a single image (a PNG preview beside the stacks) stays an image: there is no D axis
    png = encode_pil(Image.fromarray(u8(8, 10)), "PNG")
    assert pio.read(png, layout="dhw").layout == "hw"
    # alpha-weighted and in linear light, as a frame would be
    rgba = np.zeros((2, 4, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 0
    rgba[0, 0, 0] = (0, 0, 255, 255)  # one opaque blue pixel per 2x2x2 window... in one
    pages = [Image.fromarray(p) for p in rgba]
    data = encode_pil(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    item = pio.read(data, layout="dhw")
    assert item.layout == "dhw" and item.mode == "RGBA"
    out = pool_item(item, AVG2).array
    assert out.shape == (1, 2, 2, 4)
    np.testing.assert_array_equal(out[0, 0, 0], [0, 0, 255, 32])  # no red bleeds in
    gray = np.stack([np.tile([0, 255], (2, 1)).astype(np.uint8)] * 2)  # 2 pages of 2x2
    pages = [Image.fromarray(p) for p in gray]
    data = encode_pil(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    linear = pool_item(pio.read(data, layout="dhw"), AVG2, linear_light=True).array
    assert linear.reshape(-1).tolist() == [188]  # the same as the page alone in linear light


def test_a_tiff_with_a_small_page_after_a_large_one_is_counted_as_it_is():
    pages = [Image.new("L", (100, 100)), Image.new("L", (10, 10))]  # an image + its thumbnail
    data = encode_pil(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert len(pio.read(data, max_pixels=10_100).frames) == 2
    with pytest.raises(pio.ReadError, match="the first 2 already hold 10,100 pixels"):
        pio.read(data, max_pixels=10_099)


# ---------------------------------------------------------------------- decompression bombs


def test_bomb_guard_on_by_default_and_max_pixels_raises_it(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    path = save(tmp_path, "big.png", encode_pil(Image.new("L", (50, 50)), "PNG"))  # 2500 px
    with pytest.raises(pio.ReadError, match=r"big\.png: image is 50x50 = 2,500 pixels, over "
                       r"the limit of 2,000 .*--max-pixels 2500"):
        pio.read(path)
    assert pio.read(path, max_pixels=2500).array.shape == (50, 50)
    assert Image.MAX_IMAGE_PIXELS == 1000  # restored
    with pytest.raises(pio.ReadError, match="limit of 2,400 pixels.*--max-pixels 2500"):
        pio.read(path, max_pixels=2400)
    # Pillow's warning band (1x to 2x its limit) is accepted quietly (warnings are errors
    # here), without a warnings filter: that is process state, which a read on a batch's
    # reader thread would race on with the caller's own catch_warnings (Python < 3.14)
    import warnings

    def no_filters(*args, **kwargs):
        raise AssertionError("a read changed the process's warning filters")

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    monkeypatch.setattr(warnings, "catch_warnings", no_filters)
    monkeypatch.setattr(warnings, "simplefilter", no_filters)
    assert pio.read(path).array.shape == (50, 50)
    assert Image.MAX_IMAGE_PIXELS == 2000


def test_bomb_guard_checks_every_frame(monkeypatch):
    small, big = Image.new("L", (10, 10)), Image.new("L", (40, 40))
    data = encode_pil(small, "TIFF", save_all=True, append_images=[big])
    with pytest.raises(pio.ReadError, match="40x40 = 1,600 pixels.*--max-pixels 1600"):
        pio.read(data, max_pixels=500)


def test_bomb_guard_counts_the_pixels_of_all_frames():
    # A small file of many large frames: every frame is decoded and pooled at once.
    frames = [Image.new("L", (30, 20), i * 10) for i in range(8)]
    data = encode_pil(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert len(pio.read(data, max_pixels=4800).frames) == 8
    with pytest.raises(pio.ReadError, match=r"x\.gif: its 8 frames of 30x20 = 4,800 pixels are "
                       r"pooled at once, over the limit of 4,799 .*--max-pixels 4800"):
        pio.read(data, max_pixels=4799, name="x.gif")
    # pages of different sizes: counted as they are read
    pages = [Image.new("L", (10, 10)), Image.new("L", (20, 20)), Image.new("L", (20, 20))]
    data = encode_pil(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    assert len(pio.read(data, max_pixels=900).frames) == 3
    with pytest.raises(pio.ReadError, match="its 3 frames are pooled at once, and the first 3 "
                       "already hold 900 pixels, over the limit of 899"):
        pio.read(data, max_pixels=899)


def test_max_pixels_must_be_positive():
    with pytest.raises(ValueError, match="max_pixels"):
        pio.read(b"", max_pixels=0)


# ---------------------------------------------------------------------- npy


def test_npy_memory_mapped_and_last_two_axes(tmp_path):
    item = pio.read(SAMPLES / "nchw.npy")
    assert isinstance(item.array, np.memmap) and not item.array.flags.writeable
    assert item.kind == "npy" and item.axes == (2, 3) and item.array.shape == (2, 3, 64, 64)
    pooled = pool_item(item, Pipeline.parse("max(2)"))
    assert pooled.array.shape == (2, 3, 32, 32) and pooled.array.dtype == np.float32
    np.testing.assert_array_equal(pooled.array, pool(np.load(SAMPLES / "nchw.npy"), "max", 2))
    out = pio.write(pooled, tmp_path / "out.npy")
    np.testing.assert_array_equal(np.load(out), pooled.array)


@pytest.mark.parametrize("layout, shape, axes", [
    ("hw", (8, 6), (0, 1)), ("hwc", (8, 6, 3), (0, 1)), ("chw", (3, 8, 6), (1, 2)),
    ("nchw", (2, 3, 8, 6), (2, 3)), ("nhwc", (2, 8, 6, 3), (1, 2)), ("dhw", (4, 8, 6), (0, 1, 2)),
    ("cdhw", (2, 4, 8, 6), (1, 2, 3)), ("ncdhw", (1, 2, 4, 8, 6), (2, 3, 4)),
])
def test_npy_layouts(tmp_path, layout, shape, axes):
    path = tmp_path / "t.npy"
    np.save(path, np.zeros(shape, np.float32))
    item = pio.read(path, layout=layout)
    assert item.axes == axes and item.layout == layout
    out = pool_item(item, Pipeline.parse("avg(2)"))
    assert out.array.shape == tuple(n // 2 if i in axes else n for i, n in enumerate(shape))


def test_npy_layout_errors(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"t\.npy: layout 'nchw' names 4 axes but the array "
                       r"has shape \(2, 3, 4\)"):
        pio.read(path, layout="nchw")
    with pytest.raises(ValueError, match="`layout` must be one of hw, hwc"):
        pio.read(path, layout="xyz")


def test_npy_default_axes_for_few_dims_and_0d(tmp_path):
    np.save(tmp_path / "one.npy", np.arange(8.0))
    assert pio.read(tmp_path / "one.npy").axes == (0,)
    np.save(tmp_path / "zero.npy", np.float32(3))
    with pytest.raises(pio.ReadError, match="0-d"):
        pio.read(tmp_path / "zero.npy")


class _Touch:
    """Unpickling this creates a file: proof that nothing was unpickled if it is absent."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def test_object_npy_is_refused_without_unpickling(tmp_path):
    flag = tmp_path / "unpickled"
    path = tmp_path / "evil.npy"
    np.save(path, np.array([_Touch(str(flag))], dtype=object), allow_pickle=True)
    for source in (path, path.read_bytes()):
        with pytest.raises(pio.ReadError, match="object-dtype .npy.*allow_pickle=False"):
            pio.read(source)
    assert not flag.exists()


def test_npy_truncated_and_unpoolable_dtypes(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.zeros((64, 64), np.float64))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(pio.ReadError, match=r"t\.npy: truncated \.npy"):
        pio.read(path)
    np.save(path, np.zeros((4, 4), np.complex64))
    with pytest.raises(pio.ReadError, match="dtype complex64 cannot be pooled"):
        pio.read(path)


def test_npy_from_bytes_and_stream():
    buf = io.BytesIO()
    np.save(buf, np.arange(12, dtype=np.int16).reshape(3, 4))
    item = pio.read(io.BytesIO(buf.getvalue()), name="<stdin>")
    assert item.source == "<stdin>" and item.array.dtype == np.int16
    out = pool_item(item, Pipeline.parse("max(2, ceil_mode=True)"))
    back = np.load(io.BytesIO(pio.write_bytes(out)))
    np.testing.assert_array_equal(back, [[5, 7], [9, 11]])


def test_npy_cannot_become_an_image(tmp_path):
    item = pio.read(SAMPLES / "nchw.npy")
    with pytest.raises(pio.WriteError, match=r"can only be written as \.npy"):
        pio.write(item, tmp_path / "x.png")


# ---------------------------------------------------------------------- read errors


def test_read_errors_name_the_file_and_the_reason(tmp_path):
    with pytest.raises(pio.ReadError, match=r"nope\.png: cannot read: No such file"):
        pio.read(tmp_path / "nope.png")
    with pytest.raises(pio.ReadError, match="cannot read: Is a directory"):
        pio.read(tmp_path)
    with pytest.raises(pio.ReadError, match=r"empty\.png: empty file \(0 bytes\)"):
        pio.read(save(tmp_path, "empty.png", b""))
    with pytest.raises(pio.ReadError, match=r"<stream>: empty input \(0 bytes\)"):
        pio.read(b"")
    junk = save(tmp_path, "junk.png", b"this is not an image at all" * 10)
    with pytest.raises(pio.ReadError, match=r"junk\.png: not a recognised image"):
        pio.read(junk)
    ppm = save(tmp_path, "x.ppm", encode_pil(Image.new("RGB", (2, 2)), "PPM"))
    with pytest.raises(pio.ReadError, match="a format other than PNG, JPEG"):
        pio.read(ppm)
    jpeg = encode_pil(Image.fromarray(u8(64, 64, 3)), "JPEG")
    cut = save(tmp_path, "cut.jpg", jpeg[: len(jpeg) // 2])
    with pytest.raises(pio.ReadError, match=r"cut\.jpg: truncated image"):
        pio.read(cut)
    png = encode_pil(Image.fromarray(u8(64, 64, 3)), "PNG")
    with pytest.raises(pio.ReadError, match=r"<stream>: (truncated|corrupt)"):
        pio.read(png[: len(png) // 2])
    broken = bytearray(png)
    broken[60:80] = b"\x00" * 20  # inside the IDAT data
    with pytest.raises(pio.ReadError, match="cut2.png: (corrupt|truncated)"):
        pio.read(save(tmp_path, "cut2.png", bytes(broken)))
    assert issubclass(pio.ReadError, ValueError)


# ---------------------------------------------------------------------- writing


def _rgb_item(tmp_path) -> pio.Item:
    return pio.read(save(tmp_path, "in.png", encode_pil(Image.fromarray(u8(8, 8, 3)), "PNG")))


def test_refuses_to_overwrite_without_the_flag(tmp_path, temp_kind):
    item = _rgb_item(tmp_path)
    target = tmp_path / "out.png"
    target.write_bytes(b"precious")
    with pytest.raises(pio.OutputExistsError, match=r"out\.png: already exists; pass --overwrite"):
        pio.write(item, target)
    assert target.read_bytes() == b"precious"
    assert isinstance(pio.OutputExistsError("x", "y"), FileExistsError)
    pio.write(item, target, overwrite=True)
    np.testing.assert_array_equal(pio.read(target).array, item.array)
    assert files_in(tmp_path) == ["in.png", "out.png"]


def test_never_overwrites_its_input(tmp_path):
    item = _rgb_item(tmp_path)
    before = (tmp_path / "in.png").read_bytes()
    with pytest.raises(pio.WriteError, match="is the input file"):
        pio.write(pool_item(item, AVG2), tmp_path / "in.png", overwrite=True)
    assert (tmp_path / "in.png").read_bytes() == before


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077, 0o002])
def test_permissions_follow_the_umask(tmp_path, umask, temp_kind):
    item = _rgb_item(tmp_path)
    old = os.umask(umask)
    try:
        out = pio.write(item, tmp_path / "out.png")
        existing = tmp_path / "old.png"
        existing.write_bytes(b"x")
        os.chmod(existing, 0o600)
        pio.write(item, existing, overwrite=True)
        npy = pio.write(item, tmp_path / "out.npy")
    finally:
        os.umask(old)
    for path in (out, existing, npy):
        assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_failure_mid_write_leaves_no_file(tmp_path, monkeypatch, exc, temp_kind):
    item = _rgb_item(tmp_path)

    def half_then_fail(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG\r\n\x1a\n half an image")
        raise exc("encoder died")

    monkeypatch.setattr(Image.Image, "save", half_then_fail)
    with pytest.raises(exc):
        pio.write(item, tmp_path / "out.png")
    assert files_in(tmp_path) == ["in.png"]
    # replacing an existing file: the old one stays whole
    (tmp_path / "old.png").write_bytes(b"old")
    with pytest.raises(exc):
        pio.write(item, tmp_path / "old.png", overwrite=True)
    assert files_in(tmp_path) == ["in.png", "old.png"]
    assert (tmp_path / "old.png").read_bytes() == b"old"


def test_failure_mid_write_of_npy_and_16_bit_png_leaves_no_file(tmp_path, monkeypatch, temp_kind):
    item = pio.read(SAMPLES / "nchw.npy")

    def fail(fp, *args, **kwargs):
        fp.write(b"\x93NUMPY partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", fail)
    with pytest.raises(OSError, match="No space"):
        pio.write(item, tmp_path / "out.npy")
    monkeypatch.setattr(_wide16, "png16", lambda *a: (_ for _ in ()).throw(Boom()))
    wide = pio.Item(u16(4, 4, 3), (0, 1), "image", mode="RGB;16", format="PNG")
    with pytest.raises(Boom):
        pio.write(wide, tmp_path / "out.png")
    assert files_in(tmp_path) == []


KILLED_MID_WRITE = """
import os, sys
from PIL import Image
from poolcore import atomic
from poolcore import io as pio
from poolcore.imaging import pool_item
item = pio.read(sys.argv[1])
def die(self, fp, *a, **k):
    fp.write(b"half an image")
    fp.flush()
    os._exit(9)  # as SIGKILL or a dying pool worker: no Python cleanup runs
Image.Image.save = die
pio.write(item, sys.argv[2])
"""


def test_a_process_killed_mid_write_leaves_no_file(tmp_path):
    if not atomic._TMPFILE:
        pytest.skip("without O_TMPFILE a killed process leaves its hidden .tmp file")
    import subprocess
    import sys

    _rgb_item(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    run = subprocess.run([sys.executable, "-c", KILLED_MID_WRITE, str(tmp_path / "in.png"),
                          str(out / "x.png")], capture_output=True)
    assert run.returncode == 9, run.stderr
    assert files_in(out) == []


def test_modes_a_format_cannot_hold_are_refused_before_writing(tmp_path):
    cases = [
        (u8(4, 4, 4), "RGBA", "out.jpg", r"out\.jpg: JPEG cannot hold mode RGBA \(alpha\); use "
                                         r"--format png, tiff or webp"),
        (u8(4, 4, 2), "LA", "out.jpg", "JPEG cannot hold mode LA"),
        (u16(4, 4), "I;16", "out.jpg", r"mode I;16 \(16-bit samples\); use --format png or tiff"),
        (RNG.random((4, 4)).astype(np.float32), "F", "out.png",
         r"PNG cannot hold mode F \(float samples\); use --format tiff or npy"),
        (u8(4, 4, 4), "RGBA", "out.bmp", "BMP cannot hold mode RGBA"),
        (u16(4, 4), "I;16", "out.gif", "GIF cannot hold mode I;16"),
        (u8(4, 4, 4), "CMYK", "out.png", r"use --format jpg or tiff"),
    ]
    for arr, mode, name, message in cases:
        item = pio.Item(arr, (0, 1), "image", mode=mode, format="PNG")
        with pytest.raises(pio.WriteError, match=message):
            pio.write(item, tmp_path / name)
    assert files_in(tmp_path) == []


def test_format_from_argument_then_extension_then_input(tmp_path):
    item = _rgb_item(tmp_path)
    assert opened(pio.write(item, tmp_path / "a.jpg")).format == "JPEG"
    assert opened(pio.write(item, tmp_path / "b.jpg", format="png")).format == "PNG"
    assert opened(pio.write(item, tmp_path / "c.out")).format == "PNG"
    assert Image.open(io.BytesIO(pio.write_bytes(item, format=".TIFF"))).format == "TIFF"
    with pytest.raises(ValueError, match="unsupported output format 'xcf'"):
        pio.write(item, tmp_path / "d.png", format="xcf")
    assert pio.format_for_path("x/y.JPEG") == "JPEG" and pio.format_for_path("a.txt") is None
    assert pio.normalize_format("tif") == "TIFF"


def test_jpeg_quality(tmp_path):
    item = pio.read(SAMPLES / "photo.jpg")
    low = len(pio.write_bytes(item, quality=30))
    default = len(pio.write_bytes(item))
    assert low < default


def test_quality_must_be_1_to_100():
    item = pio.read(SAMPLES / "cmyk.jpg")
    with pytest.raises(ValueError, match="`quality` must be an integer from 1 to 100, got 0"):
        pio.write_bytes(item, quality=0)


def test_16_bit_gray_with_transparent_value_gains_alpha():
    a = u16(3, 4)
    a[0, 0] = 4321
    item = pio.read(encode_pil(Image.fromarray(a), "PNG", transparency=4321))
    assert item.mode == "LA;16" and item.array.shape == (3, 4, 2)
    assert item.array[0, 0, 1] == 0 and (item.array[..., 1] > 0).sum() == 11
    back = pio.read(pio.write_bytes(item))
    np.testing.assert_array_equal(back.array, item.array)


def test_write_errors_for_bad_targets(tmp_path):
    item = _rgb_item(tmp_path)
    (tmp_path / "d.png").mkdir()
    with pytest.raises(pio.WriteError, match="is a directory"):
        pio.write(item, tmp_path / "d.png", overwrite=True)
    with pytest.raises(pio.WriteError, match="does not exist"):
        pio.write(item, tmp_path / "missing" / "x.png")


def test_stream_round_trip():
    data = encode_pil(Image.fromarray(u8(6, 6, 3)), "PNG")
    item = pio.read(io.BytesIO(data))
    assert item.source == "<stream>"
    out = pio.write_bytes(pool_item(item, AVG2))
    assert Image.open(io.BytesIO(out)).size == (3, 3)


# ---------------------------------------------------------------------- the samples


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.iterdir()
                                        if pio.format_for_path(p)))
def test_every_sample_pools_and_round_trips(tmp_path, name):
    item = pio.read(SAMPLES / name)
    pooled = pool_item(item, AVG2)
    back = pio.read(pio.write(pooled, tmp_path / name))
    assert back.array.shape == pooled.array.shape and back.array.dtype == pooled.array.dtype
    assert len(back.frames) == len(item.frames)
    assert back.mode == item.mode


def test_samples_cover_the_modes():
    modes = {pio.read(p).mode for p in SAMPLES.iterdir() if pio.format_for_path(p)}
    assert {"RGB", "L", "RGBA", "I;16", "RGB;16", "F", "CMYK", None} <= modes


# ------------------------------------------------------------ zero-copy views (poolcore._pilview)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
@pytest.mark.parametrize("size", [(1, 1), (7, 5), (64, 3)])
def test_view_shares_pillow_memory_and_equals_asarray(mode, size):
    from poolcore import _pilview

    rng = np.random.default_rng(sum(size))
    shape = size[::-1] + (() if mode == "L" else (len(mode),))
    im = Image.frombytes(mode, size, rng.integers(0, 256, shape, dtype=np.uint8).tobytes())
    v = _pilview.view(im)
    if not hasattr(im, "__arrow_c_array__"):  # Pillow < 11.2: always the copy
        assert v is None
        return
    assert v is not None and not v.flags.writeable
    np.testing.assert_array_equal(v, np.asarray(im))
    im.putpixel((0, 0), (7,) * len(mode) if mode != "L" else 7)
    assert v[0, 0, 0 if mode != "L" else ...] == 7  # the same memory, not a copy


@pytest.mark.parametrize("mode", ["LA", "CMYK", "I", "F", "I;16", "P", "1"])
def test_view_declines_other_modes(mode):
    from poolcore import _pilview

    assert _pilview.view(Image.new(mode, (4, 3))) is None


def test_view_outlives_the_closed_image():
    from poolcore import _pilview

    with Image.open(SAMPLES / "photo.jpg") as im:
        im.load()
        v = _pilview.view(im)
        expected = np.asarray(im).copy()
    if v is None:
        pytest.skip("Pillow without Arrow export (< 11.2)")
    del im
    garbage = [np.full(expected.size, i, np.uint8) for i in range(4)]  # reuse freed memory
    np.testing.assert_array_equal(v, expected)
    del garbage


def _in_pillow_memory(a: np.ndarray) -> bool:
    """Whether ``a`` views an image's own storage (through _pilview's export holder)."""
    from poolcore import _pilview

    while isinstance(a, np.ndarray):
        a = a.base
    return isinstance(a, _pilview._Pixels)


def test_read_views_single_frames_and_copies_animation_frames(tmp_path):
    item = pio.read(SAMPLES / "photo.jpg")
    assert _in_pillow_memory(item.array) == hasattr(Image.Image, "__arrow_c_array__")
    frames = [Image.new("RGB", (6, 4), c) for c in ("red", "green", "blue")]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    anim = pio.read(tmp_path / "a.gif")
    assert [tuple(f[0, 0]) for f in anim.frames] == [(255, 0, 0), (0, 128, 0), (0, 0, 255)]
    assert not any(_in_pillow_memory(f) for f in anim.frames)


def test_view_of_an_image_over_pillows_block_size():
    from poolcore import _pilview

    if not hasattr(Image.core, "set_use_block_allocator"):
        pytest.skip("Pillow < 11.2: no Arrow export, no single-block allocator")

    old = Image.core.get_block_size(), Image.core.get_use_block_allocator()
    Image.core.set_block_size(4096)  # any image over 4 kB now spans several blocks
    Image.core.set_use_block_allocator(0)
    try:
        im = Image.new("RGB", (64, 64), (1, 2, 3))
        assert _pilview.view(im) is None  # declined, not wrong: the reader copies instead
        Image.core.set_use_block_allocator(1)  # one block whatever the size: viewed
        im = Image.new("RGB", (64, 64), (1, 2, 3))
        assert _pilview.view(im)[63, 63].tolist() == [1, 2, 3]
    finally:
        Image.core.set_block_size(old[0])
        Image.core.set_use_block_allocator(old[1])


def test_a_batch_views_images_over_16_mb():
    from poolcore import _pilview, batch

    if not hasattr(Image.core, "set_use_block_allocator"):
        pytest.skip("Pillow < 11.2: no Arrow export")
    old = Image.core.get_block_size()
    try:
        batch.tune_for_batch()
        im = Image.new("RGB", (2500, 2000), (1, 2, 3))  # 20 MB in Pillow's RGBX storage
        assert _pilview.view(im)[1999, 2499].tolist() == [1, 2, 3]
    finally:
        Image.core.set_block_size(old)


@pytest.mark.parametrize("fmt", ["jpg", "webp", "png", "tif", "bmp", "gif"])
def test_rgb_in_rgbx_storage_writes_the_same_file(tmp_path, fmt):
    """RGB pixels that sit in 4-byte storage (a read view, a pooled image) go to Pillow without
    unpacking; the file is byte for byte the one the plain array gives."""
    full = np.random.default_rng(3).integers(0, 256, (31, 45, 4), dtype=np.uint8)
    a, b = tmp_path / f"a.{fmt}", tmp_path / f"b.{fmt}"
    pio.write(pio.Item(array=full[..., :3], axes=(0, 1), kind="image", mode="RGB"), a)
    pio.write(pio.Item(array=full[..., :3].copy(), axes=(0, 1), kind="image", mode="RGB"), b)
    assert a.read_bytes() == b.read_bytes()


def test_read_leaves_no_file_open(tmp_path):
    """The format sniff's file is the one the decoder reads; every path, errors included,
    closes what it opened."""
    np.save(tmp_path / "t.npy", np.zeros((3, 4), np.uint8))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(3):
        for name in ("photo.jpg", "rgb16.png", "animated.gif", "cmyk.jpg"):
            pio.read(SAMPLES / name)
        pio.read(tmp_path / "t.npy")
        with pytest.raises(pio.ReadError):
            pio.read(tmp_path / "bad.png")
        with pytest.raises(pio.ReadError):
            pio.read(SAMPLES / "photo.jpg", max_pixels=10)
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds


def test_rgbx_hand_over_keeps_the_colour_profile(tmp_path):
    """A JPEG written from RGBX storage (Pillow sees mode RGBX) keeps the item's ICC profile,
    whatever colour space it names, as the plain array does."""
    full = np.zeros((8, 10, 4), np.uint8)
    icc = bytes(16) + b"GRAY" + bytes(108)
    for name, array in (("a.jpg", full[..., :3]), ("b.jpg", full[..., :3].copy())):
        pio.write(pio.Item(array=array, axes=(0, 1), kind="image", mode="RGB",
                           icc_profile=icc), tmp_path / name)
        with Image.open(tmp_path / name) as im:
            assert im.info.get("icc_profile") == icc

