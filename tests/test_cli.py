"""The poolimg command: CliRunner in tmp_path (exit codes, exact messages), and real runs of the
installed script and of ``python -m cli``."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_report import validate

import poolcore
from cli.main import FORMATS, LAYOUTS, IntTuple, main
from poolcore import io, report

BACKENDS = ", ".join(poolcore.available_backends())
VERSION_TEXT = f"poolimg {poolcore.__version__}\nbackends: {BACKENDS}\n"


def invoke(args, input=None):
    result = CliRunner().invoke(main, [str(a) for a in args], input=input,
                                catch_exceptions=False)
    # On a failed assertion pytest shows what the command said.
    print(f"args: {args}\nexit: {result.exit_code}\nstdout:\n{result.stdout}\n"
          f"stderr:\n{result.stderr}")
    return result


def image(path: Path, size=(24, 32), seed=0, mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (*size, {"RGB": 3, "RGBA": 4}[mode])
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)
    return path


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def src(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    d = Path("src")
    image(d / "a.png", seed=1)
    image(d / "b.jpg", seed=2)
    image(d / "sub" / "c.png", seed=3, mode="RGBA")
    return d


# ------------------------------------------------------------------------ version, help, usage


def test_version():
    r = invoke(["--version"])
    assert r.exit_code == 0 and r.stdout == VERSION_TEXT


def test_help_shows_examples_and_sections():
    r = invoke(["-h"])
    assert r.exit_code == 0
    assert r.stdout == invoke(["--help"]).stdout
    assert r.stdout.startswith("Usage: main -o PATH [OPTIONS] INPUT...\n")
    example = 'poolimg -r photos -o small -p "avg(2)" --workers 4 --report small.json'
    assert f"\n    {example}\n" in r.stdout
    for section in ("Pipeline:", "Reading and writing:", "Batch:", "Reports:", "Other:"):
        assert f"\n{section}\n" in r.stdout


def test_cli_lists_match_io():
    assert LAYOUTS == io.LAYOUTS
    assert {io.normalize_format(f) for f in FORMATS} == set(io.SUPPORTED_EXTENSIONS.values())


USAGE = "Usage: main -o PATH [OPTIONS] INPUT...\nTry 'main --help' for help.\n\nError: "


@pytest.mark.parametrize(
    "args, message",
    [
        (["src", "-r", "-o", "o", "-p", "avg(2)", "--overwrite", "--skip-existing"],
         "--overwrite and --skip-existing exclude each other"),
        (["src", "-r", "-o", "o", "-p", "avg(2)", "--op", "max", "-k", "2"],
         "-p/--pipeline and --op are alternatives: give one"),
        (["src", "-r", "-o", "o", "-k", "2"],
         "-k/--kernel goes with --op (the one-stage shorthand)"),
        (["src", "-r", "-o", "o", "--op", "max"], "--op needs -k/--kernel"),
        (["src", "-r", "-o", "o"],
         'no pipeline: give -p "avg(2)", --op avg -k 2, or --config FILE.toml'),
        (["src", "-o", "o", "-p", "avg(2)"],
         "'src' is a directory: pass -r (recursive) to pool the files in it"),
        (["src/a.png", "src/b.jpg", "-o", "-", "-p", "avg(2)"],
         "`-o -` (stdout) takes a single input file"),
        (["src", "-r", "-o", "o", "-p", "foo(2)"],
         "Invalid value for '-p' / '--pipeline': stage 1 `foo(2)`: unknown op 'foo'; expected "
         "one of max, min, avg, sum, lp, median, adaptive_max, adaptive_min, adaptive_avg, "
         "adaptive_sum, adaptive_median"),
        (["src", "-r", "-o", "o", "--op", "max", "-k", "0"],
         "Invalid value for --op/-k/-s/--padding: "),
        (["src", "-r", "-o", "o", "-p", "avg(2)", "--report", "r.txt"],
         "Invalid value for '--report': must end with .json or .csv, got 'r.txt'"),
        (["src", "-r", "-o", "o", "-p", "avg(2)", "--contact-sheet", "src/a.png"],
         "Invalid value for --contact-sheet: 'src/a.png' is an input or an output of this "
         "batch"),
        (["src", "-r", "-o", "o", "-p", "avg(2)", "--workers", "0"],
         "Invalid value for '--workers': 0 is not in the range x>=1."),
        (["src", "-r", "-o", "o", "-p", "avg(2)", "--threads", "0"],
         "Invalid value for '--threads': 0 is not in the range 1<=x<=256."),
        (["src", "-r", "-p", "avg(2)"], "Missing option '-o' / '--output'."),
    ],
)
def test_usage_errors_exit_2(src, args, message):
    r = invoke(args)
    assert r.exit_code == 2
    assert r.stderr.startswith(USAGE + message)
    assert r.stdout == ""
    assert not Path("o").exists()


def test_fast_backend_missing_is_a_usage_error(src, monkeypatch):
    # As on a machine where the extension was not built (or POOLCORE_NO_FAST is set).
    monkeypatch.setattr(poolcore.backends, "_fast_backend", None)
    r = invoke(["src", "-r", "-o", "o", "-p", "avg(2)", "--backend", "fast"])
    assert r.exit_code == 2
    assert "Invalid value for --backend: the compiled backend is not available" in r.stderr


def test_int_tuple_option():
    t = IntTuple()
    assert t.convert("3", None, None) == 3
    assert t.convert("2,3", None, None) == (2, 3)
    assert t.convert([4, None], None, None) == (4, None)
    assert t.convert("none, 3", None, None) == (None, 3)
    assert t.convert(5, None, None) == 5
    with pytest.raises(Exception, match="expected an int or ints separated by commas"):
        t.convert("2x", None, None)


# -------------------------------------------------------------------------------- the config


def test_config_fills_defaults_and_flags_win(src):
    Path("pool.toml").write_text('pipeline = "avg(4)"\nrecursive = true\nworkers = 1\n'
                                 'skip-existing = true\nformat = "png"\n')
    r = invoke(["src", "-o", "o", "--config", "pool.toml", "-q"])
    assert r.exit_code == 0, r.stderr
    assert sorted(tree(Path("o"))) == ["a.png", "b.png", "sub/c.png"]
    with Image.open("o/a.png") as im:
        assert im.size == (8, 6)
    # -p on the command line beats the file's pipeline; --op too
    r = invoke(["src", "-o", "o2", "--config", "pool.toml", "-p", "avg(2)", "-q"])
    assert r.exit_code == 0
    with Image.open("o2/a.png") as im:
        assert im.size == (16, 12)
    r = invoke(["src", "-o", "o3", "--config", "pool.toml", "--op", "max", "-k", "8", "-q"])
    assert r.exit_code == 0
    with Image.open("o3/a.png") as im:
        assert im.size == (4, 3)


def test_config_stages_tables(src):
    Path("pool.toml").write_text(
        '[[stages]]\nop = "max"\nkernel = 3\nstride = 2\npadding = 1\n\n'
        '[[stages]]\nop = "avg"\nkernel = [2, 2]\n'
    )
    r = invoke(["src/a.png", "-o", "out.png", "--config", "pool.toml", "--report", "r.json"])
    assert r.exit_code == 0
    assert json.loads(Path("r.json").read_text())["pipeline"] == (
        "max(3, stride=2, padding=1) | avg((2, 2))"
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ('pipelin = "avg(2)"\n', "unknown key 'pipelin'; expected `pipeline`, [[stages]] or one "
         "of backend, background, ceil-mode, contact-sheet, dry-run, fail-fast, format, kernel, "
         "layout, linear-light, max-pixels, no-progress, op, output, overwrite, padding, "
         "quality, quiet, recursive, report, skip-existing, stride, strip, threads, workers"),
        ('pipeline = "avg(2"\n', "`pipeline`: stage 1 `avg(2`: not a stage call like `max(2)` "
         "(near '(2')"),
        ("pipeline = \n", "not valid TOML: "),
        ('pipeline = "avg(2)"\nquality = 500\n',
         "quality = 500: 500 is not in the range 1<=x<=100."),
        ('pipeline = "avg(2)"\nformat = "jpeg2000"\n', "format = 'jpeg2000': 'jpeg2000' is not "),
        ('pipeline = "avg(2)"\nbackground = "nocolour"\n',
         "background = 'nocolour': 'nocolour' is not a colour"),
        ('pipeline = "avg(2)"\nquality = true\n',
         "quality = true: --quality takes a value, not true or false"),
        # TOML's types are checked, not cast: no crash, no silent truncation
        ('pipeline = "avg(2)"\nrecursive = 1\n', "recursive = 1: --recursive takes true or "
         "false"),
        ('pipeline = "avg(2)"\nquality = 90.5\n',
         "quality = 90.5: --quality takes a whole number"),
        ('pipeline = "avg(2)"\nworkers = [1, 2]\n', "workers = [1, 2]: --workers takes a whole"),
        ('pipeline = "avg(2)"\nreport = 5\n', "report = 5: --report takes a string"),
        ('pipeline = "avg(2)"\nreport = "r.txt"\n', "report = 'r.txt': must end with .json or "
         ".csv, got 'r.txt'"),
        ("pipeline = 5\n", "pipeline = 5: --pipeline takes a string"),
        ("stages = [1]\n", "stage 1 must be a table with `op` and its parameters ([[stages]]), "
         "got 1"),
        ('pipeline = "avg(2)"\nno-strip = true\n', "unknown key 'no-strip'"),
        ('op = "adaptive_max"\nkernel = ["none", 2.5]\n', "kernel = ['none', 2.5]: --kernel "
         'takes an int, a list of ints ("none" keeps an axis)'),
    ],
)
def test_a_bad_config_is_a_usage_error(src, text, message):
    Path("bad.toml").write_text(text)
    r = invoke(["src", "-r", "-o", "o", "--config", "bad.toml"])
    assert r.exit_code == 2
    assert r.stderr.startswith(f"Error: Invalid config file 'bad.toml': {message}")


def test_the_command_line_beats_the_configs_flags(src):
    """A flag set in the file yields to its opposite on the command line: --no-strip, or
    --skip-existing against the file's overwrite (which, typed together, exclude each other)."""
    Path("pool.toml").write_text('pipeline = "avg(2)"\nrecursive = true\noverwrite = true\n')
    assert invoke(["src", "-o", "o", "--config", "pool.toml", "-q"]).exit_code == 0
    before = tree(Path("o"))
    Path("o/a.png").write_bytes(b"mine")
    r = invoke(["src", "-o", "o", "--config", "pool.toml", "--skip-existing"])
    assert r.exit_code == 0 and "0 ok, 0 failed, 3 skipped" in r.stderr
    assert Path("o/a.png").read_bytes() == b"mine"
    r = invoke(["src", "-o", "o", "--config", "pool.toml", "--no-overwrite", "-q"])
    assert r.exit_code == 1 and "output exists" in r.stderr
    r = invoke(["src", "-o", "o", "--config", "pool.toml", "--no-recursive"])
    assert r.exit_code == 2 and "is a directory: pass -r" in r.stderr
    assert invoke(["src", "-o", "o", "--config", "pool.toml", "-q"]).exit_code == 0
    assert tree(Path("o")) == before
    r = invoke(["src", "-r", "-o", "o", "-p", "avg(2)", "--overwrite", "--skip-existing"])
    assert r.exit_code == 2 and "exclude each other" in r.stderr
    # every flag a file can set has its opposite; --no-ceil-mode asks the shorthand for nothing
    Path("more.toml").write_text('op = "max"\nkernel = 3\nceil-mode = true\ndry-run = true\n'
                                 'no-progress = true\n')
    r = invoke(["src/a.png", "-o", "nc.png", "--config", "more.toml", "-p", "avg(2)",
                "--no-ceil-mode", "--no-dry-run", "--progress", "-q"])
    assert r.exit_code == 0 and Path("nc.png").exists()
    assert invoke(["src/a.png", "-o", "nc2.png", "-p", "avg(2)", "--no-ceil-mode"]).exit_code == 0


def test_threads_over_the_kernels_limit_are_a_usage_error(src, monkeypatch):
    r = invoke(["src/a.png", "-o", "o.png", "-p", "avg(2)", "--threads", "3000000000"])
    assert r.exit_code == 2 and "3000000000 is not in the range 1<=x<=256" in r.stderr
    assert not Path("o.png").exists()
    fast_backend = pytest.importorskip("poolcore.fast_backend")
    threads = next(p for p in main.params if p.name == "threads")
    assert threads.type.max == fast_backend.MAX_THREADS  # the help's range is the kernels' cap
    monkeypatch.setenv("POOLCORE_THREADS", "3000000000")  # more than the kernels split into
    assert fast_backend._default_threads() == fast_backend.MAX_THREADS


def test_k_none_is_not_a_kernel(src):
    r = invoke(["src/a.png", "-o", "o.png", "--op", "max", "-k", "none"])
    assert r.exit_code == 2
    assert "-k/--kernel: none keeps an axis of an adaptive op's output size" in r.stderr


def test_a_missing_config(src):
    r = invoke(["src", "-r", "-o", "o", "--config", "nope.toml"])
    assert r.exit_code == 2
    assert r.stderr == "Error: Invalid config file 'nope.toml': No such file or directory\n"


def test_threads_reach_the_batch_from_the_flag_and_the_config(src, monkeypatch):
    from poolcore import batch

    seen = []
    run = batch.run

    def spy(plan, pipeline, options, **kw):
        seen.append((options.workers, options.threads))
        return run(plan, pipeline, options, **kw)

    monkeypatch.setattr(batch, "run", spy)
    assert invoke(["src", "-r", "-o", "o", "-p", "avg(2)", "--threads", "1", "-q"]).exit_code == 0
    Path("t.toml").write_text('pipeline = "avg(2)"\nthreads = 3\nworkers = 2\n')
    r = invoke(["src", "-r", "-o", "o2", "--config", "t.toml", "-q"])
    assert r.exit_code == 0, r.stderr
    assert seen == [(None, 1), (2, 3)]
    assert tree(Path("o")) == tree(Path("o2"))


# ------------------------------------------------------------------------------- batches


def test_a_batch_with_a_corrupt_file_a_text_file_and_an_existing_output(src):
    Path("src/corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 50)
    Path("src/notes.txt").write_text("not an image")
    image(Path("out/b.jpg"), seed=7)
    before = Path("out/b.jpg").read_bytes()
    r = invoke(["src", "-r", "-o", "out", "-p", "avg(2)", "--workers", "2",
                "--report", "r.json"])
    assert r.exit_code == 1
    assert sorted(tree(Path("out"))) == ["a.png", "b.jpg", "sub/c.png"]
    assert Path("out/b.jpg").read_bytes() == before
    lines = r.stderr.splitlines()
    assert lines[0].startswith("2 ok, 2 failed, 1 skipped in ")
    assert lines[2:] == [
        "failed:",
        "  src/b.jpg: output exists: out/b.jpg (--overwrite replaces it, --skip-existing "
        "skips it)",
        "  src/corrupt.png: not a recognised image or .npy (corrupt, or a format other than "
        "PNG, JPEG, TIFF, BMP, WebP, GIF and .npy)",
        "skipped: 1 not an image or .npy (by its suffix)",
    ]
    assert r.stdout == ""
    doc = json.loads(Path("r.json").read_text())
    validate(doc, report.SCHEMA)
    assert [(f["input"], f["status"]) for f in doc["files"]] == [
        ("src/a.png", "ok"), ("src/b.jpg", "failed"), ("src/corrupt.png", "failed"),
        ("src/notes.txt", "skipped"), ("src/sub/c.png", "ok"),
    ]
    assert doc["summary"]["files"] == 5 and doc["summary"]["megapixels_in"] == 2 * 24 * 32 / 1e6
    assert doc["files"][0]["out_shape"] == [12, 16, 3]
    # again with --overwrite: everything but the corrupt file, exit still 1
    r = invoke(["src", "-r", "-o", "out", "-p", "avg(2)", "--overwrite", "-q"])
    assert r.exit_code == 1
    assert Path("out/b.jpg").read_bytes() != before
    assert r.stderr == (
        "failed: src/corrupt.png: not a recognised image or .npy (corrupt, or a format other "
        "than PNG, JPEG, TIFF, BMP, WebP, GIF and .npy)\n"
    )
    # and with --skip-existing, minus the corrupt file: exit 0
    os.remove("src/corrupt.png")
    r = invoke(["src", "-r", "-o", "out", "-p", "avg(2)", "--skip-existing", "-q"])
    assert r.exit_code == 0 and r.stderr == ""


def test_csv_report(src):
    r = invoke(["src", "-r", "-o", "out", "--op", "max", "-k", "2", "--report", "r.csv"])
    assert r.exit_code == 0
    lines = Path("r.csv").read_text().splitlines()
    assert lines[0] == ",".join(report.FIELDS)
    assert lines[1].startswith("src/a.png,out/a.png,ok,,24x32x3,12x16x3,uint8,")
    backend = "fast" if "fast" in poolcore.available_backends() else "numpy"
    assert lines[4:6] == ["# pipeline=max(2)", f"# backend={backend}"]


def test_dry_run_touches_nothing(src):
    image(Path("out/b.jpg"))
    before = tree(Path("."))
    r = invoke(["src", "-r", "-o", "out", "-p", "avg(2)", "--dry-run", "--report", "r.json",
                "--contact-sheet", "s.png"])
    assert r.exit_code == 1  # b.jpg would fail: its output exists
    assert tree(Path(".")) == before
    assert r.stdout.splitlines() == [
        "src/a.png -> out/a.png  24x32x3 -> 12x16x3",
        "src/b.jpg  failed: output exists: out/b.jpg (--overwrite replaces it, "
        "--skip-existing skips it)",
        "src/sub/c.png -> out/sub/c.png  24x32x4 -> 12x16x4",
    ]
    assert r.stderr.splitlines()[0] == (
        "dry run: 2 to write, 1 would fail, 0 skipped; nothing written"
    )
    assert r.stderr.splitlines()[-1] == "dry run: no report or contact sheet written"


def test_dry_run_fails_an_empty_image_as_the_run_does(src):
    for extra in (["--dry-run"], []):
        r = invoke(["src/a.png", "-o", "z.png", "-p", "adaptive_avg(0)", *extra])
        assert r.exit_code == 1
        assert "src/a.png: z.png: the pooled image would be empty, of shape (0, 0, 3): an " \
               "image needs a pixel (.npy holds empty arrays)" in r.stderr
    assert not Path("z.png").exists()


def test_dry_run_counts_the_pages_a_volume_will_have(src):
    pages = [Image.fromarray(np.full((8, 8), i * 50, np.uint8)) for i in range(2)]
    pages[0].save("stack2.tif", save_all=True, append_images=pages[1:])
    for extra in (["--dry-run"], []):  # 2 pages pool to 1: a JPEG holds it
        r = invoke(["stack2.tif", "-o", "s.jpg", "--layout", "dhw", "-p", "avg(2)", *extra])
        assert r.exit_code == 0, r.stderr
    for extra in (["--dry-run"], []):  # 2 pages stay 2: it does not
        r = invoke(["stack2.tif", "-o", "t.jpg", "--layout", "dhw", "-p", "avg((1, 2, 2))",
                    *extra])
        assert r.exit_code == 1 and "JPEG holds one image but this has 2 frames" in r.stderr


def test_an_input_is_never_overwritten(src):
    os.symlink("src/a.png", "link.png")
    before = tree(Path("src"))
    for args in (["src/a.png", "-o", "src/a.png"], ["src", "-r", "-o", "src"],
                 ["src/a.png", "-o", "src"], ["src/a.png", "-o", "src/sub/../a.png"],
                 ["src/a.png", "-o", "link.png"], ["src/a.png", "-o", "-", "-o", "link.png"]):
        r = invoke([*args, "-p", "avg(2)", "--overwrite"])
        assert r.exit_code == 1, args
        assert "refusing to write over an input" in r.stderr
    assert tree(Path("src")) == before
    assert os.readlink("link.png") == "src/a.png"


def test_one_input_to_a_file_or_a_directory(src):
    assert invoke(["src/a.png", "-o", "x.png", "-p", "avg(2)"]).exit_code == 0
    assert invoke(["src/a.png", "-o", "d/", "-p", "avg(2)"]).exit_code == 0
    assert invoke(["src/a.png", "-o", "x.webp", "-p", "avg(2)", "--quality", "80"]).exit_code == 0
    assert sorted(tree(Path(".")))[:2] == ["d/a.png", "src/a.png"]
    with Image.open("x.webp") as im:
        assert im.format == "WEBP" and im.size == (16, 12)


def test_a_named_file_is_read_by_its_content_whatever_its_suffix(src):
    # An upload saved without a suffix is pooled; a named text file fails (exit 1) with a
    # reason instead of being skipped with exit 0 and no output. Walks still go by suffix.
    shutil.copy("src/a.png", "upload")
    Path("notes.txt").write_text("not an image")
    assert invoke(["upload", "-o", "thumb.png", "-p", "avg(2)"]).exit_code == 0
    assert invoke(["upload", "-o", "d/", "-p", "avg(2)"]).exit_code == 0
    for name in ("thumb.png", "d/upload"):
        with Image.open(name) as im:
            assert im.format == "PNG" and im.size == (16, 12)
    r = invoke(["upload", "notes.txt", "-o", "e/", "-p", "avg(2)"])
    assert r.exit_code == 1
    assert r.stderr.splitlines()[1:] == [
        "failed:",
        "  notes.txt: not a recognised image or .npy (corrupt, or a format other than "
        "PNG, JPEG, TIFF, BMP, WebP, GIF and .npy)",
    ]
    assert sorted(tree(Path("e"))) == ["upload"]


def test_strip_drops_exif_and_keeps_the_colour_profile_and_dpi(src):
    from PIL import ImageCms

    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0)}  # GPS
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.open("src/b.jpg").save("phone.jpg", exif=exif, icc_profile=icc, dpi=(300, 300))
    assert invoke(["phone.jpg", "-o", "kept.jpg", "-p", "avg(2)"]).exit_code == 0
    assert invoke(["phone.jpg", "-o", "thumb.jpg", "-p", "avg(2)", "--strip"]).exit_code == 0
    with Image.open("kept.jpg") as kept, Image.open("thumb.jpg") as thumb:
        assert kept.getexif().get_ifd(0x8825)[1] == "N"
        assert not thumb.getexif() and "exif" not in thumb.info
        assert thumb.info["icc_profile"] == icc and thumb.info["dpi"] == (150, 150)
    # A WebP holds its DPI only in EXIF: --strip keeps a resolution-only EXIF there, and a
    # JPEG whose DPI is its JFIF density gets one too
    Image.open("src/b.jpg").save("plain.jpg", dpi=(300, 300))
    for name, args in (("phone.jpg", ["--strip"]), ("plain.jpg", [])):
        out = f"{name}.webp"
        assert invoke([name, "-o", out, "-p", "avg(2)", *args]).exit_code == 0
        with Image.open(out) as im:
            e = im.getexif()
        assert (int(e[296]), float(e[282]), float(e[283])) == (2, 150, 150)
        assert 0x010F not in e and not e.get_ifd(0x8825)
        assert io.read(out).dpi == (150, 150)
    # EXIF over what a JPEG holds: a clear failure that points at --strip
    big = Image.Exif()
    big[0x010E] = "x" * 70000
    Image.open("src/a.png").save("big.png", exif=big)
    r = invoke(["big.png", "-o", "big.jpg", "-p", "avg(2)"])
    assert r.exit_code == 1 and "over what a JPEG holds (65,533); --strip drops it" in r.stderr
    assert invoke(["big.png", "-o", "big.jpg", "-p", "avg(2)", "--strip"]).exit_code == 0


def test_background_flattens_alpha_so_that_jpeg_can_hold_it(src):
    a = np.zeros((2, 4, 4), np.uint8)
    a[..., 0], a[..., 3] = 255, [[0, 0, 128, 128], [255, 255, 128, 128]]  # red, three alphas
    Image.fromarray(a, "RGBA").save("logo.png")
    r = invoke(["logo.png", "-o", "logo.jpg", "-p", "avg(2)"])
    assert r.exit_code == 1 and "JPEG cannot hold mode RGBA" in r.stderr
    assert invoke(["logo.png", "-o", "flat.png", "-p", "avg(2)", "--background", "white"]
                  ).exit_code == 0
    # composited first, exactly (red stays 255, green and blue are 255 - alpha), then pooled
    with Image.open("flat.png") as im:
        assert im.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(im), [[[255, 128, 128], [255, 127, 127]]])
    assert invoke(["logo.png", "-o", "logo.jpg", "-p", "avg(2)", "--background", "#000"]
                  ).exit_code == 0
    r = invoke(["logo.png", "-o", "x.jpg", "-p", "avg(2)", "--background", "nope"])
    assert r.exit_code == 2 and "'nope' is not a colour" in r.stderr


def test_contact_sheet_says_when_it_shows_only_some(src):
    for i in range(7):
        image(Path(f"src/more/m{i}.png"), seed=20 + i)
    r = invoke(["src", "-r", "-o", "out", "-p", "avg(2)", "--contact-sheet", "sheet.png",
                "--workers", "1"])
    assert r.exit_code == 0
    assert "contact sheet: sheet.png (the first 6 of 10 images)" in r.stderr
    with Image.open("sheet.png") as im:
        assert im.format == "PNG"


def test_a_contact_sheet_not_written_fails_the_run(src):
    """As for --report: what was asked for and not made is exit status 1."""
    Path("file").write_text("in the way of a directory")
    r = invoke(["src", "-r", "-o", "out", "-p", "avg(2)", "--contact-sheet", "file/sheet.png"])
    assert r.exit_code == 1 and "contact sheet file/sheet.png not written" in r.stderr
    # no image written (arrays only, or all skipped): nothing to show, not a failure
    np.save("t.npy", np.zeros((4, 4)))
    r = invoke(["t.npy", "-o", "t2.npy", "-p", "avg(2)", "--contact-sheet", "s2.png"])
    assert r.exit_code == 0 and "no contact sheet: this run wrote no image" in r.stderr
    assert not Path("s2.png").exists()
    # an image read from stdin cannot be read again to be shown: nothing to show either
    r = invoke(["-", "-o", "piped.png", "-p", "avg(2)", "--contact-sheet", "s3.png"],
               input=Path("src/a.png").read_bytes())
    assert r.exit_code == 0 and "no contact sheet" in r.stderr and Path("piped.png").exists()


@pytest.mark.parametrize("extra, named", [(["-s", "2"], "-s/--stride"),
                                          (["--padding", "1"], "--padding"),
                                          (["--ceil-mode"], "--ceil-mode")])
def test_adaptive_shorthand_refuses_window_flags(src, extra, named):
    r = invoke(["src/a.png", "-o", "o.png", "--op", "adaptive_avg", "-k", "7", *extra])
    assert r.exit_code == 2
    assert f"adaptive_avg takes only the output size (-k); it has no {named}" in r.stderr
    assert not Path("o.png").exists()


def test_a_configs_window_flags_do_not_reach_an_adaptive_op_given_on_the_command_line(src):
    Path("c.toml").write_text('op = "max"\nkernel = 3\nstride = 2\npadding = 1\n')
    r = invoke(["src/a.png", "-o", "x.png", "--config", "c.toml", "--op", "adaptive_avg",
                "-k", "7", "--report", "r.json"])
    assert r.exit_code == 0
    assert json.loads(Path("r.json").read_text())["pipeline"] == "adaptive_avg(7)"
    # the config alone (max with its stride and padding) is unchanged
    assert invoke(["src/a.png", "-o", "y.png", "--config", "c.toml"]).exit_code == 0
    with Image.open("y.png") as im:
        assert im.size == (16, 12)


@pytest.mark.skipif(os.name != "posix", reason="closes fd 0 in the child")
def test_a_closed_stdin_fails_the_file_cleanly(src):
    exe = installed_poolimg()
    r = subprocess.run([exe, "-", "-o", "out.png", "-p", "avg(2)"], capture_output=True,
                       timeout=60, preexec_fn=lambda: os.close(0))
    assert r.returncode == 1, r.stderr
    assert b"Traceback" not in r.stderr and not Path("out.png").exists()


@pytest.mark.parametrize("flag, name", [("--report", "r.json"), ("--report", "r.csv"),
                                        ("--contact-sheet", "sheet.png")])
def test_a_rerun_replaces_its_report_but_no_other_file(src, flag, name):
    run = ["src", "-r", "-o", "out", "-p", "avg(2)", "--skip-existing", flag, name]
    assert invoke(run).exit_code == 0
    assert invoke(run).exit_code == 0  # the earlier run's report or sheet: replaced
    assert report.replaceable(name)
    # A file of the user's that happens to have that name is kept, and nothing runs...
    shutil.copy("src/a.png" if name.endswith(".png") else "src/b.jpg", name)
    before = Path(name).read_bytes()
    r = invoke([*run[:-3], flag, name])
    assert r.exit_code == 2
    assert "exists and is not a poolimg" in r.stderr and "--overwrite replaces it" in r.stderr
    assert Path(name).read_bytes() == before
    # ...unless --overwrite says so (which --skip-existing excludes: there, remove it).
    r = invoke([*run[:-2], flag, name])
    assert r.exit_code == 2 and "remove it, or choose another name" in r.stderr
    assert invoke([*run[:-3], "--overwrite", flag, name]).exit_code == 0
    assert Path(name).read_bytes() != before


def test_interrupt_exits_130_and_writes_no_report(src, monkeypatch):
    from poolcore import batch

    real_run = batch.run

    def run(*args, **kwargs):
        it = real_run(*args, **kwargs)
        yield next(it)
        raise KeyboardInterrupt

    monkeypatch.setattr(batch, "run", run)
    r = invoke(["src", "-r", "-o", "out", "-p", "avg(2)", "--report", "r.json", "--workers", "1"])
    assert r.exit_code == 130
    assert r.stderr == ("\npoolimg: interrupted after 1 of 3 files; no partial file is left; "
                        "no report written\n")
    assert not Path("r.json").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_after_the_current_file(src, monkeypatch, signum):
    # The handler only notes the signal (an exception raised inside the worker pool's locks
    # could deadlock its shutdown); no file starts after it, and the run exits 128 + signum.
    from poolcore import batch

    real_run = batch.run

    def run(*args, **kwargs):
        it = real_run(*args, **kwargs)
        yield next(it)
        os.kill(os.getpid(), signum)
        yield from it

    monkeypatch.setattr(batch, "run", run)
    r = invoke(["src", "-r", "-o", "out", "-p", "avg(2)", "--report", "r.json", "--workers", "1"])
    assert r.exit_code == 128 + signum
    assert "poolimg: interrupted after 1 of 3 files" in r.stderr
    assert len(tree(Path("out"))) == 1
    assert not Path("r.json").exists()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored


def test_stdin_to_stdout(src):
    data = Path("src/a.png").read_bytes()
    r = CliRunner().invoke(main, ["-", "-o", "-", "-p", "avg(2)", "-q"], input=data,
                           catch_exceptions=False)
    assert r.exit_code == 0 and r.stderr == ""
    out = Path("piped.png")
    out.write_bytes(r.stdout_bytes)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (16, 12)


# ----------------------------------------------------------------- real processes


def run_exe(args, **kwargs):
    env = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(args, capture_output=True, env=env, timeout=120, **kwargs)


def test_pillows_warnings_are_one_line(src):
    """A file with damaged metadata is pooled, and Pillow's warning about it is one line on
    stderr, not Python's file:line and source pair."""
    exif = Image.Exif()
    exif[0x010F] = "Maker"
    exif[0x8769] = {0x9003: "2020:01:01 00:00:00"}
    Image.open("src/b.jpg").save("bad.jpg", exif=exif.tobytes()[:-6])  # truncated
    r = run_exe([sys.executable, "-m", "cli", "bad.jpg", "-o", "o.jpg", "-p", "avg(2)", "-q"])
    assert r.returncode == 0 and Path("o.jpg").exists()
    assert r.stderr.decode() == "poolimg: warning (Pillow): Truncated File Read\n"


def installed_poolimg():
    exe = shutil.which("poolimg") or str(Path(sys.executable).with_name("poolimg"))
    if not Path(exe).exists():
        pytest.fail("the poolimg script is not installed: pip install -e .")
    return exe


def test_python_m_cli_version():
    r = run_exe([sys.executable, "-m", "cli", "--version"])
    assert r.returncode == 0 and r.stdout.decode() == VERSION_TEXT


def test_quick_exit_keeps_exit_codes_output_and_exit_handlers(src, tmp_path):
    # cli.run ends with os._exit: the status, buffered output and atexit handlers must survive
    marker = tmp_path / "atexit.txt"
    script = ("import atexit; from cli.main import run; "
              f"atexit.register(lambda: open({str(marker)!r}, 'a').write('ran')); run()")
    cases = [
        (["missing.png", "-o", "out/", "--op", "max", "-k", "2"], 1, b"no such file"),
        (["src/a.png", "-o", "out/", "--op", "max"], 2, b"--op needs -k/--kernel"),
        (["src/a.png", "-o", "out/", "--op", "max", "-k", "2"], 0, b"1 ok, 0 failed"),
    ]
    for args, status, text in cases:
        r = run_exe([sys.executable, "-c", script, *args])
        assert r.returncode == status and text in r.stderr, r.stderr
    r = run_exe([sys.executable, "-c", script, "--version"])
    assert r.returncode == 0 and r.stdout.decode() == VERSION_TEXT
    assert marker.read_text() == "ran" * 4


def test_installed_script_pools_a_batch_with_workers(src):
    exe = installed_poolimg()
    for i in range(4):
        image(Path(f"src/more/m{i}.jpg"), seed=30 + i)
    r1 = run_exe([exe, "src", "-r", "-o", "w1", "-p", "max(3, stride=2, padding=1) | avg(2)",
                  "--workers", "1", "--report", "w1.json"])
    r2 = run_exe([sys.executable, "-m", "cli", "src", "-r", "-o", "w2", "-p",
                  "max(3, stride=2, padding=1) | avg(2)", "--workers", "2", "--report",
                  "w2.csv"])
    assert r1.returncode == 0 and r2.returncode == 0, (r1.stderr, r2.stderr)
    assert r1.stdout == b"" and r2.stdout == b""
    assert r1.stderr.decode().startswith("7 ok, 0 failed, 0 skipped in ")
    assert tree(Path("w1")) == tree(Path("w2"))  # byte-identical, whatever the workers
    assert len(tree(Path("w1"))) == 7
    validate(json.loads(Path("w1.json").read_text()), report.SCHEMA)


def test_installed_script_in_a_pipe(src):
    exe = installed_poolimg()
    with open("src/b.jpg", "rb") as f:
        r = run_exe([exe, "-", "-o", "-", "--op", "avg", "-k", "2"], stdin=f)
    assert r.returncode == 0
    assert r.stderr.decode().startswith("1 ok, 0 failed, 0 skipped in ")
    Path("piped.jpg").write_bytes(r.stdout)
    with Image.open("piped.jpg") as im:
        assert im.format == "JPEG" and im.size == (16, 12)
    r = run_exe([exe, "-", "-o", "-", "--op", "avg", "-k", "2"], input=b"not an image")
    assert r.returncode == 1 and r.stdout == b""
    assert "<stdin>" in r.stderr.decode() or "not a recognised image" in r.stderr.decode()


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_reader_that_stops_early_fails_the_file(src, unbuffered):
    """`poolimg - -o - | head -c 10`: the image did not get through, so the file failed and
    the exit status is 1. Unbuffered (PYTHONUNBUFFERED=1, as in many CI images), stdout's
    first write took part of the image and poolimg said "1 ok" with status 0."""
    big = np.random.default_rng(40).integers(0, 256, (600, 800, 3), dtype=np.uint8)
    Image.fromarray(big).save("big.png")  # ~300 KB pooled: more than a pipe holds
    env = {**os.environ, "PYTHONUNBUFFERED": unbuffered}
    with subprocess.Popen([sys.executable, "-m", "cli", "big.png", "-o", "-", "-p", "avg(2)"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as proc:
        assert len(proc.stdout.read(10)) == 10
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 1, err
    assert "Broken pipe" in err and "0 ok, 1 failed" in err


def test_a_closed_stdout_is_no_traceback(src):
    """`poolimg ... >&-`: the file is written and the status is 0; `-o -` fails the file,
    saying why (both were tracebacks and status 1)."""
    r = run_exe([sys.executable, "-m", "cli", "src/a.png", "-o", "c.png", "-p", "avg(2)", "-q"],
                stdout=None, preexec_fn=lambda: os.close(1))
    assert r.returncode == 0 and r.stderr == b"" and Path("c.png").exists()
    r = run_exe([sys.executable, "-m", "cli", "src/a.png", "-o", "-", "-p", "avg(2)", "-q"],
                stdout=None, preexec_fn=lambda: os.close(1))
    assert r.returncode == 1
    assert r.stderr.decode() == "failed: src/a.png: stdout is closed\n"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_a_read_of_stdin_that_blocks(src, sig):
    """`producer | poolimg - ...` under `timeout` or Ctrl-C, the producer stalled: the read
    would block forever; the signal stops it at once, and nothing is written."""
    exe = installed_poolimg()
    proc = subprocess.Popen([exe, "-", "-o", "out.png", "-p", "avg(2)"], stdin=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdin.write(Path("src/a.png").read_bytes()[:40])  # a header, then nothing
    proc.stdin.flush()
    time.sleep(1.0)  # started, and blocked in the read
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)  # (the stdin pipe stays open: no EOF)
    assert proc.returncode == 128 + sig, err.decode()
    assert "no partial file is left" in err.decode()
    assert not Path("out.png").exists() and not [n for n in os.listdir(".") if n[0] == "."]


# `poolimg - -o out.png` typed without `< in.png` would wait for input; `poolimg in.png -o -`
# without `> out.png` would print binary to the terminal: both say so instead.
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a pty as on Linux")
@pytest.mark.parametrize("args, stream, message", [
    (["-", "-o", "out.png"], "stdin", "`-` reads the image from stdin, but stdin is a terminal"),
    (["src/a.png", "-o", "-"], "stdout",
     "`-o -` writes the image to stdout, but stdout is a terminal"),
])
def test_a_terminal_where_an_image_would_go_is_a_usage_error(src, args, stream, message):
    import pty

    exe = installed_poolimg()
    leader, follower = pty.openpty()
    streams = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, stream: follower}
    try:
        r = subprocess.run([exe, *args, "-p", "avg(2)"], **streams, stderr=subprocess.PIPE,
                           timeout=60)
    finally:
        os.close(leader)
        os.close(follower)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr.decode()
    assert not Path("out.png").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_not_read(src):
    # Reading a FIFO (or a device) could block forever: a batch fails it and goes on.
    os.mkfifo("src/pipe.png")
    r = invoke(["src", "-r", "-o", "out", "-p", "avg(2)", "--workers", "1"])
    assert r.exit_code == 1
    assert "not a regular file (a FIFO, socket or device)" in r.stderr
    assert sorted(os.listdir("out")) == ["a.png", "b.jpg", "sub"]


# A batch slow enough to be signalled half-way: numpy's median gathers every 7x7 window
# (~50 ms a file here; the compiled one takes ~1 ms).
SLOW = "median(7, stride=1)"


@pytest.mark.parametrize("sig, group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
def test_ctrl_c_leaves_no_partial_file(src, sig, group):
    """SIGINT to the whole process group, as Ctrl-C in a terminal, or SIGTERM to poolimg, as
    from `timeout`, in the middle of a batch with two workers: exit 128 + the signal, every
    output there is whole, no temporary file, no report."""
    exe = installed_poolimg()
    for i in range(40):
        image(Path(f"big/i{i:02d}.png"), size=(160, 160), seed=i)
    proc = subprocess.Popen(
        [exe, "big", "-r", "-o", "out", "-p", SLOW, "--backend", "numpy", "--workers", "2",
         "--report", "r.json"], start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not any(Path("out").glob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.01)
    if group:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err.decode()
    assert "no partial file is left" in err.decode()
    written = os.listdir("out")
    assert 0 < len(written) < 40
    assert f"interrupted after {len(written)} of 40 files" in err.decode()  # in flight too
    assert not [n for n in written if n.startswith(".")]  # no temporary file
    for name in written:
        with Image.open(Path("out", name)) as im:
            im.load()
            assert im.size == (154, 154)
    assert not Path("r.json").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG")
def test_workers_end_when_poolimg_is_killed(src):
    """SIGKILL (a CI job's timeout) cannot be handled: the workers notice instead, end, and
    leave no temporary file, rather than wait on the pool forever holding the job's output."""
    exe = installed_poolimg()
    for i in range(40):
        image(Path(f"big/i{i:02d}.png"), size=(160, 160), seed=i)
    proc = subprocess.Popen(
        [exe, "big", "-r", "-o", "out", "-p", SLOW, "--backend", "numpy", "--workers", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def workers():
        found = []
        for task in Path(f"/proc/{proc.pid}/task").glob("*"):
            found += (task / "children").read_text().split()
        return found

    deadline = time.monotonic() + 60
    while not (any(Path("out").glob("*.png")) and workers()) and time.monotonic() < deadline:
        time.sleep(0.01)
    children = workers()
    assert children
    proc.kill()
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
             and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]
    for pid in alive:  # not leave them behind when the test fails
        os.kill(int(pid), signal.SIGKILL)
    assert not alive
    assert not [n for n in os.listdir("out") if n.startswith(".")]


def help_text(columns=100) -> str:
    r = CliRunner(env={"COLUMNS": str(columns)}).invoke(main, ["--help"], prog_name="poolimg",
                                                          catch_exceptions=False)
    assert r.exit_code == 0
    return r.stdout


def test_readme_usage_is_the_help():
    """The README's usage block is `poolimg --help` at 100 columns."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    start = text.find("\nUsage: poolimg ")
    assert start >= 0, "the README has no usage block"
    block = text[start + 1:].split("```", 1)[0]
    assert block.rstrip() == help_text().rstrip()


def test_report_directories_are_created_and_a_failed_report_exits_1(src):
    r = invoke(["src/a.png", "-o", "o.png", "-p", "avg(2)", "--report", "reports/r.json"])
    assert r.exit_code == 0 and Path("reports/r.json").exists()
    Path("afile").write_text("a file, not a directory")
    r = invoke(["src/b.jpg", "-o", "o.jpg", "-p", "avg(2)", "--report", "afile/r.csv"])
    assert r.exit_code == 1
    assert ("poolimg: cannot write the report afile/r.csv: afile is a file, not a directory"
            in r.stderr)
    assert Path("o.jpg").exists()


def test_config_shorthand_values_yield_to_a_pipeline_on_the_command_line(src):
    Path("pool.toml").write_text('op = "max"\nkernel = 4\nceil-mode = true\n')
    r = invoke(["src/a.png", "-o", "o.png", "--config", "pool.toml", "-p", "avg(2)"])
    assert r.exit_code == 0
    with Image.open("o.png") as im:
        assert im.size == (16, 12)
    r = invoke(["src/a.png", "-o", "o2.png", "--config", "pool.toml"])
    assert r.exit_code == 0
    with Image.open("o2.png") as im:
        assert im.size == (8, 6)


def test_io_options_reach_io(src):
    r = invoke(["src/a.png", "-o", "o.png", "-p", "avg(2)", "--max-pixels", "100"])
    assert r.exit_code == 1
    assert "over the limit of 100 pixels" in r.stderr and "--max-pixels 768" in r.stderr
    assert invoke(["src/a.png", "-o", "o.png", "-p", "avg(2)", "--max-pixels", "768"]
                  ).exit_code == 0
    np.save("t.npy", np.arange(2 * 8 * 6 * 4, dtype=np.float32).reshape(2, 8, 6, 4))
    r = invoke(["t.npy", "-o", "t2.npy", "-p", "max(2)", "--layout", "nhwc", "--dry-run"])
    assert r.stdout == "t.npy -> t2.npy  2x8x6x4 -> 2x4x3x4\n"
    assert invoke(["t.npy", "-o", "t2.npy", "-p", "max(2)", "--layout", "NHWC"]).exit_code == 0
    assert np.load("t2.npy").shape == (2, 4, 3, 4)
    plain = invoke(["src/a.png", "-o", "p.png", "-p", "avg(2)"])
    linear = invoke(["src/a.png", "-o", "l.png", "-p", "avg(2)", "--linear-light"])
    assert plain.exit_code == linear.exit_code == 0
    with Image.open("p.png") as p, Image.open("l.png") as q:
        assert np.asarray(q).astype(int).mean() > np.asarray(p).astype(int).mean()
