"""poolcore.batch: planning (mirroring, skipping, never writing over an input), running (one bad
file fails alone, workers give the same bytes, no partial file, a dying worker)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from poolcore import Pipeline, batch
from poolcore.batch import BatchOptions, Summary

AVG2 = Pipeline.parse("avg(2)")


def image(path: Path, size=(24, 32), seed=0, mode="RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "L": None, "RGBA": 4}[mode]
    shape = size if channels is None else (*size, channels)
    a = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def photos(tmp_path):
    src = tmp_path / "photos"
    image(src / "a.png", seed=1)
    image(src / "b.jpg", seed=2)
    image(src / "sub" / "c.png", seed=3, mode="L")
    np.save(src / "sub" / "t.npy", np.arange(2 * 8 * 6, dtype=np.float32).reshape(2, 8, 6))
    (src / "notes.txt").write_text("not an image")
    image(src / ".cache" / "hidden.png")
    (src / "._a.png").write_bytes(b"\0\5\26\7" + bytes(60))  # AppleDouble, not a PNG
    return src


def test_several_inputs_into_a_file_name_is_refused(photos, tmp_path):
    opts = BatchOptions(output=tmp_path / "both.png")
    with pytest.raises(ValueError, match="named like a file, but several inputs or a directory"):
        batch.plan([photos / "a.png", photos / "b.jpg"], opts)
    assert not (tmp_path / "both.png").exists()
    # a trailing slash says it is a directory; one input may go to a file of any name
    plan = batch.plan([photos / "a.png", photos / "b.jpg"],
                      BatchOptions(output=f"{tmp_path / 'both.png'}{os.sep}"))
    assert len(plan.tasks) == 2
    assert len(batch.plan([photos / "a.png"], opts).tasks) == 1


def by_input(plan):
    out = {t.input: ("run", t.output) for t in plan.tasks}
    out.update({r.input: (r.status, r.error) for r in plan.decided})
    return out


# ------------------------------------------------------------------------------- planning


def test_plan_mirrors_the_tree_and_skips_what_is_not_ours(photos, tmp_path):
    out = tmp_path / "out"
    plan = batch.plan([photos], BatchOptions(output=out, recursive=True))
    got = by_input(plan)
    assert got == {
        str(photos / "a.png"): ("run", str(out / "a.png")),
        str(photos / "b.jpg"): ("run", str(out / "b.jpg")),
        str(photos / "notes.txt"): ("skipped", "not an image or .npy (by its suffix)"),
        str(photos / "sub" / "c.png"): ("run", str(out / "sub" / "c.png")),
        str(photos / "sub" / "t.npy"): ("run", str(out / "sub" / "t.npy")),
        # as a shell glob would: hidden directories are not entered, hidden files (macOS's
        # ._a.png metadata) not read; each is one visible "skipped" record
        str(photos / ".cache"): ("skipped", batch.HIDDEN),
        str(photos / "._a.png"): ("skipped", batch.HIDDEN),
    }
    assert len(plan) == 7 and plan.output_dir == str(out)
    # sorted, and indices follow that order
    assert [t.index for t in plan.tasks] == [2, 3, 5, 6]


def test_plan_format_changes_the_suffix(photos, tmp_path):
    plan = batch.plan([photos / "a.png", photos / "b.jpg"],
                      BatchOptions(output=tmp_path / "o", format="WEBP"))
    assert [os.path.basename(t.output) for t in plan.tasks] == ["a.webp", "b.webp"]
    assert {t.format for t in plan.tasks} == {"webp"}


def test_one_input_to_a_name_without_a_suffix_is_a_directory(photos, tmp_path):
    # `poolimg *.jpg -o thumbs` when the glob matched one file: thumbs/ as for several
    plan = batch.plan([photos / "a.png"], BatchOptions(output=tmp_path / "thumbs"))
    assert plan.output_dir == str(tmp_path / "thumbs")
    assert plan.tasks[0].output == str(tmp_path / "thumbs" / "a.png")
    (tmp_path / "existing").write_bytes(b"")  # an existing file stays a file
    plan = batch.plan([photos / "a.png"], BatchOptions(output=tmp_path / "existing",
                                                     overwrite=True))
    assert plan.output_dir is None and plan.tasks[0].output == str(tmp_path / "existing")
    with pytest.raises(ValueError, match="named as JPEG but --format asks for PNG"):
        batch.plan([photos / "a.png"], BatchOptions(output=tmp_path / "t.jpeg", format="png"))
    plan = batch.plan([photos / "a.png"], BatchOptions(output=tmp_path / "t.xyz", format="png"))
    assert plan.tasks[0].output == str(tmp_path / "t.xyz")


@pytest.mark.parametrize(
    "inputs, output, message",
    [
        ([], "o", "no inputs given"),
        (["photos"], "o", "is a directory: pass -r"),
        (["-", "photos/a.png"], "o", "must be the only input"),
        (["photos/a.png", "photos/b.jpg"], "photos/a.png", "is a file; with several inputs"),
        (["photos/a.png", "photos/b.jpg"], "-", "takes a single input file"),
        (["-"], "somedir/", "reading stdin: the output must be a file .*or `-`"),
        (["-"], "somedir", "reading stdin: the output must be a file .*or `-`"),
        (["photos/a.png"], "out.xyz", "'.xyz' is not a suffix poolimg writes"),
    ],
)
def test_plan_refuses_impossible_batches(photos, monkeypatch, inputs, output, message):
    monkeypatch.chdir(photos.parent)
    with pytest.raises(ValueError, match=message):
        batch.plan(inputs, BatchOptions(output=output))


def test_single_input_output_is_a_file_unless_it_names_a_directory(photos, tmp_path):
    a = photos / "a.png"
    assert batch.plan([a], BatchOptions(output=tmp_path / "x.png")).tasks[0].output == str(
        tmp_path / "x.png")
    (tmp_path / "d").mkdir()
    assert batch.plan([a], BatchOptions(output=tmp_path / "d")).tasks[0].output == str(
        tmp_path / "d" / "a.png")
    assert batch.plan([a], BatchOptions(output=f"{tmp_path}/new/")).tasks[0].output == str(
        tmp_path / "new" / "a.png")
    # an existing file without a suffix: the input's format
    (tmp_path / "noext").write_bytes(b"")
    assert run_all([a], AVG2, output=tmp_path / "noext", overwrite=True)["a.png"].status == "ok"
    with Image.open(tmp_path / "noext") as im:
        assert im.format == "PNG" and im.size == (16, 12)


def test_an_input_is_never_an_output(photos, tmp_path):
    a = photos / "a.png"
    for opts in (BatchOptions(output=a), BatchOptions(output=a, overwrite=True),
                 BatchOptions(output=a, skip_existing=True)):
        plan = batch.plan([a], opts)
        assert not plan.tasks
        assert plan.decided[0].status == "failed"
        assert plan.decided[0].error == f"refusing to write over an input: {a}"
    # through a symbolic link and a hard link
    (tmp_path / "sym.png").symlink_to(a)
    os.link(a, tmp_path / "hard.png")
    for link in ("sym.png", "hard.png"):
        plan = batch.plan([a], BatchOptions(output=tmp_path / link, overwrite=True))
        assert plan.decided[0].error.startswith("refusing to write over an input")
    # -o pointing at the input directory: every file would land on itself
    plan = batch.plan([photos], BatchOptions(output=photos, recursive=True, overwrite=True))
    assert not plan.tasks
    assert {r.status for r in plan.decided} == {"failed", "skipped"}
    # another input's output: b.jpg -> b.png, where b.png is an input too
    image(photos / "b.png")
    plan = batch.plan([photos / "b.jpg", photos / "b.png"],
                      BatchOptions(output=photos, format="png", overwrite=True))
    assert not plan.tasks
    assert plan.decided[0].error == f"refusing to write over an input: {photos / 'b.png'}"


def test_existing_outputs_fail_unless_overwrite_or_skip(photos, tmp_path):
    out = tmp_path / "out"
    image(out / "a.png")
    msg = f"output exists: {out / 'a.png'} (--overwrite replaces it, --skip-existing skips it)"
    got = by_input(batch.plan([photos / "a.png", photos / "b.jpg"], BatchOptions(output=out)))
    assert got[str(photos / "a.png")] == ("failed", msg)
    got = by_input(batch.plan([photos / "a.png"], BatchOptions(output=out, skip_existing=True)))
    assert got[str(photos / "a.png")] == ("skipped", "output exists")
    got = by_input(batch.plan([photos / "a.png"], BatchOptions(output=out, overwrite=True)))
    assert got[str(photos / "a.png")] == ("run", str(out / "a.png"))


@pytest.mark.parametrize("skip", [True, False])
def test_an_output_that_appears_during_the_run(photos, tmp_path, skip):
    """Planned when it did not exist, written meanwhile by another process: skipped with
    --skip-existing (as if found when planning), else failed; never clobbered."""
    out = tmp_path / "out"
    plan = batch.plan([photos / "a.png"], BatchOptions(output=out, skip_existing=skip))
    image(out / "a.png", seed=9)
    before = (out / "a.png").read_bytes()
    (rec,) = batch.run(plan, AVG2, BatchOptions(output=out, skip_existing=skip, workers=1))
    assert (rec.status, rec.error is not None) == ("skipped" if skip else "failed", True)
    assert "exists" in rec.error and (out / "a.png").read_bytes() == before


def test_several_directories_are_mirrored_each_under_its_name(photos, tmp_path):
    """poolimg -r photos/2023 photos/2024 -o small: small/2023/..., small/2024/... (as cp -r),
    not one flattened tree in which files of the same name clash."""
    for year in ("2023", "2024"):
        image(tmp_path / year / "IMG_0001.jpg")
    plan = batch.plan([tmp_path / "2023", tmp_path / "2024", photos / "a.png"],
                      BatchOptions(output=tmp_path / "o", recursive=True))
    outs = sorted(os.path.relpath(t.output, tmp_path / "o") for t in plan.tasks)
    assert outs == ["2023/IMG_0001.jpg", "2024/IMG_0001.jpg", "a.png"]
    # one directory: its files straight under the output, as before
    plan = batch.plan([tmp_path / "2023"], BatchOptions(output=tmp_path / "o", recursive=True))
    assert [os.path.relpath(t.output, tmp_path / "o") for t in plan.tasks] == ["IMG_0001.jpg"]
    # directories of the same name: their paths from where they part
    for d in ("x", "y"):
        image(tmp_path / d / "data" / "a.png")
    plan = batch.plan([tmp_path / "x" / "data", tmp_path / "y" / "data"],
                      BatchOptions(output=tmp_path / "o", recursive=True))
    assert sorted(os.path.relpath(t.output, tmp_path / "o") for t in plan.tasks) == [
        "x/data/a.png", "y/data/a.png"]


def test_two_inputs_never_share_an_output(photos, tmp_path):
    image(photos / "x" / "a.jpg")
    a, a2 = str(photos / "a.png"), str(photos / "x" / "a.jpg")
    plan = batch.plan([a, a2], BatchOptions(output=tmp_path / "o", format="png"))
    assert by_input(plan) == {
        a: ("run", str(tmp_path / "o" / "a.png")),
        a2: ("failed", f"same output as {a}: {tmp_path / 'o' / 'a.png'}"),
    }


def test_megapixels_count_an_arrays_every_element_and_an_images_pixels():
    from poolcore import io

    assert io.Item(np.zeros((2, 3, 64, 64)), (2, 3), "npy").pixels == 2 * 3 * 64 * 64
    assert io.Item(np.zeros((64, 48, 3), np.uint8), (0, 1), "image", mode="RGB").pixels == (
        64 * 48)


def test_an_input_given_twice_is_pooled_once(photos, tmp_path):
    a = str(photos / "a.png")
    plan = batch.plan([a, a, "./" + os.path.relpath(a)], BatchOptions(output=tmp_path / "o"))
    assert [t.input for t in plan.tasks] == [a]
    assert [(r.status, r.error) for r in plan.decided] == [("skipped", "given twice (pooled "
                                                            "once)")] * 2


def test_missing_inputs_and_links(photos, tmp_path):
    (photos / "loop").symlink_to(photos, target_is_directory=True)
    (photos / "dead.png").symlink_to(tmp_path / "nowhere.png")
    plan = batch.plan([photos, tmp_path / "missing.png"],
                      BatchOptions(output=tmp_path / "o", recursive=True))
    got = by_input(plan)
    assert got[str(photos / "loop")] == ("skipped", "symbolic link to a directory (not followed)")
    assert got[str(photos / "dead.png")] == ("failed", "broken symbolic link")
    assert got[str(tmp_path / "missing.png")] == ("failed", "no such file")


def test_a_dangling_link_that_is_not_an_image_is_skipped(photos, tmp_path):
    """In a walk, files go by their suffix first: a dead LICENSE.txt link does not fail a
    CI run."""
    (photos / "LICENSE.txt").symlink_to(tmp_path / "nowhere")
    plan = batch.plan([photos], BatchOptions(output=tmp_path / "o", recursive=True))
    assert by_input(plan)[str(photos / "LICENSE.txt")] == (
        "skipped", "not an image or .npy (by its suffix)")


@pytest.mark.skipif(os.geteuid() == 0 and not shutil.which("setpriv"), reason="root reads all")
def test_an_unlistable_directory_is_named_wherever_it_is_walked(photos, tmp_path):
    """The failure names the directory that could not be listed, the last one walked too
    (it was said of the root)."""
    locked = photos / "zz"
    image(locked / "x.png")
    locked.chmod(0)
    try:
        code = (f"import sys, json; sys.path[:0] = {sys.path!r}; from poolcore import batch; "
                f"p = batch.plan([{str(photos)!r}], batch.BatchOptions(output={str(tmp_path)!r}"
                f" + '/o', recursive=True)); "
                "print(json.dumps([[r.input, r.status, r.error] for r in p.decided]))")
        cmd = [sys.executable, "-c", code]
        if os.geteuid() == 0:  # root lists anything: drop that power
            cmd = ["setpriv", "--inh-caps=-dac_override,-dac_read_search",
                   "--bounding-set=-dac_override,-dac_read_search", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    finally:
        locked.chmod(0o755)
    failed = [(i, e) for i, s, e in json.loads(out) if s == "failed"]
    assert failed == [(str(locked), "cannot list: Permission denied")]


def test_the_output_directory_inside_an_input_is_not_read(photos):
    out = photos / "small"
    image(out / "old.png")
    plan = batch.plan([photos], BatchOptions(output=out, recursive=True))
    assert not any("small" in t.input for t in plan.tasks)
    # said as a skipped entry: a run whose only images are there does not end in "no files"
    assert by_input(plan)[str(out)] == ("skipped", batch.OUTPUT_DIR)


def test_options_are_checked():
    with pytest.raises(ValueError, match="exclude each other"):
        BatchOptions(output="o", overwrite=True, skip_existing=True)
    with pytest.raises(ValueError, match="`workers` must be >= 1"):
        BatchOptions(output="o", workers=0)
    with pytest.raises(ValueError, match="unsupported output format 'xcf'"):
        BatchOptions(output="o", format="xcf")


# -------------------------------------------------------------------------------- running


def run_all(inputs, pipeline, **kw):
    records = list(batch.run(inputs, pipeline, BatchOptions(**kw)))
    return {Path(r.input).name: r for r in records}


def test_one_bad_file_fails_alone(photos, tmp_path):
    (photos / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (photos / "text.jpg").write_text("hello")
    out = tmp_path / "out"
    image(out / "b.jpg", seed=9)
    before = (out / "b.jpg").read_bytes()
    got = run_all([photos], AVG2, output=out, recursive=True, workers=1)
    assert {n: r.status for n, r in got.items()} == {
        "a.png": "ok", "b.jpg": "failed", "c.png": "ok", "t.npy": "ok", "notes.txt": "skipped",
        "corrupt.png": "failed", "text.jpg": "failed", ".cache": "skipped", "._a.png": "skipped",
    }
    assert got["b.jpg"].error.startswith("output exists")
    assert got["corrupt.png"].error and got["text.jpg"].error
    assert (out / "b.jpg").read_bytes() == before
    assert sorted(tree(out)) == ["a.png", "b.jpg", "sub/c.png", "sub/t.npy"]
    a = got["a.png"]
    assert a.in_shape == (24, 32, 3) and a.out_shape == (12, 16, 3) and a.dtype == "uint8"
    assert a.pixels == 24 * 32
    assert all(t is not None and t >= 0 for t in (a.read_s, a.pool_s, a.write_s, a.total_s))
    assert a.total_s >= a.read_s + a.pool_s + a.write_s
    assert got["t.npy"].out_shape == (2, 4, 3)
    summary = Summary.of(list(got.values()), 1.0)
    assert (summary.ok, summary.failed, summary.skipped, summary.exit_code) == (3, 3, 3, 1)


@pytest.fixture(params=["fork", "forkserver"])
def start_method(request, monkeypatch):
    """Run the test's worker pools started both ways: by fork (what poolimg, single-threaded,
    gets) and from the fork server (any process with threads)."""
    import multiprocessing as mp

    if request.param not in mp.get_all_start_methods():
        pytest.skip(f"no {request.param} here")
    monkeypatch.setattr(batch, "_single_threaded", lambda: request.param == "fork")
    assert batch._mp_context().get_start_method() == request.param
    return request.param


def test_workers_fork_only_from_a_single_threaded_process(monkeypatch):
    import threading

    if not os.path.isdir("/proc/self/task"):
        pytest.skip("thread count unknown here: never fork")
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not batch._single_threaded()
        assert batch._mp_context().get_start_method() != "fork"
    finally:
        stop.set()
        t.join()


def test_two_workers_write_the_same_bytes_as_one(photos, tmp_path, start_method):
    for i in range(6):
        image(photos / "more" / f"m{i}.png", seed=10 + i)
    pipe = Pipeline.parse("max(3, stride=2, padding=1) | avg(2)")
    one = run_all([photos], pipe, output=tmp_path / "w1", recursive=True, workers=1)
    two = run_all([photos], pipe, output=tmp_path / "w2", recursive=True, workers=2)
    assert tree(tmp_path / "w1") == tree(tmp_path / "w2")
    assert len(tree(tmp_path / "w1")) == 10
    assert {n: (r.status, r.out_shape) for n, r in one.items()} == {
        n: (r.status, r.out_shape) for n, r in two.items()
    }


def test_records_stream_with_input_indices(photos, tmp_path):
    records = list(batch.run([photos], AVG2, BatchOptions(output=tmp_path / "o", recursive=True,
                                                          workers=2)))
    assert sorted(r.index for r in records) == list(range(7))
    assert records[0].status == "skipped"  # decided while planning: first


def test_fail_fast_stops_after_the_first_failure(photos, tmp_path):
    (photos / "0bad.png").write_text("not a png")
    got = run_all([photos], AVG2, output=tmp_path / "o", recursive=True, workers=1,
                  fail_fast=True)
    assert got["0bad.png"].status == "failed"
    assert {got[n].status for n in ("a.png", "b.jpg", "c.png", "t.npy")} == {"skipped"}
    assert got["a.png"].error.startswith("not run")
    assert not (tmp_path / "o").exists()


def test_fail_fast_stops_at_a_failure_found_while_planning(photos, tmp_path):
    (photos / "0dead.png").symlink_to(tmp_path / "nowhere.png")
    got = run_all([photos], AVG2, output=tmp_path / "o", recursive=True, fail_fast=True)
    assert got["0dead.png"].status == "failed"
    assert {got[n].status for n in ("a.png", "b.jpg", "c.png", "t.npy")} == {"skipped"}
    assert "--fail-fast" in got["a.png"].error
    assert not (tmp_path / "o").exists()


def test_dry_run_reads_but_writes_nothing(photos, tmp_path):
    got = run_all([photos], AVG2, output=tmp_path / "o", recursive=True, dry_run=True,
                  workers=1)
    assert not (tmp_path / "o").exists()
    assert got["a.png"].status == "ok"
    assert got["a.png"].out_shape == (12, 16, 3) and got["a.png"].write_s is None


def test_dry_run_fails_what_the_write_would_refuse(tmp_path):
    # A dry run is a CI gate: it must not promise files that the real run then fails.
    image(tmp_path / "in" / "rgba.png", mode="RGBA")
    image(tmp_path / "in" / "rgb.png")
    kw = dict(output=tmp_path / "o", recursive=True, format="jpg", workers=1)
    dry = run_all([tmp_path / "in"], AVG2, dry_run=True, **kw)
    real = run_all([tmp_path / "in"], AVG2, **kw)
    for got in (dry, real):
        assert got["rgba.png"].status == "failed" and got["rgb.png"].status == "ok"
    assert "JPEG cannot hold mode RGBA" in dry["rgba.png"].error
    assert dry["rgba.png"].error == real["rgba.png"].error


def test_a_pipeline_error_is_the_files_failure(photos, tmp_path):
    got = run_all([photos / "a.png"], Pipeline.parse("max(40)"), output=tmp_path / "o.png")
    assert got["a.png"].status == "failed"
    assert "kernel" in got["a.png"].error or "output" in got["a.png"].error
    assert not (tmp_path / "o.png").exists()


# ------------------------------------------------------------ failures half-way through a write


class Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [Boom, KeyboardInterrupt])
def test_no_partial_file_after_a_failure_mid_write(photos, tmp_path, monkeypatch, exc):
    """The encoder writes part of the file, then dies (disk full, Ctrl-C): nothing is left."""
    real_save = Image.Image.save

    def save(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)  # the bytes reach the temporary file ...
        raise exc("disk full")  # ... and then the write fails

    monkeypatch.setattr(Image.Image, "save", save)
    out = tmp_path / "out"
    out.mkdir()
    if exc is KeyboardInterrupt:
        with pytest.raises(KeyboardInterrupt):
            list(batch.run([photos / "a.png"], AVG2, BatchOptions(output=out / "a.png")))
    else:
        got = run_all([photos / "a.png"], AVG2, output=out / "a.png")
        assert got["a.png"].status == "failed" and "disk full" in got["a.png"].error
    assert os.listdir(out) == []


def test_a_failed_overwrite_keeps_the_old_output(photos, tmp_path, monkeypatch):
    out = image(tmp_path / "a.png", seed=5)
    before = out.read_bytes()

    def save(self, fp, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", save)
    got = run_all([photos / "a.png"], AVG2, output=out, overwrite=True)
    assert got["a.png"].status == "failed"
    assert out.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["a.png", "photos"]


# --------------------------------------------------------------------------- a dying worker


class DiesOnTall:
    """A picklable pipeline whose worker process dies on images taller than 30 rows."""

    def __init__(self):
        self.inner = AVG2

    def __call__(self, x, axes=None, backend="auto"):
        if x.shape[0] > 30:
            os._exit(3)
        return self.inner(x, axes=axes, backend=backend)

    def output_shape(self, shape, axes=None):
        return self.inner.output_shape(shape, axes)

    def scale(self, shape, axes=None):
        return self.inner.scale(shape, axes)

    @property
    def stages(self):
        return [self]  # pool_item runs the stages: this one dies

    base_op = "avg"

    def __str__(self):
        return str(self.inner)


@pytest.mark.parametrize("n_ok", [8, 40])  # 40: files go to the workers several at a time
def test_a_dying_worker_fails_only_its_file(tmp_path, start_method, n_ok):
    src = tmp_path / "src"
    for i in range(n_ok):
        image(src / f"ok{i:02d}.png", size=(20, 20), seed=i)
    image(src / "ok03x.png", size=(40, 20))  # dies, beside others in flight
    image(src / "zz.png", size=(40, 20))  # dies, last
    got = run_all([src], DiesOnTall(), output=tmp_path / "o", recursive=True, workers=2)
    for name in ("ok03x.png", "zz.png"):
        assert got[name].status == "failed"
        assert got[name].error.startswith("the worker process died on this file")
    assert {n: r.error for n, r in got.items() if n not in ("ok03x.png", "zz.png")} == {
        f"ok{i:02d}.png": None for i in range(n_ok)
    }
    # The pool SIGTERMs the workers beside the dead one: each cleans up after itself. (A hidden
    # temporary file can still be left if the signal lands inside io's commit step; see
    # poolcore/io.py. The outputs under their own names are whole.)
    outputs = [n for n in tree(tmp_path / "o") if not n.startswith(".")]
    assert outputs == [f"ok{i:02d}.png" for i in range(n_ok)]
    for name in outputs:
        with Image.open(tmp_path / "o" / name) as im:
            im.load()


def test_small_files_go_to_workers_in_chunks_and_suspects_alone():
    from collections import deque

    tasks = deque(batch.Task(i, f"in{i}", f"out{i}", size=100_000) for i in range(100))
    first = batch._take_chunk(tasks, set(), workers=2)
    assert len(first) == batch.CHUNK_FILES  # 8 x 100 kB < 1 MB
    big = deque(batch.Task(i, f"in{i}", f"out{i}", size=600_000) for i in range(100))
    assert len(batch._take_chunk(big, set(), workers=2)) == 1  # 1.2 MB would be over
    tail = deque(batch.Task(i, f"in{i}", f"out{i}", size=10) for i in range(6))
    assert len(batch._take_chunk(tail, set(), workers=2)) == 1  # the last few spread out
    solo = {3}
    mixed = deque(batch.Task(i, f"in{i}", f"out{i}", size=10) for i in range(1, 100))
    assert [t.index for t in batch._take_chunk(mixed, solo, workers=1)] == [1, 2]
    assert [t.index for t in batch._take_chunk(mixed, solo, workers=1)] == [3]  # alone


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stop_lets_the_files_in_flight_finish_and_skips_the_rest(tmp_path, workers):
    src = tmp_path / "src"
    for i in range(30):
        image(src / f"i{i:02d}.png", size=(20, 20), seed=i)
    records = []
    for rec in batch.run([src], AVG2, BatchOptions(output=tmp_path / "o", recursive=True,
                                                   workers=workers),
                         stop=lambda: len(records) > 0):  # stop after the first file
        records.append(rec)
    ok = [r for r in records if r.status == "ok"]
    assert len(records) == 30 and 0 < len(ok) < 30
    assert sorted(tree(tmp_path / "o")) == sorted(Path(r.output).name for r in ok)
    assert {r.error for r in records if r.status != "ok"} == {
        "not run: the batch ended early: it was stopped"}


def test_small_batches_run_here_unless_workers_are_asked_for(photos, tmp_path, monkeypatch):
    pools = []

    def pool(tasks, pipeline, options, workers, stop):
        pools.append(workers)
        yield from batch._run_here(tasks, pipeline, options, stop)

    monkeypatch.setattr(batch, "_run_pool", pool)
    monkeypatch.setattr(batch, "_cpu_count", lambda: 4)
    plan = batch.plan([photos], BatchOptions(output=tmp_path / "a", recursive=True))
    assert 0 < plan.input_bytes < batch.SMALL_BATCH_BYTES
    list(batch.run(plan, AVG2, BatchOptions(output=tmp_path / "a", recursive=True)))
    assert pools == []
    list(batch.run([photos], AVG2, BatchOptions(output=tmp_path / "b", recursive=True,
                                                workers=3)))
    assert pools == [3]
    monkeypatch.setattr(batch, "SMALL_BATCH_BYTES", 1)
    list(batch.run([photos], AVG2, BatchOptions(output=tmp_path / "c", recursive=True)))
    assert pools == [3, 4]



# ---- reading ahead: one process, the next file decoded while this one is pooled and written


def _trace_steps(monkeypatch, spare: int, wait: float = 5.0, sizes=(0, 1 << 20)):
    """Run with ``spare`` reader threads, reading ahead after files that decoded to
    ``sizes`` bytes, and log when each file's read starts and its write ends. Each write
    first waits (up to ``wait`` s) for the next file's read to start, so that a read ahead
    shows as ("read", i + 1) before ("written", i) on any machine."""
    import threading

    if spare is not None:  # None: as options.threads and the backend's setting say
        monkeypatch.setattr(batch, "_spare_threads", lambda options: spare)
    monkeypatch.setattr(batch, "READ_AHEAD_BYTES", sizes)
    log, started = [], {}
    read, pool_and_write = batch._read, batch._pool_and_write

    def event(i):
        return started.setdefault(i, threading.Event())

    def traced_read(task, options):
        log.append(("read", task.index))
        event(task.index).set()
        return read(task, options)

    def traced_write(rd, task, pipeline, options):
        if task.index < 4:  # the last of _five_files has no next
            event(task.index + 1).wait(wait if spare != 0 else 0)
        rec = pool_and_write(rd, task, pipeline, options)
        log.append(("written", task.index))
        return rec

    monkeypatch.setattr(batch, "_read", traced_read)
    monkeypatch.setattr(batch, "_pool_and_write", traced_write)
    return log


def _five_files(tmp_path):
    src = tmp_path / "src"
    for i in range(5):
        image(src / f"i{i}.png", size=(20, 20), seed=i)
    (src / "i2.png").write_bytes(b"not a png")  # a failed read in the middle
    return src


def test_one_process_reads_the_next_file_while_writing_this_one(tmp_path, monkeypatch):
    src = _five_files(tmp_path)
    log = _trace_steps(monkeypatch, spare=1)
    ahead = list(batch.run([src], AVG2, BatchOptions(output=tmp_path / "a", recursive=True,
                                                     workers=1)))
    for i in range(4):
        assert log.index(("read", i + 1)) < log.index(("written", i)), log
    assert [r.status for r in ahead] == ["ok", "ok", "failed", "ok", "ok"]
    assert ahead[2].error.startswith("not a recognised image")

    # the same records and the same bytes as one file after the other
    monkeypatch.undo()
    log = _trace_steps(monkeypatch, spare=0)
    plain = list(batch.run([src], AVG2, BatchOptions(output=tmp_path / "p", recursive=True,
                                                     workers=1)))
    assert log == [(step, i) for i in range(5) for step in ("read", "written")]
    assert [(r.status, r.error, r.in_shape, r.out_shape) for r in plain] == [
        (r.status, r.error, r.in_shape, r.out_shape) for r in ahead]
    assert tree(tmp_path / "p") == tree(tmp_path / "a")


@pytest.mark.parametrize("sizes, ahead_after", [
    ((0, 20 * 20 * 3 - 1), [2]),  # every image is too large: only after the failed read
    ((20 * 20 * 3 + 1, 1 << 20), []),  # every image (and a failed read) is too small
])
def test_read_ahead_only_after_a_file_of_the_right_size(tmp_path, monkeypatch, sizes,
                                                        ahead_after):
    src = _five_files(tmp_path)
    log = _trace_steps(monkeypatch, spare=1, wait=0.2, sizes=sizes)
    list(batch.run([src], AVG2, BatchOptions(output=tmp_path / "o", recursive=True,
                                             workers=1)))
    for i in range(4):
        ahead = log.index(("read", i + 1)) < log.index(("written", i))
        assert ahead == (i in ahead_after), log


@pytest.mark.parametrize("spare", [0, 1])
def test_a_file_read_ahead_is_not_written_after_a_stop_or_a_failure(tmp_path, monkeypatch,
                                                                    spare):
    src = _five_files(tmp_path)
    log = _trace_steps(monkeypatch, spare)
    records = []
    for rec in batch.run([src], AVG2, BatchOptions(output=tmp_path / "o", recursive=True,
                                                   workers=1),
                         stop=lambda: len(records) > 0):
        records.append(rec)
    assert [r.status for r in records] == ["ok"] + ["skipped"] * 4
    assert sorted(tree(tmp_path / "o")) == ["i0.png"]
    assert [step for step in log if step[0] == "written"] == [("written", 0)]
    assert ("read", 1) in log if spare else ("read", 1) not in log

    got = run_all([src], AVG2, output=tmp_path / "f", recursive=True, workers=1,
                  fail_fast=True)
    assert [got[f"i{i}.png"].status for i in range(5)] == ["ok", "ok", "failed", "skipped",
                                                          "skipped"]
    assert sorted(tree(tmp_path / "f")) == ["i0.png", "i1.png"]


def test_threads_option_sets_the_kernels_and_the_read_ahead(tmp_path, monkeypatch):
    """``threads`` holds for the kernels while the run lasts (then the setting is back), and
    one thread means no reading ahead; in worker processes it replaces the default of 1."""
    fast_backend = pytest.importorskip("poolcore.fast_backend")
    import subprocess
    import sys
    import textwrap

    with pytest.raises(ValueError, match="`threads` must be >= 1, got 0"):
        BatchOptions(threads=0)
    src = _five_files(tmp_path)
    before = fast_backend.get_threads()
    for threads in (1, 2):
        log = _trace_steps(monkeypatch, spare=None, wait=0.5)
        seen = []

        def spy(*args, seen=seen, write=batch._pool_and_write):
            seen.append(fast_backend.get_threads())
            return write(*args)

        monkeypatch.setattr(batch, "_pool_and_write", spy)
        list(batch.run([src], AVG2, BatchOptions(output=tmp_path / f"t{threads}",
                                                 recursive=True, workers=1, threads=threads)))
        assert set(seen) == {threads} and fast_backend.get_threads() == before
        ahead = [log.index(("read", i + 1)) < log.index(("written", i)) for i in range(4)]
        assert ahead == [threads > 1] * 4, log
        monkeypatch.undo()

    code = ("import os; from poolcore import batch, fast_backend, Pipeline\n"
            "for t in (None, 3):\n"
            "    options = batch.BatchOptions(threads=t)\n"
            "    batch._init_worker(Pipeline.parse('avg(2)'), options, None)\n"
            "    print(fast_backend.get_threads(), os.environ['POOLCORE_THREADS'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["1", "1", "3", "3"]

    # in a worker process (a child of this test), a chunk reads ahead with --threads 2
    code = textwrap.dedent("""
        import sys, threading
        from poolcore import batch, Pipeline
        threads = None if sys.argv[2] == "-" else int(sys.argv[2])
        options = batch.BatchOptions(output=sys.argv[3], recursive=True, threads=threads)
        batch.READ_AHEAD_BYTES = (0, 1 << 20)
        batch._init_worker(Pipeline.parse("avg(2)"), options, None)
        log, started, read, write = [], {}, batch._read, batch._pool_and_write
        def event(i):
            return started.setdefault(i, threading.Event())
        def traced_read(task, o):
            log.append("r")
            event(task.index).set()
            return read(task, o)
        def traced_write(rd, task, *rest):
            if threads and task.index < 4:
                event(task.index + 1).wait(5)
            log.append("w")
            return write(rd, task, *rest)
        batch._read, batch._pool_and_write = traced_read, traced_write
        records = batch._work(list(batch.plan([sys.argv[1]], options).tasks))
        print("".join(log), "".join(r.status[0] for r in records))
    """)
    for threads, steps in (("-", "rwrwrwrwrw"), ("2", "rrwrwrwrww")):
        out = subprocess.run([sys.executable, "-c", code, str(src), threads,
                              str(tmp_path / f"w{threads}")], capture_output=True, text=True,
                             check=True).stdout.split()
        assert out == [steps, "oofoo"]
