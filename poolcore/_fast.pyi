"""Stub of the compiled kernels (poolcore/_fast.c); use them through poolcore.pool."""

from typing_extensions import Buffer

#: Pooled axes one job handles (more fall back to numpy).
MAX_AXES: int

# One pooled axis: n, k, s, p, d, out, G (group after the axis), source byte strides of the
# axis and of G, output byte strides of the axis and of G, segments ((o0, o1, strategy), ...),
# the avg/lp divisor per output (an int64 buffer) or None, and for adaptive pooling the
# window starts then ends (an int64 buffer of 2 * out) or None.
_Axis = tuple[
    int, int, int, int, int, int, int, int, int, int, int,
    tuple[tuple[int, int, int], ...], Buffer | None, Buffer | None,
]

def pool(
    src: Buffer,
    dst: Buffer,
    kind: int,
    fin: int,
    pexp: float,
    volume: float,
    nthreads: int,
    outer: int,
    s_outer: int,
    d_outer: int,
    axes: tuple[_Axis, ...],
    last_line: bool,
    /,
) -> None:
    """Trusted entry: fast_backend has validated and canonicalised everything."""

def config(
    avx2: bool | None = None, hot: bool | None = None, min_work: float | None = None
) -> dict[str, bool | float]:
    """Read (tests: set) the AVX2 kernels, the fused kernels, and the threading threshold."""
