"""Batches: plan an output for every input, run a pipeline over them in worker processes, and
yield one :class:`Record` per input as each finishes.

The rules that keep a batch safe live here, not in the CLI, so that Python callers get them too:

- outputs mirror the input tree under the output directory (``-o`` is a file only for a single
  input file); a directory is descended only with ``recursive=True``, hidden directories and
  symbolic links to directories are not followed, and the output directory is never read as
  input when it lies inside an input directory;
- files that are neither images nor ``.npy`` (by their suffix) are *skipped*, not failed;
- an output is never an input: not by name, not through a symbolic or hard link, not through
  another input's output; an existing output *fails* unless ``overwrite`` (replaced) or
  ``skip_existing`` (skipped); two inputs never share an output;
- a file that cannot be read, pooled or written fails alone with its reason; the batch goes on
  unless ``fail_fast``;
- writes are atomic (:func:`poolcore.io.write`), and workers ignore Ctrl-C: on an interrupt the
  parent stops handing out work and lets the files in flight finish, so no partial file is left;
- a worker process that dies (a crash in a decoder, the out-of-memory killer) fails only the
  file that killed it: the files that were in flight beside it are retried one at a time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

STDIO = "-"
# With workers=None, a batch with less input than this runs in this process: starting worker
# processes (~0.15-0.3 s) costs more than they save on a few MB of images.
SMALL_BATCH_BYTES = 4 << 20

# The per-file fields of a report, in order (see poolcore.report).
FIELDS = (
    "input", "output", "status", "error", "in_shape", "out_shape", "dtype",
    "read_s", "pool_s", "write_s", "total_s",
)
STATUSES = ("ok", "failed", "skipped")


@dataclass
class BatchOptions:
    """How a batch runs. ``output`` is a directory, or a file (or ``"-"``, stdout) when there is
    a single input file; ``workers=None`` means one per CPU."""

    output: str | os.PathLike | None = None
    recursive: bool = False
    workers: int | None = None  # None: one per CPU, or 1 for a batch under SMALL_BATCH_BYTES
    backend: str = "auto"
    layout: str | None = None
    overwrite: bool = False
    skip_existing: bool = False
    fail_fast: bool = False
    dry_run: bool = False
    format: str | None = None
    quality: int | None = None
    strip: bool = False  # drop EXIF (GPS, camera, dates); ICC and DPI stay
    background: tuple[int, int, int] | None = None  # flatten alpha onto this RGB colour
    linear_light: bool = False
    max_pixels: int | None = None
    # Threads per process, for the compiled kernels and for reading ahead (_run_here). None:
    # the fast backend's setting (POOLCORE_THREADS, else the CPU count) when the files run in
    # this process, 1 in each worker process (one level of parallelism). In this process it
    # is the kernels' process-wide setting (fast_backend.set_threads) while the run lasts:
    # other pooling meanwhile uses it too, and runs interleaved share one setting.
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.overwrite and self.skip_existing:
            raise ValueError("`overwrite` and `skip_existing` exclude each other")
        for name in ("workers", "threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"`{name}` must be >= 1, got {value}")
        if self.threads is not None:
            try:
                from .fast_backend import MAX_THREADS
            except ImportError:  # no compiled kernels: threads only read ahead
                pass
            else:
                if self.threads > MAX_THREADS:
                    raise ValueError(f"`threads` must be from 1 to {MAX_THREADS} (the compiled "
                                     f"kernels' limit), got {self.threads}")
        if self.format is not None:
            from .io import normalize_format

            normalize_format(self.format)  # raises ValueError naming the formats
            self.format = self.format.lower().lstrip(".")

    @property
    def n_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        return _cpu_count()


@dataclass
class Record:
    """What happened to one input. Times are seconds, ``None`` for a step not reached;
    ``total_s`` is the time spent on the file: its steps, not time waiting to be written
    after it was read ahead."""

    input: str
    output: str | None
    status: str
    error: str | None = None
    in_shape: tuple[int, ...] | None = None
    out_shape: tuple[int, ...] | None = None
    dtype: str | None = None
    read_s: float | None = None
    pool_s: float | None = None
    write_s: float | None = None
    total_s: float | None = None
    # Not part of the report's per-file schema:
    index: int = field(default=0, repr=False)  # position in the input order
    pixels: int = field(default=0, repr=False)  # of the input: poolcore.io.Item.pixels

    def as_dict(self) -> dict:
        """The report's per-file fields (shapes as lists)."""
        d = {name: getattr(self, name) for name in FIELDS}
        for key in ("in_shape", "out_shape"):
            if d[key] is not None:
                d[key] = list(d[key])
        return d


@dataclass(frozen=True)
class Task:
    """One input to run: where from, where to, in which output format."""

    index: int
    input: str
    output: str
    format: str | None = None
    # A retry after a worker died: the output may be the whole file the first attempt wrote
    # (the output did not exist when planned, or overwrite was given), so it is replaced.
    retry: bool = False
    size: int = 0  # bytes of the input (0: unknown), to group small files for the workers


@dataclass
class Plan:
    """The outcome of :func:`plan`: the tasks to run and the records decided without running
    (skipped files, inputs that cannot be planned). ``len(plan)`` counts both."""

    tasks: list[Task]
    decided: list[Record]
    output_dir: str | None = None  # the directory outputs go under, if not a single file
    input_bytes: int = 0  # total size of the input files

    def __len__(self) -> int:
        return len(self.tasks) + len(self.decided)


@dataclass(frozen=True)
class Summary:
    """Counts and throughput of a finished batch; ``exit_code`` is 0 when nothing failed."""

    files: int
    ok: int
    failed: int
    skipped: int
    wall_s: float
    megapixels_in: float

    @classmethod
    def of(cls, records: Sequence[Record], wall_s: float) -> Summary:
        """Summarise ``records``. ``megapixels_in`` counts the inputs written (ok): the
        elements of their pooled planes, over all frames (width x height for an image)."""
        count = {status: 0 for status in STATUSES}
        for r in records:
            count[r.status] += 1
        mpix = sum(r.pixels for r in records if r.status == "ok") / 1e6
        return cls(len(records), count["ok"], count["failed"], count["skipped"], wall_s, mpix)

    @property
    def mpix_per_s(self) -> float:
        return self.megapixels_in / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def files_per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def backend_name(backend: str) -> str:
    """The backend that runs for ``backend`` here: ``"fast"`` (which hands the cases it does not
    cover to numpy) or ``"numpy"``."""
    from .backends import available_backends

    if backend == "numpy" or "fast" not in available_backends():
        return "numpy"
    return "fast"


# ---------------------------------------------------------------------------------- planning


def plan(inputs: Sequence[str | os.PathLike], options: BatchOptions) -> Plan:
    """Find the files of ``inputs`` and the output of each.

    Raises ``ValueError`` for what makes the whole batch impossible (no inputs, a directory
    without ``recursive``, stdin among other inputs, several inputs into one file); everything
    that concerns one file becomes a skipped or failed :class:`Record` instead.
    """
    args = [os.fspath(p) for p in inputs]
    if not args:
        raise ValueError("no inputs given")
    if options.output is None:
        raise ValueError("`output` is required (a directory, or a file for a single input)")
    out = os.fspath(options.output)
    if STDIO in args and len(args) > 1:
        raise ValueError("`-` (stdin) must be the only input")
    for a in args:
        if a != STDIO and os.path.isdir(a) and not options.recursive:
            raise ValueError(f"{a!r} is a directory: pass -r (recursive) to pool the files in it")
    one_file = len(args) == 1 and not os.path.isdir(args[0])
    to_dir = not (one_file and (out == STDIO or not _names_directory(out)))
    if to_dir:
        if out == STDIO:
            raise ValueError("`-o -` (stdout) takes a single input file")
        if args == [STDIO]:
            raise ValueError("reading stdin: the output must be a file (with a suffix, such "
                             "as out.png) or `-`, not a directory")
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(
                f"output {out!r} is a file; with several inputs or a directory it must be a "
                "directory (created if missing)"
            )
        if not os.path.exists(out) and not _names_directory(out) and _ours(out):
            # `poolimg a.png b.png -o both.png` would make a directory named both.png
            raise ValueError(
                f"output {out!r} is named like a file, but several inputs or a directory "
                "need a directory; end it with / to make a directory of that name"
            )
    elif out != STDIO:
        _check_output_name(out, options.format)
    out_real = os.path.realpath(out) if to_dir else None

    # (input, output, status decided now or None, reason); no output for an input we refuse
    sources: list[tuple[str, str | None, str | None, str | None]] = []
    # Several directories are mirrored each under its path from their common parent
    # (photos/2023 photos/2024 -> 2023/, 2024/; x/data y/data -> x/data/, y/data/): flattened
    # into one, their files of the same name would claim the same outputs.
    dirs = [os.path.abspath(a) for a in args if a != STDIO and os.path.isdir(a)]
    try:
        common = os.path.commonpath(dirs) if len(dirs) > 1 else None
    except ValueError:  # Windows: directories on different drives
        common = None
    for a in args:
        if a == STDIO:
            sources.append((a, out, None, None))
        elif os.path.isdir(a):
            under = os.path.relpath(os.path.abspath(a), common) if common else ""
            under = "" if under == os.curdir else under
            for path, rel, status, why in _walk(a, out_real):
                rel = os.path.join(under, rel) if under else rel
                dest = None if status else _mirror(out, rel, options)
                sources.append((path, dest, status, why))
        else:
            # Named on the command line: read by its content whatever its suffix (a PNG
            # saved as "upload" is pooled; a text file fails with a reason, not skipped)
            status, why = _classify(a, by_suffix=False)
            dest = _mirror(out, os.path.basename(a), options) if to_dir else out
            sources.append((a, None if status else dest, status, why))

    # Identity of every input file, to refuse any output that is one of them.
    input_ids = set()
    sizes: dict[str, int] = {}
    for path, _, status, _ in sources:
        if path != STDIO:
            try:
                st = os.stat(path)
            except OSError:
                continue
            input_ids.add((st.st_dev, st.st_ino))
            if status is None:
                sizes[path] = st.st_size

    tasks: list[Task] = []
    decided: list[Record] = []
    claimed: dict[str, str] = {}  # real output path -> the input that claimed it
    for index, (path, dest, status, why) in enumerate(sources):
        if status is None:
            status, why = _check_output(path, dest, options, input_ids, claimed)
        if status is None:
            tasks.append(Task(index, path, dest, options.format, size=sizes.get(path, 0)))
        else:
            decided.append(Record(path, dest, status, error=why, index=index))
    return Plan(tasks, decided, out if to_dir else None, sum(sizes.values()))


def _names_directory(out: str) -> bool:
    """``-o out/``, an existing directory, or a new name without a suffix: ``-o thumbs`` is a
    directory whether ``*.jpg`` matched one file or several."""
    if out.endswith((os.sep, "/")) or os.path.isdir(out):
        return True
    return not os.path.lexists(out) and not os.path.splitext(out)[1]


def _check_output_name(out: str, format: str | None) -> None:
    """A single output file's suffix must be one we write, and agree with ``format``."""
    from .io import format_for_path, normalize_format

    named, suffix = format_for_path(out), os.path.splitext(out)[1]
    if format is None and suffix and named is None:
        raise ValueError(
            f"output {out!r}: {suffix!r} is not a suffix poolimg writes; name the file .png, "
            ".jpg, .tif, .webp, .bmp, .gif or .npy, give --format, or end the name with / for "
            "a directory"
        )
    if format is not None and named is not None and normalize_format(format) != named:
        raise ValueError(
            f"output {out!r} is named as {named} but --format asks for "
            f"{normalize_format(format)}; drop one of them"
        )


def _mirror(out: str, rel: str, options: BatchOptions) -> str:
    if options.format is not None:
        rel = os.path.splitext(rel)[0] + "." + options.format
    return os.path.join(out, rel)


def _ours(path: str) -> bool:
    from .io import format_for_path

    return format_for_path(path) is not None


def _classify(path: str, by_suffix: bool = True) -> tuple[str | None, str | None]:
    """``(status, reason)`` for an input file before any reading: None when it is to be
    read. Files found in a directory walk are ours by their suffix only (``by_suffix``)."""
    if by_suffix and not _ours(path):  # first: a dangling LICENSE.txt link is no failure
        return "skipped", "not an image or .npy (by its suffix)"
    if not os.path.lexists(path):
        return "failed", "no such file"
    if not os.path.exists(path):
        return "failed", "broken symbolic link"
    if not os.path.isfile(path):  # a read from a FIFO or a device could block forever
        return "failed", "not a regular file (a FIFO, socket or device)"
    return None, None


HIDDEN = "hidden (its name starts with a dot)"
OUTPUT_DIR = "the output directory (what is in it is outputs, not inputs)"


def _walk(root: str, exclude_real: str | None
          ) -> Iterator[tuple[str, str, str | None, str | None]]:
    """Yield ``(path, path relative to root, status, reason)`` for what is under ``root``, in
    sorted order (status None: a file to run)."""
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
        for e in errors:
            where = e.filename or dirpath
            yield where, os.path.relpath(where, root), "failed", f"cannot list: {e.strerror}"
        errors.clear()
        keep = []
        for d in sorted(dirnames):
            full = os.path.join(dirpath, d)
            if exclude_real is not None and os.path.realpath(full) == exclude_real:
                # the output directory inside an input directory: said, so that a run whose
                # only images are there does not end in a bare "no files"
                yield full, os.path.relpath(full, root), "skipped", OUTPUT_DIR
                continue
            if d.startswith("."):  # .git, .cache, ...: as a shell glob, not entered
                yield full, os.path.relpath(full, root), "skipped", HIDDEN
                continue
            if os.path.islink(full):
                yield (full, os.path.relpath(full, root), "skipped",
                       "symbolic link to a directory (not followed)")
                continue
            keep.append(d)
        dirnames[:] = keep
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if name.startswith("."):  # ._IMG_1.jpg (macOS metadata), .thumb.png: not images
                yield full, os.path.relpath(full, root), "skipped", HIDDEN
                continue
            yield (full, os.path.relpath(full, root), *_classify(full))
    for e in errors:  # the root, or the last directory visited, could not be listed
        where = e.filename or root
        yield where, os.path.relpath(where, root), "failed", f"cannot list: {e.strerror}"


def _check_output(src, dest, options, input_ids, claimed) -> tuple[str | None, str | None]:
    """``(status, reason)`` for writing ``dest``: None when it may be written."""
    if dest == STDIO:
        return None, None
    real = os.path.realpath(dest)
    if real in claimed:
        if os.path.realpath(claimed[real]) == os.path.realpath(src):
            return "skipped", "given twice (pooled once)"  # a.png a.png, or dir and dir/a.png
        return "failed", f"same output as {claimed[real]}: {dest}"
    claimed[real] = src
    if os.path.lexists(dest):
        try:
            st = os.stat(dest)
        except OSError:
            st = None  # a broken link: replaced like any existing output
        if st is not None and (st.st_dev, st.st_ino) in input_ids:
            return "failed", f"refusing to write over an input: {dest}"
        if os.path.isdir(dest):
            return "failed", f"output is a directory: {dest}"
        if options.skip_existing:
            return "skipped", "output exists"
        if not options.overwrite:
            return "failed", (
                f"output exists: {dest} (--overwrite replaces it, --skip-existing skips it)"
            )
    return None, None


# ----------------------------------------------------------------------------------- running


def run(inputs: Sequence[str | os.PathLike] | Plan, pipeline, options: BatchOptions, *,
        stop: Callable[[], bool] | None = None) -> Iterator[Record]:
    """Run ``pipeline`` over ``inputs`` (paths, or a :class:`Plan`) and yield one
    :class:`Record` per input, as each finishes: first those decided while planning, then the
    others in the order they complete (``Record.index`` is the input order).

    With ``options.n_workers > 1`` files run in that many worker processes (with
    ``workers=None``, only when the inputs add up to ``SMALL_BATCH_BYTES`` or more); a file's
    arrays never leave its worker. Close the iterator (or let it finish) to shut the workers
    down. ``stop`` is asked between files: once it returns True no file starts, those in
    flight finish and are yielded, and the rest are yielded as skipped ("not run"), as after
    a failure with ``fail_fast``.
    """
    the_plan = inputs if isinstance(inputs, Plan) else plan(inputs, options)
    yield from the_plan.decided
    tasks = list(the_plan.tasks)
    if options.fail_fast and any(r.status == "failed" for r in the_plan.decided):
        # the first failure came before any file ran (a broken link, an output in the way)
        yield from (_not_run(t, False) for t in tasks)
        return
    workers = _workers_for(the_plan, options)
    stop = stop or (lambda: False)
    if workers <= 1:
        yield from _run_here(tasks, pipeline, options, stop)
    else:
        yield from _run_pool(tasks, pipeline, options, workers, stop)


def _workers_for(the_plan: Plan, options: BatchOptions) -> int:
    """How many worker processes :func:`run` starts for ``the_plan`` (1: none, the files run
    in the calling process)."""
    tasks = the_plan.tasks
    if any(t.input == STDIO or t.output == STDIO for t in tasks):
        return 1
    workers = min(options.n_workers, len(tasks))
    if options.workers is None and the_plan.input_bytes < SMALL_BATCH_BYTES:
        workers = 1
    return max(1, workers)


# True while process() reads stdin, a read that can block forever (a stalled producer): a
# signal handler may then raise at once (the CLI's does), as no temporary file exists yet.
_state = {"reading_stdin": False}


def reading_stdin() -> bool:
    """Whether this process is in a read of stdin for a batch (see :func:`process`)."""
    return _state["reading_stdin"]


def process(task: Task, pipeline, options: BatchOptions) -> Record:
    """Read, pool and write one file; every failure becomes a failed Record. Without a
    ``format``, the output's is the one its suffix names, else the input's."""
    return _pool_and_write(_read(task, options), task, pipeline, options)


@dataclass
class _Read:
    """The first half of :func:`process`: the record so far and the item, None if the read
    failed. The item is handed over once (:meth:`take`), so that the second half alone holds
    it and frees it as soon as it is pooled."""

    record: Record
    item: object | None

    def take(self):
        item, self.item = self.item, None
        return item


def _read(task: Task, options: BatchOptions) -> _Read:
    from . import imaging, io

    rec = Record(task.input, task.output, "failed", index=task.index)
    t0 = time.perf_counter()
    try:
        stdin = task.input == STDIO
        _state["reading_stdin"] = stdin
        try:
            item = io.read(sys.stdin.buffer if stdin else task.input, layout=options.layout,
                           max_pixels=options.max_pixels, name="<stdin>" if stdin else None)
        finally:
            _state["reading_stdin"] = False
        if options.strip:
            item = replace(item, exif=None)
        if options.background is not None:
            item = imaging.flatten(item, options.background)
        rec.read_s = time.perf_counter() - t0
        rec.in_shape = tuple(item.array.shape)
        rec.pixels = item.pixels
    except Exception as e:  # one bad file never stops the batch
        item = None
        rec.error = _reason(e, task)
    rec.total_s = time.perf_counter() - t0
    return _Read(rec, item)


def _pool_and_write(read: _Read, task: Task, pipeline, options: BatchOptions) -> Record:
    """The second half of :func:`process`. ``total_s`` is the time spent on the file, its
    read included (not the time a read ahead waited to be used)."""
    from . import imaging, io

    rec, item = read.record, read.take()
    if item is None:
        return rec
    t1 = time.perf_counter()
    try:
        if options.dry_run:
            rec.out_shape = pipeline.output_shape(rec.in_shape, item.axes)
            # what the write would refuse (RGBA as JPEG, frames as PNG) fails here too
            sizes = [pipeline.output_shape(a.shape, item.axes) for a in item.all_frames]
            io.check_format(item, None if task.output == STDIO else task.output, task.format,
                            sizes=sizes)
            rec.status = "ok"
            return rec
        pooled = imaging.pool_item(
            item, pipeline, linear_light=options.linear_light, backend=options.backend
        )
        del item
        t2 = time.perf_counter()
        rec.pool_s = t2 - t1
        rec.out_shape = tuple(pooled.array.shape)
        rec.dtype = str(pooled.array.dtype)
        if task.output == STDIO:
            _to_stdout(io.write_bytes(pooled, format=task.format, quality=options.quality))
        else:
            parent = os.path.dirname(task.output)
            if parent:
                os.makedirs(parent, exist_ok=True)
            io.write(pooled, task.output, format=task.format, quality=options.quality,
                     overwrite=options.overwrite or task.retry)
        rec.write_s = time.perf_counter() - t2
        rec.status = "ok"
    except Exception as e:  # one bad file never stops the batch
        if options.skip_existing and isinstance(e, io.OutputExistsError):
            # written meanwhile by another process (a second run on the same tree): skipped,
            # as an output found when planning is
            rec.status, rec.error = "skipped", "output exists (it appeared during the run)"
        else:
            rec.error = _reason(e, task)
    finally:
        rec.total_s = rec.read_s + (time.perf_counter() - t1)
    return rec


def _to_stdout(data: bytes) -> None:
    """Write all of ``data`` to stdout, or raise. Unbuffered (``PYTHONUNBUFFERED=1``, common in
    CI images), ``sys.stdout.buffer`` is the raw file, whose write to a pipe may take only part
    of the data: one unchecked write passed a truncated image downstream with exit status 0."""
    if sys.stdout is None:
        raise OSError(errno.EBADF, "stdout is closed")
    out = sys.stdout.buffer
    view = memoryview(data)
    while view:
        n = out.write(view)
        if n is None:  # a raw non-blocking pipe that is full; buffered, this is raised
            raise BlockingIOError(errno.EAGAIN, "stdout is a non-blocking pipe and it is full")
        view = view[n:]
    out.flush()


def _reason(e: Exception, task: Task) -> str:
    from . import io

    if isinstance(e, io.PoolIOError) and e.path in (task.input, "<stdin>"):
        return e.reason  # the record names the input already
    return describe(e)


def describe(e: BaseException) -> str:
    """A one-line reason: the message of the errors we expect, the type too for the others."""
    if isinstance(e, OSError) and e.strerror:
        where = f": {e.filename}" if e.filename else ""
        return f"{e.strerror}{where}"
    text = str(e) or type(e).__name__
    if isinstance(e, (ValueError, TypeError, OSError)):
        return text
    return f"{type(e).__name__}: {text}"


def _not_run(task: Task, asked: bool) -> Record:
    why = "it was stopped" if asked else "it stopped at its first failure (--fail-fast)"
    return Record(task.input, task.output, "skipped", index=task.index,
                  error=f"not run: the batch ended early: {why}")


# The next file is read ahead only after a file that decoded to this many bytes (inclusive).
# Below: a small file's time is mostly Python, which holds the GIL, and two threads taking
# turns made 500 16x12 JPEGs 20% slower (break-even near 100x75). Above: a batch of large
# images (a microscope's stacks) keeps one in memory at a time.
READ_AHEAD_BYTES = (64 << 10, 64 << 20)


def _run_here(tasks: list[Task], pipeline, options: BatchOptions, stop: Callable[[], bool]
              ) -> Iterator[Record]:
    """The files one after the other, in this process. With a thread to spare
    (:func:`_spare_threads`), the next file is read while this one is pooled and written:
    decoders and encoders release the GIL, and decoding is most of a JPEG's time, so one
    worker uses two cores, as its kernels do. A file read ahead is dropped unused if the
    batch stops before it; reading writes nothing. ``options.threads`` holds for the
    compiled kernels while the run lasts."""
    with _kernel_threads(options.threads):
        yield from _run_in_order(tasks, pipeline, options, stop)


def _run_in_order(tasks: list[Task], pipeline, options: BatchOptions,
                  stop: Callable[[], bool]) -> Iterator[Record]:
    from concurrent.futures import ThreadPoolExecutor

    # One file ahead at most: a file's size is known only once it is decoded, so each file
    # read ahead may be as large as any; with one, a run holds at most two inputs at once.
    reader = None
    if _spare_threads(options) > 0 and all(t.input != STDIO for t in tasks):
        reader = ThreadPoolExecutor(1, thread_name_prefix="poolcore-read")
    ahead = None  # the read of tasks[i], started while tasks[i - 1] was pooled and written
    try:
        for i, task in enumerate(tasks):
            if stop():
                yield from (_not_run(t, True) for t in tasks[i:])
                return
            read = ahead.result() if ahead is not None else _read(task, options)
            ahead = None
            lo, hi = READ_AHEAD_BYTES
            if reader is not None and i + 1 < len(tasks) and lo <= _size(read) <= hi:
                ahead = reader.submit(_read, tasks[i + 1], options)
            rec = _pool_and_write(read, task, pipeline, options)
            yield rec
            if options.fail_fast and rec.status == "failed":
                yield from (_not_run(t, False) for t in tasks[i + 1:])
                return
    finally:
        if reader is not None:
            reader.shutdown(wait=True, cancel_futures=True)


def _size(read: _Read) -> int:
    """Bytes of the decoded item (0 when the read failed)."""
    item = read.item
    return 0 if item is None else sum(a.nbytes for a in item.all_frames)


def _spare_threads(options: BatchOptions) -> int:
    """Threads this process may use beside its own: ``options.threads`` minus one, else the
    compiled kernels' setting minus one (POOLCORE_THREADS,
    :func:`poolcore.fast_backend.set_threads`; 1 in a batch's worker processes), else the
    CPUs it may run on minus one."""
    if options.threads is not None:
        return options.threads - 1
    try:
        from .fast_backend import get_threads
    except ImportError:  # installed without a compiler
        env = os.environ.get("POOLCORE_THREADS", "")
        return (int(env) if env.isdigit() and int(env) else _cpu_count()) - 1
    return get_threads() - 1


@contextlib.contextmanager
def _kernel_threads(n: int | None) -> Iterator[None]:
    """The compiled kernels use ``n`` threads per call inside the block (None: unchanged)."""
    try:
        from .fast_backend import set_threads
    except ImportError:  # installed without a compiler: no kernel threads to set
        n = None
    if n is None:
        yield
        return
    old = set_threads(n)
    try:
        yield
    finally:
        set_threads(old)


# Worker-process state, set once per worker by _init_worker.
_worker: dict = {"busy": False}


class _Terminated(BaseException):
    """SIGTERM in a worker, raised where the worker is so that io.write's clean-up runs."""


def _on_sigterm(signum, frame) -> None:
    if not _worker["busy"]:
        os._exit(128 + signum)  # idle: nothing to clean up
    raise _Terminated


def _init_worker(pipeline, options: BatchOptions, parent: int | None) -> None:
    # The parent owns Ctrl-C: it stops handing out files and lets those in flight finish, so a
    # worker is never interrupted half-way through a write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # SIGTERM comes from the pool when another worker died (or from a supervisor): the file
    # being written is abandoned, its temporary file removed, and the process ends.
    signal.signal(signal.SIGTERM, _on_sigterm)
    _end_with_parent(parent)
    # One level of parallelism unless asked: the compiled kernels stay single-threaded inside
    # a worker (the environment variable for anything started later; the backend may be
    # imported).
    threads = options.threads or 1
    os.environ["POOLCORE_THREADS"] = str(threads)
    try:
        from .fast_backend import set_threads
    except ImportError:  # installed without a compiler
        pass
    else:
        set_threads(threads)
    tune_for_batch()
    _worker["pipeline"] = pipeline
    _worker["options"] = options


def _end_with_parent(parent: int | None) -> None:
    """Have Linux send this worker SIGTERM when its parent dies, even by SIGKILL (a CI job's
    timeout): an orphaned worker would otherwise wait on the pool's queue forever, holding
    the job's stdout and stderr open. ``parent``: the pid it was forked from, if known (a
    forkserver's workers have the server for parent, which ends with poolimg)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    # the parent died before the request was made (the orphan went to init or a subreaper)
    orphaned = os.getppid() != parent if parent is not None else os.getppid() == 1
    if orphaned:
        os._exit(128 + signal.SIGTERM)


def _work(tasks: list[Task]) -> list[Record]:
    # _Terminated is caught around the whole body: raised anywhere here (even in the finally),
    # it must end the process, never reach the pool's worker loop, which would catch it and
    # keep a worker the pool has given up on waiting for work forever.
    try:
        _worker["busy"] = True
        try:
            # with threads to spare (--threads 2+), a worker reads ahead within its chunk;
            # fail_fast is the parent's: a chunk always runs whole
            options = replace(_worker["options"], fail_fast=False)
            return list(_run_in_order(tasks, _worker["pipeline"], options, lambda: False))
        finally:
            _worker["busy"] = False  # from here a SIGTERM exits at once (_on_sigterm)
    except _Terminated:
        os._exit(128 + signal.SIGTERM)  # the temporary file is gone: io.write cleaned up


# Imported once by the fork server, so that every worker starts with them loaded. "__main__"
# (the poolimg script, a user's script) would otherwise be run again by every worker.
_PRELOAD = ["__main__", "poolcore.batch", "poolcore.io", "poolcore.imaging", "poolcore.pipeline",
            "poolcore.api", "poolcore.fast_backend", "PIL.JpegImagePlugin",
            "PIL.PngImagePlugin"]


def _single_threaded() -> bool:
    """Whether this process has one thread (Linux; elsewhere we cannot tell: False)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _mp_context():
    """How worker processes start.

    fork, when this process has a single thread: instant, and the workers inherit every module
    already imported. A fork while another thread holds a lock (a BLAS pool, a progress-bar
    monitor) leaves that lock held forever in the child, so with threads about, forkserver
    (Python 3.14's default on Linux): workers fork from a server started once, which imports
    numpy, Pillow and poolcore (~0.2 s) first. poolimg keeps itself single-threaded
    (OPENBLAS_NUM_THREADS=1, no tqdm monitor thread). Elsewhere: spawn.
    """
    import multiprocessing as mp

    methods = mp.get_all_start_methods()
    if "fork" in methods and _single_threaded():
        return mp.get_context("fork")
    if "forkserver" in methods:
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)  # an ImportError there is ignored
        return ctx
    return mp.get_context("spawn")


def _died(task: Task) -> Record:
    return Record(task.input, task.output, "failed", index=task.index,
                  error="the worker process died on this file (a crash, or killed: out of "
                  "memory?)")


# A worker gets several small files at a time (up to this many bytes of input, and at most a
# quarter of each worker's share of what is left, so the last files still spread over all
# workers): one round trip per file cost the parent ~0.45 ms of CPU per 120 kB JPEG, taken
# from the workers on a machine with a core per worker.
CHUNK_BYTES = 1 << 20
CHUNK_FILES = 8


def _take_chunk(pending: deque, solo: set[int], workers: int) -> list[Task]:
    """The next tasks to send to one worker: a suspect alone, else a few small files."""
    first = pending.popleft()
    chunk = [first]
    if first.index in solo:
        return chunk
    most = min(CHUNK_FILES, max(1, len(pending) // (4 * workers)))
    size = first.size
    while pending and len(chunk) < most and pending[0].index not in solo:
        if size + pending[0].size > CHUNK_BYTES:
            break
        task = pending.popleft()
        size += task.size
        chunk.append(task)
    return chunk


def _retry_alone(tasks: list[Task], solo: set[int], pending: deque) -> Iterator[Record]:
    """Tasks lost with a worker: each is queued again to run alone, once; one that already ran
    alone is the one that kills workers, and fails."""
    retry = []
    for task in tasks:
        if task.index in solo:
            yield _died(task)
        else:
            solo.add(task.index)
            retry.append(replace(task, retry=True))
    pending.extendleft(reversed(retry))


def _kill_survivors(executor) -> None:
    """Make sure the workers of a broken pool are gone. The pool SIGTERMs them and then
    joins them; one still alive would block that join, and the shutdown, forever."""
    for proc in list((getattr(executor, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.kill()


def _run_pool(tasks: list[Task], pipeline, options: BatchOptions, workers: int,
              stop: Callable[[], bool]) -> Iterator[Record]:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = _mp_context()
    parent = os.getpid() if ctx.get_start_method() == "fork" else None

    def start() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                   initargs=(pipeline, options, parent))

    pending = deque(tasks)
    inflight: dict = {}  # future -> its chunk of tasks
    solo: set[int] = set()  # tasks in flight when a worker died: retried one at a time
    window = 2 * workers  # few queued chunks: a stop (fail_fast, Ctrl-C) is quick
    stopped = asked = False
    saved = os.environ.get("POOLCORE_THREADS")
    # inherited by the forkserver / spawned workers
    os.environ["POOLCORE_THREADS"] = str(options.threads or 1)
    executor = start()
    try:
        while inflight or (pending and not stopped):
            asked = asked or stop()
            stopped = stopped or asked
            if stopped:  # chunks still queued never start: they are "not run"
                for fut in [f for f in inflight if f.cancel()]:
                    pending.extendleft(reversed(inflight.pop(fut)))
                if not inflight:
                    break
            while pending and not stopped and len(inflight) < window:
                if any(t.index in solo for c in inflight.values() for t in c):
                    break  # a suspect runs alone
                if pending[0].index in solo and inflight:
                    break
                chunk = _take_chunk(pending, solo, workers)
                try:
                    inflight[executor.submit(_work, chunk)] = chunk
                except (BrokenProcessPool, OSError):  # the pool broke since the last wait
                    if inflight:  # the futures in flight fail with it: handled below
                        pending.extendleft(reversed(chunk))
                        break
                    # Nothing in flight: restart, and give these files one solo try each,
                    # as files in flight when a worker dies get (so a pool that can never
                    # start fails each file in two tries, never loops).
                    _kill_survivors(executor)
                    executor.shutdown(wait=True)
                    executor = start()
                    for rec in _retry_alone(chunk, solo, pending):
                        yield rec
                        stopped = stopped or options.fail_fast
            done, _ = wait(inflight, return_when=FIRST_COMPLETED)
            broken = []
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                # A worker died: every future still in flight fails with the pool, though
                # some may have finished first. Collect them all, then start a new pool.
                done, _ = wait(inflight)
            for fut in sorted(done, key=lambda f: inflight[f][0].index):
                chunk = inflight.pop(fut)
                try:
                    records = fut.result()
                except BrokenProcessPool:
                    broken.extend(chunk)
                    continue
                for rec in records:
                    yield rec
                    if options.fail_fast and rec.status == "failed":
                        stopped = True
            if broken:
                _kill_survivors(executor)
                executor.shutdown(wait=True)
                executor = start()
                for rec in _retry_alone(sorted(broken, key=lambda t: t.index), solo, pending):
                    yield rec
                    stopped = stopped or options.fail_fast
        if stopped:
            yield from (_not_run(t, asked or stop()) for t in pending)
    finally:
        # Normal end, an interrupt, or the caller closing the iterator: drop the queued files,
        # let those in flight finish (each lands whole or not at all), then stop the workers.
        executor.shutdown(wait=True, cancel_futures=True)
        if saved is None:
            os.environ.pop("POOLCORE_THREADS", None)
        else:
            os.environ["POOLCORE_THREADS"] = saved


# glibc's malloc hands large blocks back to the kernel when they are freed (an mmap'ed block at
# once, the top of the heap past a trim threshold). A batch allocates the same few MB for
# every file, so each file page-faults them in again: measured on 200 JPEGs of 1000x750,
# ~1,000 page faults per file and a third of the run in the kernel. 64 MB: a 16-megapixel
# RGBX decode buffer.
_KEEP_BYTES = 64 << 20
# Pillow's arena puts an image in blocks of at most this size (default 16 MB); one block is
# what poolcore.io.read can view without copying. Its block allocator gives one block too,
# but decoded a 1000x750 JPEG 0.5 ms (16%) slower here, with glibc's thresholds above.
_BLOCK_BYTES = 1 << 30


def tune_for_batch() -> None:
    """Settings for a process that pools file after file (batch workers, poolimg itself):

    - glibc's allocator keeps freed memory for the next file instead of returning it to the
      system (elsewhere nothing changes);
    - Pillow allocates each image (up to 1 GB) in one block, so that :func:`poolcore.io.read`
      can view the pixels of images over 16 MB without copying them;
    - what is imported so far leaves the garbage collector's scans (``gc.freeze``): those
      objects live as long as the process, and a 200-file run spent ~10 ms re-scanning them.

    A long-lived program that calls :func:`run` in-process may call it too, at the cost of
    not handing up to its peak heap back to the system.
    """
    import gc

    from PIL import Image

    gc.freeze()
    Image.core.set_block_size(_BLOCK_BYTES)
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to speak to, or not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, _KEEP_BYTES)
    mallopt(m_trim_threshold, 2 * _KEEP_BYTES)


def _cpu_count() -> int:
    if hasattr(os, "process_cpu_count"):  # Python 3.13: respects the affinity mask
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity") and sys.platform != "darwin":
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
