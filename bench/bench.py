"""Benchmark poolcore against PyTorch, OpenCV, Pillow, scipy.ndimage and a plain copy.

One run times every implementation on the same inputs, interleaved (repeat r runs every
implementation once, in a rotated order), and prints medians and ratios as markdown tables:

- ``x copy``: time / time of ``np.copyto`` of the case's input (reading and writing the input
  once: the memory-bandwidth floor of a pooling pass, which reads the input once and writes less);
- ``x poolcore``: time / time of poolcore's best backend (``fast`` when built, else ``numpy``):
  above 1 means poolcore is faster.

Every output is checked against poolcore's numpy backend (the reference, itself tested against
PyTorch and an oracle), so a fast wrong answer shows up as MISMATCH and makes the run exit 1.
Each library is optional: a missing one is shown as "-". ``--quick`` runs tiny sizes once (a CI
smoke test, needing only numpy and Pillow).

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench.py [--quick] [--cases 1,3]
        [--repeats N] [--json FILE]

Cases (the numbers of issue 4): 1 avg 2x2/s2 u8 RGB image; 2 max 2x2/s2 same image; 3 max
3x3/s2/p1 f32 NCHW; 4 max/avg k x k /s1 f32 2-D at k = 3, 15, 31; 5 a JPEG batch through
``poolimg`` vs a Pillow loop; 6 start-up time; 7 peak memory of case 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

try:
    import poolcore
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import poolcore


def _optional(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or a broken install (e.g. a missing shared library)
        return None


torch = _optional("torch")
cv2 = _optional("cv2")
ndimage = _optional("scipy.ndimage")
Image = _optional("PIL.Image")
scipy = _optional("scipy")
PIL = _optional("PIL")

HAS_FAST = "fast" in poolcore.available_backends()
BEST = "fast" if HAS_FAST else "numpy"  # the poolcore backend the ratios are taken against

# Child processes run in a neutral directory: `python -c` puts the current directory first on
# sys.path, and from a checkout that would import the source tree's poolcore (without its
# compiled extension) instead of the installed one.
NEUTRAL_CWD = tempfile.gettempdir()


# Row labels the targets refer to.
COPY = "np.copyto of the input (floor)"
TORCH_CL = "torch max_pool2d channels_last"
CV_MAX = "OpenCV dilate + crop"
CV_AVG = "OpenCV blur + crop"
POOLIMG = "poolimg --op avg -k 2"
# One worker reads the next file on a second thread; this row shows it without one.
POOLIMG_ONE_THREAD = "poolimg --op avg -k 2 --threads 1 (no read ahead)"
PILLOW_LOOP_LABEL = "Pillow loop (open, reduce(2), save)"
IMPORT_LINE = 'python -c "import numpy, PIL.Image"'
PC = "{pc}"  # stands for the row of poolcore's best backend


class Missing(Exception):
    """The library (or the op) is not available here: the row shows "-"."""


def need(module, name: str):
    if module is None:
        raise Missing(f"{name} not installed")
    return module


# --------------------------------------------------------------------------- machine


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "poolcore": getattr(poolcore, "__version__", "?"),
        "poolcore_backends": list(poolcore.available_backends()),
        "torch": torch.__version__ if torch else None,
        "torch_threads": torch.get_num_threads() if torch else None,
        "cv2": cv2.__version__ if cv2 else None,
        "cv2_threads": cv2.getNumThreads() if cv2 else None,
        "PIL": PIL.__version__ if PIL else None,
        "scipy": scipy.__version__ if scipy else None,
        "env": {k: os.environ[k] for k in sorted(os.environ) if _interesting_env(k)},
    }
    return info


def _interesting_env(name: str) -> bool:
    return (
        name.startswith(("OPENBLAS_", "OMP_", "MKL_", "POOLCORE_"))
        or name == "OPENCV_FOR_THREADS_NUM"
    )


def machine_line(m: dict[str, Any]) -> str:
    def v(key, label):
        return f"{label} {m[key]}" if m.get(key) else f"{label} -"

    parts = [
        f"{m['cpu']}, {m['cores']} cores ({m['usable_cores']} usable)",
        m["os"],
        f"Python {m['python']}",
        v("numpy", "numpy"),
        f"poolcore {m['poolcore']} (backends: {', '.join(m['poolcore_backends'])})",
        v("torch", "torch") + (f" ({m['torch_threads']} threads)" if m.get("torch") else ""),
        v("cv2", "OpenCV") + (f" ({m['cv2_threads']} threads)" if m.get("cv2") else ""),
        v("PIL", "Pillow"),
        v("scipy", "scipy"),
    ]
    if m["env"]:
        parts.append("env: " + " ".join(f"{k}={val}" for k, val in m["env"].items()))
    return "; ".join(parts)


# --------------------------------------------------------------------------- implementations


@dataclass
class Impl:
    """One row of a case: ``make(inputs)`` prepares untimed (conversions, buffers) and returns
    the timed zero-argument callable; ``out(result)`` turns its result into the reference's
    layout for the check (None: not checked, e.g. the copy floor)."""

    label: str
    lib: str  # poolcore-fast, poolcore-numpy, torch, cv2, PIL, scipy, numpy, copy
    make: Callable[[dict], Callable[[], Any]]
    out: Callable[[Any], np.ndarray] | None = None
    tol: float = 0.0  # largest |difference| to the reference accepted
    note: str = ""


@dataclass
class Case:
    key: str  # "1", "4-max-k15", ...
    group: int  # the issue-4 case number (what --cases selects)
    title: str
    inputs: Callable[[bool], dict]  # quick -> {"x": array, ...}; "x" is what the copy copies
    reference: Callable[[dict], np.ndarray]  # poolcore numpy
    impls: list[Impl] = field(default_factory=list)


def copy_impl() -> Impl:
    def make(inp):
        src = inp["x"]
        dst = np.empty_like(src)
        return lambda: np.copyto(dst, src)

    return Impl(COPY, "copy", make)


def poolcore_impls(call: Callable[[dict, str], Any], out=None, tol=0.0) -> list[Impl]:
    rows = []
    for backend in ("fast", "numpy"):

        def make(inp, backend=backend):
            if backend not in poolcore.available_backends():
                raise Missing("the compiled backend is not built")
            return lambda: call(inp, backend)

        rows.append(Impl(f"poolcore {backend}", f"poolcore-{backend}", make, out or _same, tol))
    return rows


def _same(a):
    return np.asarray(a)


def _round_u8(a) -> np.ndarray:
    """Float mean -> uint8 rounding half up (the mean of uint8 is >= 0: equals half away)."""
    a = a.numpy() if torch is not None and isinstance(a, torch.Tensor) else np.asarray(a)
    return np.floor(a + 0.5).astype(np.uint8)


def _nchw_to_hwc(t) -> np.ndarray:
    return t[0].permute(1, 2, 0).numpy()


def _tensor(t) -> np.ndarray:
    return t.numpy()


# ------------------------------------------------------------- cases 1 and 2: u8 RGB image


def image_inputs(quick: bool) -> dict:
    h, w = (64, 96) if quick else (4000, 6000)
    x = np.random.default_rng(1).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return {"x": x}


def case_avg_u8() -> Case:
    def ref(inp):
        return poolcore.pool(inp["x"], "avg", 2, axes=(0, 1), backend="numpy")

    def pc(inp, backend):
        return poolcore.pool(inp["x"], "avg", 2, axes=(0, 1), backend=backend)

    def pil(inp):
        im = need(Image, "Pillow").fromarray(inp["x"])
        return lambda: im.reduce(2)

    def cv(inp):
        x = inp["x"]
        size = (x.shape[1] // 2, x.shape[0] // 2)
        need(cv2, "OpenCV")
        return lambda: cv2.resize(x, size, interpolation=cv2.INTER_AREA)

    def torch_nchw(inp, channels_last: bool):
        need(torch, "torch")
        t = torch.from_numpy(inp["x"]).permute(2, 0, 1)[None].float()  # channels_last strides
        t = t.contiguous(memory_format=torch.channels_last) if channels_last else t.contiguous()
        return lambda: torch.nn.functional.avg_pool2d(t, 2)

    def torch_e2e(inp):
        need(torch, "torch")
        x = inp["x"]

        def run():
            t = torch.from_numpy(x).permute(2, 0, 1)[None].float()  # channels_last, as HWC is
            o = torch.nn.functional.avg_pool2d(t, 2)
            return o.add_(0.5).floor_().to(torch.uint8)[0].permute(1, 2, 0).numpy()

        return run

    def torch_convert(inp):
        need(torch, "torch")
        x = inp["x"]
        return lambda: torch.from_numpy(x).permute(2, 0, 1)[None].float()

    def np_mean(inp):
        x = inp["x"]
        h, w, c = x.shape

        def run():
            m = x.reshape(h // 2, 2, w // 2, 2, c).mean(axis=(1, 3))
            return np.floor(m + 0.5).astype(np.uint8)

        return run

    def np_add(inp):
        x = inp["x"]

        def run():  # the fastest plain numpy we know: four strided views summed in uint16
            s = x[0::2, 0::2].astype(np.uint16)
            s += x[1::2, 0::2]
            s += x[0::2, 1::2]
            s += x[1::2, 1::2]
            s += 2
            s >>= 2
            return s.astype(np.uint8)

        return run

    return Case(
        "1",
        1,
        "avg 2x2/s2, uint8 HWC RGB",
        image_inputs,
        ref,
        [
            copy_impl(),
            *poolcore_impls(pc),
            Impl("OpenCV resize INTER_AREA", "cv2", cv, _same),
            Impl("Pillow Image.reduce(2)", "PIL", pil, _same, note="Image made untimed"),
            Impl(
                "torch avg_pool2d f32 NCHW",
                "torch",
                lambda inp: torch_nchw(inp, False),
                lambda t: _round_u8(t[0].permute(1, 2, 0)),
                note="input converted to f32 untimed",
            ),
            Impl(
                "torch avg_pool2d f32 channels_last",
                "torch",
                lambda inp: torch_nchw(inp, True),
                lambda t: _round_u8(t[0].permute(1, 2, 0)),
                note="input converted to f32 untimed",
            ),
            Impl(
                "torch u8 -> f32 conversion only",
                "torch",
                torch_convert,
                None,
                note="the cost the two rows above leave out",
            ),
            Impl(
                "torch end to end (u8 -> f32 -> avg_pool2d -> u8)",
                "torch",
                torch_e2e,
                _same,
            ),
            Impl("numpy reshape-mean (f64) + round", "numpy", np_mean, _same),
            Impl("numpy 4 strided views summed in u16", "numpy", np_add, _same),
        ],
    )


def case_max_u8() -> Case:
    def ref(inp):
        return poolcore.pool(inp["x"], "max", 2, axes=(0, 1), backend="numpy")

    def pc(inp, backend):
        return poolcore.pool(inp["x"], "max", 2, axes=(0, 1), backend=backend)

    def torch_u8(inp, channels_last: bool):
        need(torch, "torch")
        t = torch.from_numpy(inp["x"]).permute(2, 0, 1)[None]  # a channels_last view, no copy
        if not channels_last:
            t = t.contiguous()
        try:
            torch.nn.functional.max_pool2d(t[..., :2, :2], 2)
        except RuntimeError as e:
            raise Missing(f"torch max_pool2d has no uint8: {e}") from None
        return lambda: torch.nn.functional.max_pool2d(t, 2)

    def cv(inp):
        need(cv2, "OpenCV")
        x = inp["x"]
        kernel = np.ones((2, 2), np.uint8)
        return lambda: np.ascontiguousarray(cv2.dilate(x, kernel, anchor=(0, 0))[::2, ::2])

    def sp(inp):
        need(ndimage, "scipy")
        x = inp["x"]

        def run():
            full = ndimage.maximum_filter(x, size=(2, 2, 1), origin=(-1, -1, 0))
            return np.ascontiguousarray(full[::2, ::2])

        return run

    def np_reshape(inp):
        x = inp["x"]
        h, w, c = x.shape
        return lambda: x.reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))

    def np_views(inp):
        x = inp["x"]

        def run():
            a = np.maximum(x[0::2, 0::2], x[1::2, 0::2])
            np.maximum(a, x[0::2, 1::2], out=a)
            np.maximum(a, x[1::2, 1::2], out=a)
            return a

        return run

    return Case(
        "2",
        2,
        "max 2x2/s2, uint8 HWC RGB",
        image_inputs,
        ref,
        [
            copy_impl(),
            *poolcore_impls(pc),
            Impl("torch max_pool2d u8 NCHW", "torch", lambda i: torch_u8(i, False), _nchw_to_hwc),
            Impl(
                "torch max_pool2d u8 channels_last",
                "torch",
                lambda i: torch_u8(i, True),
                _nchw_to_hwc,
                note="zero-copy view of the HWC array",
            ),
            Impl("OpenCV dilate 2x2 + [::2, ::2]", "cv2", cv, _same, note="sliding, then sliced"),
            Impl("scipy maximum_filter + [::2, ::2]", "scipy", sp, _same),
            Impl("numpy reshape-max", "numpy", np_reshape, _same),
            Impl("numpy 4 strided views, np.maximum", "numpy", np_views, _same),
        ],
    )


# ------------------------------------------------------------- case 3: f32 NCHW 3x3/s2/p1


def nchw_inputs(quick: bool) -> dict:
    shape = (2, 4, 32, 32) if quick else (8, 64, 256, 256)
    x = np.random.default_rng(3).standard_normal(shape, dtype=np.float32)
    return {"x": x}


def case_max_nchw() -> Case:
    def ref(inp):
        return poolcore.pool(inp["x"], "max", 3, stride=2, padding=1, backend="numpy")

    def pc(inp, backend):
        return poolcore.pool(inp["x"], "max", 3, stride=2, padding=1, backend=backend)

    def pc_nhwc(inp):
        if not HAS_FAST:
            raise Missing("the compiled backend is not built")
        xh = np.ascontiguousarray(inp["x"].transpose(0, 2, 3, 1))
        return lambda: poolcore.pool(xh, "max", 3, stride=2, padding=1, axes=(1, 2), backend="fast")

    def tch(inp, channels_last: bool):
        need(torch, "torch")
        t = torch.from_numpy(inp["x"])
        if channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        return lambda: torch.nn.functional.max_pool2d(t, 3, 2, 1)

    def sp(inp):
        need(ndimage, "scipy")
        x = inp["x"]

        def run():
            full = ndimage.maximum_filter(x, size=(1, 1, 3, 3), mode="constant", cval=-np.inf)
            return np.ascontiguousarray(full[:, :, ::2, ::2])

        return run

    def cv(inp):
        need(cv2, "OpenCV")
        x = inp["x"]
        n, c, h, w = x.shape
        kernel = np.ones((3, 3), np.uint8)
        planes = x.reshape(n * c, h, w)
        out = np.empty((n * c, (h + 1) // 2, (w + 1) // 2), np.float32)

        def run():  # OpenCV pools 2-D images: one call per plane (padding never wins a dilate)
            for i in range(n * c):
                out[i] = cv2.dilate(planes[i], kernel)[::2, ::2]
            return out.reshape(n, c, out.shape[1], out.shape[2])

        return run

    return Case(
        "3",
        3,
        "max 3x3/s2/p1, float32 NCHW",
        nchw_inputs,
        ref,
        [
            copy_impl(),
            *poolcore_impls(pc),
            Impl(
                "poolcore fast on NHWC (axes=(1, 2))",
                "poolcore-fast",
                pc_nhwc,
                lambda a: a.transpose(0, 3, 1, 2),
                note="input transposed untimed",
            ),
            Impl("torch max_pool2d contiguous", "torch", lambda i: tch(i, False), _tensor),
            Impl(
                TORCH_CL,
                "torch",
                lambda i: tch(i, True),
                _tensor,
                note="input made channels_last untimed",
            ),
            Impl("scipy maximum_filter + [::2, ::2]", "scipy", sp, _same),
            Impl("OpenCV dilate per plane + [::2, ::2]", "cv2", cv, _same),
        ],
    )


# ------------------------------------------------------------- case 4: f32 2-D, k x k /s1

KS = (3, 15, 31)


def plane_inputs(quick: bool) -> dict:
    n = 128 if quick else 2048
    return {"x": np.random.default_rng(4).random((n, n), dtype=np.float32)}


def case_sliding(op: str, k: int) -> Case:
    h = k // 2  # every library below computes the same valid windows: crop the edges they pad

    def ref(inp):
        return poolcore.pool(inp["x"], op, k, stride=1, backend="numpy")

    def pc(inp, backend):
        return poolcore.pool(inp["x"], op, k, stride=1, backend=backend)

    def tch(inp):
        need(torch, "torch")
        t = torch.from_numpy(inp["x"])[None, None]
        f = torch.nn.functional.max_pool2d if op == "max" else torch.nn.functional.avg_pool2d
        return lambda: f(t, k, 1)

    def sp(inp):
        need(ndimage, "scipy")
        x = inp["x"]
        f = ndimage.maximum_filter if op == "max" else ndimage.uniform_filter
        return lambda: np.ascontiguousarray(f(x, size=k)[h:-h, h:-h])

    def cv(inp):
        need(cv2, "OpenCV")
        x = inp["x"]
        if op == "max":
            kernel = np.ones((k, k), np.uint8)
            return lambda: np.ascontiguousarray(cv2.dilate(x, kernel)[h:-h, h:-h])
        return lambda: np.ascontiguousarray(cv2.blur(x, (k, k))[h:-h, h:-h])

    tol = 0.0 if op == "max" else 1e-5
    cv_name = "dilate" if op == "max" else "blur"
    sp_name = "maximum_filter" if op == "max" else "uniform_filter"
    return Case(
        f"4-{op}-k{k}",
        4,
        f"{op} {k}x{k}/s1, float32 2-D",
        plane_inputs,
        ref,
        [
            copy_impl(),
            *poolcore_impls(pc, tol=tol),
            Impl(f"torch {op}_pool2d", "torch", tch, lambda t: t[0, 0].numpy(), tol),
            Impl(f"OpenCV {cv_name} + crop", "cv2", cv, _same, tol),
            Impl(f"scipy {sp_name} + crop", "scipy", sp, _same, tol),
        ],
    )


def array_cases() -> list[Case]:
    cases = [case_avg_u8(), case_max_u8(), case_max_nchw()]
    for op in ("max", "avg"):
        cases += [case_sliding(op, k) for k in KS]
    return cases


# --------------------------------------------------------------------------- timing


@dataclass
class Row:
    case: str
    label: str
    lib: str
    median_s: float | None = None
    min_s: float | None = None
    times_s: list[float] = field(default_factory=list)
    check: str = "-"
    ok: bool = True
    note: str = ""


def compare(got: np.ndarray, want: np.ndarray, tol: float) -> tuple[str, bool]:
    got = np.asarray(got)
    if got.shape != want.shape:
        return f"MISMATCH shape {got.shape} != {want.shape}", False
    if got.dtype != want.dtype and want.dtype.kind in "iu":
        return f"MISMATCH dtype {got.dtype} != {want.dtype}", False
    if np.array_equal(got, want, equal_nan=want.dtype.kind == "f"):
        return "exact", True
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    worst = float(np.nanmax(diff)) if diff.size else 0.0
    if worst <= tol:
        return f"max abs diff {worst:.1e}", True
    bad = int(np.count_nonzero(diff > tol))
    return f"MISMATCH max abs diff {worst:.3g} at {bad} of {diff.size}", False


def which_backend_ran(fn: Callable[[], Any]) -> str | None:
    """The backend poolcore's switch picked for fn's call (fast may hand a call to numpy)."""
    backends = getattr(poolcore, "backends", None) or _optional("poolcore.backends")
    if backends is None or not hasattr(backends, "select") or not hasattr(backends, "name_of"):
        return None
    seen: list[str] = []
    select = backends.select

    def spy(*args, **kwargs):
        module = select(*args, **kwargs)
        seen.append(backends.name_of(module))
        return module

    backends.select = spy
    try:
        fn()
    finally:
        backends.select = select
    return seen[-1] if seen else None


def run_case(case: Case, repeats: int, quick: bool, log) -> tuple[list[Row], str]:
    """Rows of one case, and a description of its input."""
    inp = case.inputs(quick)
    want = case.reference(inp)
    rows: list[Row] = []
    timed: list[tuple[Row, Callable[[], Any], int]] = []
    for impl in case.impls:
        row = Row(case.key, impl.label, impl.lib, note=impl.note)
        rows.append(row)
        try:
            fn = impl.make(inp)
            t0 = time.perf_counter()
            result = fn()  # warm-up, and the output that is checked
            warm = time.perf_counter() - t0
        except Missing as e:
            row.check, row.note = "-", str(e)
            continue
        if impl.out is not None:
            row.check, row.ok = compare(impl.out(result), want, impl.tol)
        del result
        if impl.lib == "poolcore-fast":
            ran = which_backend_ran(fn)
            if ran not in (None, "fast"):
                row.check += f" (ran {ran}!)"
                row.ok = False
        # Short calls are looped so that one sample lasts >= 5 ms (not in --quick).
        number = 1 if quick else min(1000, max(1, math.ceil(0.005 / max(warm, 1e-9))))
        timed.append((row, fn, number))
    for r in range(repeats):
        shift = r % max(1, len(timed))
        for row, fn, number in timed[shift:] + timed[:shift]:  # rotate: spread the noise
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            row.times_s.append((time.perf_counter() - t0) / number)
    for row, _, _ in timed:
        row.median_s = statistics.median(row.times_s)
        row.min_s = min(row.times_s)
    desc = _shape(inp["x"])
    log(f"case {case.key}: {case.title}, {desc}: done")
    return rows, desc


def _shape(x: np.ndarray) -> str:
    return "x".join(map(str, x.shape)) + f" {x.dtype} ({x.nbytes / 1e6:.0f} MB)"


# --------------------------------------------------------------- case 5: JPEG batch, case 6

PHOTO_VERSION = 2


def make_jpegs(n: int, size: tuple[int, int], quality: int, log) -> Path:
    """n photo-like RGB JPEGs (smooth colour fields, edges, grain), made once and cached."""
    w, h = size
    root = (
        Path(tempfile.gettempdir())
        / f"poolcore-bench-jpegs-v{PHOTO_VERSION}-{n}-{w}x{h}-q{quality}"
    )
    done = root.with_name(root.name + ".complete")  # beside the dir: the inputs are JPEGs only
    if done.exists():
        return root
    need(Image, "Pillow")
    from PIL import ImageDraw, ImageFilter

    t0 = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(n):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        im = Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(im)
        for _ in range(6):  # a few hard-edged objects
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            x1, y1 = x0 + int(rng.integers(20, w // 3)), y0 + int(rng.integers(20, h // 3))
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=fill)
        im = im.filter(ImageFilter.GaussianBlur(1.5))
        a = np.asarray(im, dtype=np.float32)
        a += (20 * np.sin(xx / (15 + i % 7)) * np.cos(yy / 23))[..., None]  # texture
        a += rng.normal(0, 4, a.shape).astype(np.float32)  # sensor grain
        Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(
            root / f"img{i:04d}.jpg", quality=quality
        )
    done.touch()
    log(f"made {n} JPEGs of {w}x{h} in {root} ({time.perf_counter() - t0:.1f} s)")
    return root


# Runs in a fresh interpreter, as poolimg does, so both sides pay the start-up.
PILLOW_LOOP = r"""
import os, sys
from multiprocessing import Pool
from PIL import Image

src, dst, workers, quality = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])

def one(name):
    with Image.open(os.path.join(src, name)) as im:
        im.reduce(2).save(os.path.join(dst, name), quality=quality)

names = sorted(n for n in os.listdir(src) if n.endswith(".jpg"))
if workers == 1:
    for n in names:
        one(n)
else:
    with Pool(workers) as pool:
        pool.map(one, names, chunksize=max(1, len(names) // (4 * workers)))
"""


def poolimg_exe() -> list[str] | None:
    """The installed poolimg command, if it runs (``--version`` exits 0)."""
    exe = shutil.which("poolimg") or str(Path(sys.executable).with_name("poolimg"))
    if not Path(exe).exists():
        return None
    try:
        r = subprocess.run([exe, "--version"], capture_output=True, timeout=60, cwd=NEUTRAL_CWD)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return [exe] if r.returncode == 0 else None


def poolimg_batch_cmd(
    exe: list[str], src: Path, dst: Path, workers: int, quality: int
) -> list[str]:
    return [
        *exe,
        str(src),
        "-r",
        "-o",
        str(dst),
        "--op",
        "avg",
        "-k",
        "2",
        "--workers",
        str(workers),
        "--quality",
        str(quality),
        "--no-progress",
        "-q",
    ]


def compile_bytecode(log) -> None:
    """Compile poolcore's and the command's bytecode before timing start-ups. An installed
    package has it (pip compiles on install); an editable install writes it on first import,
    unless PYTHONDONTWRITEBYTECODE is set, as on our CI machines: then every poolimg start
    would compile ~30 ms of sources that Pillow, numpy and Click never recompile."""
    import compileall

    dirs = [Path(poolcore.__file__).parent]
    cli = _optional("cli")
    if cli is not None and getattr(cli, "__file__", None):
        dirs.append(Path(cli.__file__).parent)
    ok = all(compileall.compile_dir(str(d), quiet=2) for d in dirs)
    log(f"compiled bytecode of {', '.join(d.name for d in dirs)}" + ("" if ok else " (failed)"))


def timed_run(cmd: list[str], env=None) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=NEUTRAL_CWD)
    return time.perf_counter() - t0, r


def compare_dirs(a: Path, b: Path) -> tuple[str, bool]:
    """Outputs of poolimg and of the Pillow loop: the same files, sizes, and pixels up to JPEG
    re-encoding noise (mean abs difference < 2 levels)."""
    files_a = {p.name: p for p in a.rglob("*.jpg")}  # poolimg may mirror the input dir's name
    files_b = {p.name: p for p in b.rglob("*.jpg")}
    if sorted(files_a) != sorted(files_b):
        return f"MISMATCH files: {len(files_a)} vs {len(files_b)}", False
    worst = 0.0
    names = sorted(files_a)
    for name in names[:: max(1, len(names) // 10)]:
        with Image.open(files_a[name]) as ia, Image.open(files_b[name]) as ib:
            if ia.size != ib.size or ia.mode != ib.mode:
                return f"MISMATCH {name}: {ia.size} {ia.mode} vs {ib.size} {ib.mode}", False
            d = np.abs(np.asarray(ia, np.float32) - np.asarray(ib, np.float32)).mean()
        worst = max(worst, float(d))
    if worst >= 2.0:
        return f"MISMATCH mean abs diff {worst:.2f} levels", False
    return f"same files and sizes; mean abs diff <= {worst:.2f} levels", True


def run_batch(repeats: int, quick: bool, log) -> tuple[list[dict], list[str]]:
    notes: list[str] = []
    exe = poolimg_exe()
    if Image is None:
        return [], ["case 5 skipped: Pillow not installed"]
    n, size, quality = (4, (96, 72), 90) if quick else (200, (1000, 750), 90)
    src = make_jpegs(n, size, quality, log)
    results: list[dict] = []
    reps = 1 if quick else max(1, min(repeats, 5))  # each repeat runs 4 batches
    work = Path(tempfile.mkdtemp(prefix="poolcore-bench-"))
    try:
        for workers in (1, 2):
            cmds = {PILLOW_LOOP_LABEL: None}
            if exe:
                one = {POOLIMG_ONE_THREAD: "poolimg1"} if workers == 1 else {}
                cmds = {POOLIMG: "poolimg", **one, **cmds}
            times: dict[str, list[float]] = {k: [] for k in cmds}
            status: dict[str, str] = {}
            last_out: dict[str, Path] = {}
            for r in range(reps):
                for label, kind in cmds.items():
                    out = work / f"{kind or 'pillow'}-{workers}-{r}"
                    out.mkdir()
                    if kind and kind.startswith("poolimg"):
                        cmd = poolimg_batch_cmd(exe, src, out, workers, quality)
                        if kind == "poolimg1":
                            cmd += ["--threads", "1"]
                    else:
                        cmd = [sys.executable, "-c", PILLOW_LOOP, str(src), str(out)]
                        cmd += [str(workers), str(quality)]
                    dt, res = timed_run(cmd)
                    if res.returncode != 0:
                        status[label] = (
                            f"FAILED (exit {res.returncode}): {res.stderr.strip()[-300:]}"
                        )
                    times[label].append(dt)
                    if label in last_out:
                        shutil.rmtree(last_out[label], ignore_errors=True)
                    last_out[label] = out
            check, ok = "-", True
            if exe and all("FAILED" not in s for s in status.values()):
                check, ok = compare_dirs(last_out[POOLIMG], last_out[PILLOW_LOOP_LABEL])
            for label, ts in times.items():
                med = statistics.median(ts)
                results.append(
                    {
                        "workers": workers,
                        "label": label,
                        "files": n,
                        "median_s": med,
                        "files_per_s": n / med,
                        "mpix_per_s": n * size[0] * size[1] / med / 1e6,
                        "times_s": ts,
                        "check": status.get(label, check if label.startswith("poolimg") else "-"),
                        "ok": ok and label not in status,
                    }
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not exe:
        notes.append("case 5: `poolimg` is not installed (or does not run): only the Pillow loop")
    log("case 5 done")
    return results, notes


def run_startup(quick: bool, log) -> tuple[list[dict], list[str]]:
    exe = poolimg_exe()
    runs = 2 if quick else 10
    cmds: dict[str, list[str]] = {
        IMPORT_LINE: [sys.executable, "-c", "import numpy, PIL.Image"],
        'python -c "pass"': [sys.executable, "-c", "pass"],
    }
    notes: list[str] = []
    work = Path(tempfile.mkdtemp(prefix="poolcore-bench-"))
    try:
        if exe:
            cmds["poolimg --version"] = [*exe, "--version"]
            one = None
            if Image is not None:
                one = work / "one.jpg"
                Image.fromarray(
                    np.random.default_rng(6).integers(0, 256, (750, 1000, 3), dtype=np.uint8)
                ).save(one, quality=90)
            if one is not None:
                cmds["poolimg one 1000x750 JPEG, avg 2"] = [
                    *exe, str(one), "-o", str(work / "out.jpg"), "--op", "avg", "-k", "2",
                    "--overwrite", "--no-progress", "-q",
                ]  # fmt: skip
        else:
            notes.append("case 6: `poolimg` is not installed (or does not run): no start-up rows")
        times: dict[str, list[float]] = {k: [] for k in cmds}
        status: dict[str, str] = {}
        for _ in range(runs):
            for label, cmd in cmds.items():
                dt, r = timed_run(cmd)
                if r.returncode != 0:
                    status[label] = f"FAILED (exit {r.returncode}): {r.stderr.strip()[-300:]}"
                times[label].append(dt)
        version = None
        if exe:
            version = subprocess.run(
                [*exe, "--version"], capture_output=True, text=True, cwd=NEUTRAL_CWD
            ).stdout
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = [
        {
            "label": label,
            "median_s": statistics.median(ts),
            "times_s": ts,
            "check": status.get(label, "ok"),
            "ok": label not in status,
        }
        for label, ts in times.items()
    ]
    if version:
        notes.append(f"`poolimg --version` says: {'; '.join(version.strip().splitlines())}")
    log("case 6 done")
    return results, notes


# --------------------------------------------------------------------- case 7: peak memory

# Runs in a fresh interpreter: pools a (h, w, 3) uint8 image with avg 2x2 and reports the peak
# resident memory beyond the input (VmHWM, reset after the input is allocated) and the peak of
# numpy's traced allocations (tracemalloc: numpy reports its buffers, C mallocs are not seen).
MEMPROBE = r"""
import json, resource, sys, tracemalloc
import numpy as np

impl, h, w = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

def make(a):
    if impl in ("fast", "numpy"):
        import poolcore
        return lambda: poolcore.pool(a, "avg", 2, axes=(0, 1), backend=impl)
    if impl == "cv2":
        import cv2
        size = (a.shape[1] // 2, a.shape[0] // 2)
        return lambda: cv2.resize(a, size, interpolation=cv2.INTER_AREA)
    from PIL import Image
    im = Image.fromarray(a)  # a copy of the input, made before the baseline
    return lambda: np.asarray(im.reduce(2))

img = np.random.default_rng(7).integers(0, 256, (h, w, 3), dtype=np.uint8)
make(img[:64, :64].copy())()  # lazy imports, thread pools, first-call allocations
run = make(img)
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS
    method, base = "VmHWM", status("VmRSS")
except OSError:
    method, base = "ru_maxrss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out = run()
if method == "VmHWM":
    peak = status("VmHWM")
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
out_bytes = out.nbytes
del out
tracemalloc.start()
out = run()
traced = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"method": method, "input": img.nbytes, "output": out_bytes,
                  "rss_peak_delta": peak - base, "traced_peak": traced}))
"""


def run_memory(quick: bool, log) -> tuple[list[dict], list[str]]:
    h, w = (64, 96) if quick else (4000, 6000)
    impls = {
        "poolcore fast": "fast",
        "poolcore numpy": "numpy",
        "OpenCV resize INTER_AREA": "cv2",
        "Pillow reduce(2) + np.asarray": "PIL",
    }
    available = {"fast": HAS_FAST, "numpy": True, "cv2": cv2 is not None, "PIL": Image is not None}
    results = []
    notes = []
    for label, impl in impls.items():
        if not available[impl]:
            results.append({"label": label, "skipped": True})
            continue
        # A fixed mmap threshold: freed large blocks go back to the OS at once, so an earlier
        # allocation cannot hide a later one from the peak (glibc's threshold adapts otherwise).
        env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
        r = subprocess.run(
            [sys.executable, "-c", MEMPROBE, impl, str(h), str(w)],
            capture_output=True,
            text=True,
            env=env,
            cwd=NEUTRAL_CWD,
        )
        if r.returncode != 0:
            last = (r.stderr.strip().splitlines() or ["?"])[-1]
            results.append({"label": label, "error": last[-300:]})
            continue
        d = json.loads(r.stdout.strip().splitlines()[-1])
        d["label"] = label
        d["extra_rss"] = d["rss_peak_delta"] - d["output"]
        d["extra_traced"] = d["traced_peak"] - d["output"]
        results.append(d)
    if results and results[0].get("method") == "ru_maxrss":
        notes.append("case 7: /proc/self/clear_refs not writable: peak RSS from ru_maxrss deltas")
    log("case 7 done")
    return results, notes


# --------------------------------------------------------------------------- report


def fmt_ms(s: float | None) -> str:
    if s is None:
        return "-"
    ms = s * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_ratio(r: float | None) -> str:
    if r is None or not math.isfinite(r):
        return "-"
    return f"{r:.2f}" if r < 10 else f"{r:.3g}" if r < 1000 else f"{r:.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def case_titles() -> dict[str, str]:
    return {c.key: c.title for c in array_cases()}


def best_poolcore(rows: list[Row]) -> Row | None:
    for r in rows:
        if r.lib == f"poolcore-{BEST}" and r.label == f"poolcore {BEST}":
            return r
    return None


def array_table(rows: list[Row], inputs: dict[str, str]) -> str:
    lines = [
        f"| case | implementation | median ms | x copy | x poolcore {BEST} | check |",
        "|---|---|---:|---:|---:|---|",
    ]
    titles = case_titles()
    for key in dict.fromkeys(r.case for r in rows):
        group = [r for r in rows if r.case == key]
        copy = next((r for r in group if r.lib == "copy"), None)
        pc = best_poolcore(group)
        first = True
        for r in group:
            name = f"{key} {titles[key]}, {inputs.get(key, '')}" if first else ""
            first = False
            label = r.label + (f" ({r.note})" if r.note and r.median_s is not None else "")
            check = "-" if r.median_s is None else ("**" + r.check + "**" if not r.ok else r.check)
            lines.append(
                f"| {name} | {label} | {fmt_ms(r.median_s)} | "
                f"{fmt_ratio(ratio(r.median_s, copy.median_s if copy else None))} | "
                f"{fmt_ratio(ratio(r.median_s, pc.median_s if pc else None))} | {check} |"
            )
    return "\n".join(lines)


def growth_table(rows: list[Row]) -> str:
    """Case 4: time at each k, and t(k=31)/t(k=3): O(1)-per-element methods stay flat."""
    libs: dict[tuple[str, str], dict[int, float | None]] = {}
    for r in rows:
        if not r.case.startswith("4-"):
            continue
        _, op, kk = r.case.split("-")
        if r.lib == "copy":
            continue
        libs.setdefault((op, r.label), {})[int(kk[1:])] = r.median_s
    if not libs:
        return ""
    ks = sorted({k for d in libs.values() for k in d})
    head = " | ".join(f"k={k} ms" for k in ks)
    lines = [
        f"| op | implementation | {head} | t(k={ks[-1]}) / t(k={ks[0]}) |",
        "|---|---|" + "---:|" * (len(ks) + 1),
    ]
    for (op, label), d in libs.items():
        cells = " | ".join(fmt_ms(d.get(k)) for k in ks)
        lines.append(
            f"| {op} | {label} | {cells} | {fmt_ratio(ratio(d.get(ks[-1]), d.get(ks[0])))} |"
        )
    return "\n".join(lines)


def batch_table(results: list[dict], files: str) -> str:
    if not results:
        return ""
    lines = [
        f"| workers | command ({files}) | median s | files/s | MPix/s | check |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for d in results:
        check = d["check"] if d["ok"] else f"**{d['check']}**"
        lines.append(
            f"| {d['workers']} | {d['label']} | {d['median_s']:.2f} | {d['files_per_s']:.1f} | "
            f"{d['mpix_per_s']:.1f} | {check} |"
        )
    return "\n".join(lines)


def startup_table(results: list[dict]) -> str:
    if not results:
        return ""
    base = next((d["median_s"] for d in results if d["label"] == IMPORT_LINE), None)
    lines = [
        '| command | median ms | x `python -c "import numpy, PIL.Image"` | check |',
        "|---|---:|---:|---|",
    ]
    for d in results:
        check = d["check"] if d["ok"] else f"**{d['check']}**"
        lines.append(
            f"| {d['label']} | {d['median_s'] * 1e3:.0f} | "
            f"{fmt_ratio(ratio(d['median_s'], base))} | {check} |"
        )
    return "\n".join(lines)


def memory_table(results: list[dict]) -> str:
    if not results:
        return ""
    lines = [
        "| implementation | input MB | output MB | peak RSS beyond input + output, MB "
        "| traced numpy peak beyond output, MB |",
        "|---|---:|---:|---:|---:|",
    ]
    for d in results:
        if d.get("skipped"):
            lines.append(f"| {d['label']} | - | - | - | - |")
        elif "error" in d:
            lines.append(f"| {d['label']} | **failed: {d['error']}** | | | |")
        else:
            lines.append(
                f"| {d['label']} | {d['input'] / 1e6:.1f} | {d['output'] / 1e6:.1f} | "
                f"{d['extra_rss'] / 1e6:.1f} | {d['extra_traced'] / 1e6:.1f} |"
            )
    return "\n".join(lines)


# --------------------------------------------------------------------------- targets

FEW_MB = 8e6  # "input + output + a few MB"


def target_specs() -> list[tuple[str, tuple[str, str], tuple[str, str], float, str]]:
    """Issue 4's ratio targets: (text, numerator row, denominator row, limit, "<=" or ">=")."""
    return [
        ("1: {pc} / OpenCV INTER_AREA", ("1", PC), ("1", "OpenCV resize INTER_AREA"), 1.0, "<="),
        ("1: {pc} / np.copyto", ("1", PC), ("1", COPY), 1.0, "<="),
        ("1: Pillow reduce(2) / {pc}", ("1", "Pillow Image.reduce(2)"), ("1", PC), 3.0, ">="),
        ("2: {pc} / np.copyto", ("2", PC), ("2", COPY), 1.0, "<="),
        ("3: {pc} / torch channels_last", ("3", PC), ("3", TORCH_CL), 0.7, "<="),
        ("4: {pc} / OpenCV dilate, max 15x15", ("4-max-k15", PC), ("4-max-k15", CV_MAX), 1.5, "<="),
        ("4: {pc} / OpenCV blur, avg 15x15", ("4-avg-k15", PC), ("4-avg-k15", CV_AVG), 1.5, "<="),
        ("4: {pc} max t(k=31) / t(k=3)", ("4-max-k31", PC), ("4-max-k3", PC), 2.0, "<="),
        ("4: {pc} avg t(k=31) / t(k=3)", ("4-avg-k31", PC), ("4-avg-k3", PC), 2.0, "<="),
        ("5: poolimg / Pillow loop files/s, 1 worker", ("5-w1", PILLOW_LOOP_LABEL),
         ("5-w1", POOLIMG), 1.0, ">="),
        ("5: poolimg / Pillow loop files/s, 2 workers", ("5-w2", PILLOW_LOOP_LABEL),
         ("5-w2", POOLIMG), 1.0, ">="),
        (f"6: `poolimg --version` / `{IMPORT_LINE}`", ("6", "poolimg --version"),
         ("6", IMPORT_LINE), 1.3, "<="),
    ]  # fmt: skip


def targets(rows: list[Row], batch: list[dict], startup: list[dict], memory: list[dict]) -> list:
    """Issue 4's targets as (target, measured, holds); holds is None when not measurable."""
    pc = f"poolcore {BEST}"
    med = {(r.case, r.label): r.median_s for r in rows}
    med.update({(f"5-w{d['workers']}", d["label"]): d["median_s"] for d in batch})
    med.update({("6", d["label"]): d["median_s"] for d in startup})
    out = []
    for text, (ca, la), (cb, lb), limit, kind in target_specs():
        r = ratio(med.get((ca, la.format(pc=pc))), med.get((cb, lb.format(pc=pc))))
        holds = None if r is None else (r <= limit if kind == "<=" else r >= limit)
        text = f"{text.format(pc=pc)} {kind} {limit:g}"
        out.append((text, "-" if r is None else f"{r:.2f}", holds))
    for d in memory:
        if d["label"] == f"poolcore {BEST}" and "extra_rss" in d:  # the target is the fast path's
            extra = d["extra_rss"]
            text = f"7: {d['label']} peak beyond input + output <= {FEW_MB / 1e6:.0f} MB"
            out.append((text, f"{extra / 1e6:.1f} MB", extra <= FEW_MB))
    return out


def targets_table(items: list) -> str:
    lines = ["| target (issue 4) | measured | holds |", "|---|---:|---|"]
    for text, measured, holds in items:
        verdict = "n/a" if holds is None else ("yes" if holds else "**no**")
        lines.append(f"| {text} | {measured} | {verdict} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_cases(text: str | None) -> set[int]:
    if not text:
        return set(range(1, 8))
    try:
        chosen = {int(t) for t in text.split(",") if t.strip()}
    except ValueError:
        raise SystemExit(f"--cases takes numbers 1-7 separated by commas, got {text!r}") from None
    if not chosen <= set(range(1, 8)):
        raise SystemExit(f"--cases takes numbers 1-7, got {text!r}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (CI smoke test)")
    ap.add_argument("--cases", help="comma-separated case numbers (1-7), default all")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7; quick 1)")
    ap.add_argument("--json", type=Path, help="also write every measurement to this JSON file")
    args = ap.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 7)
    chosen = parse_cases(args.cases)

    def log(msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    m = machine()
    log(machine_line(m))
    for key in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if key in os.environ:
            log(f"note: {key} is set; it may slow numpy (run with `env -u {key}`)")
    t_start = time.perf_counter()
    rows: list[Row] = []
    inputs: dict[str, str] = {}
    for case in array_cases():
        if case.group in chosen:
            case_rows, inputs[case.key] = run_case(case, repeats, args.quick, log)
            rows += case_rows
    batch, startup, memory, notes = [], [], [], []
    if 5 in chosen or 6 in chosen:
        compile_bytecode(log)
    if 5 in chosen:
        batch, n5 = run_batch(repeats, args.quick, log)
        notes += n5
    if 6 in chosen:
        startup, n6 = run_startup(args.quick, log)
        notes += n6
    if 7 in chosen:
        memory, n7 = run_memory(args.quick, log)
        notes += n7
    total = time.perf_counter() - t_start

    files = "4 JPEGs of 96x72" if args.quick else "200 JPEGs of 1000x750, q90"
    out = [
        "## Benchmarks" + (" (--quick: tiny sizes, timings meaningless)" if args.quick else ""),
        "",
        f"Machine: {machine_line(m)}.",
        "",
        f"Medians of {repeats} interleaved repeats; `x copy` = time / `np.copyto` of the input "
        f"(the memory-bandwidth floor); `x poolcore {BEST}` = time / poolcore {BEST}'s time "
        "(above 1: poolcore is faster). `check`: output against poolcore numpy.",
        "",
    ]
    if rows:
        out += [array_table(rows, inputs), ""]
        growth = growth_table(rows)
        if growth:
            out += ["How time grows with the kernel (case 4):", "", growth, ""]
    if batch:
        out += ["Case 5, batch (wall time of the whole command, start-up included):", ""]
        out += [batch_table(batch, files), ""]
    if startup:
        out += [f"Case 6, start-up (median of {2 if args.quick else 10} runs):", ""]
        out += [startup_table(startup), ""]
    if memory:
        out += [
            "Case 7, peak memory of case 1 (each in a fresh process):",
            "",
            memory_table(memory),
            "",
        ]
    tg = [t for t in targets(rows, batch, startup, memory) if int(t[0].split(":")[0]) in chosen]
    if args.quick:
        out += ["(Issue 4 targets are not judged on --quick sizes.)", ""]
    elif any(h is not None for _, _, h in tg):
        out += ["Issue 4 targets (ratios in this run):", "", targets_table(tg), ""]
    problems = [f"{r.case} {r.label}: {r.check}" for r in rows if not r.ok]
    problems += [
        f"5 {d['label']} ({d['workers']} workers): {d['check']}" for d in batch if not d["ok"]
    ]
    problems += [f"6 {d['label']}: {d['check']}" for d in startup if not d["ok"]]
    problems += [f"7 {d['label']}: {d['error']}" for d in memory if "error" in d]
    if notes:
        out += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    missing = sorted({r.note for r in rows if r.median_s is None and r.note})
    if missing:
        out += ["Not measured (shown as -): " + "; ".join(missing) + ".", ""]
    if problems:
        out += ["**Disagreements:**", ""] + [f"- {p}" for p in problems] + [""]
    out.append(f"Total benchmark time: {total:.0f} s.")
    print("\n".join(out))

    if args.json:
        payload = {
            "machine": m,
            "quick": args.quick,
            "repeats": repeats,
            "best_poolcore_backend": BEST,
            "inputs": inputs,
            "array_cases": [r.__dict__ for r in rows],
            "batch": batch,
            "startup": startup,
            "memory": memory,
            "targets": [{"target": t, "measured": v, "holds": h} for t, v, h in tg],
            "problems": problems,
            "notes": notes,
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
