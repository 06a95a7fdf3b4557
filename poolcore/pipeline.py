"""Pipelines: pooling stages applied in order, written as text or TOML.

Text form, one stage per ``|``, each a call with literal arguments::

    max(3, stride=2, padding=1) | avg(2) | lp(2, p=3) | adaptive_avg((64, 64))

Stages are parsed with :mod:`ast` and only literals are accepted (ints, floats, bools,
``None``, tuples, ``inf``): nothing is evaluated. ``str(pipeline)`` writes the canonical text,
which parses back to an equal pipeline.
"""

from __future__ import annotations

import ast
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .api import adaptive_pool, adaptive_spec, pool, pool_spec
from .geometry import ADAPTIVE_OPS, OPS, AdaptiveSpec, PoolSpec, default_nd

# Parameters of each kind of stage, in positional order, with their defaults.
POOL_PARAMS = {
    "kernel": None,
    "stride": None,
    "padding": 0,
    "dilation": 1,
    "ceil_mode": False,
    "count_include_pad": True,
    "p": 2.0,
}
ADAPTIVE_PARAMS = {"output_size": None}
# Parameters a stage accepts positionally; the flags are keyword-only, as in poolcore.pool.
POSITIONAL = ("kernel", "stride", "padding", "dilation")
STAGE_NAMES = OPS + tuple(f"adaptive_{op}" for op in ADAPTIVE_OPS)


def _params_of(op: str) -> dict:
    if op.startswith("adaptive_"):
        return ADAPTIVE_PARAMS
    return POOL_PARAMS if op == "lp" else {k: v for k, v in POOL_PARAMS.items() if k != "p"}


@dataclass(frozen=True)
class Stage:
    """One pooling step: an op name (``"max"``, ``"adaptive_avg"``, ...) and its parameters
    (only those that differ from the defaults are stored)."""

    op: str
    params: tuple[tuple[str, object], ...] = field(default=())

    @classmethod
    def make(cls, op: str, **params) -> Stage:
        if op not in STAGE_NAMES:
            raise ValueError(f"unknown op {op!r}; expected one of {', '.join(STAGE_NAMES)}")
        known = _params_of(op)
        for name in params:
            if name not in known:
                raise ValueError(
                    f"unknown parameter {name!r} for {op}; expected {', '.join(known)}"
                )
        required = "output_size" if op.startswith("adaptive_") else "kernel"
        if params.get(required) is None:
            raise ValueError(f"{op} needs `{required}`")
        clean = {}
        for name, value in params.items():
            value = _normalise(value)
            if name in ("ceil_mode", "count_include_pad") and not isinstance(value, bool):
                raise TypeError(f"`{name}` must be true or false, got {value!r}")
            if name == "p":
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise TypeError(f"`p` must be a number, got {value!r}")
                value = float(value)
            if value != known[name]:
                clean[name] = value
        stage = cls(op, tuple((k, clean[k]) for k in known if k in clean))
        stage._check()
        return stage

    @property
    def kwargs(self) -> dict:
        return dict(self.params)

    @property
    def is_adaptive(self) -> bool:
        return self.op.startswith("adaptive_")

    @property
    def base_op(self) -> str:
        """The reduction: ``"avg"`` for both ``avg`` and ``adaptive_avg``."""
        return self.op.removeprefix("adaptive_")

    def _check(self) -> None:
        """Validate what can be checked without an input (ranges, padding limit, p)."""
        kw = self.kwargs
        first = kw["output_size"] if self.is_adaptive else kw["kernel"]
        nd = default_nd(first, 2)
        # long enough that every window fits; an adaptive stage fits any length, and keeps an
        # axis of None as it is: 1, so that only its own sizes meet the output cap
        self.output_shape((1 if self.is_adaptive else 1 << 40,) * nd)

    def __call__(self, x, axes=None, backend="auto") -> np.ndarray:
        kw = self.kwargs
        if self.is_adaptive:
            return adaptive_pool(x, self.base_op, kw["output_size"], axes=axes, backend=backend)
        return pool(x, self.op, axes=axes, backend=backend, **kw)

    def spec(self, shape: Sequence[int], axes=None) -> PoolSpec | AdaptiveSpec:
        """This stage's validated call on an input of ``shape``: its windows per axis."""
        kw = self.kwargs
        if self.is_adaptive:
            return adaptive_spec(shape, self.base_op, kw["output_size"], axes=axes)
        return pool_spec(shape, self.op, axes=axes, **kw)

    def output_shape(self, shape: Sequence[int], axes=None) -> tuple[int, ...]:
        """The shape this stage makes of an input of ``shape`` (validates like a call)."""
        return self.spec(shape, axes).out_shape(shape)

    def __str__(self) -> str:
        kw = self.kwargs
        first = "output_size" if self.is_adaptive else "kernel"
        parts = [_literal(kw.pop(first))]
        parts += [f"{name}={_literal(value)}" for name, value in kw.items()]
        return f"{self.op}({', '.join(parts)})"


def _normalise(value):
    """Lists (from TOML) become tuples; numpy ints become ints."""
    if isinstance(value, (list, tuple)):
        return tuple(_normalise(v) for v in value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _literal(value) -> str:
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


class Pipeline:
    """Stages applied in order to the same axes.

    Examples
    --------
    >>> import numpy as np
    >>> from poolcore import Pipeline
    >>> pipe = Pipeline.parse("max(3, stride=2, padding=1) | avg(2)")
    >>> str(pipe)
    'max(3, stride=2, padding=1) | avg(2)'
    >>> pipe(np.arange(64.0).reshape(8, 8)).shape
    (2, 2)
    """

    def __init__(self, stages: Sequence[Stage]):
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        self.stages = tuple(stages)

    # ------------------------------------------------------------------ construction

    @classmethod
    def parse(cls, text: str) -> Pipeline:
        """Parse ``"op(args) | op(args) ..."``; errors name the stage and the bad word."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("pipeline text is empty; expected e.g. 'max(2) | avg(2)'")
        stages = []
        for number, part in enumerate(text.split("|"), start=1):
            stages.append(_parse_stage(part.strip(), number))
        return cls(stages)

    @classmethod
    def single(cls, op: str, kernel=None, stride=None, padding=0, ceil_mode=False,
               **params) -> Pipeline:
        """A one-stage pipeline (the CLI's ``--op/-k/-s`` shorthand). For adaptive ops,
        ``kernel`` is the output size."""
        if op.startswith("adaptive_"):
            given = [flag for flag, value, unset in (("-s/--stride", stride, None),
                                                    ("--padding", padding, 0),
                                                    ("--ceil-mode", ceil_mode, False))
                     if value != unset]
            if given:  # an adaptive window has no stride or padding: never drop them silently
                raise ValueError(f"{op} takes only the output size (-k); it has no "
                                 f"{', '.join(given)}")
            return cls([Stage.make(op, output_size=kernel, **params)])
        return cls([Stage.make(op, kernel=kernel, stride=stride, padding=padding,
                               ceil_mode=ceil_mode, **params)])

    @classmethod
    def from_mapping(cls, data: Mapping, source: str = "config") -> Pipeline:
        """From parsed TOML: ``pipeline = "max(2) | avg(2)"`` or ``[[stages]]`` tables, each
        with ``op`` and the stage's parameters."""
        if "pipeline" in data and "stages" in data:
            raise ValueError(f"{source}: give either `pipeline` or `stages`, not both")
        if "pipeline" in data:
            if not isinstance(data["pipeline"], str):
                raise TypeError(f"{source}: `pipeline` must be a string such as \"avg(2)\", "
                                f"got {data['pipeline']!r}")
            try:
                return cls.parse(data["pipeline"])
            except (TypeError, ValueError) as e:
                raise ValueError(f"{source}: `pipeline`: {e}") from None
        tables = data.get("stages")
        if not isinstance(tables, list) or not tables:
            raise ValueError(f"{source}: expected `pipeline = \"...\"` or [[stages]] tables")
        stages = []
        for number, table in enumerate(tables, start=1):
            if not isinstance(table, Mapping):
                raise TypeError(f"{source}: stage {number} must be a table with `op` and its "
                                f"parameters ([[stages]]), got {table!r}")
            params = dict(table)
            op = params.pop("op", None)
            try:
                stages.append(Stage.make(op, **params))
            except (TypeError, ValueError) as e:
                raise ValueError(f"{source}: stage {number} ({op}): {e}") from None
        return cls(stages)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Pipeline:
        """Read a TOML file (see :meth:`from_mapping`)."""
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib
        with open(path, "rb") as f:
            try:
                data = tomllib.load(f)
            except tomllib.TOMLDecodeError as e:
                raise ValueError(f"{os.fspath(path)}: not valid TOML: {e}") from None
        return cls.from_mapping(data, os.fspath(path))

    # ------------------------------------------------------------------ use

    def __call__(self, x, axes=None, backend="auto") -> np.ndarray:
        for stage in self.stages:
            x = stage(x, axes=axes, backend=backend)
        return x

    def output_shape(self, shape: Sequence[int], axes=None) -> tuple[int, ...]:
        """The output shape for an input of ``shape``, without computing anything."""
        shape = tuple(int(n) for n in shape)
        for stage in self.stages:
            shape = stage.output_shape(shape, axes)
        return shape

    def scale(self, shape: Sequence[int], axes=None) -> tuple[float, ...]:
        """How far apart neighbouring outputs are, in input elements, per axis of ``shape``
        (1.0 where unpooled): the product of the stages' strides (an adaptive stage, whose
        windows have no fixed stride: its input over output length). The factor by which an
        image's DPI shrinks: ``max(3, stride=1)`` keeps it, ``avg(7)`` divides it by 7
        whatever the rows left over at the edge."""
        shape = tuple(int(n) for n in shape)
        factor = [1.0] * len(shape)
        for stage in self.stages:
            spec = stage.spec(shape, axes)
            if isinstance(spec, PoolSpec):
                steps = [float(w.s) for w in spec.windows]
            else:
                steps = [shape[ax] / n if shape[ax] and n else 1.0
                         for ax, n in zip(spec.axes, spec.sizes)]
            for ax, step in zip(spec.axes, steps):
                factor[ax] *= step
            shape = spec.out_shape(shape)
        return tuple(factor)

    @property
    def ops(self) -> tuple[str, ...]:
        return tuple(stage.base_op for stage in self.stages)

    def __str__(self) -> str:
        return " | ".join(str(s) for s in self.stages)

    def __repr__(self) -> str:
        return f"Pipeline.parse({str(self)!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Pipeline) and self.stages == other.stages

    def __hash__(self) -> int:
        return hash(self.stages)


# ---------------------------------------------------------------------- parsing


def _parse_stage(text: str, number: int) -> Stage:
    where = f"stage {number} `{text}`"
    if not text:
        raise ValueError(f"stage {number} is empty (two `|` in a row, or a `|` at an end)")
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError as e:
        col = (e.offset or 1) - 1
        near = text[col:] or text
        raise ValueError(f"{where}: not a stage call like `max(2)` (near {near!r})") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise ValueError(f"{where}: expected `op(...)`, e.g. `max(2, stride=2)`")
    op = node.func.id
    if op not in STAGE_NAMES:
        raise ValueError(f"{where}: unknown op {op!r}; expected one of {', '.join(STAGE_NAMES)}")
    names = list(_params_of(op))
    positional = POSITIONAL if not op.startswith("adaptive_") else ("output_size",)
    params = {}
    if len(node.args) > len(positional):
        raise ValueError(
            f"{where}: too many positional values; {op} takes {', '.join(positional)} "
            f"positionally, the rest as name=value"
        )
    for name, arg in zip(positional, node.args):
        params[name] = _value(arg, where, name)
    for kw in node.keywords:
        if kw.arg is None or kw.arg not in names:
            raise ValueError(f"{where}: unknown parameter {kw.arg!r}; expected {', '.join(names)}")
        if kw.arg in params:
            raise ValueError(f"{where}: `{kw.arg}` given twice")
        params[kw.arg] = _value(kw.value, where, kw.arg)
    try:
        return Stage.make(op, **params)
    except (TypeError, ValueError) as e:
        raise type(e)(f"{where}: {e}") from None


_NAMES = {"inf": math.inf, "true": True, "false": False, "none": None}


def _value(node: ast.expr, where: str, name: str):
    """A literal argument: numbers, bools, None, ``inf``, tuples/lists of those."""
    if isinstance(node, ast.Name) and node.id.lower() in _NAMES:
        return _NAMES[node.id.lower()]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _value(node.operand, where, name)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_value(e, where, name) for e in node.elts)
    if isinstance(node, ast.Constant) and (
        node.value is None or isinstance(node.value, (bool, int, float))
    ):
        return node.value
    raise ValueError(
        f"{where}: `{name}` must be a number, a tuple of numbers, true/false or None, "
        f"got `{ast.unparse(node)}`"
    )
