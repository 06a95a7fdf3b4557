/* Median of N-D windows: one instance per dtype, included by _fast.c through _fast_instances.h
 * as _fast_engine.h is. The includer defines SUF, IN_T, B_T (float for float16), LOADX(p),
 * B_INT, B_SIGNED, IN_F16 and MED_HIST (the bits of an integer a histogram holds: 8 for 8-bit
 * integers, 16 for 16-bit ones, else 0).
 *
 * Median is not separable (the median of medians is not the median), so it does not run the
 * engine's chain of 1-D passes. It shares the rest: the canonical view (outer, n0, G0, ...,
 * n_{m-1}, I), the job's axes (adaptive bounds included), the split into units of axis-0 rows
 * over threads and the per-thread arena. A unit walks the outputs of every pooled axis but the
 * last, listing the source offsets of the real taps of the window on those axes (its
 * "column"), then runs the last axis as a line of windows made of columns:
 *   ST_DIRECT  gather each window's taps, select the middle one or two (quickselect): O(K);
 *   ST_HIST    8- and 16-bit integers, dilation 1 along the line: Huang's sliding histogram
 *              (Huang, Yang and Tang 1979). Consecutive windows share all but the columns that
 *              leave and enter, so an output costs 2 s columns of updates and a short walk of
 *              the median bin, whatever the kernel's length along the line. 16-bit integers
 *              use two levels (as Perreault and Hebert 2007 do): 65536 value bins and 256
 *              bins of the high byte, so the median's walk steps over whole blocks of 256
 *              values and then within one.
 * Results are numpy_backend._median_last's: padding is never a tap, a window holding a NaN
 * gives NaN, an empty one 0 or NaN, an even count the mean of the middle two (integers exact,
 * ties away from zero; floats as (lo + hi) / 2 in double, then one rounding).
 */

#define FN(name) PC_CAT3(name, SUF, ISA)

/* v[kth] becomes the kth smallest of v[0..n), with v[0..kth) <= v[kth] (nth_element).
 * Quickselect with branchless partitions (a compare-and-swap per element; the classic Hoare
 * loop mispredicts a branch every few elements: float32 5x5 windows took 2.3x as long): one
 * pass puts the values below the pivot first, a second pass over the rest (only when kth
 * lies there) the values equal to it, so runs of equal values (flat image regions) end the
 * search instead of making it quadratic. The pivot is the median of the first, middle and
 * last values; after many rounds the middle one is a pseudo-random one instead. */
static void FN(select)(B_T *v, Py_ssize_t n, Py_ssize_t kth)
{
    Py_ssize_t lo = 0, hi = n - 1;
    uint64_t rng = 0x9e3779b97f4a7c15u;
    int rounds = 0;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (++rounds > 48) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            mid = lo + (Py_ssize_t)(rng % (uint64_t)(hi - lo + 1));
        }
        const B_T a = v[lo], b = v[mid], c = v[hi];
        const B_T ab_lo = a < b ? a : b, ab_hi = a < b ? b : a;
        const B_T piv = ab_hi < c ? ab_hi : (c < ab_lo ? ab_lo : c);
        Py_ssize_t st = lo;
        for (Py_ssize_t i = lo; i <= hi; i++) { /* [lo, st) < piv <= [st, i) */
            const B_T x = v[i];
            v[i] = v[st];
            v[st] = x;
            st += x < piv;
        }
        if (kth < st) {
            hi = st - 1;
            continue;
        }
        Py_ssize_t eq = st;
        for (Py_ssize_t i = st; i <= hi; i++) { /* [st, eq) == piv < [eq, i) */
            const B_T x = v[i];
            v[i] = v[eq];
            v[eq] = x;
            eq += !(piv < x);
        }
        if (kth < eq) return;
        lo = eq;
    }
}

static inline void FN(put)(char *d, B_T v)
{
#if IN_F16
    *(uint16_t *)d = pc_f2h(v);
#else
    *(IN_T *)d = (IN_T)v;
#endif
}

/* No real element: 0 for integers, NaN for floats (as is a window holding a NaN). */
static inline void FN(put_empty)(char *d)
{
#if B_INT
    *(IN_T *)d = 0;
#elif IN_F16
    *(uint16_t *)d = 0x7e00u;
#else
    *(IN_T *)d = (IN_T)NAN;
#endif
}

/* The mean of the middle two, lo <= hi. */
static inline void FN(put_mean)(char *d, B_T lo, B_T hi)
{
#if B_INT
    /* floor halves plus the remainders, as numpy_backend: exact for 64-bit values without
     * overflow (>> of a negative value is a floor division on the compilers we build with) */
    const B_T a = (B_T)(lo >> 1), b = (B_T)(hi >> 1);
    const int rem = (int)(lo & 1) + (int)(hi & 1);
    B_T mid = (B_T)(a + b + (rem >> 1));
#if B_SIGNED
    if (rem == 1 && mid >= 0) mid++; /* x.5 rounds away from zero */
#else
    if (rem == 1) mid++;
#endif
    *(IN_T *)d = mid;
#else
    /* in double, as numpy promotes: exact for float16/32 halves, one rounding to the dtype */
    double m = ((double)lo + (double)hi) / 2;
    if (isinf(m) && isfinite(lo) && isfinite(hi)) m = (double)lo / 2 + (double)hi / 2;
#if IN_F16
    *(uint16_t *)d = pc_d2h(m);
#else
    *(IN_T *)d = (IN_T)m;
#endif
#endif
}

/* The median of buf[0..n) (reordered), written to d. */
static void FN(put_median)(char *d, B_T *buf, Py_ssize_t n, int nan)
{
    if (n == 0 || nan) {
        FN(put_empty)(d);
        return;
    }
    const Py_ssize_t half = n / 2;
    FN(select)(buf, n, half);
    if (n % 2) {
        FN(put)(d, buf[half]);
        return;
    }
    B_T lo = buf[0]; /* rank half - 1: the largest of those before the kth */
    for (Py_ssize_t i = 1; i < half; i++) lo = buf[i] > lo ? buf[i] : lo;
    FN(put_mean)(d, lo, buf[half]);
}

/* Outputs [a, b) of the last axis: gather each window (columns at its real taps), select. */
static void FN(line_gather)(const axis_t *A, const char *sp, char *dp, const ptrdiff_t *col,
                            Py_ssize_t ncol, Py_ssize_t a, Py_ssize_t b, B_T *restrict buf)
{
    for (Py_ssize_t o = a; o < b; o++) {
        Py_ssize_t lo, hi;
        const Py_ssize_t t0 = med_taps(A, o, &lo, &hi);
        Py_ssize_t n = 0;
        int nan = 0;
        for (Py_ssize_t j = lo; j < hi; j++) {
            const char *q = sp + (t0 + j * A->d) * A->s_sn;
            for (Py_ssize_t c = 0; c < ncol; c++) {
                const B_T v = LOADX(q + col[c]);
#if !B_INT
                nan |= v != v;
#endif
                buf[n++] = v;
            }
        }
        FN(put_median)(dp + o * A->d_sn, buf, n, nan);
    }
}

/* The size k of a line's windows that a network covers, 0 if none: 3x3 or 5x5 windows (k
 * columns, k taps along the line, stride 1, dilation 1) on a line whose positions lie `step`
 * values apart in source and destination. step 1: one contiguous line; step G: the G lines
 * of an interleaved group (an HWC image's channels), which line_net then takes as one flat
 * run. */
static inline Py_ssize_t FN(net_k)(const axis_t *A, Py_ssize_t ncol, Py_ssize_t step)
{
    const ptrdiff_t one = (ptrdiff_t)sizeof(IN_T);
    const int ok = !IN_F16 && (A->k == 3 || A->k == 5) && ncol == A->k && A->s == 1 &&
                   A->d == 1 && !A->ast && A->s_sn == step * one && A->d_sn == step * one &&
                   (step == 1 || (A->G == step && A->s_sG == one && A->d_sG == one));
    return ok ? A->k : 0;
}

#ifndef PC_MED_INSIDE
#define PC_MED_INSIDE /* one definition for all the instances that include this file */
/* The outputs [*ia, *ib) of [a, b) whose windows (k taps) lie inside the line; 0 if none. */
static inline int med_inside(const axis_t *A, Py_ssize_t a, Py_ssize_t b, Py_ssize_t *ia,
                             Py_ssize_t *ib)
{
    const Py_ssize_t last = A->n - A->k + 1 + A->p; /* t = o - p in [0, n - k] */
    *ia = A->p > a ? A->p : a;
    *ib = last < b ? last : b;
    return *ia < *ib;
}
#endif

#if !IN_F16
/* One compare-exchange of a sorting network: a <= b after it; or only its min, or its max. */
#define PC_CX(a, b) do { const B_T lo_ = b < a ? b : a; b = b < a ? a : b; a = lo_; } while (0)
#define PC_LO(a, b) do { a = b < a ? b : a; } while (0)
#define PC_HI(a, b) do { b = b < a ? a : b; } while (0)

/* Outputs [a, b) of 3x3 or 5x5 windows wholly inside the input (see net_k), a and b counted
 * in values of the flat run (output position times `step`, plus the line in the group): the
 * median by a network of compare-exchanges (Paeth's 19 for 9 values, _fast_gen's 113 for
 * 25). A network only picks values, so the result is one of them, bit for bit; it is
 * branch-free, so the compiler runs it on SIMD vectors of neighbouring outputs where
 * quickselect takes each window alone. A NaN among the values gives NaN. */
static void FN(line_net)(const axis_t *A, const char *sp, char *dp, const ptrdiff_t *col,
                         Py_ssize_t step, Py_ssize_t a, Py_ssize_t b)
{
    const IN_T *r0 = (const IN_T *)(sp + col[0]), *r1 = (const IN_T *)(sp + col[1]),
               *r2 = (const IN_T *)(sp + col[2]);
    IN_T *restrict out = (IN_T *)dp;
    /* read before the loops: a store through a uint8_t pointer may alias *A, which would
     * keep them from being vectorised */
    const Py_ssize_t s1 = step, s2 = 2 * step, s3 = 3 * step, s4 = 4 * step;
    const Py_ssize_t off = A->p * step;
    /* ivdep: out never overlaps the rows (the destination is a new array); without it gcc
     * checks each load against out at run time and gives up past 10 checks (5x5) */
    if (A->k == 3) {
#pragma GCC ivdep
        for (Py_ssize_t o = a; o < b; o++) {
            const Py_ssize_t t = o - off; /* >= 0: the window is inside */
            B_T p0 = r0[t], p1 = r0[t + s1], p2 = r0[t + s2], p3 = r1[t], p4 = r1[t + s1],
                p5 = r1[t + s2], p6 = r2[t], p7 = r2[t + s1], p8 = r2[t + s2];
#if !B_INT
            const int nan = (p0 != p0) | (p1 != p1) | (p2 != p2) | (p3 != p3) | (p4 != p4) |
                            (p5 != p5) | (p6 != p6) | (p7 != p7) | (p8 != p8);
#endif
            PC_CX(p1, p2); PC_CX(p4, p5); PC_CX(p7, p8);
            PC_CX(p0, p1); PC_CX(p3, p4); PC_CX(p6, p7);
            PC_CX(p1, p2); PC_CX(p4, p5); PC_CX(p7, p8);
            PC_CX(p0, p3); PC_CX(p5, p8); PC_CX(p4, p7);
            PC_CX(p3, p6); PC_CX(p1, p4); PC_CX(p2, p5);
            PC_CX(p4, p7); PC_CX(p4, p2); PC_CX(p6, p4);
            PC_CX(p4, p2);
#if B_INT
            out[o] = (IN_T)p4;
#else
            out[o] = nan ? (IN_T)NAN : (IN_T)p4;
#endif
        }
        return;
    }
    const IN_T *r3 = (const IN_T *)(sp + col[3]), *r4 = (const IN_T *)(sp + col[4]);
#pragma GCC ivdep
    for (Py_ssize_t o = a; o < b; o++) {
        const Py_ssize_t t = o - off;
#define PC_ROW5(r, n0, n1, n2, n3, n4) \
        B_T p##n0 = r[t], p##n1 = r[t + s1], p##n2 = r[t + s2], p##n3 = r[t + s3], \
            p##n4 = r[t + s4];
        PC_ROW5(r0, 0, 1, 2, 3, 4) PC_ROW5(r1, 5, 6, 7, 8, 9) PC_ROW5(r2, 10, 11, 12, 13, 14)
        PC_ROW5(r3, 15, 16, 17, 18, 19) PC_ROW5(r4, 20, 21, 22, 23, 24)
#undef PC_ROW5
#if !B_INT
        int nan = 0;
#define PC_ISNAN(a, b) nan |= (p##a != p##a) | (p##b != p##b);
        PC_ISNAN(0, 1) PC_ISNAN(2, 3) PC_ISNAN(4, 5) PC_ISNAN(6, 7) PC_ISNAN(8, 9)
        PC_ISNAN(10, 11) PC_ISNAN(12, 13) PC_ISNAN(14, 15) PC_ISNAN(16, 17) PC_ISNAN(18, 19)
        PC_ISNAN(20, 21) PC_ISNAN(22, 23) PC_ISNAN(24, 24)
#undef PC_ISNAN
#endif
#define PC_NCX(i, j) PC_CX(p##i, p##j);
#define PC_NLO(i, j) PC_LO(p##i, p##j);
#define PC_NHI(i, j) PC_HI(p##i, p##j);
        PC_NET25(PC_NCX, PC_NLO, PC_NHI)
#undef PC_NCX
#undef PC_NLO
#undef PC_NHI
#if B_INT
        out[o] = (IN_T)p12;
#else
        out[o] = nan ? (IN_T)NAN : (IN_T)p12;
#endif
    }
}
#undef PC_CX
#undef PC_LO
#undef PC_HI
#endif

/* Outputs [a, b) of the last axis, by a network for the windows it covers (3x3 and 5x5
 * windows wholly inside a line laid out contiguously), by gathering for the rest. */
static void FN(line_direct)(const axis_t *A, const char *sp, char *dp, const ptrdiff_t *col,
                            Py_ssize_t ncol, Py_ssize_t a, Py_ssize_t b, B_T *restrict buf)
{
#if !IN_F16
    Py_ssize_t ia, ib;
    if (FN(net_k)(A, ncol, 1) && med_inside(A, a, b, &ia, &ib)) {
        FN(line_gather)(A, sp, dp, col, ncol, a, ia, buf);
        FN(line_net)(A, sp, dp, col, 1, ia, ib);
        FN(line_gather)(A, sp, dp, col, ncol, ib, b, buf);
        return;
    }
#endif
    FN(line_gather)(A, sp, dp, col, ncol, a, b, buf);
}

#if MED_HIST == 8
/* an order-preserving map of the 8-bit values to bins 0..255, and back */
#define PC_BIN(v) ((unsigned)(uint8_t)(v) ^ (B_SIGNED ? 0x80u : 0u))
#define PC_VAL(h) ((B_T)(uint8_t)((h) ^ (B_SIGNED ? 0x80u : 0u)))

/* Add (dir 1) or remove (dir -1) the column at position t; `lt` counts values below bin m
 * (`ltb`: the 16-bit histogram's second level, none here). */
PC_FORCE_INLINE void FN(hist_col)(uint32_t *restrict h, const char *q, const ptrdiff_t *col,
                                  Py_ssize_t ncol, int dir, unsigned m, Py_ssize_t *lt,
                                  Py_ssize_t *ltb)
{
    (void)ltb;
    Py_ssize_t below = 0;
    for (Py_ssize_t c = 0; c < ncol; c++) {
        const unsigned v = PC_BIN(LOADX(q + col[c]));
        h[v] += (uint32_t)dir;
        below += v < m;
    }
    *lt += dir * below;
}

#elif MED_HIST == 16
/* an order-preserving map of the 16-bit values to bins 0..65535, and back */
#define PC_BIN(v) ((unsigned)(uint16_t)(v) ^ (B_SIGNED ? 0x8000u : 0u))
#define PC_VAL(h) ((B_T)(uint16_t)((h) ^ (B_SIGNED ? 0x8000u : 0u)))
#define PC_FINE 65536 /* h[0..65536): a bin per value; h[65536 + b]: the block b of 256 values */

/* Add (dir 1) or remove (dir -1) the column at position t; `lt` counts values below bin m,
 * `ltb` those below the first bin of m's block. */
PC_FORCE_INLINE void FN(hist_col)(uint32_t *restrict h, const char *q, const ptrdiff_t *col,
                                  Py_ssize_t ncol, int dir, unsigned m, Py_ssize_t *lt,
                                  Py_ssize_t *ltb)
{
    const unsigned mb = m & ~0xffu;
    Py_ssize_t below = 0, belowb = 0;
    for (Py_ssize_t c = 0; c < ncol; c++) {
        const unsigned v = PC_BIN(LOADX(q + col[c]));
        h[v] += (uint32_t)dir;
        h[PC_FINE + (v >> 8)] += (uint32_t)dir;
        below += v < m;
        belowb += v < mb;
    }
    *lt += dir * below;
    *ltb += dir * belowb;
}
#endif

#if MED_HIST
/* Move a line's window to output o: window o holds the real positions [na, nb), and both
 * ends only grow with o (adaptive windows too), so the positions of [pa, pb) that left are
 * removed and those that entered added. Returns the window's taps. */
PC_FORCE_INLINE Py_ssize_t FN(slide)(const axis_t *A, const char *sp, const ptrdiff_t *col,
                                     Py_ssize_t ncol, Py_ssize_t o, Py_ssize_t a,
                                     Py_ssize_t *pa, Py_ssize_t *pb, uint32_t *restrict h,
                                     unsigned m, Py_ssize_t *lt, Py_ssize_t *ltb)
{
    Py_ssize_t lo, hi;
    const Py_ssize_t t0 = med_taps(A, o, &lo, &hi);
    const Py_ssize_t na = t0 + lo, nb = t0 + hi;
    if (o == a) *pa = *pb = na;
    for (Py_ssize_t t = *pa; t < na && t < *pb; t++)
        FN(hist_col)(h, sp + t * A->s_sn, col, ncol, -1, m, lt, ltb);
    for (Py_ssize_t t = *pb > na ? *pb : na; t < nb; t++)
        FN(hist_col)(h, sp + t * A->s_sn, col, ncol, 1, m, lt, ltb);
    *pa = na, *pb = nb;
    return (nb - na) * ncol;
}
#endif

#if MED_HIST == 8
/* Outputs [a, b) of the last axis (dilation 1): slide the window to each output, then walk
 * the median bin m (lt values lie below it) to the rank wanted. */
static void FN(line_hist)(const axis_t *A, const char *sp, char *dp, const ptrdiff_t *col,
                          Py_ssize_t ncol, Py_ssize_t a, Py_ssize_t b, uint32_t *restrict h)
{
    memset(h, 0, 256 * sizeof *h);
    Py_ssize_t pa = 0, pb = 0, lt = 0, ltb = 0;
    unsigned m = 0;
    for (Py_ssize_t o = a; o < b; o++) {
        const Py_ssize_t cnt = FN(slide)(A, sp, col, ncol, o, a, &pa, &pb, h, m, &lt, &ltb);
        char *d = dp + o * A->d_sn;
        if (cnt == 0) {
            FN(put_empty)(d);
            continue;
        }
        const Py_ssize_t r = (cnt - 1) / 2; /* the lower middle rank */
        while (lt > r) lt -= h[--m];
        while (lt + (Py_ssize_t)h[m] <= r) lt += h[m++];
        if (cnt % 2) {
            FN(put)(d, PC_VAL(m));
            continue;
        }
        unsigned m2 = m; /* rank r + 1: this bin, or the next one that holds a value */
        if (lt + (Py_ssize_t)h[m] <= r + 1)
            for (m2 = m + 1; !h[m2]; m2++) {}
        FN(put_mean)(d, PC_VAL(m), PC_VAL(m2));
    }
}
#elif MED_HIST == 16
/* line_hist for 16-bit values, on two levels. The histogram is zero on entry and left
 * zero (the line removes the columns it still holds: k columns, not a 256 KB memset a line);
 * init_bufs zeroes it once. The median bin m walks as in Huang's, but when the rank wanted
 * lies in another block of 256 values it steps over whole blocks (their counts) and enters
 * the block at its start: an output costs its column updates, the blocks crossed and at most
 * 255 bins, and the few bins the median moves where the image is smooth. */
static void FN(line_hist)(const axis_t *A, const char *sp, char *dp, const ptrdiff_t *col,
                          Py_ssize_t ncol, Py_ssize_t a, Py_ssize_t b, uint32_t *restrict h)
{
    const uint32_t *hb = h + PC_FINE;
    Py_ssize_t pa = 0, pb = 0, lt = 0, ltb = 0;
    unsigned m = 0;
    for (Py_ssize_t o = a; o < b; o++) {
        const Py_ssize_t cnt = FN(slide)(A, sp, col, ncol, o, a, &pa, &pb, h, m, &lt, &ltb);
        char *d = dp + o * A->d_sn;
        if (cnt == 0) {
            FN(put_empty)(d);
            continue;
        }
        const Py_ssize_t r = (cnt - 1) / 2; /* the lower middle rank */
        unsigned blk = m >> 8;
        if (r < ltb || ltb + (Py_ssize_t)hb[blk] <= r) { /* another block */
            while (r < ltb) ltb -= hb[--blk];
            while (ltb + (Py_ssize_t)hb[blk] <= r) ltb += hb[blk++];
            m = blk << 8, lt = ltb;
        }
        while (lt > r) lt -= h[--m]; /* within the block: ltb <= r < ltb + hb[blk] */
        while (lt + (Py_ssize_t)h[m] <= r) lt += h[m++];
        if (cnt % 2) {
            FN(put)(d, PC_VAL(m));
            continue;
        }
        unsigned m2 = m; /* rank r + 1: this bin, or the next one that holds a value (one does) */
        if (lt + (Py_ssize_t)h[m] <= r + 1) {
            for (m2 = m + 1; (m2 & 0xffu) && !h[m2]; m2++) {}
            if (!(m2 & 0xffu)) { /* none left in m's block: the next block that holds one */
                for (blk = m2 >> 8; !hb[blk]; blk++) {}
                for (m2 = blk << 8; !h[m2]; m2++) {}
            }
        }
        FN(put_mean)(d, PC_VAL(m), PC_VAL(m2));
    }
    for (Py_ssize_t t = pa; t < pb; t++) /* leave the histogram zero for the next line */
        FN(hist_col)(h, sp + t * A->s_sn, col, ncol, -1, m, &lt, &ltb);
}
#endif
#if MED_HIST
#undef PC_BIN
#undef PC_VAL
#endif
#ifdef PC_FINE
#undef PC_FINE
#endif

/* Level i: the outputs [a, b) of axis i, each extending the column of the levels above by
 * its real taps on this axis, for every value of the group after it; the last axis runs as
 * lines (one per value of its group I). */
static void FN(walk)(const job_t *J, tbuf_t *T, int i, const char *sp, char *dp,
                     const ptrdiff_t *col, Py_ssize_t ncol, Py_ssize_t a, Py_ssize_t b)
{
    const axis_t *A = &J->ax[i];
    if (i == J->m - 1 || i == PC_MAXL - 1) { /* (the same: m <= PC_MAXL; tells the compiler) */
#if !IN_F16
        Py_ssize_t ia, ib;
        if (A->G > 1 && FN(net_k)(A, ncol, A->G) && med_inside(A, a, b, &ia, &ib)) {
            /* interleaved lines (an HWC image's channels): their insides as one flat run */
            for (Py_ssize_t g = 0; g < A->G; g++) {
                FN(line_gather)(A, sp + g * A->s_sG, dp + g * A->d_sG, col, ncol, a, ia,
                                (B_T *)T->med_buf);
                FN(line_gather)(A, sp + g * A->s_sG, dp + g * A->d_sG, col, ncol, ib, b,
                                (B_T *)T->med_buf);
            }
            FN(line_net)(A, sp, dp, col, A->G, ia * A->G, ib * A->G);
            return;
        }
#endif
        for (Py_ssize_t g = 0; g < A->G; g++) {
#if MED_HIST
            if (A->seg[0][2] == ST_HIST && ncol > 0 && !FN(net_k)(A, ncol, 1)) {
                FN(line_hist)(A, sp + g * A->s_sG, dp + g * A->d_sG, col, ncol, a, b,
                              T->med_hist);
                continue;
            }
#endif
            FN(line_direct)(A, sp + g * A->s_sG, dp + g * A->d_sG, col, ncol, a, b,
                            (B_T *)T->med_buf);
        }
        return;
    }
    ptrdiff_t *next = T->med_col[i];
    for (Py_ssize_t o = a; o < b; o++) {
        Py_ssize_t lo, hi, n = 0;
        const Py_ssize_t t0 = med_taps(A, o, &lo, &hi);
        for (Py_ssize_t j = lo; j < hi; j++)
            for (Py_ssize_t c = 0; c < ncol; c++) next[n++] = col[c] + (t0 + j * A->d) * A->s_sn;
        for (Py_ssize_t g = 0; g < A->G; g++)
            FN(walk)(J, T, i + 1, sp + g * A->s_sG, dp + o * A->d_sn + g * A->d_sG, next, n, 0,
                     J->ax[i + 1].out);
    }
}

/* Outputs [a, b) of the first pooled axis for one outer index. */
static void FN(run_unit)(const job_t *J, tbuf_t *T, Py_ssize_t outer, Py_ssize_t a, Py_ssize_t b)
{
    static const ptrdiff_t origin = 0;
    FN(walk)(J, T, 0, J->src + outer * J->s_sO, J->dst + outer * J->d_sO, &origin, 1, a, b);
}

static void FN(init_bufs)(const job_t *J, tbuf_t *T)
{
#if MED_HIST == 16
    if (T->med_hist) memset(T->med_hist, 0, med_hist_bins(J, sizeof(B_T)) * sizeof(uint32_t));
#else
    (void)J;
    (void)T;
#endif
}

#undef FN
#undef SUF
#undef IN_T
#undef B_T
#undef LOADX
#undef B_INT
#undef B_SIGNED
#undef IN_F16
#undef MED_HIST
