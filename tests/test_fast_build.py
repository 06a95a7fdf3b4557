"""The compiled backend's build: generated sources up to date, the extension declared optional,
and, when it is built, what it reports about itself. (Installing without a compiler is checked
once by .ci/run, with CC=false.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import poolcore
from poolcore import _fast_gen

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_instances_header_is_what_the_generator_writes():
    """_fast_instances.h is committed; regenerate it with `python poolcore/_fast_gen.py`."""
    header = (ROOT / "poolcore" / "_fast_instances.h").read_text()
    assert header == _fast_gen.render(), "run python poolcore/_fast_gen.py and commit the result"


def test_every_instance_is_in_the_dispatch_tables():
    """Each generated instance has its entry in _fast.c's tables (a missing one would be a
    link-time unused function and a NULL kernel at run time)."""
    source = (ROOT / "poolcore" / "_fast.c").read_text()
    for name, _ in _fast_gen.instances():
        op, code = name.split("_")
        assert f"PC_ENT({name}," in source or (
            f"PC_ROW_AVX2({op}," in source and code in _fast_gen.AVX2_TYPES
        ), name


def test_pyproject_declares_the_optional_extension():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    exts = config["tool"]["setuptools"]["ext-modules"]
    (ext,) = [e for e in exts if e["name"] == "poolcore._fast"]
    assert ext["optional"] is True  # no compiler: install anyway, numpy only
    assert ext["sources"] == ["poolcore/_fast.c"]
    headers = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "poolcore").glob("_fast*.h"))
    assert sorted(ext["depends"]) == headers  # rebuilt when a header changes, shipped in sdists
    assert not any("march" in flag for flag in ext.get("extra-compile-args", []))


@pytest.mark.fast
def test_extension_reports_its_configuration():
    if "fast" not in poolcore.available_backends():
        pytest.skip("the compiled backend is not built here")
    from poolcore import _fast

    cfg = _fast.config()
    assert set(cfg) == {"avx2", "hot", "min_work"}
    assert cfg["hot"] is True
    assert _fast.MAX_AXES >= 3
    if sys.platform == "linux" and Path("/proc/cpuinfo").exists():
        flags = Path("/proc/cpuinfo").read_text()
        has = " avx2 " in flags.replace("\n", " ") and " fma " in flags.replace("\n", " ")
        assert cfg["avx2"] == has
