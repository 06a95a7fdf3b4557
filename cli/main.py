"""The ``poolimg`` command: parse the options, build a Pipeline and BatchOptions, iterate
``poolcore.batch.run`` under a progress bar, write the report, exit with the summary's code.

numpy, Pillow, tqdm and poolcore are imported inside the command, so that ``--help`` and
``--version`` start quickly.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys

import click
from click.core import ParameterSource

# poolimg stays single-threaded so that its worker processes can start by fork (instant, and
# they inherit what is imported; see poolcore.batch._mp_context). numpy's OpenBLAS would start
# a thread pool at import; nothing here multiplies matrices.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# Options of the help screen, by section (Click has no sections of its own, pallets/click#373).
SECTIONS = (
    ("Pipeline", ("pipeline", "op", "kernel", "stride", "padding", "ceil_mode", "config")),
    ("Reading and writing", ("output", "recursive", "layout", "format_", "quality", "strip",
                             "background", "linear_light", "max_pixels", "overwrite",
                             "skip_existing")),
    ("Batch", ("workers", "threads", "backend", "fail_fast", "dry_run")),
    ("Reports", ("report", "contact_sheet", "quiet", "no_progress")),
)
FORMATS = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "webp", "gif", "npy")
LAYOUTS = ("hw", "hwc", "chw", "nchw", "nhwc", "dhw", "cdhw", "ncdhw")
CONTACT_SHEET_LIMIT = 6


class _Command(click.Command):
    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = {p.name: p.get_help_record(ctx) for p in self.get_params(ctx)
                if isinstance(p, click.Option)}
        # "--strip / --no-strip": the opposite forms (to undo a --config flag) are said once,
        # in --config's help, rather than doubling every flag's line
        rows = {name: (re.sub(r" / --[a-z-]+", "", row[0]), row[1])
                for name, row in rows.items() if row}
        # One width for the first column of every section, as one list would have.
        width = min(max(len(term) for term, _ in rows.values()), 30)
        for title, names in SECTIONS + (("Other", tuple(rows)),):
            section = [rows.pop(n) for n in names if n in rows]
            if section:
                with formatter.section(title):
                    formatter.write_dl([(term.ljust(width), text) for term, text in section])


class IntTuple(click.ParamType):
    """An int, or ints separated by commas (one per pooled axis): ``3``, ``2,3``; ``none``
    keeps an axis (adaptive output sizes)."""

    name = "INT[,INT...]"

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, (list, tuple)):
            parts = list(value)
        else:
            parts = [v.strip() for v in str(value).strip("()[] ").split(",")]
        out = []
        for v in parts:
            if v is None or (isinstance(v, str) and v.lower() == "none"):
                out.append(None)
                continue
            try:
                out.append(int(v))
            except (TypeError, ValueError):
                self.fail(f"expected an int or ints separated by commas, got {value!r}",
                          param, ctx)
        return out[0] if len(out) == 1 else tuple(out)


def _print_version(ctx: click.Context, param, value) -> None:
    if not value or ctx.resilient_parsing:
        return
    from poolcore import __version__, available_backends

    click.echo(f"poolimg {__version__}\nbackends: {', '.join(available_backends())}")
    ctx.exit()


class ConfigError(click.FileError):
    """A --config file that cannot be used: a usage error (exit status 2, where Click's
    FileError says 1, which poolimg keeps for "a file of the batch failed")."""

    exit_code = 2

    def format_message(self) -> str:
        return f"Invalid config file {self.ui_filename!r}: {self.message}"


def _config_keys(command: click.Command) -> dict[str, str]:
    """Config key (a long option without its dashes) -> parameter name."""
    keys = {}
    for p in command.params:
        if isinstance(p, click.Option) and p.name not in ("config", "version"):
            for opt in p.opts:  # not --no-strip: `no-strip = true` would read as strip
                if opt.startswith("--"):
                    keys[opt[2:]] = p.name
    return keys


def _load_config(ctx: click.Context, param, value):
    """``--config FILE``: a TOML file with the stages (``pipeline = "..."`` or ``[[stages]]``)
    and any long option by name (``workers = 4``, ``skip-existing = true``), which become the
    defaults: flags on the command line win."""
    if value is None or ctx.resilient_parsing:
        return value
    from poolcore import Pipeline

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(value, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(value, hint=e.strerror) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(value, hint=f"not valid TOML: {e}") from None
    keys = _config_keys(ctx.command)
    defaults = {}
    for key, v in data.items():
        if key == "stages":
            continue
        name = keys.get(key) or keys.get(key.replace("_", "-"))
        if name is None or key == "help":
            raise ConfigError(
                value, hint=f"unknown key {key!r}; expected `pipeline`, [[stages]] or one of "
                + ", ".join(sorted(k for k in keys if k not in ("pipeline", "help")))
            )
        option = next(p for p in ctx.command.params if p.name == name)
        try:  # checked here, so that the message names the file and its key
            wrong = _toml_type_error(option, v)
            if wrong:
                raise click.BadParameter(f"{option.opts[-1]} {wrong}")
            v = option.type_cast_value(ctx, v)
            if option.callback is not None and name != "pipeline":
                v = option.callback(ctx, option, v)
        except click.BadParameter as e:
            shown = str(v).lower() if isinstance(v, bool) else repr(v)  # as TOML writes it
            raise ConfigError(value, hint=f"{key} = {shown}: {e.message}") from None
        defaults[name] = v
    if "pipeline" in data or "stages" in data:
        try:
            defaults["pipeline"] = str(Pipeline.from_mapping(data, value))
        except (TypeError, ValueError) as e:
            raise ConfigError(value, hint=str(e).removeprefix(f"{value}: ")) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _toml_type_error(option: click.Option, v) -> str | None:
    """Why ``v``, a TOML value, cannot be ``option``'s, if it cannot. TOML has types where the
    command line has strings: a flag takes true or false (not 1), a count a whole number (not
    90.5, which Click would cut to 90), a path or a name a string (not 5)."""
    if option.is_flag:
        return None if isinstance(v, bool) else "takes true or false"
    if isinstance(v, bool):
        return "takes a value, not true or false"
    if isinstance(option.type, IntTuple):  # TOML has no null: "none" keeps an axis
        ints = isinstance(v, list) and all(
            (isinstance(x, int) and not isinstance(x, bool))
            or (isinstance(x, str) and x.lower() == "none") for x in v)
        return None if ints or isinstance(v, (int, str)) else (
            'takes an int, a list of ints ("none" keeps an axis) or a string such as "2,3"')
    if isinstance(option.type, click.types.IntParamType):
        return None if isinstance(v, int) else "takes a whole number"
    return None if isinstance(v, str) else "takes a string"


def _parse_pipeline(ctx: click.Context, param, value):
    if value is None:
        return None
    from poolcore import Pipeline

    try:
        return Pipeline.parse(value)
    except (TypeError, ValueError) as e:
        raise click.BadParameter(str(e), ctx=ctx, param=param) from None


class Colour(click.ParamType):
    """A colour as Pillow names it (white, #f0f0f0, rgb(240, 240, 240)) -> (r, g, b)."""

    name = "colour"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        from PIL import ImageColor

        try:
            return ImageColor.getrgb(str(value))[:3]
        except ValueError:
            self.fail(f"{value!r} is not a colour: a name (white), #rrggbb or rgb(r, g, b)",
                      param, ctx)


def _suffix(*suffixes: str):
    def check(ctx, param, value):
        if value is not None and not value.lower().endswith(suffixes):
            raise click.BadParameter(f"must end with {' or '.join(suffixes)}, got {value!r}")
        return value

    return check


@click.command(cls=_Command, context_settings=CONTEXT_SETTINGS,
               options_metavar="-o PATH [OPTIONS]")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", required=True, metavar="PATH",
              help="Output directory (created if missing; so is a new name without a "
              "suffix), or a file such as out.png for a single input file; - writes to stdout.")
@click.option("-p", "--pipeline", metavar="TEXT", callback=_parse_pipeline,
              help='Stages applied in order, e.g. "max(3, stride=2, padding=1) | avg(2)". '
              "Ops: max min avg sum lp median, adaptive_{max,min,avg,sum,median}.")
@click.option("--op", metavar="OP", help="One-stage shorthand instead of -p: the op.")
@click.option("-k", "--kernel", type=IntTuple(),
              help="Kernel of --op (the output size for an adaptive op).")
@click.option("-s", "--stride", type=IntTuple(), help="Stride of --op [default: the kernel].")
@click.option("--padding", type=IntTuple(), help="Padding of --op [default: 0].")
@click.option("--ceil-mode/--no-ceil-mode", default=None, help="Round --op's output length up.")
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_load_config, metavar="FILE.toml",
              help='TOML: the stages (pipeline = "avg(2)" or [[stages]] tables) and any long '
              "option (workers = 4); the command line wins: --no-strip, --no-overwrite, --progress "
              "and the like undo a flag the file sets.")
@click.option("-r", "--recursive/--no-recursive", help="Descend into directories.")
@click.option("--layout", type=click.Choice(LAYOUTS, case_sensitive=False), metavar="LAYOUT",
              help=f"Axes of .npy inputs: {', '.join(LAYOUTS)}; H, W (and D) are pooled "
              "[default: the last two axes]. dhw also makes a multi-page TIFF one volume, "
              "D its pages.")
@click.option("--format", "format_", type=click.Choice(FORMATS, case_sensitive=False),
              metavar="EXT", help=f"Output format: {', '.join(FORMATS)} [default: the input's].")
@click.option("--quality", type=click.IntRange(1, 100), metavar="Q",
              help="JPEG/WebP quality [default: 90].")
@click.option("--strip/--no-strip",
              help="Drop EXIF metadata (GPS position, camera, dates) from the outputs; the "
              "colour profile and DPI are kept.")
@click.option("--background", type=Colour(), metavar="COLOR",
              help="Flatten transparency onto COLOR (white, #f0f0f0, ...) before pooling, so "
              "that images with alpha can be written as JPEG or BMP.")
@click.option("--linear-light/--no-linear-light",
              help="Average in linear light rather than gamma-encoded sRGB.")
@click.option("--max-pixels", type=click.IntRange(min=1), metavar="N",
              help="Accept images up to N pixels [default: Pillow's bomb limit, ~179 M].")
@click.option("--overwrite/--no-overwrite", help="Replace existing outputs (never an input).")
@click.option("--skip-existing/--no-skip-existing", help="Skip inputs whose output exists.")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="Worker processes [default: one per CPU; 1 for under 4 MB of input].")
@click.option("--threads", type=click.IntRange(1, 256), metavar="N",  # fast_backend.MAX_THREADS
              help="Threads per process, for the compiled kernels and for reading the next "
              "file ahead [default: one per CPU in a single process, 1 per worker; "
              "POOLCORE_THREADS].")
@click.option("--backend", type=click.Choice(("auto", "numpy", "fast")), default="auto",
              show_default=True, help="Pooling kernels.")
@click.option("--fail-fast/--no-fail-fast", help="Stop at the first failed file.")
@click.option("--dry-run/--no-dry-run",
              help="List inputs, outputs and shapes on stdout; write nothing.")
@click.option("--report", type=click.Path(dir_okay=False), metavar="FILE.json|FILE.csv",
              callback=_suffix(".json", ".csv"), help="Per-file timings and a summary.")
@click.option("--contact-sheet", type=click.Path(dir_okay=False), metavar="FILE.png",
              callback=_suffix(".png"),
              help=f"A PNG of the first {CONTACT_SHEET_LIMIT} images beside their outputs.")
@click.option("-q", "--quiet/--no-quiet", help="No progress bar, no summary; failures only.")
@click.option("--no-progress/--progress", help="No progress bar.")
@click.option("--version", is_flag=True, is_eager=True, expose_value=False,
              callback=_print_version, help="Show the version and the backends, and exit.")
@click.pass_context
def main(ctx: click.Context, inputs, output, pipeline, op, kernel, stride, padding, ceil_mode,
         recursive, layout, format_, quality, strip, background, linear_light, max_pixels,
         overwrite, skip_existing, workers, threads, backend, fail_fast, dry_run, report,
         contact_sheet, quiet, no_progress):
    """Pool images and .npy arrays with a pipeline of pooling stages.

    Each INPUT (a file, a directory with -r, or - for stdin) is read, pooled and written
    under OUTPUT, mirroring the input tree (several directories: each under its path from
    their common parent), in the input's format unless --format. In a
    directory, files without an image or .npy suffix are skipped; a file named as an INPUT
    is read by its content. An input is never overwritten; an existing output is replaced
    only with --overwrite. Exit status: 0 all written, 1 some file failed, 2
    usage error.

    \b
    Examples:
      # halve every image under photos/ (2x2 average) with 4 workers and a report
      poolimg -r photos -o small -p "avg(2)" --workers 4 --report small.json
      # the one-stage shorthand: 3x3 max pooling, stride 2, padding 1
      poolimg scan.png -o scan-max.png --op max -k 3 -s 2 --padding 1
      # two stages, averaging in linear light, written as WebP
      poolimg *.jpg -o out -p "max(3, stride=2, padding=1) | avg(2)" --linear-light --format webp
      # tensors: pool H and W of an NCHW array to 7x7
      poolimg feats.npy -o feats7.npy --layout nchw -p "adaptive_avg((7, 7))"
      # a microscope stack: 2x2x2 mean over z, y, x of a multi-page TIFF
      poolimg stack.tif -o stack-small.tif --layout dhw -p "avg(2)"
      # what would be written, then the effect on a few images at a glance
      poolimg -r photos -o small -p "avg(4)" --dry-run
      poolimg a.jpg b.png -o out -p "median(3)" --contact-sheet sheet.png
      # in a pipe
      poolimg - -o - -p "avg(2)" < in.png > out.png
      # stages and options from a file (flags on the command line win)
      poolimg -r photos -o small --config pool.toml
    """
    from poolcore import Pipeline, available_backends, batch
    from poolcore import report as reports

    source = ctx.get_parameter_source
    if overwrite and skip_existing:
        given = [n for n in ("overwrite", "skip_existing")
                 if source(n) is ParameterSource.COMMANDLINE]
        if len(given) != 1:
            raise click.UsageError("--overwrite and --skip-existing exclude each other")
        # one from --config: the command line wins
        overwrite, skip_existing = given == ["overwrite"], given == ["skip_existing"]

    # The pipeline: -p or the --op shorthand; one given on the command line beats --config's.
    from_cli = {n for n in ("pipeline", "op") if source(n) is ParameterSource.COMMANDLINE}
    if pipeline is not None and op is not None:
        if len(from_cli) != 1:
            raise click.UsageError("-p/--pipeline and --op are alternatives: give one")
        if "pipeline" in from_cli:
            op = None
        else:
            pipeline = None
    shorthand = {"-k/--kernel": kernel, "-s/--stride": stride, "--padding": padding,
                 "--ceil-mode": ceil_mode}
    if op is None:
        names = {"-k/--kernel": "kernel", "-s/--stride": "stride", "--padding": "padding",
                 "--ceil-mode": "ceil_mode"}
        given = [flag for flag, v in shorthand.items()  # --no-ceil-mode asks for nothing
                 if v not in (None, False) and source(names[flag]) is ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} "
                                   "with --op (the one-stage shorthand)")
        if pipeline is None:
            raise click.UsageError(
                'no pipeline: give -p "avg(2)", --op avg -k 2, or --config FILE.toml'
            )
    else:
        if kernel is None:
            if source("kernel") is ParameterSource.COMMANDLINE:  # -k none
                raise click.BadParameter("none keeps an axis of an adaptive op's output size; "
                                         "give a size", ctx=ctx, param_hint="-k/--kernel")
            raise click.UsageError("--op needs -k/--kernel")
        window = {"stride": stride, "padding": padding or 0, "ceil_mode": bool(ceil_mode)}
        if op.startswith("adaptive_") and source("op") is ParameterSource.COMMANDLINE:
            # A --config's stride and padding were for its own op, not this adaptive one.
            for name, unset in (("stride", None), ("padding", 0), ("ceil_mode", False)):
                if source(name) is not ParameterSource.COMMANDLINE:
                    window[name] = unset
        try:
            pipeline = Pipeline.single(op, kernel, **window)
        except (TypeError, ValueError) as e:
            raise click.BadParameter(str(e), ctx=ctx, param_hint="--op/-k/-s/--padding") from None

    if backend == "fast" and "fast" not in available_backends():
        raise click.BadParameter(
            "the compiled backend is not available here (installed without a compiler, or "
            f"POOLCORE_NO_FAST is set); available: {', '.join(available_backends())}",
            ctx=ctx, param_hint="--backend",
        )

    try:
        options = batch.BatchOptions(
            output=output, recursive=recursive, workers=workers, threads=threads, backend=backend,
            layout=layout.lower() if layout else None, overwrite=overwrite,
            skip_existing=skip_existing, fail_fast=fail_fast, dry_run=dry_run,
            format=format_.lower() if format_ else None, quality=quality,
            strip=strip, background=background, linear_light=linear_light, max_pixels=max_pixels,
        )
    except ValueError as e:  # anything Click's types let through
        raise click.UsageError(str(e)) from None
    try:
        plan = batch.plan(inputs, options)
    except ValueError as e:
        raise click.UsageError(str(e)) from None
    for flag, path in (("--report", report), ("--contact-sheet", contact_sheet)):
        if path is not None and _clashes(path, plan):
            raise click.BadParameter(f"{path!r} is an input or an output of this batch",
                                     ctx=ctx, param_hint=flag)
        if path is not None and not overwrite and not reports.replaceable(path):
            what = "report" if flag == "--report" else "contact sheet"
            how = "remove it" if skip_existing else "--overwrite replaces it"
            raise click.BadParameter(
                f"{path!r} exists and is not a poolimg {what} (an earlier run's is replaced); "
                f"{how}, or choose another name", ctx=ctx, param_hint=flag)

    if any(t.input == "-" for t in plan.tasks) and sys.stdin is not None and sys.stdin.isatty():
        raise click.UsageError("`-` reads the image from stdin, but stdin is a terminal: "
                               "redirect or pipe a file in (poolimg - -o out.png < in.png)")
    if any(t.output == "-" for t in plan.tasks) and not dry_run and _stdout_is_terminal():
        raise click.UsageError("`-o -` writes the image to stdout, but stdout is a terminal: "
                               "redirect or pipe it (poolimg in.png -o - > out.png)")

    records = _run(ctx, plan, pipeline, options, quiet=quiet, no_progress=no_progress)
    summary = batch.Summary.of(records, records.wall_s)
    status = summary.exit_code

    if dry_run:
        for r in reports.in_input_order(records):
            click.echo(reports.printable(_dry_run_line(r)))
    else:
        if report is not None:
            try:
                _make_parent(report)
                reports.write_report(report, records, summary, str(pipeline),
                                     batch.backend_name(backend))
            except (OSError, ValueError) as e:  # ValueError: poolcore.errors.WriteError
                why = getattr(e, "strerror", None) or e
                click.echo(f"poolimg: cannot write the report {report}: {why}", err=True)
                status = 1
        if contact_sheet is not None and not _contact_sheet(records, contact_sheet, quiet):
            status = 1  # asked for and not written, as for --report
    if not quiet:
        click.echo(reports.format_summary(records, summary, dry_run=dry_run), err=True)
        if dry_run and (report or contact_sheet):
            click.echo("dry run: no report or contact sheet written", err=True)
    elif summary.failed:
        for r in reports.in_input_order(records):
            if r.status == "failed":
                click.echo(reports.printable(f"failed: {r.input}: {r.error}"), err=True)
    ctx.exit(status)


class _NoBar(contextlib.nullcontext):
    """tqdm's interface, doing nothing (a batch without a progress bar)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(self)

    def update(self, n: int = 1) -> None:
        pass


class _Records(list):
    wall_s = 0.0


def _run(ctx, plan, pipeline, options, *, quiet: bool, no_progress: bool) -> _Records:
    """Iterate the batch under a progress bar (stderr, a terminal only). Ctrl-C (or SIGTERM,
    as from ``timeout`` or a CI runner) stops it after the files in flight have landed, with
    status 130 (143)."""
    import signal
    import time

    from poolcore import batch
    from poolcore.report import printable

    batch.tune_for_batch()  # files may run in this process too
    received = []

    def interrupt(signum, frame):
        # Note it: the loop below stops at the next record. An exception raised here could
        # land inside the worker pool's locks (a deadlock) or between a temporary file's
        # creation and its clean-up (a left-over file); a read of stdin, which can block
        # forever (a stalled pipe under `timeout`), is the one place where it stops at once.
        received.append(signum)
        if batch.reading_stdin():
            raise KeyboardInterrupt

    show = not (quiet or no_progress) and sys.stderr.isatty()
    if show:
        from tqdm import tqdm

        tqdm.monitor_interval = 0  # no monitor thread: workers start by fork (see the top)
    else:  # no bar: tqdm's import (~15 ms) is not worth paying
        tqdm = _NoBar
    records = _Records()
    start = time.perf_counter()
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with tqdm(total=len(plan), disable=not show, file=sys.stderr, unit="file",
                  dynamic_ncols=True, leave=False) as bar, \
                contextlib.closing(batch.run(plan, pipeline, options,
                                             stop=lambda: bool(received))) as stream:
            # After a signal no file starts; those in flight finish whole and are counted.
            for rec in stream:
                records.append(rec)
                bar.update()
                if show and rec.status == "failed":
                    bar.write(printable(f"failed: {rec.input}: {rec.error}"), file=sys.stderr)
    except KeyboardInterrupt:  # ours (above), or raised before our handler was in place
        if not received:
            received.append(signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        done = sum(r.status == "ok" for r in records)
        click.echo(f"\npoolimg: interrupted after {done} of {len(plan)} files; no partial "
                   "file is left; no report written", err=True)
        ctx.exit(128 + received[0])
    records.wall_s = time.perf_counter() - start
    return records


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout is not None and sys.stdout.isatty()
    except ValueError:  # closed
        return False


def _clashes(path: str, plan) -> bool:
    real = os.path.realpath(path)
    paths = [t.input for t in plan.tasks] + [t.output for t in plan.tasks]
    paths += [r.input for r in plan.decided]
    return any(p != "-" and os.path.realpath(p) == real for p in paths)


def _shape(shape) -> str:
    return "x".join(str(n) for n in shape) if shape is not None else "?"


def _dry_run_line(r) -> str:
    if r.status == "ok":
        return f"{r.input} -> {r.output}  {_shape(r.in_shape)} -> {_shape(r.out_shape)}"
    return f"{r.input}  {r.status}: {r.error}"


def _make_parent(path: str) -> None:
    """Create the directories a report or contact sheet goes in, as -o's are."""
    parent = os.path.dirname(path)
    if parent:
        try:
            os.makedirs(parent, exist_ok=True)
        except FileExistsError:  # makedirs' word for a file where a directory should be
            raise NotADirectoryError(errno.ENOTDIR, f"{parent} is a file, not a directory",
                                     parent) from None


def _contact_sheet(records, path: str, quiet: bool) -> bool:
    """Write the contact sheet; False (said on stderr) when it could not be. A run that wrote
    no image (all skipped by --skip-existing, all .npy) has none to show: said, not failed, so
    that an up-to-date rerun in CI still exits 0."""
    from poolcore import report as reports

    images = sum(r.status == "ok" and r.output not in (None, "-")
                 and not str(r.output).lower().endswith(".npy") for r in records)
    try:
        _make_parent(path)
        shown = reports.contact_sheet(records, path, limit=CONTACT_SHEET_LIMIT)
    except reports.NothingToShow:  # no image written, or none to read again (stdin)
        click.echo(f"poolimg: no contact sheet: this run wrote no image it can show ({path} "
                   "not written)", err=True)
        return True
    except (OSError, ValueError) as e:
        why = getattr(e, "strerror", None) or e
        click.echo(f"poolimg: contact sheet {path} not written: {why}", err=True)
        return False
    if not quiet:
        more = f" (the first {shown} of {images} images)" if images > shown else ""
        click.echo(f"contact sheet: {path}{more}", err=True)
    return True


def _one_line_warnings() -> None:
    """Warnings (Pillow's about damaged metadata: "Truncated File Read", "Corrupt EXIF data")
    as one line on stderr, not Python's file:line and source-code pair: the file is pooled all
    the same, and a CI log should not look like a traceback. The command owns its process (and
    its forked workers), so this is not done to the library's callers."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        where = "Pillow" if f"{os.sep}PIL{os.sep}" in filename else category.__name__
        sys.stderr.write(f"poolimg: warning ({where}): {message}\n")

    warnings.showwarning = show


def run() -> None:
    """The ``poolimg`` console script: :func:`main`, then a quick exit.

    Tearing the interpreter down (numpy's, Pillow's and every module's objects) takes ~25 ms
    that a command has no use for: by then every output and the report are written and
    closed. The exit handlers still run (``atexit``, as multiprocessing's own workers do
    before their ``os._exit``) and the standard streams are flushed; only the finalisation
    of modules is skipped. Any other exception than SystemExit ends the process as usual.
    """
    import atexit

    _one_line_warnings()
    try:
        main()  # Click's standalone mode: ends with SystemExit
        code = 0
    except SystemExit as e:
        code = e.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:  # None: started with it closed (>&-)
                stream.flush()
    except OSError:  # a closed pipe: Python would report it and exit 120
        code = code or 120
    os._exit(code)
