/* Fused kernels for the hottest case: uint8 images, rows x pixels x C channels (C = 1, 3, 4),
 * 2x2 and 3x3 windows at stride 2 on both axes (any padding, ceil_mode, count_include_pad):
 * max, min and avg with exact rounding (round half up: the sums are non-negative).
 * Input pixels are P bytes apart: P = C, or P = 4 for C = 3 (RGBX: Pillow's RGB storage seen
 * as an (h, w, 3) view without a copy); the output is always contiguous, pixels C bytes apart.
 *
 * The generic engine would reduce two rows into a band of int64 sums and then run the pixel
 * axis; here each output row is made in one go from its k input rows, in bytes:
 *   - "candidates": for every byte i of a row, the op over the k x k window whose first tap is
 *     i (loads at i, i + P, i + 2P from each row), computed for 32 bytes at once;
 *   - only the candidates where a window starts (every other pixel) are kept: a byte shuffle
 *     per 16-byte lane packs them (for RGBX also dropping the pad byte's candidate), and
 *     overlapping stores lay the lanes end to end.
 * 2x2 avg stays in bytes with pavgb: floor((a+b+c+d+2)/4) = pavg(pavg(a,b), pavg(c,d)) minus
 * a carry bit ((a^b | c^d) & (x^y) & 1), exact for all inputs. 3x3 avg sums in uint16 and
 * divides by 9 as floor((2*sum+9)/18) = mulhi(2*sum+9, 3641), exact for sums <= 9*255.
 * Only rows whose windows lie inside the input come here (J->hot_lo..hot_hi). A row's last
 * pixels take one more vector block, started early enough that its loads stay in the row,
 * into scratch; the columns at the edges (padding, ceil_mode overhang) take the scalar path,
 * which is also the whole kernel on CPUs without AVX2. The byte shuffles are made once per
 * call (hot_select), not per row.
 */

enum { HOT_MAX = 0, HOT_MIN = 1, HOT_AVG = 2 };

static size_t hot_scratch_bytes(const job_t *J)
{
    (void)J;
    return 0;
}

/* Input pixel stride in bytes (P above). */
static inline Py_ssize_t hot_P(const job_t *J) { return J->ax[1].s_sn; }

/* One output pixel (all C channels) of an interior row, any column: the scalar reference. */
static inline void hot_px(const job_t *J, const uint8_t *const *rows, uint8_t *out,
                          Py_ssize_t o0, Py_ssize_t j)
{
    const axis_t *A0 = &J->ax[0], *A1 = &J->ax[1];
    const int k = (int)A1->k, kr = (int)A0->k, C = (int)A1->G, op = J->hot_variant;
    const Py_ssize_t t0 = j * A1->s - A1->p, n = A1->n, P = hot_P(J);
    for (int c = 0; c < C; c++) {
        unsigned acc = op == HOT_MIN ? 255u : 0u;
        for (int r = 0; r < kr; r++) {
            const uint8_t *row = rows[r];
            for (int q = 0; q < k; q++) {
                Py_ssize_t t = t0 + q;
                if (t < 0 || t >= n) continue;
                unsigned v = row[t * P + c];
                if (op == HOT_MAX) acc = v > acc ? v : acc;
                else if (op == HOT_MIN) acc = v < acc ? v : acc;
                else acc += v;
            }
        }
        if (op == HOT_AVG) {
            int64_t cnt = (A0->cnt ? A0->cnt[o0] : A0->kcount) *
                          (A1->cnt ? A1->cnt[j] : A1->kcount);
            if (cnt < 1) cnt = 1;
            acc = (unsigned)((acc + (uint64_t)(cnt / 2)) / (uint64_t)cnt);
        }
        out[j * C + c] = (uint8_t)acc;
    }
}

#if PC_HAVE_AVX2
#define PC_AVX2_FN __attribute__((target("avx2")))

/* pshufb mask keeping, in a 16-byte lane starting at candidate q0, the channel bytes of the
 * pixels that start a window ((q0 + b) mod 2P < C: every other input pixel, not the pad byte
 * of RGBX), packed low; returns how many. */
static int hot_lane_mask(int q0, int C, int P, uint8_t mask[16])
{
    int n = 0;
    for (int b = 0; b < 16; b++)
        if ((q0 + b) % (2 * P) < C) mask[n++] = (uint8_t)b;
    for (int b = n; b < 16; b++) mask[b] = 0x80;
    return n;
}

PC_AVX2_FN static inline __m256i hot_ld(const uint8_t *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* 32 candidates at byte offset i: the op over the k x k window starting at each byte (taps
 * P bytes apart). Reads bytes [i, i + (k - 1) * P + 32) of each row. */
PC_AVX2_FN static inline __m256i hot_cand(const uint8_t *const *rows, Py_ssize_t i, int k, int P,
                                         int op)
{
    if (op == HOT_AVG) {
        if (k == 2) {
            const __m256i a = hot_ld(rows[0] + i), b = hot_ld(rows[1] + i);
            const __m256i c = hot_ld(rows[0] + i + P), d = hot_ld(rows[1] + i + P);
            const __m256i x = _mm256_avg_epu8(a, b), y = _mm256_avg_epu8(c, d);
            const __m256i e = _mm256_or_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
            const __m256i fix = _mm256_and_si256(_mm256_and_si256(e, _mm256_xor_si256(x, y)),
                                                 _mm256_set1_epi8(1));
            return _mm256_sub_epi8(_mm256_avg_epu8(x, y), fix);
        }
        __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
        for (int r = 0; r < 3; r++)
            for (int q = 0; q < 3; q++) {
                const uint8_t *p = rows[r] + i + q * P;
                lo = _mm256_add_epi16(lo, _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)p)));
                hi = _mm256_add_epi16(hi, _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(p + 16))));
            }
        const __m256i nine = _mm256_set1_epi16(9), magic = _mm256_set1_epi16(3641);
        lo = _mm256_mulhi_epu16(_mm256_add_epi16(_mm256_add_epi16(lo, lo), nine), magic);
        hi = _mm256_mulhi_epu16(_mm256_add_epi16(_mm256_add_epi16(hi, hi), nine), magic);
        return _mm256_permute4x64_epi64(_mm256_packus_epi16(lo, hi), 0xD8);
    }
    __m256i m = hot_ld(rows[0] + i);
    for (int r = 0; r < k; r++)
        for (int q = 0; q < k; q++) {
            if (r == 0 && q == 0) continue;
            const __m256i v = hot_ld(rows[r] + i + q * P);
            m = op == HOT_MAX ? _mm256_max_epu8(m, v) : _mm256_min_epu8(m, v);
        }
    return m;
}

/* Columns [j, chi) of one output row, as far as whole vectors reach; returns where it stopped. */
PC_AVX2_FN static Py_ssize_t hot_row_avx2(const job_t *J, const uint8_t *const *rows, uint8_t *out,
                                         Py_ssize_t j, Py_ssize_t chi)
{
    const axis_t *A1 = &J->ax[1];
    const int k = (int)A1->k, C = (int)A1->G, P = (int)hot_P(J), op = J->hot_variant;
    /* a row ends with the last pixel's C bytes: RGBX's last pad byte may not be there */
    const Py_ssize_t p = A1->p, row_bytes = (A1->n - 1) * P + C, out_bytes = A1->out * C;
    /* vectors per iteration, so that the lane pattern (period 2P) starts over at each: 96
     * candidate bytes for P = 3, 32 otherwise; each vector keeps 16 bytes of output when
     * P = C, 12 for RGBX (3 of every 8 candidates) */
    const int nv = P == 3 ? 3 : 1, cand = 32 * nv, outs = cand / (2 * P);
    const int *cnt = J->hot_kept;
    __m256i masks[3];
    for (int v = 0; v < nv; v++)
        masks[v] = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)J->hot_mask[2 * v])),
            _mm_loadu_si128((const __m128i *)J->hot_mask[2 * v + 1]), 1);
    /* outs pixels from pixel j into o: loads at candidate (2 j - p) P, 16-byte stores that
     * overlap and reach up to 16 bytes past the outs * C kept */
#define HOT_BLOCK(o_)                                                                      \
    do {                                                                                   \
        const Py_ssize_t i_ = (2 * j - p) * P; /* first candidate: the window of pixel j */ \
        uint8_t *o = (o_);                                                                 \
        for (int v = 0; v < nv; v++) {                                                    \
            const __m256i h =                                                              \
                _mm256_shuffle_epi8(hot_cand(rows, i_ + 32 * v, k, P, op), masks[v]);      \
            _mm_storeu_si128((__m128i *)o, _mm256_castsi256_si128(h));                     \
            o += cnt[2 * v];                                                               \
            _mm_storeu_si128((__m128i *)o, _mm256_extracti128_si256(h, 1));                \
            o += cnt[2 * v + 1];                                                           \
        }                                                                                  \
    } while (0)
    /* loads stay inside the row: a block may start at pixel jmax at the latest (its last load
     * ends at the row's last byte); stores stay inside the output row */
    const Py_ssize_t last_load = row_bytes - cand - (k - 1) * P; /* largest first candidate */
    if (last_load < 0) return j;
    const Py_ssize_t jmax = (last_load / P + p) / 2;
    for (; j + outs <= chi && j <= jmax && j * C + outs * C + 16 <= out_bytes; j += outs)
        HOT_BLOCK(out + j * C);
    /* The row's last pixels: one more block, started early enough that its loads stay in the
     * row, into a scratch buffer; the pixels from j on are copied out (fewer than outs). */
    if (j < chi) {
        const Py_ssize_t jt = j;
        j = chi - outs < jmax ? chi - outs : jmax;
        if (j <= jt && j + outs > jt && 2 * j >= p) {
            uint8_t tmp[16 * 6 + 16];
            HOT_BLOCK(tmp);
            const Py_ssize_t stop = j + outs < chi ? j + outs : chi;
            memcpy(out + jt * C, tmp + (jt - j) * C, (size_t)((stop - jt) * C));
            return stop;
        }
        j = jt;
    }
#undef HOT_BLOCK
    return j;
}
#endif

/* Output rows [o0, o1) of axis 0 (all inside the input), every column. */
static void hot_rows_u8(const job_t *J, tbuf_t *T, const char *src, char *dst, Py_ssize_t o0,
                        Py_ssize_t o1)
{
    (void)T;
    const axis_t *A0 = &J->ax[0], *A1 = &J->ax[1];
    /* columns whose windows lie inside the row */
    const Py_ssize_t s = A1->s, span = A1->k;
    Py_ssize_t clo = (A1->p + s - 1) / s;
    Py_ssize_t chi = A1->n - span + A1->p >= 0 ? (A1->n - span + A1->p) / s + 1 : 0;
    if (chi > A1->out) chi = A1->out;
    if (chi < clo) chi = clo;
    for (Py_ssize_t o = o0; o < o1; o++) {
        const uint8_t *rows[3];
        for (Py_ssize_t r = 0; r < A0->k; r++)
            rows[r] = (const uint8_t *)src + (o * A0->s - A0->p + r) * A0->s_sn;
        uint8_t *out = (uint8_t *)dst + o * A0->d_sn;
        Py_ssize_t j = clo;
#if PC_HAVE_AVX2
        if (pc_use_avx2) j = hot_row_avx2(J, rows, out, clo, chi);
#endif
        for (Py_ssize_t c = 0; c < clo; c++) hot_px(J, rows, out, o, c);
        for (; j < A1->out; j++) hot_px(J, rows, out, o, j);
    }
}

/* Use the fused kernel when the job is exactly its case. */
static void hot_select(job_t *J)
{
    J->hot = NULL;
    if (J->m != 2 || !J->last_line || J->in_type != DT_U1 || J->out_type != DT_U1) return;
    int op;
    if (J->kind == K_MAX && J->fin == FIN_STORE) op = HOT_MAX;
    else if (J->kind == K_MIN && J->fin == FIN_STORE) op = HOT_MIN;
    else if (J->kind == K_SUM && J->fin == FIN_AVG) op = HOT_AVG;
    else return;
    const axis_t *A0 = &J->ax[0], *A1 = &J->ax[1];
    const Py_ssize_t C = A1->G;
    if (A0->G != 1 || !(C == 1 || C == 3 || C == 4) || A0->ast || A1->ast) return;
    if (A0->k != A1->k || (A0->k != 2 && A0->k != 3)) return;
    if (A0->s != 2 || A1->s != 2 || A0->d != 1 || A1->d != 1) return;
    /* channels adjacent; input pixels C bytes apart, or 4 for RGB (RGBX storage); the output
     * contiguous */
    const Py_ssize_t P = A1->s_sn;
    if (A1->s_sG != 1 || !(P == C || (C == 3 && P == 4)) || A1->d_sG != 1 || A1->d_sn != C)
        return;
    J->hot_variant = op;
    J->hot = hot_rows_u8;
#if PC_HAVE_AVX2
    for (int l = 0; l < 6; l++)
        J->hot_kept[l] = hot_lane_mask(16 * l, (int)C, (int)P, J->hot_mask[l]);
#endif
    J->hot_lo = (A0->p + A0->s - 1) / A0->s;
    /* last window start that fits: n - k (windows start at o*s - p); none fit when n < k */
    J->hot_hi = A0->n - A0->k + A0->p >= 0 ? (A0->n - A0->k + A0->p) / A0->s + 1 : 0;
    if (J->hot_hi > A0->out) J->hot_hi = A0->out;
}
