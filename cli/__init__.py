"""The ``poolimg`` command (see :mod:`cli.main`)."""
