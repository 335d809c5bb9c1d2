/* The elementwise work around the matmuls, fused: bias + GELU, bias + residual + LayerNorm. */
#include "simd.h"

#ifdef SEQENC_X86
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

void seqenc_bias_gelu(float *x, const float *bias, int64_t rows, int64_t n, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < (rows + 15) / 16; b++)
        bias_gelu_rows(x, bias, n, b * 16, b * 16 + 16 < rows ? b * 16 + 16 : rows);
}

void seqenc_add_layernorm(float *y, const float *bias, const float *residual, const float *gamma,
                          const float *beta, float eps, int64_t rows, int64_t n, int threads) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t b = 0; b < (rows + 15) / 16; b++)
        add_layernorm_rows(y, bias, residual, gamma, beta, eps, n, b * 16,
                           b * 16 + 16 < rows ? b * 16 + 16 : rows);
}
#endif
