/* One instance of the generic pooling engine, included by _fast.c once per (op, dtype, ISA).
 *
 * A poor man's template (as numpy's old .src files, but plain C): the includer defines
 *   SUF       name suffix, e.g. max_u8; ISA (base|avx2) is appended
 *   IN_T      storage type of the source
 *   B_T       type of bands and accumulators (the source type for max/min, int64/uint64/double for sums)
 *   LOADX(p)  read one IN_T at char *p as B_T (may use `pexp`, the lp power)
 *   OPX(a, b) combine (NaN-propagating max/min, or +); for sums, the order a + b is numpy's
 *   IDENT     the identity of OPX: padding value (never wins a max, adds nothing to a sum)
 *   IS_FSUM   1 for float sums (numpy's summation order and signed-zero rules are reproduced)
 *   B_INT     1 when B_T is an integer type
 * and this file defines the static functions FN(...) of that instance, ending with
 * FN(run_unit), which computes outputs [a, b) of the first pooled axis for one outer index.
 * No Python API in here: pointers, strides, plain loops the compiler can vectorise.
 */

#define FN(name) PC_CAT3(name, SUF, ISA)

/* ----------------------------------------------------------------- flat band helpers */

static void FN(fill)(B_T *restrict b, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) b[i] = IDENT;
}

static inline void FN(comb)(B_T *restrict d, const B_T *restrict s, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) d[i] = OPX(d[i], s[i]);
}

/* d = a op b; d differs from a and b */
static inline void FN(comb3)(B_T *restrict d, const B_T *restrict a, const B_T *restrict b,
                             Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) d[i] = OPX(a[i], b[i]);
}

#if IS_FSUM
/* x + 0.0: turns -0.0 into +0.0 and nothing else. numpy adds a literal +0.0 for every padding
 * tap of a window; skipping those taps gives the same sum except for the sign of a zero. */
static inline void FN(addzero)(B_T *restrict b, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) b[i] += 0.0;
}
#endif

/* ----------------------------------------------------------------- source slices (level 0) */

/* Load one source slice through its plan: mode 0 copy, 1 combine in place, 2 d = a op slice. */
static void FN(plan_op)(const plan_t *restrict pl, const char *sp, B_T *restrict d,
                        const B_T *a, int mode, double pexp)
{
    (void)pexp;
    Py_ssize_t idx[PC_MAXD];
    const int nd = pl->nd;
    const Py_ssize_t run = pl->size[nd - 1];
    const ptrdiff_t rs = pl->ss[nd - 1];
    const ptrdiff_t rb = pl->bs[nd - 1];
    for (int j = 0; j < nd - 1; j++) idx[j] = 0;
    Py_ssize_t boff = pl->boff;
    for (;;) {
        B_T *restrict dr = d + boff;
        if (rb == 1 && rs == (ptrdiff_t)sizeof(IN_T)) {
            const char *q = sp;
            if (mode == 0) {
                for (Py_ssize_t r = 0; r < run; r++) dr[r] = LOADX(q + r * (ptrdiff_t)sizeof(IN_T));
            } else if (mode == 1) {
                for (Py_ssize_t r = 0; r < run; r++)
                    dr[r] = OPX(dr[r], LOADX(q + r * (ptrdiff_t)sizeof(IN_T)));
            } else {
                const B_T *restrict ar = a + boff;
                for (Py_ssize_t r = 0; r < run; r++)
                    dr[r] = OPX(ar[r], LOADX(q + r * (ptrdiff_t)sizeof(IN_T)));
            }
        } else {
            if (mode == 0) {
                for (Py_ssize_t r = 0; r < run; r++) dr[r * rb] = LOADX(sp + r * rs);
            } else if (mode == 1) {
                for (Py_ssize_t r = 0; r < run; r++) dr[r * rb] = OPX(dr[r * rb], LOADX(sp + r * rs));
            } else {
                const B_T *ar = a + boff;
                for (Py_ssize_t r = 0; r < run; r++) dr[r * rb] = OPX(ar[r * rb], LOADX(sp + r * rs));
            }
        }
        int j = nd - 2;
        for (; j >= 0; j--) {
            if (++idx[j] < pl->size[j]) {
                sp += pl->ss[j];
                boff += pl->bs[j];
                break;
            }
            sp -= pl->ss[j] * (pl->size[j] - 1);
            boff -= pl->bs[j] * (pl->size[j] - 1);
            idx[j] = 0;
        }
        if (j < 0) break;
    }
}

/* The input of one level: either the source (level 0, through a plan) or a band buffer. */
typedef struct {
    const char *src;       /* level 0: source at this outer index (position 0 of the axis) */
    ptrdiff_t src_sn;      /* byte stride of the pooled axis in the source */
    const plan_t *plan;
    const B_T *band;       /* level > 0: band of the previous level */
    Py_ssize_t band_sn;    /* element stride of the pooled axis in the band */
    Py_ssize_t band_off;   /* element offset of position 0 (the left padding of a last axis) */
    Py_ssize_t width;      /* elements of one slice (the band this level produces) */
    double pexp;
} FN(input_t);

static inline void FN(s_copy)(const FN(input_t) *in, B_T *restrict d, Py_ssize_t t)
{
    if (in->src)
        FN(plan_op)(in->plan, in->src + t * in->src_sn, d, NULL, 0, in->pexp);
    else
        memcpy(d, in->band + in->band_off + t * in->band_sn, (size_t)in->width * sizeof(B_T));
}

static inline void FN(s_comb)(const FN(input_t) *in, B_T *restrict d, Py_ssize_t t)
{
    if (in->src)
        FN(plan_op)(in->plan, in->src + t * in->src_sn, d, NULL, 1, in->pexp);
    else
        FN(comb)(d, in->band + in->band_off + t * in->band_sn, in->width);
}

static inline void FN(s_comb3)(const FN(input_t) *in, B_T *restrict d, const B_T *a, Py_ssize_t t)
{
    if (in->src)
        FN(plan_op)(in->plan, in->src + t * in->src_sn, d, a, 2, in->pexp);
    else
        FN(comb3)(d, a, in->band + in->band_off + t * in->band_sn, in->width);
}

/* ----------------------------------------------------------------- finishing */

#if B_INT
static inline B_T FN(divround)(B_T t, int64_t c)
{
    if (c < 1) c = 1; /* a window of padding only sums to 0 */
#if B_SIGNED
    int64_t q = t / c, r = t % c;
    if (r < 0) { q -= 1; r += c; } /* floor division, as numpy's // */
    int64_t tw = 2 * r;
    return q + ((tw > c) | ((tw == c) & (q >= 0)));
#else
    uint64_t cu = (uint64_t)c, q = t / cu, r = t % cu;
    return q + (2 * r >= cu);
#endif
}
#endif

/* Write `nout` results (rows of `I` values, `rstride` elements apart) to dst, finishing them:
 * FIN_STORE casts to the output type, FIN_AVG divides by the window count (exact integer
 * rounding for integer input), FIN_LP divides by the count and scales by the kernel volume.
 * Each family only has the outputs its op can produce (see fast_backend._out_dtype). */
#if B_INT
#define PC_COUNT(o) (cpre * (cnt ? ((const int64_t *)cnt)[o] : 1))
#else /* float divisors come as doubles (exact below 2**53): the division vectorises */
#define PC_COUNT(o) ((double)cpre * (cnt ? ((const double *)cnt)[o] : 1.0))
#endif
#define PC_FIN_LOOP(OT, EXPR)                                                         \
    if (I == 1 && rstride == 1 && dsn == (ptrdiff_t)sizeof(OT)) {                     \
        OT *dd_ = (OT *)dst;                                                          \
        for (Py_ssize_t o = 0; o < nout; o++) {                                       \
            B_T v = res[o];                                                           \
            const PC_CNT_T c_ = PC_COUNT(o);                                          \
            (void)c_;                                                                 \
            dd_[o] = (OT)(EXPR);                                                      \
        }                                                                             \
    } else                                                                            \
    for (Py_ssize_t o = 0; o < nout; o++) {                                           \
        const B_T *r_ = res + o * rstride;                                            \
        char *d_ = dst + o * dsn;                                                     \
        const PC_CNT_T c_ = PC_COUNT(o);                                              \
        (void)c_;                                                                     \
        if (dsI == (ptrdiff_t)sizeof(OT)) {                                           \
            OT *dd_ = (OT *)d_;                                                       \
            for (Py_ssize_t c = 0; c < I; c++) { B_T v = r_[c]; dd_[c] = (OT)(EXPR); } \
        } else {                                                                      \
            for (Py_ssize_t c = 0; c < I; c++) {                                      \
                B_T v = r_[c];                                                        \
                *(OT *)(d_ + c * dsI) = (OT)(EXPR);                                   \
            }                                                                         \
        }                                                                             \
    }
#if B_INT
#define PC_CNT_T int64_t
#else
#define PC_CNT_T double
#endif
static void FN(finish)(const job_t *J, const B_T *res, Py_ssize_t nout, Py_ssize_t I,
                       Py_ssize_t rstride, char *dst, ptrdiff_t dsn, ptrdiff_t dsI,
                       const void *cnt, int64_t cpre)
{
#if FAM == 0 /* max / min: the source type */
    (void)J;
#if IN_F16
    PC_FIN_LOOP(uint16_t, pc_f2h(v))
#else
    PC_FIN_LOOP(IN_T, v)
#endif
#elif FAM == 1 /* sum / avg */
#if B_INT
    if (J->fin == FIN_STORE) {
        PC_FIN_LOOP(B_T, v)
    } else {
        PC_FIN_LOOP(IN_T, FN(divround)(v, c_))
    }
#else
    if (J->fin == FIN_STORE) {
        if (J->out_type == DT_F4) { PC_FIN_LOOP(float, v) }
        else { PC_FIN_LOOP(double, v) }
    } else if (J->fin == FIN_AVG) {
        if (J->out_type == DT_F4) { PC_FIN_LOOP(float, (double)v / c_) }
        else { PC_FIN_LOOP(double, (double)v / c_) }
    } else { /* lp with p = 1 on floats runs the float sum; +0.0: torch's sum starts at +0 */
        const double vol = J->volume;
        PC_FIN_LOOP(double, ((double)v + 0.0) / c_ * vol)
    }
#endif
#else /* lp: the mean of x**p times the kernel volume, as double; numpy takes the root */
    const double vol = J->volume;
    PC_FIN_LOOP(double, ((double)v + 0.0) / c_ * vol)
#endif
}
#undef PC_FIN_LOOP
#undef PC_COUNT
#undef PC_CNT_T

/* ----------------------------------------------------------------- line kernels (last axis)
 * A line holds positions u (padded coordinates: u = t + p) of I values each, IDENT in the
 * padding, so these loops have no edge cases. `x` points at position `ub`. */

static void FN(line_direct)(const B_T *restrict x, Py_ssize_t ub, Py_ssize_t I, Py_ssize_t k,
                            Py_ssize_t s, Py_ssize_t d, Py_ssize_t o0, Py_ssize_t o1,
                            B_T *restrict res)
{
    if (I == 1) {
        const B_T *xs = x + (o0 * s - ub);
        Py_ssize_t n = o1 - o0;
        if (k == 1) {
            for (Py_ssize_t o = 0; o < n; o++) res[o] = xs[o * s];
        } else if (k == 2) {
            for (Py_ssize_t o = 0; o < n; o++) res[o] = OPX(xs[o * s], xs[o * s + d]);
        } else if (k == 3) {
            for (Py_ssize_t o = 0; o < n; o++) {
                B_T v = OPX(xs[o * s], xs[o * s + d]);
                res[o] = OPX(v, xs[o * s + 2 * d]);
            }
        } else if (s == 1) {
            for (Py_ssize_t o = 0; o < n; o++) res[o] = xs[o];
            for (Py_ssize_t j = 1; j < k; j++) {
                const B_T *xj = xs + j * d;
                for (Py_ssize_t o = 0; o < n; o++) res[o] = OPX(res[o], xj[o]);
            }
        } else {
            for (Py_ssize_t o = 0; o < n; o++) res[o] = xs[o * s];
            for (Py_ssize_t j = 1; j < k; j++) {
                const B_T *xj = xs + j * d;
                for (Py_ssize_t o = 0; o < n; o++) res[o] = OPX(res[o], xj[o * s]);
            }
        }
        return;
    }
    for (Py_ssize_t o = o0; o < o1; o++) {
        const B_T *w = x + (o * s - ub) * I;
        B_T *restrict r = res + (o - o0) * I;
        for (Py_ssize_t c = 0; c < I; c++) r[c] = w[c];
        for (Py_ssize_t j = 1; j < k; j++) {
            const B_T *wj = w + j * d * I;
            for (Py_ssize_t c = 0; c < I; c++) r[c] = OPX(r[c], wj[c]);
        }
    }
}

#if IS_FSUM
/* numpy's doubling scheme (numpy_backend._valid_reduce), reproduced operation for operation so
 * that float sums are bit-identical: levels of 1, 2, 4, ... taps, each window the sum of the
 * levels of k's binary digits, lowest first. O(log k) per element. `lev` gets a copy. */
static void FN(line_tree)(const B_T *restrict x, Py_ssize_t ub, Py_ssize_t I, Py_ssize_t k,
                          Py_ssize_t s, Py_ssize_t d, Py_ssize_t o0, Py_ssize_t o1,
                          B_T *restrict res, B_T *restrict lev)
{
    const Py_ssize_t count = o1 - o0;
    Py_ssize_t len = (count - 1) * s + d * (k - 1) + 1;
    const B_T *cur = x + (o0 * s - ub) * I; /* level 0 is the line itself: no copy */
    Py_ssize_t off = 0, width = 1;
    int first = 1;
    if (I == 1 && s == 1) {
        /* one pass per level: take this level's part (if k has the bit) and build the next
         * level in the same loop; the same additions in the same order as below */
        for (;;) {
            const int take = (k & width) != 0, more = width * 2 <= k;
            const Py_ssize_t shift = width * d, m = more ? len - shift : 0;
            const B_T *pt = cur + off * d;
            Py_ssize_t v = 0;
            if (take && first) {
                for (; v < m && v < count; v++) { res[v] = pt[v]; lev[v] = cur[v] + cur[v + shift]; }
                for (Py_ssize_t o = v; o < count; o++) res[o] = pt[o];
            } else if (take) {
                for (; v < m && v < count; v++) { res[v] = res[v] + pt[v]; lev[v] = cur[v] + cur[v + shift]; }
                for (Py_ssize_t o = v; o < count; o++) res[o] = res[o] + pt[o];
            }
            for (; v < m; v++) lev[v] = cur[v] + cur[v + shift];
            if (take) { first = 0; off += width; }
            if (!more) return;
            cur = lev;
            len -= shift;
            width *= 2;
        }
    }
    for (;;) {
        if (k & width) {
            const B_T *pt0 = cur + off * d * I;
            if (I == 1 && s == 1) {
                if (first) memcpy(res, pt0, (size_t)count * sizeof(B_T));
                else for (Py_ssize_t o = 0; o < count; o++) res[o] = res[o] + pt0[o];
            } else if (I == 1) {
                if (first) for (Py_ssize_t o = 0; o < count; o++) res[o] = pt0[o * s];
                else for (Py_ssize_t o = 0; o < count; o++) res[o] = res[o] + pt0[o * s];
            } else {
                for (Py_ssize_t o = 0; o < count; o++) {
                    const B_T *pt = pt0 + o * s * I;
                    B_T *restrict r = res + o * I;
                    if (first)
                        for (Py_ssize_t c = 0; c < I; c++) r[c] = pt[c];
                    else
                        for (Py_ssize_t c = 0; c < I; c++) r[c] = r[c] + pt[c];
                }
            }
            first = 0;
            off += width;
        }
        if (width * 2 > k) break;
        const Py_ssize_t shift = width * d;
        const Py_ssize_t m = (len - shift) * I, sh = shift * I;
        for (Py_ssize_t v = 0; v < m; v++) lev[v] = cur[v] + cur[v + sh];
        cur = lev;
        len -= shift;
        width *= 2;
    }
}
#endif

/* The scans for I > 1 values per position; inlined with I = 2, 3, 4 as constants so that the
 * loops over I unroll (float32 1024x1024x3, avg 1x15: 17.6 -> 10.3 ms). */
PC_FORCE_INLINE void FN(line_gw_multi)(
    const B_T *restrict xs, Py_ssize_t len, Py_ssize_t count, Py_ssize_t I, Py_ssize_t k,
    Py_ssize_t s, Py_ssize_t d, B_T *restrict res, B_T *restrict P, B_T *restrict S)
{
    const Py_ssize_t kd = k * d;
    for (Py_ssize_t v = 0, w = 0; v < len; v++) {
        const B_T *xv = xs + v * I;
        B_T *restrict pv = P + v * I;
        if (w < d) {
            for (Py_ssize_t c = 0; c < I; c++) pv[c] = xv[c];
        } else {
            const B_T *pp = P + (v - d) * I;
            for (Py_ssize_t c = 0; c < I; c++) pv[c] = OPX(pp[c], xv[c]);
        }
        if (++w == kd) w = 0;
    }
    for (Py_ssize_t v = len - 1, w = (len - 1) % kd; v >= 0; v--) {
        const B_T *xv = xs + v * I;
        B_T *restrict sv = S + v * I;
        if (w >= kd - d || v + d >= len) { /* a block's or its class's last position */
            for (Py_ssize_t c = 0; c < I; c++) sv[c] = xv[c];
        } else {
            const B_T *sn = S + (v + d) * I;
            for (Py_ssize_t c = 0; c < I; c++) sv[c] = OPX(xv[c], sn[c]);
        }
        if (w-- == 0) w = kd - 1;
    }
    for (Py_ssize_t o = 0, v = 0, w = 0; o < count; o++, v += s) {
        B_T *restrict r = res + o * I;
        const B_T *sv = S + v * I, *pv = P + (v + kd - d) * I;
        if (w < d)
            for (Py_ssize_t c = 0; c < I; c++) r[c] = sv[c];
        else
            for (Py_ssize_t c = 0; c < I; c++) r[c] = OPX(sv[c], pv[c]);
        w += s;
        while (w >= kd) w -= kd;
    }
}

/* van Herk / Gil-Werman: blocks of k taps along each residue class mod d; P is the running op
 * from the start of a block, S to its end; a window is S at its first tap op P at its last
 * (or S alone when it starts a block). Three ops per element whatever k. For float sums the
 * partial sums of a block are exact sums of at most k terms: no drift along the line.
 * Positions run in memory order (the classes mod d interleave: d independent chains), and
 * w = v mod (k d) says where a block starts (w < d) or ends (w >= (k - 1) d) without a
 * division per position. */
static void FN(line_gw)(const B_T *restrict x, Py_ssize_t ub, Py_ssize_t I, Py_ssize_t k,
                        Py_ssize_t s, Py_ssize_t d, Py_ssize_t o0, Py_ssize_t o1,
                        B_T *restrict res, B_T *restrict P, B_T *restrict S)
{
    const Py_ssize_t count = o1 - o0;
    const Py_ssize_t len = (count - 1) * s + d * (k - 1) + 1;
    const Py_ssize_t kd = k * d;
    const B_T *xs = x + (o0 * s - ub) * I;
    switch (I) {
    case 1: break;
    case 2: FN(line_gw_multi)(xs, len, count, 2, k, s, d, res, P, S); return;
    case 3: FN(line_gw_multi)(xs, len, count, 3, k, s, d, res, P, S); return;
    case 4: FN(line_gw_multi)(xs, len, count, 4, k, s, d, res, P, S); return;
    default: FN(line_gw_multi)(xs, len, count, I, k, s, d, res, P, S); return;
    }
    /* single values: the same ops without the loops over I. Each scan is a serial chain (an
     * op's latency per element), so with d = 1 four blocks run at a time as independent
     * chains, every op as in the loops that finish the line. */
    Py_ssize_t v0 = 0; /* suffixes of [0, v0) done four blocks at a time */
    if (d == 1) {
        for (; v0 + 4 * k <= len; v0 += 4 * k) {
            const B_T *x0 = xs + v0, *x1 = x0 + k, *x2 = x1 + k, *x3 = x2 + k;
            B_T *restrict S0 = S + v0;
            B_T s0 = x0[k - 1], s1 = x1[k - 1], s2 = x2[k - 1], s3 = x3[k - 1];
            S0[k - 1] = s0, S0[2 * k - 1] = s1, S0[3 * k - 1] = s2, S0[4 * k - 1] = s3;
            for (Py_ssize_t r = k - 2; r >= 0; r--) {
                S0[r] = s0 = OPX(x0[r], s0);
                S0[k + r] = s1 = OPX(x1[r], s1);
                S0[2 * k + r] = s2 = OPX(x2[r], s2);
                S0[3 * k + r] = s3 = OPX(x3[r], s3);
            }
        }
    }
    for (Py_ssize_t v = len - 1, w = (len - 1) % kd; v >= v0; v--) {
        S[v] = (w >= kd - d || v + d >= len) ? xs[v] : OPX(xs[v], S[v + d]);
        if (w-- == 0) w = kd - 1;
    }
    if (d == 1 && s == 1) {
        /* every window u after a block's first is S[u] op the next block's prefix up to
         * u + k - 1: the prefix is scanned as it is used (no P array) */
        Py_ssize_t b = 0;
        for (; b + 4 * k <= count; b += 4 * k) {
            const B_T *y0 = xs + b + k, *y1 = y0 + k, *y2 = y1 + k, *y3 = y2 + k;
            const B_T *S0 = S + b + 1;
            B_T *restrict r0 = res + b + 1;
            res[b] = S[b], res[b + k] = S[b + k], res[b + 2 * k] = S[b + 2 * k];
            res[b + 3 * k] = S[b + 3 * k];
            B_T p0 = y0[0], p1 = y1[0], p2 = y2[0], p3 = y3[0];
            for (Py_ssize_t j = 0;;) {
                r0[j] = OPX(S0[j], p0);
                r0[k + j] = OPX(S0[k + j], p1);
                r0[2 * k + j] = OPX(S0[2 * k + j], p2);
                r0[3 * k + j] = OPX(S0[3 * k + j], p3);
                if (++j == k - 1) break;
                p0 = OPX(p0, y0[j]), p1 = OPX(p1, y1[j]), p2 = OPX(p2, y2[j]);
                p3 = OPX(p3, y3[j]);
            }
        }
        for (; b < count; b += k) {
            const Py_ssize_t e = b + k < count ? b + k : count;
            res[b] = S[b];
            if (e == b + 1) break; /* a last block of one window: xs[b + k] is past the line */
            B_T p = xs[b + k];
            for (Py_ssize_t u = b + 1; u < e; u++) {
                if (u > b + 1) p = OPX(p, xs[u + k - 1]);
                res[u] = OPX(S[u], p);
            }
        }
        return;
    }
    Py_ssize_t v1 = 0; /* prefixes of [0, v1) done four blocks at a time */
    if (d == 1) {
        for (; v1 + 4 * k <= len; v1 += 4 * k) {
            const B_T *x0 = xs + v1, *x1 = x0 + k, *x2 = x1 + k, *x3 = x2 + k;
            B_T *restrict P0 = P + v1;
            B_T p0 = x0[0], p1 = x1[0], p2 = x2[0], p3 = x3[0];
            P0[0] = p0, P0[k] = p1, P0[2 * k] = p2, P0[3 * k] = p3;
            for (Py_ssize_t j = 1; j < k; j++) {
                P0[j] = p0 = OPX(p0, x0[j]);
                P0[k + j] = p1 = OPX(p1, x1[j]);
                P0[2 * k + j] = p2 = OPX(p2, x2[j]);
                P0[3 * k + j] = p3 = OPX(p3, x3[j]);
            }
        }
    }
    for (Py_ssize_t v = v1, w = 0; v < len; v++) {
        P[v] = w < d ? xs[v] : OPX(P[v - d], xs[v]);
        if (++w == kd) w = 0;
    }
    for (Py_ssize_t o = 0, v = 0, w = 0; o < count; o++, v += s) {
        res[o] = w < d ? S[v] : OPX(S[v], P[v + kd - d]);
        w += s;
        while (w >= kd) w -= kd;
    }
}

#if FAM == 0
/* max / min are idempotent, so a window of k taps is op of two overlapping windows of
 * a = 2^floor(log2 k) taps, and those come from log2(a) doubling passes over the line, each
 * a flat vectorisable loop: floor(log2 k) + 1 passes in cache, no serial chain (van Herk's
 * prefix scans are serial along a line of single values: 4-6x slower for k = 7..63). */
static void FN(line_log)(const B_T *restrict x, Py_ssize_t ub, Py_ssize_t I, Py_ssize_t k,
                         Py_ssize_t s, Py_ssize_t d, Py_ssize_t o0, Py_ssize_t o1,
                         B_T *restrict res, B_T *restrict lev)
{
    const Py_ssize_t count = o1 - o0;
    Py_ssize_t len = (count - 1) * s + d * (k - 1) + 1;
    const B_T *xs = x + (o0 * s - ub) * I;
    Py_ssize_t a = 1;
    const B_T *cur = xs;
    while (a * 2 <= k) {
        const Py_ssize_t sh = a * d * I, m = (len - a * d) * I;
        for (Py_ssize_t v = 0; v < m; v++) lev[v] = OPX(cur[v], cur[v + sh]);
        cur = lev;
        len -= a * d;
        a *= 2;
    }
    const Py_ssize_t sh = (k - a) * d * I;
    if (I == 1) {
        if (s == 1) for (Py_ssize_t o = 0; o < count; o++) res[o] = OPX(cur[o], cur[o + sh]);
        else for (Py_ssize_t o = 0; o < count; o++) res[o] = OPX(cur[o * s], cur[o * s + sh]);
    } else {
        for (Py_ssize_t o = 0; o < count; o++) {
            const B_T *p = cur + o * s * I;
            B_T *restrict r = res + o * I;
            for (Py_ssize_t c = 0; c < I; c++) r[c] = OPX(p[c], p[c + sh]);
        }
    }
}
#endif

/* Adaptive windows on a line: output o covers [ast[o], aen[o]) (x points at position ub). */
static void FN(line_adapt)(const B_T *restrict x, Py_ssize_t ub, Py_ssize_t I,
                           const int64_t *ast, const int64_t *aen, Py_ssize_t o0, Py_ssize_t o1,
                           B_T *restrict res)
{
    for (Py_ssize_t o = o0; o < o1; o++) {
        const B_T *w = x + (ast[o] - ub) * I;
        const Py_ssize_t len = aen[o] - ast[o];
        B_T *restrict r = res + (o - o0) * I;
        if (I == 1) {
            B_T v = w[0];
            for (Py_ssize_t j = 1; j < len; j++) v = OPX(v, w[j]);
            r[0] = v;
            continue;
        }
        for (Py_ssize_t c = 0; c < I; c++) r[c] = w[c];
        for (Py_ssize_t j = 1; j < len; j++)
            for (Py_ssize_t c = 0; c < I; c++) r[c] = OPX(r[c], w[j * I + c]);
    }
}

/* Gather source positions [u0, u1) (padded coordinates) of a line into xb, IDENT outside. */
static void FN(gather)(const job_t *J, const char *sp, Py_ssize_t u0, Py_ssize_t u1,
                       B_T *restrict xb)
{
    const axis_t *A = &J->ax[0];
    const Py_ssize_t I = A->G;
    const double pexp = J->pexp;
    (void)pexp;
    for (Py_ssize_t u = u0; u < u1; u++) {
        Py_ssize_t t = u - A->p;
        B_T *restrict xr = xb + (u - u0) * I;
        if (t < 0 || t >= A->n) {
            for (Py_ssize_t c = 0; c < I; c++) xr[c] = IDENT;
        } else {
            const char *q = sp + t * A->s_sn;
            if (A->s_sG == (ptrdiff_t)sizeof(IN_T))
                for (Py_ssize_t c = 0; c < I; c++) xr[c] = LOADX(q + c * (ptrdiff_t)sizeof(IN_T));
            else
                for (Py_ssize_t c = 0; c < I; c++) xr[c] = LOADX(q + c * A->s_sG);
        }
    }
}

/* Run one line kernel over outputs [o0, o1) of the last axis into res. */
static void FN(line_run)(const axis_t *A, int strat, const B_T *x, Py_ssize_t ub, Py_ssize_t o0,
                         Py_ssize_t o1, B_T *res, B_T *t1, B_T *t2)
{
    const Py_ssize_t I = A->G;
    (void)t2;
#if FAM == 0
    if (strat == ST_LOG) {
        FN(line_log)(x, ub, I, A->k, A->s, A->d, o0, o1, res, t1);
        return;
    }
#endif
#if IS_FSUM
    if (strat == ST_TREE) {
        FN(line_tree)(x, ub, I, A->k, A->s, A->d, o0, o1, res, t1);
        return;
    }
#endif
    if (strat == ST_GW)
        FN(line_gw)(x, ub, I, A->k, A->s, A->d, o0, o1, res, t1, t2);
    else
        FN(line_direct)(x, ub, I, A->k, A->s, A->d, o0, o1, res);
}

/* ----------------------------------------------------------------- levels */

static void FN(level)(const job_t *J, tbuf_t *T, int i, const char *src, const B_T *band,
                      char *dst, Py_ssize_t a, Py_ssize_t b, int64_t cpre);

/* Hand one finished output band of level i to what follows: the next level, or the output. */
static void FN(consume)(const job_t *J, tbuf_t *T, int i, Py_ssize_t o, const B_T *band,
                        char *dst, int64_t cpre)
{
    const axis_t *A = &J->ax[i];
    int64_t c = cpre * (A->cnt ? A->cnt[o] : A->kcount);
    char *d = dst + o * A->d_sn;
    if (i == J->m - 1) {
        FN(finish)(J, band, 1, A->G, 0, d, 0, A->d_sG, NULL, c);
        return;
    }
    const Py_ssize_t bw = J->tail[i + 1];
    for (Py_ssize_t g = 0; g < A->G; g++)
        FN(level)(J, T, i + 1, NULL, band + g * bw, d + g * A->d_sG, 0, J->ax[i + 1].out, c);
}

/* Band mode, one output at a time in numpy's order: taps j = 0..k-1 left to right. */
static void FN(band_direct)(const job_t *J, tbuf_t *T, int i, const FN(input_t) *in,
                            char *dst, Py_ssize_t a, Py_ssize_t b, int64_t cpre)
{
    const axis_t *A = &J->ax[i];
    B_T *out = (B_T *)T->lv[i].buf[0];
    for (Py_ssize_t o = a; o < b; o++) {
        Py_ssize_t t0 = o * A->s - A->p;
        int have = 0, pad = 0;
        for (Py_ssize_t j = 0; j < A->k; j++) {
            Py_ssize_t t = t0 + j * A->d;
            if (t < 0 || t >= A->n) { pad = 1; continue; }
            if (!have) FN(s_copy)(in, out, t); else FN(s_comb)(in, out, t);
            have = 1;
        }
        if (!have) FN(fill)(out, in->width);
#if IS_FSUM
        else if (pad) FN(addzero)(out, in->width);
#endif
        (void)pad;
        FN(consume)(J, T, i, o, out, dst, cpre);
    }
}

/* Band mode, adaptive windows [ast[o], aen[o]) (never empty, never padding), taps in order as
 * numpy_backend._adaptive_1d adds them. */
static void FN(band_adapt)(const job_t *J, tbuf_t *T, int i, const FN(input_t) *in,
                           char *dst, Py_ssize_t a, Py_ssize_t b, int64_t cpre)
{
    const axis_t *A = &J->ax[i];
    B_T *out = (B_T *)T->lv[i].buf[0];
    for (Py_ssize_t o = a; o < b; o++) {
        FN(s_copy)(in, out, A->ast[o]);
        for (Py_ssize_t t = A->ast[o] + 1; t < A->aen[o]; t++) FN(s_comb)(in, out, t);
        FN(consume)(J, T, i, o, out, dst, cpre);
    }
}

#if IS_FSUM
/* level(L, t) of numpy's doubling scheme for one window, into out; 0 when only padding. */
static int FN(tree_node)(const FN(input_t) *in, const axis_t *A, B_T **tmp, int L, Py_ssize_t t,
                         B_T *out)
{
    if (L == 0) {
        if (t < 0 || t >= A->n) return 0;
        FN(s_copy)(in, out, t);
        return 1;
    }
    Py_ssize_t h = ((Py_ssize_t)1 << (L - 1)) * A->d;
    int ha = FN(tree_node)(in, A, tmp, L - 1, t, out);
    int hb = FN(tree_node)(in, A, tmp, L - 1, t + h, tmp[L]);
    if (ha && hb) FN(comb)(out, tmp[L], in->width);
    else if (hb) memcpy(out, tmp[L], (size_t)in->width * sizeof(B_T));
    return ha | hb;
}

static void FN(band_tree)(const job_t *J, tbuf_t *T, int i, const FN(input_t) *in,
                          char *dst, Py_ssize_t a, Py_ssize_t b, int64_t cpre)
{
    const axis_t *A = &J->ax[i];
    B_T *out = (B_T *)T->lv[i].buf[0];
    B_T *part = (B_T *)T->lv[i].buf[1];
    B_T *tmp[64];
    for (int L = 1; L < 64 && L + 1 < T->lv[i].nbuf; L++) tmp[L] = (B_T *)T->lv[i].buf[L + 1];
    for (Py_ssize_t o = a; o < b; o++) {
        Py_ssize_t t0 = o * A->s - A->p;
        Py_ssize_t off = 0, width = 1;
        int have = 0, L = 0;
        while (width <= A->k) {
            if (A->k & width) {
                int hp = FN(tree_node)(in, A, tmp, L, t0 + off * A->d, have ? part : out);
                if (have && hp) FN(comb)(out, part, in->width);
                have |= hp;
                off += width;
            }
            width *= 2;
            L++;
        }
        int pad = t0 < 0 || t0 + (A->k - 1) * A->d >= A->n;
        if (!have) FN(fill)(out, in->width);
        else if (pad) FN(addzero)(out, in->width);
        FN(consume)(J, T, i, o, out, dst, cpre);
    }
}
#endif

/* Band mode, van Herk / Gil-Werman streaming over whole bands (dilation 1): for each block of
 * k positions, the suffixes that start a window are kept (at most ceil(k/s) bands), then the
 * prefixes of the next block are run forward and each window leaves as suffix op prefix.
 * About two band ops per input position and one per output, whatever k. */
static void FN(band_gw)(const job_t *J, tbuf_t *T, int i, const FN(input_t) *in, char *dst,
                        Py_ssize_t a, Py_ssize_t b, int64_t cpre)
{
    const axis_t *A = &J->ax[i];
    const Py_ssize_t k = A->k, s = A->s, n = A->n, W = in->width;
    B_T **buf = (B_T **)T->lv[i].buf;
    B_T *out = buf[0], *tmp0 = buf[1], *tmp1 = buf[2];
    B_T **slot = buf + 3;
    B_T **sp = (B_T **)T->lv[i].ptrs;
    Py_ssize_t o = a;
    while (o < b) {
        const Py_ssize_t blk = (o * s) / k;
        const Py_ssize_t B0 = blk * k - A->p; /* block start, input coordinates */
        Py_ssize_t oe = o;
        while (oe < b && (oe * s) / k == blk) oe++;
        const Py_ssize_t nw = oe - o;
        /* backward: the suffix over [B0 + r, B0 + k) for each window offset r */
        B_T *cur = NULL;
        Py_ssize_t w = nw - 1;
        for (Py_ssize_t t = B0 + k - 1; w >= 0; t--) {
            const int target = (t == B0 + (o + w) * s - blk * k);
            if (t >= 0 && t < n) {
                B_T *nb = target ? slot[w] : (cur == tmp0 ? tmp1 : tmp0);
                if (cur) FN(s_comb3)(in, nb, cur, t); else FN(s_copy)(in, nb, t);
                cur = nb;
            } else if (target && cur && (cur == tmp0 || cur == tmp1)) {
                memcpy(slot[w], cur, (size_t)W * sizeof(B_T));
                cur = slot[w];
            }
            if (target) sp[w--] = cur;
        }
        /* forward: the prefix over [B0 + k, B0 + k + r); window = suffix op prefix */
        Py_ssize_t wi = 0;
        if (o * s - blk * k == 0) {
            if (sp[0]) FN(consume)(J, T, i, o, sp[0], dst, cpre);
            else { FN(fill)(out, W); FN(consume)(J, T, i, o, out, dst, cpre); }
            wi = 1;
        }
        cur = NULL;
        for (Py_ssize_t t = B0 + k; wi < nw; t++) {
            if (t >= 0 && t < n) {
                B_T *nb = cur == tmp0 ? tmp1 : tmp0;
                if (cur) FN(s_comb3)(in, nb, cur, t); else FN(s_copy)(in, nb, t);
                cur = nb;
            }
            if (t == B0 + k + (o + wi) * s - blk * k - 1) {
                B_T *sw = sp[wi];
                if (sw && cur) { FN(comb3)(out, sw, cur, W); FN(consume)(J, T, i, o + wi, out, dst, cpre); }
                else if (sw) FN(consume)(J, T, i, o + wi, sw, dst, cpre);
                else if (cur) FN(consume)(J, T, i, o + wi, cur, dst, cpre);
                else { FN(fill)(out, W); FN(consume)(J, T, i, o + wi, out, dst, cpre); }
                wi++;
            }
        }
        o = oe;
    }
}

/* Line mode (last axis, few values per position): gather or read padded lines, run the line
 * kernel segment by segment, finish into dst. */
static void FN(line_level)(const job_t *J, tbuf_t *T, int i, const char *src, const B_T *band,
                           char *dst, Py_ssize_t a, Py_ssize_t b, int64_t cpre)
{
    const axis_t *A = &J->ax[i];
    const Py_ssize_t I = A->G, span = A->d * (A->k - 1) + 1;
    B_T **buf = (B_T **)T->lv[i].buf;
    B_T *res = buf[0], *t1 = buf[1], *t2 = buf[2], *xb = buf[3];
    for (Py_ssize_t sg = 0; sg < A->nseg; sg++) {
        Py_ssize_t s0 = A->seg[sg][0] > a ? A->seg[sg][0] : a;
        Py_ssize_t s1 = A->seg[sg][1] < b ? A->seg[sg][1] : b;
        int strat = (int)A->seg[sg][2];
        for (Py_ssize_t c0 = s0; c0 < s1;) {
            Py_ssize_t c1 = band ? s1 : (c0 + T->chunk < s1 ? c0 + T->chunk : s1);
            const B_T *x;
            Py_ssize_t ub;
            if (band) {
                x = band;
                ub = 0;
            } else if (strat == ST_ADAPT) {
                ub = A->ast[c0];
                FN(gather)(J, src, ub, A->aen[c1 - 1], xb);
                x = xb;
            } else {
                ub = c0 * A->s;
                FN(gather)(J, src, ub, (c1 - 1) * A->s + span, xb);
                x = xb;
            }
            if (strat == ST_ADAPT) FN(line_adapt)(x, ub, I, A->ast, A->aen, c0, c1, res);
            else FN(line_run)(A, strat, x, ub, c0, c1, res, t1, t2);
            const void *cn = NULL;
#if B_INT
            if (A->cnt) cn = A->cnt + c0;
#else
            if (A->cnt) cn = A->dcnt + c0;
#endif
            FN(finish)(J, res, c1 - c0, I, I, dst + c0 * A->d_sn, A->d_sn, A->d_sG, cn,
                       A->cnt ? cpre : cpre * A->kcount);
            c0 = c1;
        }
    }
}

static void FN(band_range)(const job_t *J, tbuf_t *T, int i, const FN(input_t) *in, char *dst,
                           Py_ssize_t a, Py_ssize_t b, int64_t cpre)
{
    const axis_t *A = &J->ax[i];
    for (Py_ssize_t sg = 0; sg < A->nseg; sg++) {
        Py_ssize_t s0 = A->seg[sg][0] > a ? A->seg[sg][0] : a;
        Py_ssize_t s1 = A->seg[sg][1] < b ? A->seg[sg][1] : b;
        if (s0 >= s1) continue;
        switch ((int)A->seg[sg][2]) {
#if IS_FSUM
        case ST_TREE: FN(band_tree)(J, T, i, in, dst, s0, s1, cpre); break;
#endif
        case ST_GW: FN(band_gw)(J, T, i, in, dst, s0, s1, cpre); break;
        case ST_ADAPT: FN(band_adapt)(J, T, i, in, dst, s0, s1, cpre); break;
        default: FN(band_direct)(J, T, i, in, dst, s0, s1, cpre); break;
        }
    }
}

static void FN(level)(const job_t *J, tbuf_t *T, int i, const char *src, const B_T *band,
                      char *dst, Py_ssize_t a, Py_ssize_t b, int64_t cpre)
{
    const axis_t *A = &J->ax[i];
    if (i == J->m - 1 && J->last_line) {
        FN(line_level)(J, T, i, src, band, dst, a, b, cpre);
        return;
    }
    FN(input_t) in;
    in.pexp = J->pexp;
    in.width = (i == J->m - 1) ? A->G : A->G * J->tail[i + 1];
    if (src) {
        in.src = src;
        in.src_sn = A->s_sn;
        in.plan = &J->plan;
        in.band = NULL;
        in.band_sn = in.band_off = 0;
    } else {
        in.src = NULL;
        in.src_sn = 0;
        in.plan = NULL;
        in.band = band;
        in.band_sn = in.width;
        in.band_off = (i == J->m - 1) ? A->p * A->G : 0;
    }
    if (i == 0 && J->hot) {
        /* rows whose windows lie inside the input go to the fused kernel */
        Py_ssize_t lo = a > J->hot_lo ? a : J->hot_lo, hi = b < J->hot_hi ? b : J->hot_hi;
        if (lo < hi) {
            FN(band_range)(J, T, i, &in, dst, a, lo, cpre);
            J->hot(J, T, src, dst, lo, hi);
            FN(band_range)(J, T, i, &in, dst, hi, b, cpre);
            return;
        }
    }
    FN(band_range)(J, T, i, &in, dst, a, b, cpre);
}

/* Outputs [a, b) of the first pooled axis at one outer index. */
static void FN(run_unit)(const job_t *J, tbuf_t *T, Py_ssize_t outer, Py_ssize_t a, Py_ssize_t b)
{
    FN(level)(J, T, 0, J->src + outer * J->s_sO, NULL, J->dst + outer * J->d_sO, a, b, 1);
}

static void FN(init_bufs)(const job_t *J, tbuf_t *T)
{
    for (int i = 0; i < J->m; i++)
        for (int j = 0; j < T->lv[i].nbuf; j++)
            FN(fill)((B_T *)T->lv[i].buf[j], T->lv[i].bsize);
}

#undef FN
#undef SUF
#undef IN_T
#undef B_T
#undef LOADX
#undef OPX
#undef IDENT
#undef IS_FSUM
#undef B_INT
#undef B_SIGNED
#undef FAM
#undef IN_F16
