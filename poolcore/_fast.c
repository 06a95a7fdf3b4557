/* poolcore._fast: the compiled pooling kernels (see fast_backend.py for the Python side).
 *
 * Why C with the buffer protocol: the kernels need nothing from numpy but a pointer, strides
 * and a format character, which PEP 3118 gives; so no numpy headers at build time (the
 * extension builds from pyproject.toml alone, like markupsafe's _speedups), no Cython in the
 * build requirements, and the whole compiled surface is one function taking trusted,
 * already-validated positional arguments (as fast-histogram's _histogram_core and scipy's
 * ni_filters: Python validates, C computes). The GIL is released around every kernel.
 *
 * The model (DESIGN.md): N-D pooling of max, min and sums is a chain of 1-D passes. The array
 * comes canonicalised by fast_backend into (outer, n0, G0, n1, G1, ..., n_{m-1}, I): pooled
 * axes n_i, the other axes merged into the groups between them. Instead of writing one full
 * intermediate array per pass, the passes are fused: for each output position along n0 the
 * k taps along n0 are reduced into a "band" (the rest of the array below n0: one row of an
 * image, one plane of a volume), which is handed straight to the pass along n1, and so on;
 * the last axis either works band-wise too (when I is large) or on padded "lines" of I values
 * per position. Memory: one band per level per thread (plus the van Herk suffix bands), never
 * a full-size temporary.
 *
 * Per axis, the strategy comes from fast_backend (policy stays in Python):
 *   ST_DIRECT  taps j = 0..k-1 in order, as numpy's direct path: O(k) per output;
 *   ST_TREE    numpy's doubling scheme (float sums only), operation for operation, so float
 *              sums are bit-identical to the reference: O(log k);
 *   ST_GW      van Herk / Gil-Werman (van Herk 1992; Gil & Werman 1993): block prefix and
 *              suffix reductions, O(1) per element whatever k. For sums the partial sums run
 *              over at most k terms, so there is no running-sum drift;
 *   ST_LOG     max/min on lines: log2(k) doubling passes with overlapping halves (max and min
 *              are idempotent), flat vectorised loops where van Herk's scans are serial;
 *   ST_ADAPT   adaptive windows [start, end) per output, taps in order.
 * Median (K_MED) is not separable: _fast_median.h gathers whole windows on the same job,
 * units and threads (ST_DIRECT: gather and select; ST_HIST: a sliding histogram, 8- and
 * 16-bit integers).
 * Fused kernels (_fast_hot.h) handle the interior rows of the hottest case in one go: uint8
 * HWC images (C = 1, 3, 4; RGB also in RGBX storage, pixels 4 bytes apart) with 2x2/s2 and
 * 3x3/s2 windows (max, min, avg with exact integer rounding). float32 NCHW 3x3/s2 max runs
 * on the generic engine (band of 3 rows, then a 3-tap line), already several times faster
 * than torch. Large jobs are split over threads (pthreads) along (outer index, output rows of
 * the first pooled axis).
 *
 * Dtype variants: _fast_engine.h is a template included once per (op, dtype) from
 * _fast_instances.h (written by _fast_gen.py), compiled for the baseline ISA; the dtypes of
 * _fast_gen.AVX2_TYPES (uint8, uint16, float32, float64) are compiled again for AVX2+FMA,
 * chosen at run time by __builtin_cpu_supports (no -march: a wheel runs on any x86-64).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <pthread.h>
#include <unistd.h>
#define PC_THREADS 1
#else
#define PC_THREADS 0
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define PC_X86 1
#include <immintrin.h>
#else
#define PC_X86 0
#endif

#define PC_CAT3_(a, b, c) a##_##b##_##c
#define PC_CAT3(a, b, c) PC_CAT3_(a, b, c)

#define PC_MAXL 8                  /* pooled axes handled in one job */
#define PC_MAXD (2 * PC_MAXL + 1)  /* canonical dims */

enum { DT_B, DT_I1, DT_I2, DT_I4, DT_I8, DT_U1, DT_U2, DT_U4, DT_U8, DT_F2, DT_F4, DT_F8, DT_N };
enum { K_MAX, K_MIN, K_SUM, K_LP1, K_LP2, K_LPP, K_MED, K_N };
enum { FIN_STORE, FIN_AVG, FIN_LP };
enum { ST_DIRECT, ST_TREE, ST_GW, ST_LOG, ST_ADAPT, ST_HIST };

/* ------------------------------------------------------------------ scalar helpers */

#define PC_IMAX(a, b) ((a) > (b) ? (a) : (b))
#define PC_IMIN(a, b) ((a) < (b) ? (a) : (b))
/* NaN propagates from either side, as np.maximum / np.minimum */
#define PC_FMAX(a, b) (((a) > (b) || (a) != (a)) ? (a) : (b))
#define PC_FMIN(a, b) (((a) < (b) || (a) != (a)) ? (a) : (b))
/* int64 sums wrap as numpy's do, without signed-overflow UB */
#define PC_IADD(a, b) ((int64_t)((uint64_t)(a) + (uint64_t)(b)))
/* inlined even where the compiler would not (kernels specialised on a constant argument) */
#if defined(__GNUC__) || defined(__clang__)
#define PC_FORCE_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define PC_FORCE_INLINE static __forceinline
#else
#define PC_FORCE_INLINE static inline
#endif

static inline double pc_sq(double v) { return v * v; }
/* x**p as np.power computes it: its exponent 0.5 is a square root (so (-inf)**0.5 is NaN and
 * (-0.0)**0.5 is -0.0, where C99's pow gives +inf and +0.0); x**2 is x*x (pc_sq). */
static inline double pc_pow(double v, double p) { return p == 0.5 ? sqrt(v) : pow(v, p); }

/* float16 <-> float32, exact (values of max/min are always representable halves). */
static inline float pc_h2f(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, em = h & 0x7fffu, bits;
    float f;
    if (em >= 0x7c00u) {
        bits = sign | 0x7f800000u | ((em & 0x3ffu) << 13);
    } else if (em >= 0x400u) {
        bits = sign | ((em + ((127 - 15) << 10)) << 13);
    } else {
        f = (float)em * 0x1p-24f; /* subnormal half: an exact normal float */
        return sign ? -f : f;
    }
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t pc_f2h(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) { /* NaN: keep the top payload bits, stay a NaN */
        uint16_t mh = (uint16_t)((ax >> 13) & 0x3ffu);
        return sign | 0x7c00u | (mh ? mh : 0x200u);
    }
    if (ax >= 0x47800000u) return sign | 0x7c00u; /* inf (no finite half is this large) */
    if (ax >= 0x38800000u) return sign | (uint16_t)((ax - ((uint32_t)(127 - 15) << 23)) >> 13);
    float af;
    memcpy(&af, &ax, 4);
    return sign | (uint16_t)(af * 0x1p24f); /* subnormal half, exact */
}

/* double -> float16, rounded once (to nearest even) as numpy casts float64 to float16: going
 * through float would round twice (the mean of two halves may need 40 bits). */
static inline uint16_t pc_d2h(double v)
{
    const uint16_t sign = signbit(v) ? 0x8000u : 0;
    const double a = fabs(v);
    if (a != a) return sign | 0x7e00u;
    if (a >= 65520.0) return sign | 0x7c00u; /* past the midpoint of 65504 and 2**16: inf */
    if (a < 0x1p-14) return sign | (uint16_t)rint(a * 0x1p24); /* subnormal (or the least normal) */
    int e;
    frexp(a, &e); /* a = f 2**e, f in [0.5, 1) */
    /* 11 significant bits; a carry to 2048 moves into the exponent by the addition */
    const double q = rint(ldexp(a, 11 - e));
    return sign | (uint16_t)(((e + 14) << 10) + (int)q - 1024);
}

/* ------------------------------------------------------------------ job description */

typedef struct {
    int nd;
    Py_ssize_t size[PC_MAXD];
    ptrdiff_t ss[PC_MAXD]; /* source byte strides */
    ptrdiff_t bs[PC_MAXD]; /* band element strides */
    Py_ssize_t boff;       /* band offset of the first element */
} plan_t;

typedef struct {
    Py_ssize_t n, k, s, p, d, out;
    Py_ssize_t G;                       /* group after this axis (I for the last) */
    ptrdiff_t s_sn, s_sG, d_sn, d_sG;   /* byte strides of n and G in source and output */
    Py_ssize_t nseg;
    const Py_ssize_t (*seg)[3];         /* (o0, o1, strategy), ascending and disjoint */
    const int64_t *cnt;                 /* avg/lp divisor per output, or NULL: */
    int64_t kcount;                     /* ... then this one for every window (k, or 1) */
    double *dcnt;                       /* the same as doubles (float results) */
    const int64_t *ast, *aen;           /* adaptive windows [ast[o], aen[o]), or NULL */
    Py_ssize_t Lpad;                    /* padded length of the last axis in bands */
} axis_t;

struct tbuf;
struct job;
typedef void (*hot_fn)(const struct job *J, struct tbuf *T, const char *src, char *dst,
                       Py_ssize_t o0, Py_ssize_t o1);

typedef struct job {
    int m, kind, fin, in_type, out_type, last_line;
    Py_ssize_t O;
    ptrdiff_t s_sO, d_sO;
    axis_t ax[PC_MAXL];
    Py_ssize_t tail[PC_MAXL + 1];   /* elements of a band below axis j: n'_j * G_j * tail[j+1] */
    plan_t plan;                    /* how a source slice maps into a level-0 band */
    double pexp, volume;
    const char *src;
    char *dst;
    hot_fn hot;                     /* fused kernel for interior rows, or NULL */
    Py_ssize_t hot_lo, hot_hi;      /* rows of axis 0 whose windows are inside the input */
    int hot_variant;
    unsigned char hot_mask[6][16];  /* the fused kernel's byte shuffles, made once per call */
    int hot_kept[6];                /* bytes each keeps */
} job_t;

typedef struct {
    void **buf;
    int nbuf;
    Py_ssize_t bsize; /* elements per buffer */
    void **ptrs;      /* van Herk suffix pointers */
} lvbuf_t;

typedef struct tbuf {
    lvbuf_t lv[PC_MAXL];
    Py_ssize_t chunk; /* outputs per gathered line chunk (m == 1, line mode) */
    void *hot_tmp;    /* scratch of the fused kernels */
    void *med_buf;    /* median: the taps of one window */
    uint32_t *med_hist; /* median: the sliding histogram */
    ptrdiff_t *med_col[PC_MAXL]; /* median: the source offsets of a column, per level */
} tbuf_t;

/* ------------------------------------------------------------------ instances */

/* Median: real taps of window o on axis A are at t0 + j d for j in [*lo, *hi); returns t0.
 * (numpy's Window.real_taps; adaptive windows are [ast, aen), all real.) */
static inline Py_ssize_t med_taps(const axis_t *A, Py_ssize_t o, Py_ssize_t *lo, Py_ssize_t *hi)
{
    if (A->ast) {
        *lo = 0;
        *hi = A->aen[o] - A->ast[o];
        return A->ast[o];
    }
    const Py_ssize_t t0 = o * A->s - A->p, d = A->d;
    Py_ssize_t a = t0 < 0 ? (-t0 + d - 1) / d : 0, b = t0 < A->n ? (A->n - t0 + d - 1) / d : 0;
    if (a > A->k) a = A->k;
    if (b > A->k) b = A->k;
    *lo = a;
    *hi = b > a ? b : a;
    return t0;
}

/* Real taps a window can hold on axis A (at most), for the median's buffers. */
static inline Py_ssize_t med_reach(const axis_t *A) { return A->k < A->n ? A->k : A->n; }

/* The median's histogram bins (counters) per thread: none unless the last axis slides one;
   by the size of the values (float16 is held as float, so 2 bytes are a 16-bit integer):
   256 for 8 bits, 65536 and 256 of the high byte for 16 bits. */
static size_t med_hist_bins(const job_t *J, size_t bsz)
{
    if (J->ax[J->m - 1].seg[0][2] != ST_HIST) return 0;
    return bsz == 1 ? 256 : 65536 + 256;
}

typedef void (*unit_fn)(const job_t *, tbuf_t *, Py_ssize_t, Py_ssize_t, Py_ssize_t);
typedef void (*init_fn)(const job_t *, tbuf_t *);
typedef struct {
    unit_fn run;
    init_fn init;
    size_t bsz;
} inst_t;

#define PC_FULL 1
#define ISA base
#include "_fast_instances.h"
#undef ISA
#undef PC_FULL

#if PC_X86
#define PC_HAVE_AVX2 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define PC_FULL 0
#define ISA avx2
#include "_fast_instances.h"
#undef ISA
#undef PC_FULL
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#else
#define PC_HAVE_AVX2 0
#endif

/* tables: [kind][dtype], NULL where the combination does not exist */
#define PC_ENT(name, isa, BT) {PC_CAT3(run_unit, name, isa), PC_CAT3(init_bufs, name, isa), sizeof(BT)}
#define PC_ROW_MM(isa)                                                                      \
    {PC_ENT(max_b, isa, uint8_t), PC_ENT(max_i1, isa, int8_t), PC_ENT(max_i2, isa, int16_t),  \
     PC_ENT(max_i4, isa, int32_t), PC_ENT(max_i8, isa, int64_t), PC_ENT(max_u1, isa, uint8_t), \
     PC_ENT(max_u2, isa, uint16_t), PC_ENT(max_u4, isa, uint32_t),                             \
     PC_ENT(max_u8, isa, uint64_t), PC_ENT(max_f2, isa, float), PC_ENT(max_f4, isa, float),     \
     PC_ENT(max_f8, isa, double)},                                                            \
    {PC_ENT(min_b, isa, uint8_t), PC_ENT(min_i1, isa, int8_t), PC_ENT(min_i2, isa, int16_t),  \
     PC_ENT(min_i4, isa, int32_t), PC_ENT(min_i8, isa, int64_t), PC_ENT(min_u1, isa, uint8_t), \
     PC_ENT(min_u2, isa, uint16_t), PC_ENT(min_u4, isa, uint32_t),                             \
     PC_ENT(min_u8, isa, uint64_t), PC_ENT(min_f2, isa, float), PC_ENT(min_f4, isa, float),     \
     PC_ENT(min_f8, isa, double)},                                                            \
    {{0, 0, 0}, PC_ENT(sum_i1, isa, int64_t), PC_ENT(sum_i2, isa, int64_t),                   \
     PC_ENT(sum_i4, isa, int64_t), PC_ENT(sum_i8, isa, int64_t), PC_ENT(sum_u1, isa, uint64_t), \
     PC_ENT(sum_u2, isa, uint64_t), PC_ENT(sum_u4, isa, uint64_t),                             \
     PC_ENT(sum_u8, isa, uint64_t), PC_ENT(sum_f2, isa, double), PC_ENT(sum_f4, isa, double),   \
     PC_ENT(sum_f8, isa, double)}

#define PC_ROW_LP(isa)                                                                       \
    {{0, 0, 0}, PC_ENT(lp1_i1, isa, double), PC_ENT(lp1_i2, isa, double),                      \
     PC_ENT(lp1_i4, isa, double), PC_ENT(lp1_i8, isa, double), PC_ENT(lp1_u1, isa, double),      \
     PC_ENT(lp1_u2, isa, double), PC_ENT(lp1_u4, isa, double), PC_ENT(lp1_u8, isa, double),      \
     PC_ENT(sum_f2, isa, double), PC_ENT(sum_f4, isa, double), PC_ENT(sum_f8, isa, double)},     \
    {{0, 0, 0}, PC_ENT(lp2_i1, isa, double), PC_ENT(lp2_i2, isa, double),                      \
     PC_ENT(lp2_i4, isa, double), PC_ENT(lp2_i8, isa, double), PC_ENT(lp2_u1, isa, double),      \
     PC_ENT(lp2_u2, isa, double), PC_ENT(lp2_u4, isa, double), PC_ENT(lp2_u8, isa, double),      \
     PC_ENT(lp2_f2, isa, double), PC_ENT(lp2_f4, isa, double), PC_ENT(lp2_f8, isa, double)},     \
    {{0, 0, 0}, PC_ENT(lpp_i1, isa, double), PC_ENT(lpp_i2, isa, double),                      \
     PC_ENT(lpp_i4, isa, double), PC_ENT(lpp_i8, isa, double), PC_ENT(lpp_u1, isa, double),      \
     PC_ENT(lpp_u2, isa, double), PC_ENT(lpp_u4, isa, double), PC_ENT(lpp_u8, isa, double),      \
     PC_ENT(lpp_f2, isa, double), PC_ENT(lpp_f4, isa, double), PC_ENT(lpp_f8, isa, double)},     \
    {{0, 0, 0}, PC_ENT(med_i1, isa, int8_t), PC_ENT(med_i2, isa, int16_t),                     \
     PC_ENT(med_i4, isa, int32_t), PC_ENT(med_i8, isa, int64_t), PC_ENT(med_u1, isa, uint8_t),   \
     PC_ENT(med_u2, isa, uint16_t), PC_ENT(med_u4, isa, uint32_t), PC_ENT(med_u8, isa, uint64_t), \
     PC_ENT(med_f2, isa, float), PC_ENT(med_f4, isa, float), PC_ENT(med_f8, isa, double)}

static const inst_t INST_BASE[K_N][DT_N] = {PC_ROW_MM(base), PC_ROW_LP(base)};
#if PC_HAVE_AVX2
/* only the dtypes of _fast_gen.AVX2_TYPES; the others run the baseline code */
#define PC_NO {0, 0, 0}
#define PC_ROW_AVX2(op, BT1, BT2, BT4, BT8)                                                  \
    {PC_NO, PC_NO, PC_NO, PC_NO, PC_NO, PC_ENT(op##_u1, avx2, BT1), PC_ENT(op##_u2, avx2, BT2), \
     PC_NO, PC_NO, PC_NO, PC_ENT(op##_f4, avx2, BT4), PC_ENT(op##_f8, avx2, BT8)}
static const inst_t INST_AVX2[K_SUM + 1][DT_N] = {
    PC_ROW_AVX2(max, uint8_t, uint16_t, float, double),
    PC_ROW_AVX2(min, uint8_t, uint16_t, float, double),
    PC_ROW_AVX2(sum, uint64_t, uint64_t, double, double),
};
static const inst_t INST_AVX2_MED[DT_N] = PC_ROW_AVX2(med, uint8_t, uint16_t, float, double);

/* Median jobs that the sorting networks serve (3x3 or 5x5 windows, stride 1, dilation 1)
 * run the AVX2 build: twice the vector width, and uint16 min/max (SSE4.1): 1000x1500 RGB 5x5
 * uint8 6.4 -> 4.3 ms, uint16 24 -> 6.8 ms, float32 60 -> 33 ms. The others stay on the
 * baseline build: the histograms and the gather measured no faster in AVX2 (the 16-bit
 * histogram, 1024x1024 15x15, 63-75 -> 75-82 ms). */
static int med_on_avx2(const job_t *J)
{
    if (J->m != 2) return 0;
    const axis_t *A = &J->ax[0], *B = &J->ax[1];
    return A->k == B->k && (A->k == 3 || A->k == 5) && A->s == 1 && B->s == 1 && A->d == 1 &&
           B->d == 1;
}
#endif

/* ------------------------------------------------------------------ module state */

static int pc_use_avx2 = 0; /* decided once at import; tests may turn it off */
static int pc_use_hot = 1;  /* fused kernels on (tests compare them with the generic path) */
static double pc_min_work = 5e5; /* elements of work per thread before threads are worth it */
/* An element of a fused (hot) job counts for this much work. Those kernels run about 10x
 * faster per element than the generic engine, but a second thread costs a fixed ~55 us
 * (start, buffers, join) either way. Measured on 2 cores, 1 vs 2 threads, uint8 RGB 2x2/3x3
 * s2: on an idle machine 2 threads break even at about 0.4-0.5 MP (in + out elements
 * ~1.5-2e6) and gain ~15% at 0.75 MP, ~27% at 1.5 MP, ~40% from 6 MP; with the other core
 * busy they lose ~10-50% below 3 MP. So threads from ~1 MP (4e6 elements): the small gains
 * below are not worth the risk. (The generic engine's fast ops, float32 3x3 s2 max, break
 * even at ~1e6 elements, which pc_min_work is set for; its slow ones, e.g. uint8 avg, earlier.) */
static const double pc_hot_work = 0.25;

#include "_fast_hot.h"

/* ------------------------------------------------------------------ driver */

/* Work is handed out in chunks of units from a shared counter, so a thread whose core is
 * busy with something else simply takes fewer chunks (a static split would wait for it). */
typedef struct {
    Py_ssize_t units, chunk, nchunks;
    Py_ssize_t piece, pieces; /* line jobs: outputs per unit, units per line (else 0) */
    Py_ssize_t next; /* atomic */
} sched_t;

typedef struct {
    const job_t *J;
    const inst_t *inst;
    sched_t *S;
    int failed;
#if PC_THREADS
    pthread_t th;
#endif
} worker_t;

#define PC_ALIGN(x) (((x) + 63) & ~(size_t)63)

static char *carve(char **p, size_t n)
{
    char *r = *p;
    *p += PC_ALIGN(n);
    return r;
}

/* The median's memory per thread: the source offsets of a window's column per level but the
   last, one window's taps, the histogram. Returns its bytes; with T, carves it from *p
   (one function for the count and the carving, so the two never disagree). */
static size_t med_memory(const job_t *J, size_t bsz, tbuf_t *T, char **p)
{
    size_t total = 0, taps = 1;
    for (int i = 0; i < J->m; i++) {
        taps *= (size_t)med_reach(&J->ax[i]);
        if (i == J->m - 1) break;
        if (T) T->med_col[i] = (ptrdiff_t *)carve(p, taps * sizeof(ptrdiff_t));
        total += PC_ALIGN(taps * sizeof(ptrdiff_t));
    }
    const size_t bins = med_hist_bins(J, bsz);
    if (T) {
        T->med_buf = carve(p, taps * bsz);
        T->med_hist = bins ? (uint32_t *)carve(p, bins * sizeof(uint32_t)) : NULL;
    }
    return total + PC_ALIGN(taps * bsz) + PC_ALIGN(bins * sizeof(uint32_t));
}

/* Outputs of a line job (one axis, few values per position) gathered and run at a time:
 * ~16 kB of positions. The pieces are fixed by the job, not by the threads, so that float
 * sums, whose van Herk blocks start at a piece's start, come out the same whatever the
 * thread count. */
static Py_ssize_t line_piece(const axis_t *A)
{
    const Py_ssize_t I = A->G, span = A->d * (A->k - 1) + 1;
    Py_ssize_t want = (Py_ssize_t)(16384 / (I > 0 ? I : 1));
    if (want < 4 * span) want = 4 * span;
    Py_ssize_t ch = (want - span) / A->s + 1;
    if (ch < 1) ch = 1;
    if (ch > A->out) ch = A->out;
    return ch;
}

/* Buffers each thread needs, per level (see the level functions in _fast_engine.h). */
static void plan_buffers(const job_t *J, tbuf_t *T, size_t bsz, size_t *bytes)
{
    size_t total = 0;
    if (J->kind == K_MED) { /* no bands: the levels' (empty) pointers, then med_memory */
        for (int i = 0; i < J->m; i++) {
            T->lv[i].nbuf = 0;
            T->lv[i].bsize = 0;
            total += PC_ALIGN(sizeof(void *));
        }
        *bytes = total + med_memory(J, bsz, NULL, NULL);
        return;
    }
    for (int i = 0; i < J->m; i++) {
        const axis_t *A = &J->ax[i];
        lvbuf_t *L = &T->lv[i];
        L->ptrs = NULL;
        if (i == J->m - 1 && J->last_line) {
            const Py_ssize_t I = A->G, span = A->d * (A->k - 1) + 1;
            Py_ssize_t nout, npos;
            if (J->m == 1) {
                const Py_ssize_t ch = line_piece(A);
                T->chunk = ch;
                nout = ch;
                npos = (ch - 1) * A->s + span;
            } else {
                nout = A->out;
                npos = A->Lpad;
            }
            L->nbuf = J->m == 1 ? 4 : 3;
            L->bsize = (nout > npos ? nout : npos) * I;
        } else {
            Py_ssize_t W = (i == J->m - 1) ? A->G : A->G * J->tail[i + 1];
            int nb = 1;
            for (Py_ssize_t sg = 0; sg < A->nseg; sg++) {
                int need = 1;
                if (A->seg[sg][2] == ST_TREE) {
                    int lv = 0;
                    while (((Py_ssize_t)2 << lv) <= A->k) lv++;
                    need = 2 + lv;
                } else if (A->seg[sg][2] == ST_GW) {
                    need = 3 + (int)((A->k + A->s - 1) / A->s);
                }
                if (need > nb) nb = need;
            }
            L->nbuf = nb;
            L->bsize = W;
            total += PC_ALIGN(sizeof(void *) * (size_t)(nb + 1));
        }
        total += PC_ALIGN(sizeof(void *) * (size_t)L->nbuf);
        total += (size_t)L->nbuf * PC_ALIGN((size_t)(L->bsize > 0 ? L->bsize : 1) * bsz);
    }
    total += PC_ALIGN(hot_scratch_bytes(J));
    *bytes = total;
}

static void *worker_main(void *arg)
{
    worker_t *w = (worker_t *)arg;
    const job_t *J = w->J;
    tbuf_t T;
    memset(&T, 0, sizeof T);
    size_t bytes;
    plan_buffers(J, &T, w->inst->bsz, &bytes);
    char *arena = (char *)malloc(bytes ? bytes : 1), *p = arena;
    if (!arena) {
        w->failed = 1;
        return NULL;
    }
    for (int i = 0; i < J->m; i++) {
        lvbuf_t *L = &T.lv[i];
        L->buf = (void **)carve(&p, sizeof(void *) * (size_t)L->nbuf);
        if (!(i == J->m - 1 && J->last_line))
            L->ptrs = (void **)carve(&p, sizeof(void *) * (size_t)(L->nbuf + 1));
        for (int j = 0; j < L->nbuf; j++)
            L->buf[j] = carve(&p, (size_t)(L->bsize > 0 ? L->bsize : 1) * w->inst->bsz);
    }
    if (J->kind == K_MED) {
        med_memory(J, w->inst->bsz, &T, &p);
    } else {
        T.hot_tmp = carve(&p, hot_scratch_bytes(J));
    }
    w->inst->init(J, &T);
    const Py_ssize_t out0 = J->ax[0].out;
    sched_t *S = w->S;
    for (;;) {
#if PC_THREADS && (defined(__GNUC__) || defined(__clang__))
        Py_ssize_t c = __atomic_fetch_add(&S->next, 1, __ATOMIC_RELAXED);
#else
        Py_ssize_t c = S->next++;
#endif
        if (c >= S->nchunks) break;
        Py_ssize_t u = c * S->chunk, u1 = u + S->chunk < S->units ? u + S->chunk : S->units;
        for (; S->piece && u < u1; u++) { /* a line job: one piece of one line per unit */
            Py_ssize_t a = (u % S->pieces) * S->piece;
            w->inst->run(J, &T, u / S->pieces, a, a + S->piece < out0 ? a + S->piece : out0);
        }
        while (u < u1) {
            Py_ssize_t outer = u / out0, a = u % out0;
            Py_ssize_t b = a + (u1 - u);
            if (b > out0) b = out0;
            w->inst->run(J, &T, outer, a, b);
            u += b - a;
        }
    }
    free(arena);
    return NULL;
}

/* Split the units over up to `nthreads` threads; returns 0 or -1 (out of memory). */
static int run_job(const job_t *J, const inst_t *inst, int nthreads, double work)
{
    sched_t S;
    S.piece = S.pieces = 0;
    if (J->m == 1 && J->last_line && J->kind != K_MED && J->ax[0].out > 0) {
        S.piece = line_piece(&J->ax[0]);
        S.pieces = (J->ax[0].out + S.piece - 1) / S.piece;
    }
    const Py_ssize_t units = J->O * (S.piece ? S.pieces : J->ax[0].out);
    if (units <= 0) return 0;
    /* a thread is worth it from about half a million elements of work */
    Py_ssize_t by_work = (Py_ssize_t)(work / pc_min_work);
    if (nthreads > by_work) nthreads = (int)(by_work > 1 ? by_work : 1);
    if (nthreads > units) nthreads = (int)units;
    if (nthreads > 256) nthreads = 256;
    if (nthreads < 1) nthreads = 1;
    worker_t ws[256];
    int failed = 0;
    S.units = units;
    /* about 8 chunks per thread, each still a sizeable piece of work */
    S.chunk = nthreads > 1 ? units / (8 * (Py_ssize_t)nthreads) : units;
    if (S.chunk < 1) S.chunk = 1;
    S.nchunks = (units + S.chunk - 1) / S.chunk;
    S.next = 0;
    for (int t = 0; t < nthreads; t++) {
        ws[t].J = J;
        ws[t].inst = inst;
        ws[t].S = &S;
        ws[t].failed = 0;
    }
#if PC_THREADS
    int started[256];
    for (int t = 1; t < nthreads; t++)
        started[t] = pthread_create(&ws[t].th, NULL, worker_main, &ws[t]) == 0;
    worker_main(&ws[0]);
    for (int t = 1; t < nthreads; t++) {
        if (started[t]) pthread_join(ws[t].th, NULL);
        else worker_main(&ws[t]); /* could not start a thread: do its share here */
    }
#else
    for (int t = 0; t < nthreads; t++) worker_main(&ws[t]);
#endif
    for (int t = 0; t < nthreads; t++) failed |= ws[t].failed;
    return failed ? -1 : 0;
}

/* ------------------------------------------------------------------ Python binding */

static int fmt_code(const char *fmt, Py_ssize_t itemsize)
{
    if (!fmt) return DT_U1;
    while (*fmt == '@' || *fmt == '=' || *fmt == '<' || *fmt == '|') fmt++;
    char c = *fmt;
    if (!c || fmt[1]) return -1;
    if (c == '?') return DT_B;
    if (strchr("bhilq", c)) {
        switch (itemsize) { case 1: return DT_I1; case 2: return DT_I2; case 4: return DT_I4; case 8: return DT_I8; }
    } else if (strchr("BHILQ", c)) {
        switch (itemsize) { case 1: return DT_U1; case 2: return DT_U2; case 4: return DT_U4; case 8: return DT_U8; }
    } else if (c == 'e' && itemsize == 2) {
        return DT_F2;
    } else if (c == 'f' && itemsize == 4) {
        return DT_F4;
    } else if (c == 'd' && itemsize == 8) {
        return DT_F8;
    }
    return -1;
}

static int get_ssize(PyObject *t, Py_ssize_t i, Py_ssize_t *out)
{
    PyObject *v = PyTuple_GET_ITEM(t, i);
    *out = PyLong_AsSsize_t(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static void make_plan(job_t *J)
{
    /* dims below axis 0 of the source: G0, n1, G1, ..., n_{m-1}, I (band layout: the last
     * axis padded by p on the left), then merge neighbours contiguous in both layouts */
    Py_ssize_t size[PC_MAXD];
    ptrdiff_t ss[PC_MAXD], bs[PC_MAXD];
    int nd = 0;
    const int m = J->m;
    for (int i = 0; i < m; i++) {
        const axis_t *A = &J->ax[i];
        if (i > 0) {
            size[nd] = A->n;
            ss[nd] = A->s_sn;
            bs[nd] = (i == m - 1) ? A->G : A->G * J->tail[i + 1];
            nd++;
        }
        size[nd] = A->G;
        ss[nd] = A->s_sG;
        bs[nd] = (i == m - 1) ? 1 : J->tail[i + 1];
        nd++;
    }
    plan_t *P = &J->plan;
    P->nd = 0;
    for (int j = 0; j < nd; j++) {
        if (size[j] == 1 && nd > 1) continue;
        P->size[P->nd] = size[j];
        P->ss[P->nd] = ss[j];
        P->bs[P->nd] = bs[j];
        P->nd++;
    }
    if (P->nd == 0) {
        P->nd = 1;
        P->size[0] = 1;
        P->ss[0] = 0;
        P->bs[0] = 1;
    }
    /* merge from the inside out */
    int w = P->nd - 1;
    for (int j = P->nd - 2; j >= 0; j--) {
        if (P->ss[j] == P->size[w] * P->ss[w] && P->bs[j] == P->size[w] * P->bs[w]) {
            P->size[w] *= P->size[j];
        } else {
            w--;
            P->size[w] = P->size[j];
            P->ss[w] = P->ss[j];
            P->bs[w] = P->bs[j];
        }
    }
    int shift = w;
    for (int j = shift; j < P->nd; j++) {
        P->size[j - shift] = P->size[j];
        P->ss[j - shift] = P->ss[j];
        P->bs[j - shift] = P->bs[j];
    }
    P->nd -= shift;
    P->boff = (m > 1) ? J->ax[m - 1].p * J->ax[m - 1].G : 0;
}

PyDoc_STRVAR(pool_doc,
"pool(src, dst, kind, fin, pexp, volume, nthreads, outer, s_outer, d_outer, axes, last_line)\n"
"--\n\n"
"Trusted kernel entry (fast_backend validates and canonicalises): pool `src` into `dst`,\n"
"both given as buffers plus the canonical geometry in `axes`. Returns None.");

static PyObject *fast_pool(PyObject *mod, PyObject *args)
{
    (void)mod;
    PyObject *srco, *dsto, *axes;
    int kind, fin, nthreads, last_line;
    double pexp, volume;
    Py_ssize_t O, sO, dO;
    if (!PyArg_ParseTuple(args, "OOiiddinnnO!p", &srco, &dsto, &kind, &fin, &pexp, &volume,
                          &nthreads, &O, &sO, &dO, &PyTuple_Type, &axes, &last_line))
        return NULL;
    Py_ssize_t m = PyTuple_GET_SIZE(axes);
    if (m < 1 || m > PC_MAXL || kind < 0 || kind >= K_N || fin < FIN_STORE || fin > FIN_LP) {
        PyErr_SetString(PyExc_ValueError, "_fast.pool: bad job");
        return NULL;
    }
    Py_buffer sb, db, cb[PC_MAXL * 2];
    int ncb = 0;
    PyObject *ret = NULL;
    Py_ssize_t (*segbuf)[3] = NULL, nsegs = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *t = PyTuple_GET_ITEM(axes, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 14 || !PyTuple_Check(PyTuple_GET_ITEM(t, 11))) {
            PyErr_SetString(PyExc_ValueError, "_fast.pool: bad axis");
            return NULL;
        }
        nsegs += PyTuple_GET_SIZE(PyTuple_GET_ITEM(t, 11));
    }
    segbuf = (Py_ssize_t (*)[3])PyMem_Malloc(sizeof(*segbuf) * (size_t)(nsegs + 1));
    if (!segbuf) return PyErr_NoMemory();
    nsegs = 0;
    if (PyObject_GetBuffer(srco, &sb, PyBUF_RECORDS_RO) < 0) {
        PyMem_Free(segbuf);
        return NULL;
    }
    if (PyObject_GetBuffer(dsto, &db, PyBUF_RECORDS) < 0) {
        PyBuffer_Release(&sb);
        PyMem_Free(segbuf);
        return NULL;
    }
    job_t J;
    memset(&J, 0, sizeof J);
    J.m = (int)m;
    J.kind = kind;
    J.fin = fin;
    J.pexp = pexp;
    J.volume = volume;
    J.O = O;
    J.s_sO = sO;
    J.d_sO = dO;
    J.last_line = last_line;
    J.src = (const char *)sb.buf;
    J.dst = (char *)db.buf;
    J.in_type = fmt_code(sb.format, sb.itemsize);
    J.out_type = fmt_code(db.format, db.itemsize);
    double work = 0;
    if (J.in_type < 0 || J.out_type < 0) {
        PyErr_SetString(PyExc_TypeError, "_fast.pool: unsupported buffer format");
        goto done;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        PyObject *t = PyTuple_GET_ITEM(axes, i);
        axis_t *A = &J.ax[i];
        Py_ssize_t v[11];
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 14) {
            PyErr_SetString(PyExc_ValueError, "_fast.pool: bad axis");
            goto done;
        }
        for (int j = 0; j < 11; j++)
            if (get_ssize(t, j, &v[j]) < 0) goto done;
        A->n = v[0]; A->k = v[1]; A->s = v[2]; A->p = v[3]; A->d = v[4]; A->out = v[5];
        A->G = v[6]; A->s_sn = v[7]; A->s_sG = v[8]; A->d_sn = v[9]; A->d_sG = v[10];
        PyObject *segs = PyTuple_GET_ITEM(t, 11);
        A->nseg = PyTuple_GET_SIZE(segs);
        A->seg = (const Py_ssize_t (*)[3])(segbuf + nsegs);
        for (Py_ssize_t sg = 0; sg < A->nseg; sg++) {
            PyObject *st = PyTuple_GET_ITEM(segs, sg);
            if (!PyTuple_Check(st) || PyTuple_GET_SIZE(st) != 3) {
                PyErr_SetString(PyExc_ValueError, "_fast.pool: bad segment");
                goto done;
            }
            for (int j = 0; j < 3; j++)
                if (get_ssize(st, j, &segbuf[nsegs][j]) < 0) goto done;
            if (segbuf[nsegs][2] < ST_DIRECT || segbuf[nsegs][2] > ST_HIST) {
                PyErr_SetString(PyExc_ValueError, "_fast.pool: bad strategy");
                goto done;
            }
            nsegs++;
        }
        PyObject *c = PyTuple_GET_ITEM(t, 12);
        A->cnt = NULL;
        /* no table for avg/lp: every window holds k taps (no padding or overhang reached) */
        A->kcount = fin == FIN_STORE ? 1 : A->k;
        if (c != Py_None) {
            if (ncb >= PC_MAXL * 2 || PyObject_GetBuffer(c, &cb[ncb], PyBUF_SIMPLE) < 0) goto done;
            ncb++;
            if (cb[ncb - 1].len < (Py_ssize_t)(A->out * sizeof(int64_t))) {
                PyErr_SetString(PyExc_ValueError, "_fast.pool: short counts");
                goto done;
            }
            A->cnt = (const int64_t *)cb[ncb - 1].buf;
            A->dcnt = (double *)PyMem_Malloc(sizeof(double) * (size_t)(A->out > 0 ? A->out : 1));
            if (!A->dcnt) {
                PyErr_NoMemory();
                goto done;
            }
            for (Py_ssize_t o = 0; o < A->out; o++) A->dcnt[o] = (double)A->cnt[o];
        }
        PyObject *bo = PyTuple_GET_ITEM(t, 13);
        A->ast = A->aen = NULL;
        if (bo != Py_None) { /* adaptive: int64 starts then ends, out of each */
            if (ncb >= PC_MAXL * 2 || PyObject_GetBuffer(bo, &cb[ncb], PyBUF_SIMPLE) < 0) goto done;
            ncb++;
            if (cb[ncb - 1].len < (Py_ssize_t)(2 * A->out * sizeof(int64_t)) || A->p != 0) {
                PyErr_SetString(PyExc_ValueError, "_fast.pool: bad adaptive bounds");
                goto done;
            }
            A->ast = (const int64_t *)cb[ncb - 1].buf;
            A->aen = A->ast + A->out;
        }
        A->Lpad = A->n + A->p;
        Py_ssize_t reach = (A->out - 1) * A->s + A->d * (A->k - 1) + 1;
        if (reach > A->Lpad) A->Lpad = reach;
    }
    J.tail[m] = 1;
    for (Py_ssize_t i = m - 1; i >= 0; i--)
        J.tail[i] = (i == m - 1 ? J.ax[i].Lpad : J.ax[i].n) * J.ax[i].G * J.tail[i + 1];
    make_plan(&J);
    {
        const inst_t *inst = NULL;
#if PC_HAVE_AVX2
        if (pc_use_avx2 && kind <= K_SUM && INST_AVX2[kind][J.in_type].run)
            inst = &INST_AVX2[kind][J.in_type];
        else if (pc_use_avx2 && kind == K_MED && INST_AVX2_MED[J.in_type].run &&
                 med_on_avx2(&J))
            inst = &INST_AVX2_MED[J.in_type];
#endif
        if (!inst) inst = &INST_BASE[kind][J.in_type];
        if (!inst->run) {
            PyErr_SetString(PyExc_TypeError, "_fast.pool: no kernel for this dtype");
            goto done;
        }
        if (pc_use_hot) hot_select(&J);
        /* work estimate: input elements plus output elements (fused jobs count less) */
        work = (double)sb.len / (sb.itemsize ? sb.itemsize : 1) + (double)db.len / (db.itemsize ? db.itemsize : 1);
        if (J.hot) work *= pc_hot_work;
        /* median: `volume` is fast_backend's estimate of the work per output (taps touched) */
        if (kind == K_MED) work = (double)db.len / (db.itemsize ? db.itemsize : 1) * volume;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = run_job(&J, inst, nthreads, work);
        Py_END_ALLOW_THREADS
        if (rc < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_INCREF(Py_None);
    ret = Py_None;
done:
    for (Py_ssize_t i = 0; i < m; i++) PyMem_Free(J.ax[i].dcnt);
    for (int i = 0; i < ncb; i++) PyBuffer_Release(&cb[i]);
    PyBuffer_Release(&db);
    PyBuffer_Release(&sb);
    PyMem_Free(segbuf);
    return ret;
}

static PyObject *fast_config(PyObject *mod, PyObject *args, PyObject *kw)
{
    (void)mod;
    static char *names[] = {"avx2", "hot", "min_work", NULL};
    PyObject *avx2 = Py_None, *hot = Py_None, *mw = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "|OOO", names, &avx2, &hot, &mw)) return NULL;
    if (mw != Py_None) {
        double v = PyFloat_AsDouble(mw);
        if (v == -1.0 && PyErr_Occurred()) return NULL;
        pc_min_work = v > 0 ? v : 1e-9;
    }
    if (avx2 != Py_None) {
        int v = PyObject_IsTrue(avx2);
        if (v < 0) return NULL;
#if PC_HAVE_AVX2
        pc_use_avx2 = v && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    }
    if (hot != Py_None) {
        int v = PyObject_IsTrue(hot);
        if (v < 0) return NULL;
        pc_use_hot = v;
    }
    return Py_BuildValue("{s:O,s:O,s:d}", "avx2", pc_use_avx2 ? Py_True : Py_False, "hot",
                         pc_use_hot ? Py_True : Py_False, "min_work", pc_min_work);
}

PyDoc_STRVAR(config_doc,
"config(avx2=None, hot=None, min_work=None)\n--\n\n"
"Read (and for tests, change) the kernel selection: AVX2 code when the CPU has it, the fused\n"
"kernels, and the elements of work per thread below which a call stays on one thread.\n"
"Returns the current settings as a dict.");

static PyMethodDef fast_methods[] = {
    {"pool", fast_pool, METH_VARARGS, pool_doc},
    {"config", (PyCFunction)(void (*)(void))fast_config, METH_VARARGS | METH_KEYWORDS, config_doc},
    {NULL, NULL, 0, NULL},
};

static int fast_exec(PyObject *m)
{
#if PC_HAVE_AVX2
    __builtin_cpu_init();
    pc_use_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    if (PyModule_AddIntConstant(m, "MAX_AXES", PC_MAXL) < 0) return -1;
    return 0;
}

static PyModuleDef_Slot fast_slots[] = {
    {Py_mod_exec, (void *)fast_exec},
#if PY_VERSION_HEX >= 0x030C0000
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
#if PY_VERSION_HEX >= 0x030D0000
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef fast_module = {
    PyModuleDef_HEAD_INIT,
    "poolcore._fast",
    "Compiled pooling kernels of poolcore (positional, trusted: use poolcore.pool).",
    0,
    fast_methods,
    fast_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__fast(void) { return PyModuleDef_Init(&fast_module); }
