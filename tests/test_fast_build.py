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


@pytest.mark.parametrize("n", [3, 9, 25])
def test_median_network_picks_the_median_of_every_input(n):
    """The network _fast_gen writes for the 5x5 median (and, as a check of the method, for
    3 and 9 values) leaves the median on the middle wire for all 2**n inputs of 0s and 1s:
    by the 0-1 principle, for every input. Bit-parallel: bit b of word w is input 64 w + b."""
    import numpy as np

    inputs = np.arange(1 << n, dtype=np.uint32)
    ones = np.zeros(1 << n, dtype=np.uint8)
    wires = []
    for i in range(n):
        bit = ((inputs >> i) & 1).astype(np.uint8)
        ones += bit
        wires.append(np.packbits(bit, bitorder="little"))
    for i, j, lo, hi in _fast_gen.median_network(n):
        wires[i], wires[j] = wires[i] & wires[j], wires[i] | wires[j]
        assert lo or hi
    want = np.packbits(ones > n // 2, bitorder="little")
    assert np.array_equal(wires[n // 2], want)
    assert len(_fast_gen.median_network(25)) == 113  # the count the header's comment states


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
