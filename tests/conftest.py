"""Shared fixtures: the backend every parity test runs on, both kinds of temporary file of an
atomic write, hypothesis profiles, report header."""

import os

import pytest
from hypothesis import HealthCheck, settings

import poolcore
from poolcore import atomic

# Profiles (numpy's conftest.py does the same): pick one with HYPOTHESIS_PROFILE=thorough.
_COMMON = dict(deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("default", max_examples=60, **_COMMON)
settings.register_profile("ci", max_examples=60, derandomize=True, **_COMMON)
settings.register_profile("thorough", max_examples=1000, **_COMMON)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "default")
settings.load_profile(PROFILE)


def _backend_params():
    params = ["numpy"]
    # CI sets POOLCORE_REQUIRE_FAST=1 so that a build that silently lost the compiled
    # backend fails (the fixture below) instead of quietly testing numpy twice.
    if "fast" in poolcore.available_backends() or os.environ.get("POOLCORE_REQUIRE_FAST"):
        params.append(pytest.param("fast", marks=pytest.mark.fast))
    return params


@pytest.fixture(scope="session", params=_backend_params())
def backend(request):
    """Name of a backend to pass as ``backend=``: every one that can run here."""
    if request.param not in poolcore.available_backends():
        pytest.fail(
            f"POOLCORE_REQUIRE_FAST is set but backend {request.param!r} is not available "
            f"(available: {poolcore.available_backends()})"
        )
    return request.param


@pytest.fixture(params=["unnamed", "named"])
def temp_kind(request, monkeypatch):
    """Both ways poolcore.atomic makes its temporary file: O_TMPFILE (Linux) and a hidden
    named file."""
    if request.param == "unnamed" and not atomic._TMPFILE:
        pytest.skip("no O_TMPFILE here")
    if request.param == "named":
        monkeypatch.setattr(atomic, "_TMPFILE", False)
    return request.param


def pytest_report_header(config):
    return (
        f"poolcore {poolcore.__version__}: backends {', '.join(poolcore.available_backends())}; "
        f"hypothesis profile {PROFILE!r}"
    )
