"""Reports of a batch: the summary text, JSON and CSV reports, and a contact sheet.

The JSON report::

    {"pipeline": "max(2) | avg(2)", "backend": "numpy",
     "summary": {"files": 3, "ok": 2, "failed": 1, "skipped": 0, "wall_s": 0.41,
                 "megapixels_in": 1.5, "mpix_per_s": 3.66},
     "files": [{"input": "a.jpg", "output": "out/a.jpg", "status": "ok", "error": null,
                "in_shape": [750, 1000, 3], "out_shape": [187, 250, 3], "dtype": "uint8",
                "read_s": 0.011, "pool_s": 0.004, "write_s": 0.006, "total_s": 0.021}, ...]}

``SCHEMA`` is its JSON Schema. The CSV report has one row per file with the same per-file
columns (shapes as ``750x1000x3``, missing values empty), then one line per summary key, the
pipeline and the backend, each a single field starting with ``#`` (``# wall_s=0.41``). Files
are listed in input order whatever order they finished in. Reports and the contact sheet are
written atomically (:mod:`poolcore.atomic`), replacing an existing file; :func:`replaceable`
tells a report or contact sheet of an earlier run (which a re-run may replace) from any other
file (which poolimg replaces only with ``--overwrite``).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

from .atomic import atomic_write
from .batch import FIELDS, STATUSES, Record, Summary

SUMMARY_FIELDS = ("files", "ok", "failed", "skipped", "wall_s", "megapixels_in", "mpix_per_s")

_num_or_null = {"type": ["number", "null"], "minimum": 0}
_shape = {"type": ["array", "null"], "items": {"type": "integer", "minimum": 0}}
_str_or_null = {"type": ["string", "null"]}
SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "poolimg report",
    "type": "object",
    "required": ["pipeline", "backend", "summary", "files"],
    "additionalProperties": False,
    "properties": {
        "pipeline": {"type": "string"},
        "backend": {"type": "string", "enum": ["numpy", "fast"]},
        "summary": {
            "type": "object",
            "required": list(SUMMARY_FIELDS),
            "additionalProperties": False,
            "properties": {
                "files": {"type": "integer", "minimum": 0},
                "ok": {"type": "integer", "minimum": 0},
                "failed": {"type": "integer", "minimum": 0},
                "skipped": {"type": "integer", "minimum": 0},
                "wall_s": {"type": "number", "minimum": 0},
                "megapixels_in": {"type": "number", "minimum": 0},
                "mpix_per_s": {"type": "number", "minimum": 0},
            },
        },
        "files": {
            "type": "array",
            "items": {
                "type": "object",
                "required": list(FIELDS),
                "additionalProperties": False,
                "properties": {
                    "input": {"type": "string"},
                    "output": _str_or_null,
                    "status": {"type": "string", "enum": list(STATUSES)},
                    "error": _str_or_null,
                    "in_shape": _shape,
                    "out_shape": _shape,
                    "dtype": _str_or_null,
                    "read_s": _num_or_null,
                    "pool_s": _num_or_null,
                    "write_s": _num_or_null,
                    "total_s": _num_or_null,
                },
            },
        },
    },
}


def in_input_order(records: Sequence[Record]) -> list[Record]:
    return sorted(records, key=lambda r: r.index)


def to_dict(records: Sequence[Record], summary: Summary, pipeline: str, backend: str) -> dict:
    """The JSON report as a dict (see ``SCHEMA``)."""
    return {
        "pipeline": str(pipeline),
        "backend": backend,
        "summary": {
            "files": summary.files,
            "ok": summary.ok,
            "failed": summary.failed,
            "skipped": summary.skipped,
            "wall_s": round(summary.wall_s, 6),
            "megapixels_in": round(summary.megapixels_in, 6),
            "mpix_per_s": round(summary.mpix_per_s, 3),
        },
        "files": [_rounded(r.as_dict()) for r in in_input_order(records)],
    }


def _rounded(row: dict) -> dict:
    for key in ("read_s", "pool_s", "write_s", "total_s"):
        if row[key] is not None:
            row[key] = round(row[key], 6)
    for key in ("input", "output", "error"):
        if isinstance(row[key], str):
            row[key] = _valid_text(row[key])
    return row


# Control characters in a file name (a newline...) would break a line of the summary apart.
_CONTROL = {c: f"\\x{c:02x}" for c in [*range(32), 127] if c != 9}


def printable(text: str) -> str:
    """``text`` for a terminal or a log, on one line: a file name's control characters and
    bytes that are not UTF-8 escaped (``a\\x0ab.png``)."""
    return _valid_text(text).translate(_CONTROL)


def _valid_text(name: str) -> str:
    """A file name that is not UTF-8 (Python keeps its bytes as lone surrogates) as valid text,
    its odd bytes escaped: caf\\xe9.png. Such a string cannot be written as UTF-8 at all, and
    strict JSON parsers refuse the surrogates."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def to_json(records, summary, pipeline, backend) -> str:
    import json  # here: a run without --report does not pay for it at start-up

    return json.dumps(to_dict(records, summary, pipeline, backend), indent=2) + "\n"


def to_csv(records, summary, pipeline, backend) -> str:
    import csv

    report = to_dict(records, summary, pipeline, backend)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    quoted = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL)
    w.writerow(FIELDS)
    for row in report["files"]:
        cells = [_csv_cell(row[name]) for name in FIELDS]
        # an input named "#x.png" would otherwise start a line like the trailer's comments,
        # which readers told to skip "#" lines drop
        (quoted if cells[0].startswith("#") else w).writerow(cells)
    w.writerow([f"# pipeline={report['pipeline']}"])
    w.writerow([f"# backend={report['backend']}"])
    for key, value in report["summary"].items():
        w.writerow([f"# {key}={value}"])
    return buf.getvalue()


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "x".join(str(n) for n in value)
    return str(value)


# The PNG text chunk that marks a contact sheet as poolimg's (see replaceable).
_SHEET_KEY, _SHEET_TEXT = "Software", "poolimg contact sheet"


def replaceable(path: str | os.PathLike) -> bool:
    """Whether writing a report or contact sheet at ``path`` replaces nothing but an earlier
    one: ``path`` does not exist, or it is a JSON or CSV report (by how ours begin) or a
    contact sheet (by its PNG text chunk) that poolimg wrote. Anything else, a user's file
    that happens to have the name, is kept unless the caller says to overwrite."""
    path = os.fspath(path)
    if not os.path.lexists(path):
        return True
    if not os.path.isfile(path) or os.path.islink(path):
        return False
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".png":
            from PIL import Image

            with Image.open(path, formats=["PNG"]) as im:
                return im.info.get(_SHEET_KEY) == _SHEET_TEXT
        with open(path, "rb") as f:
            head = f.read(256)
    except Exception:  # unreadable or not what its name says: not ours
        return False
    if suffix == ".json":
        return head.startswith(b'{\n  "pipeline": ')
    if suffix == ".csv":
        return head.startswith(",".join(FIELDS).encode() + b"\n")
    return False


def write_report(path: str | os.PathLike, records: Sequence[Record], summary: Summary,
                 pipeline, backend: str) -> None:
    """Write a ``.json`` or ``.csv`` report (by the suffix of ``path``), atomically."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".json":
        text = to_json(records, summary, pipeline, backend)
    elif suffix == ".csv":
        text = to_csv(records, summary, pipeline, backend)
    else:
        raise ValueError(f"a report is .json or .csv, got {path!r}")
    atomic_write(path, text.encode(), overwrite=True)


# ----------------------------------------------------------------------------- summary text


def format_summary(records: Sequence[Record], summary: Summary, *, dry_run: bool = False,
                   slowest: int = 3, max_listed: int = 10) -> str:
    """A few lines for a person: counts and throughput, the slowest files, the failures with
    their reasons (the first ``max_listed``), and why files were skipped."""
    if summary.files == 0:
        return "poolimg: no files to pool"
    records = in_input_order(records)
    if dry_run:
        head = (f"dry run: {summary.ok} to write, {summary.failed} would fail, "
                f"{summary.skipped} skipped; nothing written")
        lines = [head]
    else:
        head = (f"{summary.ok} ok, {summary.failed} failed, {summary.skipped} skipped in "
                f"{_seconds(summary.wall_s)}")
        if summary.ok:
            head += (f" ({summary.megapixels_in:.3g} MPix: {summary.mpix_per_s:.3g} MPix/s, "
                     f"{summary.files_per_s:.3g} files/s)")
        lines = [head]
        done = [r for r in records if r.status == "ok" and r.total_s is not None]
        if len(done) > 1 and slowest > 0:
            top = sorted(done, key=lambda r: r.total_s, reverse=True)[:slowest]
            lines.append(
                "slowest: " + ", ".join(f"{r.input} ({_seconds(r.total_s)})" for r in top)
            )
    failed = [r for r in records if r.status == "failed"]
    if failed:
        lines.append("failed:")
        lines += [f"  {r.input}: {r.error}" for r in failed[:max_listed]]
        if len(failed) > max_listed:
            lines.append(f"  ... and {len(failed) - max_listed} more (see --report)")
    skipped = [r for r in records if r.status == "skipped"]
    if skipped:
        reasons: dict[str, int] = {}
        for r in skipped:
            reasons[r.error or "skipped"] = reasons.get(r.error or "skipped", 0) + 1
        lines.append("skipped: " + "; ".join(f"{n} {why}" for why, n in reasons.items()))
    return "\n".join(printable(line) for line in lines)


def _seconds(t: float) -> str:
    return f"{t:.2f} s" if t >= 1 else f"{t * 1000:.0f} ms"


# ---------------------------------------------------------------------------- contact sheet


class NothingToShow(ValueError):
    """:func:`contact_sheet` found no written image it can show (and wrote nothing)."""


def contact_sheet(records: Sequence[Record], path: str | os.PathLike, *, limit: int = 6,
                  height: int = 200) -> int:
    """Write a PNG with one row per written image: the input beside its output, both shown
    ``height`` pixels tall (the output scaled up with nearest-neighbour, so its pixels show).
    Only the first ``limit`` images are shown; arrays (.npy) are left out. Returns how many
    rows were drawn."""
    from PIL import Image, ImageDraw

    rows = []
    for r in in_input_order(records):
        if len(rows) == limit:
            break
        if r.status != "ok" or r.output in (None, "-") or r.output.lower().endswith(".npy"):
            continue
        try:
            a, b = _display_pair(r.input, r.output)
        except (OSError, ValueError):
            continue
        rows.append((r, _fit(a, height, Image.Resampling.LANCZOS),
                     _fit(b, height, Image.Resampling.NEAREST), a.size, b.size))
    if not rows:
        raise NothingToShow("no written image to put on a contact sheet")
    gap, label = 8, 14
    width = max(x.width + y.width for _, x, y, _, _ in rows) + 3 * gap
    sheet = Image.new("RGB", (width, len(rows) * (height + label + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    y0 = gap
    for r, a, b, size_a, size_b in rows:
        _paste(sheet, a, (gap, y0))
        _paste(sheet, b, (2 * gap + a.width, y0))
        draw.text((gap, y0 + height + 1),
                  f"{printable(os.path.basename(r.input))} {size_a[0]}x{size_a[1]}",
                  fill="black")
        draw.text((2 * gap + a.width, y0 + height + 1), f"-> {size_b[0]}x{size_b[1]}",
                  fill="black")
        y0 += height + label + gap
    from PIL import PngImagePlugin

    mark = PngImagePlugin.PngInfo()
    mark.add_text(_SHEET_KEY, _SHEET_TEXT)
    buf = io.BytesIO()
    sheet.save(buf, format="PNG", pnginfo=mark)
    atomic_write(path, buf.getvalue(), overwrite=True)
    return len(rows)


def _display_pair(input_path: str, output_path: str):
    """The first frames of an input and its output as RGBA for the eye, read the way poolimg
    reads them (EXIF orientation applied, 16-bit and float kept). Both are mapped to 8 bits
    with the input's range, so they stay comparable: 16-bit by its top byte, float and int32
    from the input's min..max."""
    import numpy as np
    from PIL import Image

    from . import io as pio

    a, b = pio.read(input_path), pio.read(output_path)
    x, y = a.array, b.array
    if x.dtype == np.uint16:
        x, y = (x >> 8).astype(np.uint8), (y >> 8).astype(np.uint8)
    elif x.dtype != np.uint8:
        finite = np.asarray(x, np.float64)[np.isfinite(x)]
        lo, hi = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
        scale = 255.0 / (hi - lo) if hi > lo else 0.0

        def to8(v):
            v = np.nan_to_num((np.asarray(v, np.float64) - lo) * scale, nan=0.0)
            return np.clip(v, 0, 255).astype(np.uint8)

        x, y = to8(x), to8(y)
    mode_of = {2: "LA", 3: "RGB", 4: "CMYK" if a.mode == "CMYK" else "RGBA"}

    def image(v):
        v = v[..., 0] if v.ndim == 3 and v.shape[2] == 1 else v
        return Image.fromarray(v, "L" if v.ndim == 2 else mode_of[v.shape[2]]).convert("RGBA")

    return image(x), image(y)


def _fit(im, height, resample):
    width = max(1, round(im.width * height / max(im.height, 1)))
    return im.resize((width, height), resample)


def _paste(sheet, im, at):
    # Transparent areas show a light checkerboard, not black.
    import numpy as np
    from PIL import Image

    yy, xx = np.indices((im.height, im.width))
    shade = np.where((yy // 8 + xx // 8) % 2, 205, 235).astype(np.uint8)
    board = Image.fromarray(shade).convert("RGBA")
    board.alpha_composite(im)
    sheet.paste(board.convert("RGB"), at)
