/* Fused CPU kernels for inference: self-attention over packed variable-length sequences.
 *
 * PyTorch has no CPU kernel that attends over sequences packed back to back, so without
 * this one a packed batch is gathered into a padded (B*H, T, hd) layout and back, and the
 * attention itself runs as three small matmuls per chunk of heads. Here each (sequence, head)
 * pair reads its queries, keys and values straight from the packed (N, 3D) projection and
 * writes its (L, hd) output straight into the packed (N, D) result: no gathers, no padding,
 * no mask. Pairs run in parallel on the OpenMP runtime PyTorch itself loaded (same soname),
 * so the threads are PyTorch's and do not fight its GEMM threads for the cores.
 *
 * AVX2 + FMA only, chosen at run time (`supported()`); elsewhere seqenc uses PyTorch's path.
 * Built by setup.py as an optional extension: without a C compiler seqenc still installs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#define SEQENC_X86 1
#define AVX2 __attribute__((target("avx2,fma")))

/* exp(x) for x <= 0, as used after the softmax's max subtraction: 2^(x log2 e) split into an
 * integer power (exponent bits) and a fraction (degree-6 polynomial); relative error ~2e-7. */
AVX2 static inline __m256 exp_nonpositive(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f));
    __m256 whole = _mm256_floor_ps(t);
    __m256 f = _mm256_sub_ps(t, whole);
    __m256 p = _mm256_set1_ps(1.535336188319500e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.339887440266574e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(9.618437357674640e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.550332471162809e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(2.402264791363012e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(6.931472028550421e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
    __m256i bits = _mm256_slli_epi32(
        _mm256_add_epi32(_mm256_cvtps_epi32(whole), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(bits));
}

AVX2 static inline float horizontal_max(__m256 v) {
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}

AVX2 static inline float horizontal_sum(__m256 v) {
    __m128 a = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    a = _mm_add_ps(a, _mm_movehl_ps(a, a));
    a = _mm_add_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
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
            __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_load_ps(scores[r] + j), top[r]));
            _mm256_store_ps(scores[r] + j, e);
            sum[r] = _mm256_add_ps(sum[r], e);
        }
    for (int r = 0; r < 4; r++) {
        __m256 e = _mm256_and_ps(exp_nonpositive(_mm256_sub_ps(tail[r], top[r])), valid);
        _mm256_store_ps(scores[r] + last, e);
        inv[r] = 1.0f / horizontal_sum(_mm256_add_ps(sum[r], e));
    }
}

/* r[0..7] rows of an 8x8 block -> its columns. */
AVX2 static inline void transpose8(__m256 r[8]) {
    __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    r[0] = _mm256_permute2f128_ps(u0, u4, 0x20); r[4] = _mm256_permute2f128_ps(u0, u4, 0x31);
    r[1] = _mm256_permute2f128_ps(u1, u5, 0x20); r[5] = _mm256_permute2f128_ps(u1, u5, 0x31);
    r[2] = _mm256_permute2f128_ps(u2, u6, 0x20); r[6] = _mm256_permute2f128_ps(u2, u6, 0x31);
    r[3] = _mm256_permute2f128_ps(u3, u7, 0x20); r[7] = _mm256_permute2f128_ps(u3, u7, 0x31);
}

typedef struct {
    const float *qkv;     /* (N, 3D): q | k | v without their biases, heads of hd inside each */
    const float *q_bias;  /* (D,): added to the queries */
    const float *v_bias;  /* (D,): added to the output (softmax rows sum to 1), see attention() */
    float *out;           /* (N, D) */
    int64_t n_heads, hd, D;
    float scale;
} Problem;

/* Up to 4 output rows (i0 .. i0+nq) of one (sequence, head): base points at its first q,
 * pr->out at its first output row and the biases at its head's, kt is its K^T times the
 * scale, (hd, Lp); qbuf has room for 4 x hd. */
AVX2 static void attend_rows(const Problem *pr, const float *base, const float *kt,
                             float *rows[4], float *qbuf, int64_t i0, int64_t nq, int64_t L,
                             int64_t Lp) {
    const int64_t D = pr->D, stride = 3 * D, hd = pr->hd;
    const float *q[4];
    for (int64_t r = 0; r < 4; r++) {
        const float *src = base + (i0 + (r < nq ? r : 0)) * stride;
        float *dst = qbuf + r * hd;
        for (int64_t d = 0; d < hd; d += 8)
            _mm256_storeu_ps(dst + d, _mm256_add_ps(_mm256_loadu_ps(src + d),
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
    const float *v0 = base + 2 * D;
    for (int64_t r = 0; r < nq; r += 2) {
        const int pair = r + 1 < nq;
        const float *p0 = s[r], *p1 = s[pair ? r + 1 : r];
        float *dst = pr->out + (i0 + r) * D;
        for (int64_t d0 = 0; d0 < hd; d0 += 32) {
            if (hd - d0 >= 32) {
                __m256 o00 = _mm256_setzero_ps(), o01 = o00, o02 = o00, o03 = o00;
                __m256 o10 = o00, o11 = o00, o12 = o00, o13 = o00;
                for (int64_t j = 0; j < L; j++) {
                    const float *v = v0 + j * stride + d0;
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
                _mm256_storeu_ps(dst + d0, _mm256_fmadd_ps(o00, n0, c0));
                _mm256_storeu_ps(dst + d0 + 8, _mm256_fmadd_ps(o01, n0, c1));
                _mm256_storeu_ps(dst + d0 + 16, _mm256_fmadd_ps(o02, n0, c2));
                _mm256_storeu_ps(dst + d0 + 24, _mm256_fmadd_ps(o03, n0, c3));
                if (pair) {
                    _mm256_storeu_ps(dst + D + d0, _mm256_fmadd_ps(o10, n1, c0));
                    _mm256_storeu_ps(dst + D + d0 + 8, _mm256_fmadd_ps(o11, n1, c1));
                    _mm256_storeu_ps(dst + D + d0 + 16, _mm256_fmadd_ps(o12, n1, c2));
                    _mm256_storeu_ps(dst + D + d0 + 24, _mm256_fmadd_ps(o13, n1, c3));
                }
            } else {  /* a tail of 8, 16 or 24 dims: one vector at a time */
                for (int64_t d = d0; d < hd; d += 8) {
                    __m256 o0 = _mm256_setzero_ps(), o1 = o0;
                    for (int64_t j = 0; j < L; j++) {
                        __m256 x = _mm256_loadu_ps(v0 + j * stride + d);
                        o0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p0 + j), x, o0);
                        o1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p1 + j), x, o1);
                    }
                    __m256 c = _mm256_loadu_ps(pr->v_bias + d);
                    _mm256_storeu_ps(dst + d, _mm256_fmadd_ps(o0, _mm256_set1_ps(inv[r]), c));
                    if (pair)
                        _mm256_storeu_ps(dst + D + d,
                                         _mm256_fmadd_ps(o1, _mm256_set1_ps(inv[r + 1]), c));
                }
            }
        }
    }
}

/* One (sequence, head): rows start .. start+L of the packed batch. */
AVX2 static void attend_sequence(const Problem *pr, int64_t start, int64_t L, int64_t head,
                                 float *kt, float *rows[4], float *qbuf) {
    const int64_t D = pr->D, stride = 3 * D, hd = pr->hd, Lp = (L + 7) & ~(int64_t)7;
    const float *base = pr->qkv + start * stride + head * hd;
    const __m256 scale = _mm256_set1_ps(pr->scale);
    /* 8 keys x 8 dims at a time, transposed in registers; keys past L are zeros (vector
     * stores only: scalar ones would stall the vector loads that read them back) */
    for (int64_t j = 0; j < Lp; j += 8)
        for (int64_t d = 0; d < hd; d += 8) {
            __m256 r[8];
            for (int i = 0; i < 8; i++)
                r[i] = j + i < L ? _mm256_loadu_ps(base + (j + i) * stride + D + d)
                                 : _mm256_setzero_ps();
            transpose8(r);
            for (int i = 0; i < 8; i++)
                _mm256_store_ps(kt + (d + i) * Lp + j, _mm256_mul_ps(r[i], scale));
        }
    Problem at = *pr;
    at.out = pr->out + start * D + head * hd;
    at.q_bias = pr->q_bias + head * hd;
    at.v_bias = pr->v_bias + head * hd;
    for (int64_t i0 = 0; i0 < L; i0 += 4)
        attend_rows(&at, base, kt, rows, qbuf, i0, L - i0 < 4 ? L - i0 : 4, L, Lp);
}

/* Returns 0; -1 when a thread could not get its scratch memory; -2 when a sequence's rows
 * fall outside the n_rows packed rows (nothing is computed then). */
static int varlen_attention(const Problem *pr, const int64_t *starts, const int64_t *lengths,
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
        size_t bytes = (size_t)(pr->hd * Lp + 4 * Lp + 4 * pr->hd) * sizeof(float);
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
                attend_sequence(pr, starts[seq], lengths[seq], p % pr->n_heads, kt, rows,
                                kt + pr->hd * Lp + 4 * Lp);
            }
            free(kt);
        }
    }
    return failed ? -1 : 0;
}

/* erf(x) by Abramowitz & Stegun 7.1.28, 1 - (1 + a1 x + ... + a6 x^6)^-16 for x >= 0
 * (|error| < 3e-7, like the 7.1.26 form PyTorch's own vectorised erf uses, but with no exp:
 * a polynomial, four squarings and a reciprocal). |x| is clamped at 6, where erf is 1 in
 * float32, so the 16th power stays finite. */
AVX2 static inline __m256 erf256(__m256 x) {
    const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    const __m256 a = _mm256_min_ps(_mm256_xor_ps(x, sign), _mm256_set1_ps(6.0f));
    __m256 p = _mm256_set1_ps(0.0000430638f);
    p = _mm256_fmadd_ps(p, a, _mm256_set1_ps(0.0002765672f));
    p = _mm256_fmadd_ps(p, a, _mm256_set1_ps(0.0001520143f));
    p = _mm256_fmadd_ps(p, a, _mm256_set1_ps(0.0092705272f));
    p = _mm256_fmadd_ps(p, a, _mm256_set1_ps(0.0422820123f));
    p = _mm256_fmadd_ps(p, a, _mm256_set1_ps(0.0705230784f));
    p = _mm256_fmadd_ps(p, a, _mm256_set1_ps(1.0f));
    p = _mm256_mul_ps(p, p);  /* ^2 */
    p = _mm256_mul_ps(p, p);  /* ^4 */
    p = _mm256_mul_ps(p, p);  /* ^8 */
    p = _mm256_mul_ps(p, p);  /* ^16 */
    /* 1 / p: the approximate reciprocal plus one Newton step (~1e-7 relative) */
    __m256 r = _mm256_rcp_ps(p);
    r = _mm256_mul_ps(r, _mm256_fnmadd_ps(p, r, _mm256_set1_ps(2.0f)));
    return _mm256_xor_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), r), sign);
}

/* x[r, :] = gelu(x[r, :] + bias) for rows [lo, hi) of an (rows, n) matrix, n % 8 == 0. */
AVX2 static void bias_gelu_rows(float *x, const float *bias, int64_t n, int64_t lo, int64_t hi) {
    const __m256 half = _mm256_set1_ps(0.5f), root_half = _mm256_set1_ps(0.70710678118654752f);
    for (int64_t r = lo; r < hi; r++) {
        float *row = x + r * n;
        for (int64_t c = 0; c < n; c += 8) {
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(bias + c));
            __m256 g = _mm256_fmadd_ps(erf256(_mm256_mul_ps(v, root_half)), half, half);
            _mm256_storeu_ps(row + c, _mm256_mul_ps(v, g));
        }
    }
}

/* y[r, :] = LayerNorm(y[r, :] + bias + residual[r, :]) * gamma + beta, rows [lo, hi), n % 8 == 0. */
AVX2 static void add_layernorm_rows(float *y, const float *bias, const float *residual,
                                    const float *gamma, const float *beta, float eps, int64_t n,
                                    int64_t lo, int64_t hi) {
    const __m256 inv_n = _mm256_set1_ps(1.0f / (float)n);
    for (int64_t r = lo; r < hi; r++) {
        float *row = y + r * n;
        const float *res = residual + r * n;
        __m256 sum = _mm256_setzero_ps();
        for (int64_t c = 0; c < n; c += 8) {
            __m256 v = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(row + c),
                                                   _mm256_loadu_ps(bias + c)),
                                     _mm256_loadu_ps(res + c));
            _mm256_storeu_ps(row + c, v);
            sum = _mm256_add_ps(sum, v);
        }
        const __m256 mean = _mm256_mul_ps(_mm256_set1_ps(horizontal_sum(sum)), inv_n);
        __m256 sq = _mm256_setzero_ps();
        for (int64_t c = 0; c < n; c += 8) {
            __m256 d = _mm256_sub_ps(_mm256_loadu_ps(row + c), mean);
            sq = _mm256_fmadd_ps(d, d, sq);
        }
        const float var = horizontal_sum(sq) / (float)n;
        const __m256 scale = _mm256_set1_ps(1.0f / sqrtf(var + eps));
        for (int64_t c = 0; c < n; c += 8) {
            __m256 d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(row + c), mean), scale);
            _mm256_storeu_ps(row + c, _mm256_fmadd_ps(d, _mm256_loadu_ps(gamma + c),
                                                      _mm256_loadu_ps(beta + c)));
        }
    }
}

static void bias_gelu(float *x, const float *bias, int64_t rows, int64_t n, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < (rows + 15) / 16; b++)
        bias_gelu_rows(x, bias, n, b * 16, b * 16 + 16 < rows ? b * 16 + 16 : rows);
}

static void add_layernorm(float *y, const float *bias, const float *residual, const float *gamma,
                          const float *beta, float eps, int64_t rows, int64_t n, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < (rows + 15) / 16; b++)
        add_layernorm_rows(y, bias, residual, gamma, beta, eps, n, b * 16,
                           b * 16 + 16 < rows ? b * 16 + 16 : rows);
}
#endif

static PyObject *supported(PyObject *self, PyObject *args) {
    (void)self; (void)args;
#ifdef SEQENC_X86
    __builtin_cpu_init();
    return PyBool_FromLong(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
#else
    Py_RETURN_FALSE;
#endif
}

#ifdef SEQENC_X86
static int valid_width(long long n, int threads) {
    if (n % 8 == 0 && threads > 0) return 1;
    PyErr_SetString(PyExc_ValueError, "width must be a multiple of 8");
    return 0;
}

/* attention(qkv_ptr, q_bias_ptr, v_bias_ptr, out_ptr, starts_ptr, lengths_ptr, n_seq, n_rows,
 *           n_heads, head_dim, scale, threads): pointers are data_ptr()s of contiguous CPU
 * tensors, checked by the Python caller (seqenc/nn/kernels.py). The projection comes without
 * biases: the key bias adds the same q.b_k to every score of a row, which softmax cancels, and
 * the value bias comes out unchanged (weights sum to 1), so it is added to the output. */
static PyObject *attention(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long qkv, q_bias, v_bias, out, starts, lengths;
    long long n_seq, n_rows, n_heads, hd;
    float scale;
    int threads;
    if (!PyArg_ParseTuple(args, "KKKKKKLLLLfi", &qkv, &q_bias, &v_bias, &out, &starts, &lengths,
                          &n_seq, &n_rows, &n_heads, &hd, &scale, &threads))
        return NULL;
    if (hd <= 0 || hd % 8 != 0 || n_heads <= 0 || threads <= 0) {
        PyErr_SetString(PyExc_ValueError, "head_dim must be a positive multiple of 8");
        return NULL;
    }
    Problem pr = {(const float *)(uintptr_t)qkv, (const float *)(uintptr_t)q_bias,
                  (const float *)(uintptr_t)v_bias, (float *)(uintptr_t)out, n_heads, hd,
                  n_heads * hd, scale};
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = varlen_attention(&pr, (const int64_t *)(uintptr_t)starts,
                              (const int64_t *)(uintptr_t)lengths, n_seq, n_rows, threads);
    Py_END_ALLOW_THREADS
    if (status == -2) {
        PyErr_Format(PyExc_ValueError, "sequence spans run outside the %lld packed rows",
                     n_rows);
        return NULL;
    }
    if (status != 0) return PyErr_NoMemory();
    Py_RETURN_NONE;
}

/* bias_gelu(x_ptr, bias_ptr, rows, n, threads): x = gelu(x + bias) in place (erf form). */
static PyObject *py_bias_gelu(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, bias;
    long long rows, n;
    int threads;
    if (!PyArg_ParseTuple(args, "KKLLi", &x, &bias, &rows, &n, &threads)) return NULL;
    if (!valid_width(n, threads)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    bias_gelu((float *)(uintptr_t)x, (const float *)(uintptr_t)bias, rows, n, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* add_layernorm(y_ptr, bias_ptr, residual_ptr, gamma_ptr, beta_ptr, eps, rows, n, threads):
 * y = LayerNorm(y + bias + residual) in place. */
static PyObject *py_add_layernorm(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long y, bias, residual, gamma, beta;
    float eps;
    long long rows, n;
    int threads;
    if (!PyArg_ParseTuple(args, "KKKKKfLLi", &y, &bias, &residual, &gamma, &beta, &eps, &rows,
                          &n, &threads))
        return NULL;
    if (!valid_width(n, threads)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    add_layernorm((float *)(uintptr_t)y, (const float *)(uintptr_t)bias,
                  (const float *)(uintptr_t)residual, (const float *)(uintptr_t)gamma,
                  (const float *)(uintptr_t)beta, eps, rows, n, threads);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}
#endif

static PyMethodDef methods[] = {
    {"supported", supported, METH_NOARGS, "Whether this CPU runs the kernels (AVX2 + FMA)."},
#ifdef SEQENC_X86  /* elsewhere the module only says it is not supported */
    {"attention", attention, METH_VARARGS, "Self-attention over packed sequences."},
    {"bias_gelu", py_bias_gelu, METH_VARARGS, "x = gelu(x + bias), in place."},
    {"add_layernorm", py_add_layernorm, METH_VARARGS, "y = LayerNorm(y + bias + residual)."},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
