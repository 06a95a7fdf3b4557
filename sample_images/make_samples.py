"""Make the files of sample_images/ (all synthetic; numpy + Pillow + the standard library).

    python sample_images/make_samples.py            # rewrite them beside this script
    python sample_images/make_samples.py OUT_DIR    # or somewhere else

Fixed seeds: the pixels are the same on every run. The encoded bytes of the JPEG/WebP/GIF files
may differ between Pillow/libjpeg versions; the PNG, TIFF and .npy files do not in practice.
See README.md for what each file exercises.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageDraw, ImageFilter, ImageFont

SEED = 20240601


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid upsampled with bicubic interpolation."""
    coarse = rng.random((h // cell + 3, w // cell + 3)).astype(np.float32)
    im = Image.fromarray(coarse, "F").resize((w + 3 * cell, h + 3 * cell), Image.Resampling.BICUBIC)
    a = np.asarray(im)[cell : cell + h, cell : cell + w]
    return (a - a.min()) / (a.max() - a.min())


def fractal(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    total = np.zeros((h, w), np.float32)
    for octave, cell in enumerate((64, 32, 16, 8, 4)):
        total += smooth_noise(rng, h, w, cell) / 2**octave
    return (total - total.min()) / (total.max() - total.min())


def text_mask(text: str, scale: int) -> Image.Image:
    """Block letters from Pillow's built-in bitmap font (the same on every install), scaled
    up with NEAREST: hard, text-like edges."""
    font = ImageFont.load_default_imagefont()
    left, top, right, bottom = font.getbbox(text)
    small = Image.new("L", (right + 2, bottom + 2), 0)
    ImageDraw.Draw(small).text((1, 1), text, fill=255, font=font)
    return small.resize((small.width * scale, small.height * scale), Image.Resampling.NEAREST)


def landscape(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """A photo-like scene: sky gradient, sun, two mountain ridges, a textured field, a house,
    a sign with text, sensor noise."""
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :]
    sky = np.stack(
        [70 + 120 * y + 0 * x, 130 + 90 * y + 0 * x, 210 + 35 * y + 0 * x], axis=-1
    )
    clouds = fractal(rng, h, w)[..., None]
    img = sky + np.clip(clouds - 0.55, 0, 1)[..., :] * 300
    # sun with a soft glow
    d = np.hypot(x - 0.78, (y - 0.2) * h / w)
    glow = np.exp(-((d / 0.09) ** 2))[..., None]
    img = img * (1 - glow) + np.array([255, 240, 200], np.float32) * glow
    img[d < 0.045] = (255, 250, 225)
    # mountains: ridges from 1-D fractal profiles
    for base, amp, colour in ((0.45, 0.18, (95, 105, 130)), (0.58, 0.12, (60, 95, 60))):
        prof = fractal(rng, 8, w)[4] * amp + base
        shade = fractal(rng, h, w)[..., None] * 40 - 20
        mask = (y > prof[None, :])[..., None]
        img = np.where(mask, np.array(colour, np.float32) + shade, img)
    # field: stripes with texture, darker towards the viewer
    field = y > 0.72
    stripes = 0.5 + 0.5 * np.sin(x * 90 + y * 40 + fractal(rng, h, w) * 6)
    ground = np.stack([90 + 60 * stripes, 120 + 70 * stripes, 40 + 20 * stripes], axis=-1)
    ground *= (1.15 - 0.5 * (y - 0.72))[..., None]
    img = np.where(field[..., None], ground, img)
    out = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    # a house: sharp edges and flat colours, as man-made things in photos
    hx, hy = int(w * 0.12), int(h * 0.62)
    draw.rectangle((hx, hy, hx + w // 6, hy + h // 5), fill=(200, 180, 150), outline=(60, 40, 30))
    draw.polygon(
        [(hx - 8, hy), (hx + w // 12, hy - h // 8), (hx + w // 6 + 8, hy)], fill=(150, 50, 40)
    )
    draw.rectangle((hx + 12, hy + 15, hx + 30, hy + 33), fill=(70, 100, 140))
    door = (hx + w // 6 - 30, hy + h // 5 - 40, hx + w // 6 - 12, hy + h // 5)
    draw.rectangle(door, fill=(90, 60, 40))
    # a sign with text
    sx, sy = int(w * 0.5), int(h * 0.68)
    draw.rectangle((sx, sy, sx + 170, sy + 44), fill=(245, 245, 235), outline=(30, 30, 30), width=2)
    draw.line((sx + 85, sy + 44, sx + 85, sy + 90), fill=(80, 60, 40), width=5)
    out.paste((20, 20, 20), (sx + 10, sy + 9), text_mask("POOLCORE", 3))
    # lens softness, then sensor noise
    out = out.filter(ImageFilter.GaussianBlur(0.6))
    a = np.asarray(out).astype(np.float32) + rng.normal(0, 3.0, (h, w, 3)).astype(np.float32)
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8))


def still_life(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Shaded spheres on a checked tablecloth: gradients, specular highlights, hard edges."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    wall = np.stack([180 + 0.1 * xx, 170 + 0.05 * yy, 150 + 0 * xx], axis=-1)
    table = (yy > h * 0.6)[..., None]
    checks = ((xx // 24 + (yy - h * 0.6) // 12) % 2)[..., None]
    red, white = np.array([200, 40, 40], np.float32), np.array([235, 230, 220], np.float32)
    cloth = np.where(checks > 0, red, white)
    img = np.where(table, cloth, wall)
    for cx, cy, r, col in ((110, 150, 60, (40, 90, 200)), (250, 165, 45, (230, 180, 40)),
                           (330, 120, 35, (60, 160, 80))):
        d2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / r**2
        inside = d2 <= 1
        nz = np.sqrt(np.clip(1 - d2, 0, 1))
        light = np.clip(((xx - cx) * -0.4 + (yy - cy) * -0.5) / r + nz * 0.8, 0, 1)
        spec = np.clip((light - 0.85) * 6, 0, 1) ** 2
        shade = np.array(col, np.float32) * (0.25 + 0.75 * light)[..., None] + 255 * spec[..., None]
        img = np.where(inside[..., None], shade, img)
    img += rng.normal(0, 2.0, img.shape).astype(np.float32)
    return Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))


def zone_plate(n: int) -> np.ndarray:
    """Concentric rings whose frequency rises outwards: the classic aliasing test chart."""
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64) - n / 2
    return (127.5 + 127.5 * np.cos(np.pi * (xx**2 + yy**2) / n)).round().astype(np.uint8)


def png16(a: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG: Pillow cannot write one (Pillow#1888)."""
    h, w, c = a.shape
    rows = a.astype(">u2").reshape(h, w * c).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", w, h, 16, {3: 2, 4: 6}[c], 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def srgb_profile() -> bytes:
    """LittleCMS's built-in sRGB profile with a fixed creation date (lcms stamps the current
    time, which would make every run's files differ) and no profile ID (zero = not computed,
    valid per ICC.1; the ID is an MD5 that covers the date)."""
    icc = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    icc[24:36] = struct.pack(">6H", 2024, 6, 1, 0, 0, 0)
    icc[84:100] = bytes(16)
    return bytes(icc)


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    srgb = srgb_profile()

    # photo.jpg: 600x400 photo-like RGB, 300 dpi, sRGB profile
    photo = landscape(rng, 600, 400)
    photo.save(out / "photo.jpg", quality=88, dpi=(300, 300), icc_profile=srgb)

    # photo.png: another scene, lossless
    still_life(rng, 400, 260).save(out / "still_life.png", optimize=True, dpi=(96, 96))

    # gray.png: 8-bit grayscale zone plate
    Image.fromarray(zone_plate(256), "L").save(out / "gray.png", optimize=True)

    # rgba.png: soft-edged discs on a fully transparent background whose hidden colour is a
    # loud green: any pooling that lets transparent colour bleed shows green fringes.
    yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
    rgba = np.zeros((256, 256, 4), np.uint8)
    rgba[..., 1] = 255  # hidden under alpha 0
    alpha = np.zeros((256, 256), np.float32)
    for cx, cy, r, col in ((96, 100, 70, (220, 30, 60)), (170, 160, 60, (30, 60, 220))):
        d = np.hypot(xx - cx, yy - cy)
        a = np.clip((r - d) / 6, 0, 1)  # 6-px soft edge
        for ch in range(3):
            rgba[..., ch] = np.where(a > 0, col[ch], rgba[..., ch])
        alpha = np.maximum(alpha, a)
    bar = (xx > 20) & (xx < 236) & (np.abs(yy - 236) < 6)  # a half-opaque dark bar
    rgba[bar, :3] = (40, 40, 40)
    alpha = np.where(bar, 0.5, alpha)
    rgba[..., 3] = (alpha * 255 + 0.5).astype(np.uint8)
    Image.fromarray(rgba, "RGBA").save(out / "rgba.png", optimize=True)

    # palette.png: a 16-colour icon with a transparent palette entry
    icon = Image.new("P", (128, 128), 0)
    pal = [0, 0, 0]
    for i in range(1, 16):
        pal += [int(40 + 13 * i), int(200 - 9 * i), int((i * 57) % 256)]
    icon.putpalette(pal + [0, 0, 0] * (256 - 16))
    draw = ImageDraw.Draw(icon)
    for i in range(1, 16):
        draw.ellipse((4 * i, 4 * i, 127 - 4 * i, 127 - 4 * i), fill=i)
    draw.rectangle((56, 0, 71, 127), fill=0)  # a transparent slot through the middle
    icon.save(out / "palette.png", transparency=0, optimize=False)

    # gray16.png: 16-bit grayscale, smooth ramp plus bumps; values that 8 bits cannot hold
    g = np.linspace(0, 1, 320)[None, :] * 0.7 + fractal(rng, 200, 320) * 0.3
    Image.fromarray((g * 65535 + 0.5).astype(np.uint16)).save(out / "gray16.png")

    # rgb16.png: 16-bit-per-channel RGB (smooth gradients; the low byte matters)
    yy, xx = np.mgrid[0:120, 0:160].astype(np.float64)
    rgb16 = np.stack([xx / 159, yy / 119, 1 - (xx + yy) / 278], axis=-1)
    (out / "rgb16.png").write_bytes(png16((rgb16 * 65535 + 0.5).astype(np.uint16)))

    # float32.tif: an elevation map in metres (float, negative below sea level)
    elevation = (fractal(rng, 128, 128) * 3200 - 400).astype(np.float32)
    Image.fromarray(elevation).save(out / "elevation_f32.tif", compression="tiff_adobe_deflate")

    # rotated.jpg: stored sideways with EXIF orientation 6; upright after exif_transpose.
    upright = landscape(rng, 300, 400)
    ImageDraw.Draw(upright).polygon([(150, 20), (110, 90), (190, 90)], fill=(250, 250, 250))
    upright.paste((250, 250, 250), (135, 100), text_mask("UP", 3))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # 6 means: rotate 90 deg clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "poolcore sample maker"
    exif[0x0110] = "synthetic"
    exif.get_ifd(0x8769)[0x9003] = "2024:06:01 12:00:00"
    stored.save(out / "rotated_exif6.jpg", quality=88, exif=exif.tobytes(), dpi=(200, 200),
                icc_profile=srgb)

    # animated.gif: 4 frames, a ball moving over a gradient, distinct durations, looping
    frames = []
    for i in range(4):
        f = np.zeros((120, 160, 3), np.uint8)
        f[..., 0] = np.linspace(30, 200, 160, dtype=np.uint8)[None, :]
        f[..., 2] = np.linspace(200, 60, 120, dtype=np.uint8)[:, None]
        im = Image.fromarray(f)
        x0 = 20 + 35 * i
        ImageDraw.Draw(im).ellipse((x0, 40, x0 + 40, 80), fill=(255, 230, 60), outline=(0, 0, 0))
        frames.append(im)
    frames[0].save(out / "animated.gif", save_all=True, append_images=frames[1:],
                   duration=[80, 120, 160, 200], loop=0)

    # cmyk.jpg: a small CMYK JPEG (print workflows)
    cmyk = np.zeros((96, 128, 4), np.uint8)
    cmyk[..., 0] = np.linspace(0, 255, 128, dtype=np.uint8)[None, :]
    cmyk[..., 1] = np.linspace(255, 0, 96, dtype=np.uint8)[:, None]
    cmyk[..., 3] = 30
    cmyk_im = Image.frombuffer("CMYK", (128, 96), cmyk, "raw", "CMYK", 0, 1)
    cmyk_im.save(out / "cmyk.jpg", quality=90)

    # nchw.npy: a batch of 2 three-channel 64x64 float32 feature maps
    t = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    t += np.sin(np.linspace(0, 6, 64, dtype=np.float32))[None, None, None, :]
    np.save(out / "nchw.npy", t)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent)
