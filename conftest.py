"""Collection rules for the doctests of poolcore (pytest runs with --doctest-modules)."""

import importlib.util

# The build-time generator of the C kernels is not a runtime module.
collect_ignore_glob = ["poolcore/_fast_gen.py"]

# fast_backend imports the compiled extension; without it there is nothing to collect there
# (tests/conftest.py decides whether a missing extension is a failure).
if importlib.util.find_spec("poolcore._fast") is None:
    collect_ignore = ["poolcore/fast_backend.py"]
