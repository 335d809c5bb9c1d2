/* attention.c's self-attention over packed sequences with 16 lanes (AVX-512), head sizes that
 * are multiples of 16.
 *
 * Why a second kernel: on the AVX-512 CPUs here (Zen 5) 512-bit FMAs run at full width, and in
 * a bf16 encode attention was the largest piece after the GEMMs (~12% of its CPU time) while
 * running 8 lanes. Same algorithm and float32 arithmetic as attention.c, so the same bound
 * (kernels.ATTENTION_ERROR); only the blocking differs:
 *   scores   up to QB = 8 queries x 32 keys per step (16 accumulators), over the head dimension
 *   softmax  each query's row, 16 keys per vector, the keys past L masked in registers
 *   outputs  the same <= 8 queries x 32 output dims per step, over the keys
 * A block of fewer than 8 queries (a sequence's last) runs an instance compiled for exactly that
 * many rows, so short sequences do no work for rows they do not have.
 * The projection is read as float32 or bfloat16 (converted as loaded), and the output written as
 * float32 or bfloat16 (rounded once to nearest even, vcvtneps2bf16) independently: a bf16 GEMM
 * after attention takes its bf16 output as it is, with no conversion pass between them.
 */
#include "simd512.h"

#ifdef SEQENC_X86
#define QB 8

/* 16 values of the projection from element index i, as float32. */
AVX512BF16 static inline __m512 load_in(const Problem *pr, int64_t i) {
    return pr->qkv16 ? load_bf16(pr->qkv16 + i) : _mm512_loadu_ps(pr->qkv + i);
}

/* 16 output values at element index i, in the output's dtype. */
AVX512BF16 static inline void store_out(const Problem *pr, int64_t i, __m512 v) {
    if (pr->out16)
        store_bf16(pr->out16 + i, v);
    else
        _mm512_storeu_ps(pr->out + i, v);
}

/* p[r][0:Lp] = q_r . kt[:, j] for rows r < rows (q: rows x hd, kt: hd x Lp, Lp % 16 == 0);
 * always inlined with a constant `rows` so the accumulators stay in registers. */
__attribute__((always_inline)) AVX512 static inline void scores(
    const float *q, int64_t hd, const float *kt, int64_t Lp, float *p, const int rows) {
    int64_t j = 0;
    for (; j + 32 <= Lp; j += 32) {
        __m512 a[QB][2];
        for (int r = 0; r < rows; r++) a[r][0] = a[r][1] = _mm512_setzero_ps();
        for (int64_t d = 0; d < hd; d++) {
            const __m512 k0 = _mm512_load_ps(kt + d * Lp + j);
            const __m512 k1 = _mm512_load_ps(kt + d * Lp + j + 16);
            for (int r = 0; r < rows; r++) {
                const __m512 x = _mm512_set1_ps(q[r * hd + d]);
                a[r][0] = _mm512_fmadd_ps(x, k0, a[r][0]);
                a[r][1] = _mm512_fmadd_ps(x, k1, a[r][1]);
            }
        }
        for (int r = 0; r < rows; r++) {
            _mm512_store_ps(p + r * Lp + j, a[r][0]);
            _mm512_store_ps(p + r * Lp + j + 16, a[r][1]);
        }
    }
    if (j < Lp) {  /* the last 16 keys */
        __m512 a[QB];
        for (int r = 0; r < rows; r++) a[r] = _mm512_setzero_ps();
        for (int64_t d = 0; d < hd; d++) {
            const __m512 k = _mm512_load_ps(kt + d * Lp + j);
            for (int r = 0; r < rows; r++)
                a[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r * hd + d]), k, a[r]);
        }
        for (int r = 0; r < rows; r++) _mm512_store_ps(p + r * Lp + j, a[r]);
    }
}

/* Each row of p[r][0:L] -> exp(p - its max) in place, zeros in [L, Lp); inv[r] = 1 / their
 * sum. The keys past L are masked in registers (their scores are the zero keys' 0, not -inf). */
AVX512 static void softmax_numerators(float *p, int64_t L, int64_t Lp, int rows, float *inv) {
    const int64_t last = Lp - 16;
    const __mmask16 valid = (__mmask16)((1u << (L - last)) - 1u);  /* 1 <= L - last <= 16 */
    const __m512 lowest = _mm512_set1_ps(-INFINITY);
    for (int r = 0; r < rows; r++) {
        float *row = p + r * Lp;
        __m512 m = _mm512_mask_load_ps(lowest, valid, row + last);
        for (int64_t j = 0; j < last; j += 16) m = _mm512_max_ps(m, _mm512_load_ps(row + j));
        const __m512 top = _mm512_set1_ps(_mm512_reduce_max_ps(m));
        __m512 sum = _mm512_setzero_ps();
        for (int64_t j = 0; j < last; j += 16) {
            const __m512 e = exp512(_mm512_sub_ps(_mm512_load_ps(row + j), top));
            _mm512_store_ps(row + j, e);
            sum = _mm512_add_ps(sum, e);
        }
        const __m512 e = _mm512_maskz_mov_ps(valid,
                                             exp512(_mm512_sub_ps(_mm512_load_ps(row + last), top)));
        _mm512_store_ps(row + last, e);
        inv[r] = 1.0f / _mm512_reduce_add_ps(_mm512_add_ps(sum, e));
    }
}

/* out[r] = (sum_j p[r][j] v[j]) inv[r] + v_bias for rows r < rows, stored from element dst
 * (rows D apart); v: L rows vstride apart; hd % 16 == 0. Constant `rows`, as in scores(). */
__attribute__((always_inline)) AVX512BF16 static inline void outputs(
    const Problem *pr, const float *p, int64_t Lp, int64_t L, const float *v, int64_t vstride,
    const float *inv, const float *v_bias, int64_t dst, const int rows) {
    const int64_t hd = pr->hd, D = pr->D;
    int64_t d0 = 0;
    for (; d0 + 32 <= hd; d0 += 32) {
        __m512 o[QB][2];
        for (int r = 0; r < rows; r++) o[r][0] = o[r][1] = _mm512_setzero_ps();
        for (int64_t j = 0; j < L; j++) {
            const __m512 x0 = _mm512_loadu_ps(v + j * vstride + d0);
            const __m512 x1 = _mm512_loadu_ps(v + j * vstride + d0 + 16);
            for (int r = 0; r < rows; r++) {
                const __m512 b = _mm512_set1_ps(p[r * Lp + j]);
                o[r][0] = _mm512_fmadd_ps(b, x0, o[r][0]);
                o[r][1] = _mm512_fmadd_ps(b, x1, o[r][1]);
            }
        }
        const __m512 c0 = _mm512_loadu_ps(v_bias + d0), c1 = _mm512_loadu_ps(v_bias + d0 + 16);
        for (int r = 0; r < rows; r++) {
            const __m512 n = _mm512_set1_ps(inv[r]);
            store_out(pr, dst + r * D + d0, _mm512_fmadd_ps(o[r][0], n, c0));
            store_out(pr, dst + r * D + d0 + 16, _mm512_fmadd_ps(o[r][1], n, c1));
        }
    }
    if (d0 < hd) {  /* the last 16 dims */
        __m512 o[QB];
        for (int r = 0; r < rows; r++) o[r] = _mm512_setzero_ps();
        for (int64_t j = 0; j < L; j++) {
            const __m512 x = _mm512_loadu_ps(v + j * vstride + d0);
            for (int r = 0; r < rows; r++)
                o[r] = _mm512_fmadd_ps(_mm512_set1_ps(p[r * Lp + j]), x, o[r]);
        }
        const __m512 c = _mm512_loadu_ps(v_bias + d0);
        for (int r = 0; r < rows; r++)
            store_out(pr, dst + r * D + d0, _mm512_fmadd_ps(o[r], _mm512_set1_ps(inv[r]), c));
    }
}

/* One block of `rows` queries: scores, softmax, outputs. */
__attribute__((always_inline)) AVX512BF16 static inline void block(
    const Problem *pr, const float *q, const float *kt, float *p, int64_t L, int64_t Lp,
    const float *v, int64_t vstride, const float *v_bias, int64_t dst, const int rows) {
    float inv[QB];
    scores(q, pr->hd, kt, Lp, p, rows);
    softmax_numerators(p, L, Lp, rows, inv);
    outputs(pr, p, Lp, L, v, vstride, inv, v_bias, dst, rows);
}

AVX512BF16 static void block_any(const Problem *pr, const float *q, const float *kt, float *p,
                                 int64_t L, int64_t Lp, const float *v, int64_t vstride,
                                 const float *v_bias, int64_t dst, int rows) {
#define BLOCK(ROWS) block(pr, q, kt, p, L, Lp, v, vstride, v_bias, dst, ROWS); break
    switch (rows) {
        case 8: BLOCK(8);
        case 7: BLOCK(7);
        case 6: BLOCK(6);
        case 5: BLOCK(5);
        case 4: BLOCK(4);
        case 3: BLOCK(3);
        case 2: BLOCK(2);
        default: BLOCK(1);
    }
#undef BLOCK
}

/* Per-thread scratch, float32: K^T (hd x Lp), scores (QB x Lp), queries (QB x hd), and the
 * values (Lp x hd) when the projection is bf16 (converted once, read by every query block). */
typedef struct {
    float *kt, *p, *q, *v;
} Scratch;

/* One (sequence, head): rows start .. start+L of the packed batch. */
AVX512BF16 static void attend_sequence512(const Problem *pr, int64_t start, int64_t L,
                                          int64_t head, const Scratch *s) {
    const int64_t D = pr->D, stride = 3 * D, hd = pr->hd, Lp = (L + 15) & ~(int64_t)15;
    const int64_t base = start * stride + head * hd;
    if (L == 0) return;
    /* K^T times the scale, 8 keys x 8 dims at a time (simd.h's transpose); keys past L are
     * zeros, written with vector stores (scalar ones would stall the vector loads after them) */
    const __m256 scale = _mm256_set1_ps(pr->scale);
    for (int64_t j = 0; j < Lp; j += 8)
        for (int64_t d = 0; d < hd; d += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++) {
                const int64_t at = base + (j + i) * stride + D + d;
                r[i] = j + i >= L ? _mm256_setzero_ps()
                       : pr->qkv16 ? load_bf16x8(pr->qkv16 + at) : _mm256_loadu_ps(pr->qkv + at);
            }
            transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_store_ps(s->kt + (d + i) * Lp + j, _mm256_mul_ps(r[i], scale));
        }
    const float *v = pr->qkv16 ? s->v : pr->qkv + base + 2 * D;
    const int64_t vstride = pr->qkv16 ? hd : stride;
    if (pr->qkv16)
        for (int64_t j = 0; j < L; j++)
            for (int64_t d = 0; d < hd; d += 16)
                _mm512_storeu_ps(s->v + j * hd + d, load_bf16(pr->qkv16 + base + j * stride + 2 * D + d));
    const float *q_bias = pr->q_bias + head * hd, *v_bias = pr->v_bias + head * hd;
    for (int64_t i0 = 0; i0 < L; i0 += QB) {
        const int rows = (int)(L - i0 < QB ? L - i0 : QB);
        for (int r = 0; r < rows; r++)
            for (int64_t d = 0; d < hd; d += 16)
                _mm512_storeu_ps(s->q + r * hd + d,
                                 _mm512_add_ps(load_in(pr, base + (i0 + r) * stride + d),
                                               _mm512_loadu_ps(q_bias + d)));
        block_any(pr, s->q, s->kt, s->p, L, Lp, v, vstride, v_bias,
                  (start + i0) * D + head * hd, rows);
    }
}

/* attention.c's seqenc_varlen_attention with this kernel; pr->hd % 16 == 0, and a bf16 output
 * needs AVX512-BF16. Returns 0, -1 without scratch memory, -2 for spans outside the rows. */
int seqenc_varlen_attention512(const Problem *pr, const int64_t *starts, const int64_t *lengths,
                               int64_t n_seq, int64_t n_rows, int threads) {
    int64_t max_len = 0;
    for (int64_t i = 0; i < n_seq; i++) {
        if (starts[i] < 0 || lengths[i] < 0 || starts[i] > n_rows - lengths[i]) return -2;
        max_len = lengths[i] > max_len ? lengths[i] : max_len;
    }
    const int64_t pairs = n_seq * pr->n_heads, hd = pr->hd;
    const int64_t Lp = (max_len + 15) & ~(int64_t)15;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        const size_t floats = (size_t)(hd * Lp + QB * Lp + QB * hd + (pr->qkv16 ? Lp * hd : 0));
        float *buf = aligned_alloc(64, (floats * sizeof(float) + 63) & ~(size_t)63);
        if (buf == NULL) {
#pragma omp atomic write
            failed = 1;
        } else {
            const Scratch s = {buf, buf + hd * Lp, buf + hd * Lp + QB * Lp,
                               buf + hd * Lp + QB * Lp + QB * hd};
            /* longest sequences first (the batches are length-sorted): dynamic balances */
#pragma omp for schedule(dynamic, 4)
            for (int64_t p = 0; p < pairs; p++)
                attend_sequence512(pr, starts[p / pr->n_heads], lengths[p / pr->n_heads],
                                   p % pr->n_heads, &s);
            free(buf);
        }
    }
    return failed ? -1 : 0;
}
#endif
