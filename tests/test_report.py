"""poolcore.report: the JSON schema (checked by a small validator), CSV, writing through
poolcore.atomic (tested in test_atomic.py), the summary text and the contact sheet."""

import csv
import io
import json
import os
import stat

import numpy as np
import pytest
from PIL import Image

from poolcore import report
from poolcore.batch import FIELDS, Record, Summary

# ------------------------------------------------------------------ a small schema validator
# jsonschema is not a dependency; this covers the keywords SCHEMA uses, and nothing else.

_TYPES = {
    "object": dict, "array": list, "string": str, "null": type(None),
    "integer": int, "number": (int, float), "boolean": bool,
}
_KNOWN = {"$schema", "title", "type", "required", "additionalProperties", "properties", "items",
          "enum", "minimum"}


def validate(value, schema, where="$"):
    """Raise AssertionError naming the first place where ``value`` breaks ``schema``."""
    unknown = set(schema) - _KNOWN
    assert not unknown, f"validator does not know {unknown}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(
            isinstance(value, _TYPES[t]) and not (isinstance(value, bool) and t != "boolean")
            for t in types
        )
        assert ok, f"{where}: {value!r} is not of type {types}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "minimum" in schema and isinstance(value, (int, float)):
        assert value >= schema["minimum"], f"{where}: {value!r} < {schema['minimum']}"
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            assert key in value, f"{where}: missing {key!r}"
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is False:
            extra = set(value) - set(props)
            assert not extra, f"{where}: unexpected {sorted(extra)}"
        for key, sub in props.items():
            if key in value:
                validate(value[key], sub, f"{where}.{key}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            validate(v, schema["items"], f"{where}[{i}]")


def records():
    # Finished out of order: the report lists them by input order (index).
    return [
        Record("b.png", "out/b.png", "failed", error="cannot identify image file", read_s=0.001,
               total_s=0.002, index=1),
        Record("a.jpg", "out/a.jpg", "ok", in_shape=(6, 8, 3), out_shape=(3, 4, 3),
               dtype="uint8", read_s=0.01, pool_s=0.002, write_s=0.003, total_s=0.0151,
               index=0, pixels=48),
        Record("notes.txt", "out/notes.txt", "skipped", error="not an image or .npy", index=2),
    ]


def summary(recs=None):
    return Summary.of(recs or records(), wall_s=0.5)


def test_names_that_are_not_utf8_are_escaped_in_reports(tmp_path):
    # A name from a zip made elsewhere: b"caf\xe9.png" comes to Python with a lone surrogate.
    name = os.fsdecode(b"caf\xe9.png")
    recs = [Record(name, "out/" + name, "failed", error=f"{name}: corrupt", index=0)]
    for suffix in ("json", "csv"):
        path = tmp_path / f"r.{suffix}"
        report.write_report(path, recs, summary(recs), "avg(2)", "numpy")
        text = path.read_bytes().decode("utf-8")  # valid UTF-8
        assert "caf\\xe9.png" in text.replace("\\\\", "\\")
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["files"][0]["input"] == "caf\\xe9.png"


def test_the_summary_keeps_a_file_name_on_its_line():
    name = "bad\nname" + os.fsdecode(b"\xe9.png")
    recs = [Record(name, "out.png", "failed", error="corrupt", index=0)]
    text = report.format_summary(recs, summary(recs))
    assert text.splitlines()[1:] == ["failed:", "  bad\\x0aname\\xe9.png: corrupt"]


def test_json_report_validates_and_keeps_input_order():
    doc = report.to_dict(records(), summary(), "max(2) | avg(2)", "numpy")
    validate(doc, report.SCHEMA)
    assert [f["input"] for f in doc["files"]] == ["a.jpg", "b.png", "notes.txt"]
    assert list(doc["files"][0]) == list(FIELDS)
    assert doc["files"][0]["in_shape"] == [6, 8, 3]
    assert doc["summary"] == {"files": 3, "ok": 1, "failed": 1, "skipped": 1, "wall_s": 0.5,
                              "megapixels_in": 4.8e-05, "mpix_per_s": 0.0}
    assert doc["pipeline"] == "max(2) | avg(2)" and doc["backend"] == "numpy"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: d["summary"].pop("wall_s"), "missing 'wall_s'"),
        (lambda d: d["files"][0].update(status="done"), "not in"),
        (lambda d: d["files"][0].update(in_shape="6x8"), "is not of type"),
        (lambda d: d.update(extra=1), "unexpected"),
        (lambda d: d["summary"].update(ok=True), "is not of type"),
    ],
)
def test_the_validator_catches_a_broken_report(damage, message):
    doc = report.to_dict(records(), summary(), "avg(2)", "numpy")
    damage(doc)
    with pytest.raises(AssertionError, match=message):
        validate(doc, report.SCHEMA)


def test_schema_lists_exactly_the_issue_fields():
    files = report.SCHEMA["properties"]["files"]["items"]
    assert tuple(files["properties"]) == FIELDS == (
        "input", "output", "status", "error", "in_shape", "out_shape", "dtype",
        "read_s", "pool_s", "write_s", "total_s",
    )
    assert tuple(report.SCHEMA["properties"]["summary"]["properties"]) == (
        "files", "ok", "failed", "skipped", "wall_s", "megapixels_in", "mpix_per_s",
    )


def test_csv_report(tmp_path):
    path = tmp_path / "r.csv"
    report.write_report(path, records(), summary(), "max(3, stride=2) | avg(2)", "numpy")
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == list(FIELDS)
    assert rows[1] == ["a.jpg", "out/a.jpg", "ok", "", "6x8x3", "3x4x3", "uint8",
                       "0.01", "0.002", "0.003", "0.0151"]
    assert rows[2][:4] == ["b.png", "out/b.png", "failed", "cannot identify image file"]
    trailer = [r[0] for r in rows[4:]]
    assert trailer == [
        "# pipeline=max(3, stride=2) | avg(2)", "# backend=numpy", "# files=3", "# ok=1",
        "# failed=1", "# skipped=1", "# wall_s=0.5", "# megapixels_in=4.8e-05",
        "# mpix_per_s=0.0",
    ]
    assert all(len(r) == 1 for r in rows[4:])


def test_csv_row_of_an_input_named_with_a_hash_is_not_a_comment(tmp_path):
    recs = [Record("#1.png", "out/#1.png", "ok", index=0), Record("b#.png", None, "skipped",
                                                                   index=1)]
    text = report.to_csv(recs, summary(recs), "avg(2)", "numpy")
    lines = text.splitlines()
    assert lines[1].startswith('"#1.png","out/#1.png","ok"') and lines[2].startswith("b#.png,")
    assert [r[0] for r in csv.reader(io.StringIO(text))][1:3] == ["#1.png", "b#.png"]


def test_report_suffix_is_checked(tmp_path):
    with pytest.raises(ValueError, match="a report is .json or .csv"):
        report.write_report(tmp_path / "r.txt", records(), summary(), "avg(2)", "numpy")


def test_report_replaces_atomically_with_umask_permissions(tmp_path):
    # the mechanism is tested in test_atomic.py; here: reports go through it, replacing
    target = tmp_path / "r.json"
    target.write_text("old")
    os.chmod(target, 0o600)
    old = os.umask(0o027)
    try:
        report.write_report(target, records(), summary(), "avg(2)", "numpy")
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert json.loads(target.read_text())["pipeline"] == "avg(2)"
    assert os.listdir(tmp_path) == ["r.json"]


def test_summary_text():
    text = report.format_summary(records(), summary())
    lines = text.splitlines()
    assert lines[0] == (
        "1 ok, 1 failed, 1 skipped in 500 ms (4.8e-05 MPix: 9.6e-05 MPix/s, 2 files/s)"
    )
    assert "failed:" in lines and "  b.png: cannot identify image file" in lines
    assert lines[-1] == "skipped: 1 not an image or .npy"


def test_summary_text_lists_the_slowest_and_caps_failures():
    recs = [Record(f"f{i}.png", f"o/f{i}.png", "ok", total_s=i / 10, index=i) for i in range(5)]
    recs += [Record(f"x{i}.png", None, "failed", error="bad", index=10 + i) for i in range(12)]
    text = report.format_summary(recs, summary(recs), max_listed=10)
    assert "slowest: f4.png (400 ms), f3.png (300 ms), f2.png (200 ms)" in text
    assert "  ... and 2 more (see --report)" in text
    assert report.format_summary([], Summary.of([], 0.1)) == "poolimg: no files to pool"
    none_ran = [Record("x.png", None, "failed", error="bad", index=0)]
    assert report.format_summary(none_ran, Summary.of(none_ran, 1.5)).splitlines()[0] == (
        "0 ok, 1 failed, 0 skipped in 1.50 s"
    )


def test_summary_counts_and_exit_code():
    s = summary()
    assert (s.files, s.ok, s.failed, s.skipped, s.exit_code) == (3, 1, 1, 1, 1)
    ok = Summary.of([r for r in records() if r.status != "failed"], 1.0)
    assert ok.exit_code == 0 and ok.megapixels_in == 48e-6 and ok.mpix_per_s == 48e-6


def test_contact_sheet(tmp_path):
    recs = []
    for i in range(4):
        src, out = tmp_path / f"in{i}.png", tmp_path / f"out{i}.png"
        Image.fromarray(np.full((40, 60, 3), 60 * i, np.uint8)).save(src)
        Image.fromarray(np.full((20, 30, 4), 60 * i, np.uint8)).save(out)
        recs.append(Record(str(src), str(out), "ok", index=i))
    recs.append(Record("x.npy", "y.npy", "ok", index=9))
    shown = report.contact_sheet(recs, tmp_path / "sheet.png", limit=3, height=50)
    assert shown == 3
    with Image.open(tmp_path / "sheet.png") as im:
        assert im.format == "PNG" and im.height == 3 * (50 + 14 + 8) + 8
    with pytest.raises(ValueError, match="no written image"):
        report.contact_sheet(recs[-1:], tmp_path / "none.png")


def test_contact_sheet_labels_are_one_line(tmp_path, monkeypatch):
    from PIL import ImageDraw

    said = []
    real = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text",
                        lambda self, xy, text, *a, **k: said.append(text) or real(
                            self, xy, text, *a, **k))
    src, out = tmp_path / "a\nb.png", tmp_path / "out.png"
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(src)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(out)
    report.contact_sheet([Record(str(src), str(out), "ok")], tmp_path / "s.png", height=20)
    assert said[0] == "a\\x0ab.png 6x4" and all("\n" not in t for t in said)


def test_json_report_round_trips_through_a_file(tmp_path):
    path = tmp_path / "r.json"
    report.write_report(path, records(), summary(), "avg(2)", "numpy")
    validate(json.loads(path.read_text()), report.SCHEMA)


@pytest.mark.parametrize("kind", ["uint16", "float32"])
def test_contact_sheet_shows_16_bit_and_float_images_by_their_range(tmp_path, kind):
    # A gradient over the full 16-bit range, or float values in [-500, 3000]: Pillow's own
    # conversion would show them all white; the sheet maps them to 8 bits by the input's range.
    ramp = np.linspace(0, 1, 64 * 64).reshape(64, 64)
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    if kind == "uint16":
        a = (ramp * 65535).astype(np.uint16)
        Image.fromarray(a).save(src)
        Image.fromarray(a[::2, ::2].copy()).save(out)
    else:
        a = (ramp * 3500 - 500).astype(np.float32)
        Image.fromarray(a, "F").save(src)
        Image.fromarray(a[::2, ::2].copy(), "F").save(out)
    report.contact_sheet([Record(str(src), str(out), "ok", index=0)], tmp_path / "s.png",
                         height=64)
    with Image.open(tmp_path / "s.png") as im:
        left = np.asarray(im.convert("L"))[8:72, 8:72]
    assert left.min() < 10 and left.max() > 245  # the full grey range, not all white
