/* Self-attention over sequences packed back to back.
 *
 * PyTorch has no CPU kernel that attends over sequences packed back to back, so without
 * this one a packed batch is gathered into a padded (B*H, T, hd) layout and back, and the
 * attention itself runs as three small matmuls per chunk of heads. Here each (sequence, head)
 * pair reads its queries, keys and values straight from the packed (N, 3D) projection and
 * writes its (L, hd) output straight into the packed (N, D) result: no gathers, no padding,
 * no mask. Registers hold 4 queries x 16 keys of scores, then 2 queries x 32 output dims.
 * A bfloat16 projection is read as float32 as it is loaded (its values at each (sequence, head)
 * converted once into scratch) and the output rounded to bfloat16 once as it is stored, so a bf16
 * encoder needs no conversion passes around attention.
 */
#include "simd.h"

#ifdef SEQENC_X86
/* 8 values of the projection from element index i, as float32. */
AVX2 static inline __m256 load_qkv(const Problem *pr, int64_t i) {
    return pr->qkv16 ? load_bf16x8(pr->qkv16 + i) : _mm256_loadu_ps(pr->qkv + i);
}

/* 8 values of the output at element index i, in its dtype. */
AVX2 static inline void store_out(const Problem *pr, int64_t i, __m256 v) {
    if (pr->out16)
        store_bf16x8(pr->out16 + i, v);
    else
        _mm256_storeu_ps(pr->out + i, v);
}

/* Each of the 4 rows of scores[r][0:L] -> exp(scores - its max) in place, zeros in [L, Lp);
 * inv[r] = 1 / their sum. The four rows go through each step together so their dependency
 * chains (max, exp, sums) overlap. The lanes past L are masked in registers: scalar stores
 * there would stall the vector loads after them. */
AVX2 static void softmax_numerators4(float *scores[4], int64_t L, int64_t Lp, float inv[4]) {
    const int64_t last = Lp - 8;
    const __m256 valid = _mm256_castsi256_ps(_mm256_cmpgt_epi32(
        _mm256_set1_epi32((int)(L - last)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    const __m256 lowest = _mm256_set1_ps(-INFINITY);
    __m256 tail[4], m[4], top[4], sum[4];
    for (int r = 0; r < 4; r++) {
        tail[r] = _mm256_blendv_ps(lowest, _mm256_load_ps(scores[r] + last), valid);
        m[r] = tail[r];
    }
    for (int64_t j = 0; j < last; j += 8)
        for (int r = 0; r < 4; r++) m[r] = _mm256_max_ps(m[r], _mm256_load_ps(scores[r] + j));
    for (int r = 0; r < 4; r++) {
        top[r] = _mm256_set1_ps(horizontal_max(m[r]));
        sum[r] = _mm256_setzero_ps();
    }
    for (int64_t j = 0; j < last; j += 8)
        for (int r = 0; r < 4; r++) {
            __m256 e = exp256(_mm256_sub_ps(_mm256_load_ps(scores[r] + j), top[r]));
            _mm256_store_ps(scores[r] + j, e);
            sum[r] = _mm256_add_ps(sum[r], e);
        }
    for (int r = 0; r < 4; r++) {
        __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(tail[r], top[r])), valid);
        _mm256_store_ps(scores[r] + last, e);
        inv[r] = 1.0f / horizontal_sum(_mm256_add_ps(sum[r], e));
    }
}

/* Up to 4 output rows (i0 .. i0+nq) of one (sequence, head): its first q is at element base
 * of the projection, its first output row at element out_base of the output, its values at
 * v0 (rows vstride apart); the biases point at its head's; kt is its K^T times the scale,
 * (hd, Lp); qbuf has room for 4 x hd. */
AVX2 static void attend_rows(const Problem *pr, int64_t base, int64_t out_base,
                             const float *v0,
                             int64_t vstride, const float *kt, float *rows[4], float *qbuf,
                             int64_t i0, int64_t nq, int64_t L, int64_t Lp) {
    const int64_t D = pr->D, stride = 3 * D, hd = pr->hd;
    const float *q[4];
    for (int64_t r = 0; r < 4; r++) {
        const int64_t src = base + (i0 + (r < nq ? r : 0)) * stride;
        float *dst = qbuf + r * hd;
        for (int64_t d = 0; d < hd; d += 8)
            _mm256_storeu_ps(dst + d, _mm256_add_ps(load_qkv(pr, src + d),
                                                    _mm256_loadu_ps(pr->q_bias + d)));
        q[r] = dst;
    }
    float *s[4] = {rows[0], rows[1], rows[2], rows[3]};
    /* scores: 4 queries x 16 keys per step (8 independent accumulators keep both FMA units
     * busy through the FMA latency), accumulated over the head dimension */
    int64_t j = 0;
    for (; j + 16 <= Lp; j += 16) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;
        for (int64_t d = 0; d < hd; d++) {
            __m256 k0 = _mm256_load_ps(kt + d * Lp + j), k1 = _mm256_load_ps(kt + d * Lp + j + 8);
            __m256 x0 = _mm256_broadcast_ss(q[0] + d), x1 = _mm256_broadcast_ss(q[1] + d);
            __m256 x2 = _mm256_broadcast_ss(q[2] + d), x3 = _mm256_broadcast_ss(q[3] + d);
            a0 = _mm256_fmadd_ps(x0, k0, a0); b0 = _mm256_fmadd_ps(x0, k1, b0);
            a1 = _mm256_fmadd_ps(x1, k0, a1); b1 = _mm256_fmadd_ps(x1, k1, b1);
            a2 = _mm256_fmadd_ps(x2, k0, a2); b2 = _mm256_fmadd_ps(x2, k1, b2);
            a3 = _mm256_fmadd_ps(x3, k0, a3); b3 = _mm256_fmadd_ps(x3, k1, b3);
        }
        _mm256_store_ps(s[0] + j, a0); _mm256_store_ps(s[0] + j + 8, b0);
        _mm256_store_ps(s[1] + j, a1); _mm256_store_ps(s[1] + j + 8, b1);
        _mm256_store_ps(s[2] + j, a2); _mm256_store_ps(s[2] + j + 8, b2);
        _mm256_store_ps(s[3] + j, a3); _mm256_store_ps(s[3] + j + 8, b3);
    }
    if (j < Lp) {  /* the last 8 keys */
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t d = 0; d < hd; d++) {
            __m256 k = _mm256_load_ps(kt + d * Lp + j);
            a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q[0] + d), k, a0);
            a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(q[1] + d), k, a1);
            a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(q[2] + d), k, a2);
            a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(q[3] + d), k, a3);
        }
        _mm256_store_ps(s[0] + j, a0);
        _mm256_store_ps(s[1] + j, a1);
        _mm256_store_ps(s[2] + j, a2);
        _mm256_store_ps(s[3] + j, a3);
    }
    float inv[4];  /* rows past nq repeat row 0's query: computed, never stored */
    softmax_numerators4(s, L, Lp, inv);
    /* outputs: 2 queries x 32 dims per step (8 accumulators), accumulated over keys */
    for (int64_t r = 0; r < nq; r += 2) {
        const int pair = r + 1 < nq;
        const float *p0 = s[r], *p1 = s[pair ? r + 1 : r];
        const int64_t dst = out_base + (i0 + r) * D;
        for (int64_t d0 = 0; d0 < hd; d0 += 32) {
            if (hd - d0 >= 32) {
                __m256 o00 = _mm256_setzero_ps(), o01 = o00, o02 = o00, o03 = o00;
                __m256 o10 = o00, o11 = o00, o12 = o00, o13 = o00;
                for (int64_t j = 0; j < L; j++) {
                    const float *v = v0 + j * vstride + d0;
                    __m256 b0 = _mm256_broadcast_ss(p0 + j), b1 = _mm256_broadcast_ss(p1 + j);
                    __m256 x0 = _mm256_loadu_ps(v), x1 = _mm256_loadu_ps(v + 8);
                    __m256 x2 = _mm256_loadu_ps(v + 16), x3 = _mm256_loadu_ps(v + 24);
                    o00 = _mm256_fmadd_ps(b0, x0, o00); o10 = _mm256_fmadd_ps(b1, x0, o10);
                    o01 = _mm256_fmadd_ps(b0, x1, o01); o11 = _mm256_fmadd_ps(b1, x1, o11);
                    o02 = _mm256_fmadd_ps(b0, x2, o02); o12 = _mm256_fmadd_ps(b1, x2, o12);
                    o03 = _mm256_fmadd_ps(b0, x3, o03); o13 = _mm256_fmadd_ps(b1, x3, o13);
                }
                __m256 n0 = _mm256_set1_ps(inv[r]), n1 = _mm256_set1_ps(inv[pair ? r + 1 : r]);
                const float *vb = pr->v_bias + d0;
                __m256 c0 = _mm256_loadu_ps(vb), c1 = _mm256_loadu_ps(vb + 8);
                __m256 c2 = _mm256_loadu_ps(vb + 16), c3 = _mm256_loadu_ps(vb + 24);
                store_out(pr, dst + d0, _mm256_fmadd_ps(o00, n0, c0));
                store_out(pr, dst + d0 + 8, _mm256_fmadd_ps(o01, n0, c1));
                store_out(pr, dst + d0 + 16, _mm256_fmadd_ps(o02, n0, c2));
                store_out(pr, dst + d0 + 24, _mm256_fmadd_ps(o03, n0, c3));
                if (pair) {
                    store_out(pr, dst + D + d0, _mm256_fmadd_ps(o10, n1, c0));
                    store_out(pr, dst + D + d0 + 8, _mm256_fmadd_ps(o11, n1, c1));
                    store_out(pr, dst + D + d0 + 16, _mm256_fmadd_ps(o12, n1, c2));
                    store_out(pr, dst + D + d0 + 24, _mm256_fmadd_ps(o13, n1, c3));
                }
            } else {  /* a tail of 8, 16 or 24 dims: one vector at a time */
                for (int64_t d = d0; d < hd; d += 8) {
                    __m256 o0 = _mm256_setzero_ps(), o1 = o0;
                    for (int64_t j = 0; j < L; j++) {
                        __m256 x = _mm256_loadu_ps(v0 + j * vstride + d);
                        o0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p0 + j), x, o0);
                        o1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p1 + j), x, o1);
                    }
                    __m256 c = _mm256_loadu_ps(pr->v_bias + d);
                    store_out(pr, dst + d, _mm256_fmadd_ps(o0, _mm256_set1_ps(inv[r]), c));
                    if (pair)
                        store_out(pr, dst + D + d,
                                  _mm256_fmadd_ps(o1, _mm256_set1_ps(inv[r + 1]), c));
                }
            }
        }
    }
}

/* One (sequence, head): rows start .. start+L of the packed batch. vbuf (L x hd floats) holds
 * its values when the projection is bfloat16. */
AVX2 static void attend_sequence(const Problem *pr, int64_t start, int64_t L, int64_t head,
                                 float *kt, float *rows[4], float *qbuf, float *vbuf) {
    const int64_t D = pr->D, stride = 3 * D, hd = pr->hd, Lp = (L + 7) & ~(int64_t)7;
    const int64_t base = start * stride + head * hd;
    const __m256 scale = _mm256_set1_ps(pr->scale);
    /* 8 keys x 8 dims at a time, transposed in registers; keys past L are zeros (vector
     * stores only: scalar ones would stall the vector loads that read them back) */
    for (int64_t j = 0; j < Lp; j += 8)
        for (int64_t d = 0; d < hd; d += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = j + i < L ? load_qkv(pr, base + (j + i) * stride + D + d)
                                 : _mm256_setzero_ps();
            transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_store_ps(kt + (d + i) * Lp + j, _mm256_mul_ps(r[i], scale));
        }
    const float *v0 = pr->qkv16 ? vbuf : pr->qkv + base + 2 * D;
    const int64_t vstride = pr->qkv16 ? hd : stride;
    if (pr->qkv16)  /* converted once here, read L / 2 times below */
        for (int64_t j = 0; j < L; j++)
            for (int64_t d = 0; d < hd; d += 8)
                _mm256_storeu_ps(vbuf + j * hd + d,
                                 load_bf16x8(pr->qkv16 + base + j * stride + 2 * D + d));
    Problem at = *pr;
    at.q_bias = pr->q_bias + head * hd;
    at.v_bias = pr->v_bias + head * hd;
    for (int64_t i0 = 0; i0 < L; i0 += 4)
        attend_rows(&at, base, start * D + head * hd, v0, vstride, kt, rows, qbuf, i0,
                    L - i0 < 4 ? L - i0 : 4, L, Lp);
}

/* Returns 0; -1 when a thread could not get its scratch memory; -2 when a sequence's rows
 * fall outside the n_rows packed rows (nothing is computed then). */
int seqenc_varlen_attention(const Problem *pr, const int64_t *starts, const int64_t *lengths,
                            int64_t n_seq, int64_t n_rows, int threads) {
    int64_t max_len = 0;
    for (int64_t i = 0; i < n_seq; i++) {
        if (starts[i] < 0 || lengths[i] < 0 || starts[i] > n_rows - lengths[i]) return -2;
        max_len = lengths[i] > max_len ? lengths[i] : max_len;
    }
    const int64_t pairs = n_seq * pr->n_heads;
    const int64_t Lp = (max_len + 7) & ~(int64_t)7;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        const int64_t v_floats = pr->qkv16 ? Lp * pr->hd : 0;  /* bf16: values as float32 */
        size_t bytes = (size_t)(pr->hd * Lp + 4 * Lp + 4 * pr->hd + v_floats) * sizeof(float);
        float *kt = aligned_alloc(64, (bytes + 63) & ~(size_t)63);  /* a multiple, as C11 asks */
        if (kt == NULL) {
#pragma omp atomic write
            failed = 1;
        } else {
            float *rows[4] = {kt + pr->hd * Lp, kt + pr->hd * Lp + Lp,
                              kt + pr->hd * Lp + 2 * Lp, kt + pr->hd * Lp + 3 * Lp};
            /* longest sequences first (the batches are length-sorted): dynamic balances */
#pragma omp for schedule(dynamic, 4)
            for (int64_t p = 0; p < pairs; p++) {
                int64_t seq = p / pr->n_heads;
                float *qbuf = kt + pr->hd * Lp + 4 * Lp;
                attend_sequence(pr, starts[seq], lengths[seq], p % pr->n_heads, kt, rows, qbuf,
                                qbuf + 4 * pr->hd);
            }
            free(kt);
        }
    }
    return failed ? -1 : 0;
}
#endif
