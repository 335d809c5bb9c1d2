/* The elementwise work around the matmuls, fused: bias + GELU, bias + residual + LayerNorm. */
#include "simd.h"

#ifdef SEQENC_X86
/* Phi(x) = P(N(0, 1) <= x) = erfc(-x / sqrt 2) / 2, the factor GELU multiplies x by.
 *
 * erfc(z), z >= 0, by the Chebyshev fit of Numerical Recipes' erfcc: t exp(-z^2 + c(t)) with
 * t = 1 / (1 + z/2) and c a degree-9 polynomial, relative error < 1.2e-7 for every z >= 0. A
 * *relative* bound is what GELU's left tail needs: gelu(-4) = -1.3e-4, and an erf with an
 * absolute error of 3e-7 (Abramowitz & Stegun 7.1.26/28, PyTorch's vectorised erf) is 0.3% off
 * there. z^2 = x^2 / 2 is formed exactly (the FMA gives the rounding residual of x*x) and the
 * residual of -z^2 + c is carried into exp as a first-order correction, so rounding -z^2 ~ -80
 * in float32 does not cost ~1e-5 relative at the far end. Measured against float64 over
 * x in [-13, 13]: |Phi - Phi64| <= 8e-7 Phi64 (kernels.GELU_RELATIVE_ERROR states the bound
 * the tests hold it to). |x| is clamped at 14, where Phi is 1 or below 1e-44. */
AVX2 static inline __m256 normal_cdf256(__m256 x) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 a = _mm256_min_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), x),
                                   _mm256_set1_ps(14.0f));                        /* |x| */
    const __m256 z = _mm256_mul_ps(a, _mm256_set1_ps(0.70710678118654752f));
    const __m256 d = _mm256_fmadd_ps(z, half, one);
    __m256 t = _mm256_rcp_ps(d);                                  /* 1 / d to 12 bits, then */
    t = _mm256_fmadd_ps(t, _mm256_fnmadd_ps(d, t, one), t);       /* Newton: ~1e-7 relative */
    __m256 c = _mm256_set1_ps(0.17087277f);
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(-0.82215223f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(1.48851587f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(-1.13520398f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(0.27886807f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(-0.18628806f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(0.09678418f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(0.37409196f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(1.00002368f));
    c = _mm256_fmadd_ps(c, t, _mm256_set1_ps(-1.26551223f));
    /* -z^2 + c = s + e exactly (up to e's own rounding): x*x = hi + lo, then TwoSum(-hi/2, c) */
    const __m256 hi = _mm256_mul_ps(a, a), lo = _mm256_fmsub_ps(a, a, hi);
    const __m256 h = _mm256_mul_ps(hi, _mm256_set1_ps(-0.5f));
    const __m256 s = _mm256_add_ps(h, c);
    const __m256 bb = _mm256_sub_ps(s, h);
    __m256 e = _mm256_add_ps(_mm256_sub_ps(h, _mm256_sub_ps(s, bb)), _mm256_sub_ps(c, bb));
    e = _mm256_fnmadd_ps(lo, half, e);
    __m256 erfc = _mm256_mul_ps(t, exp256(s));  /* erfc(|x| / sqrt 2) */
    erfc = _mm256_fmadd_ps(erfc, e, erfc);      /* * exp(e) ~ * (1 + e), |e| < 1e-5 */
    const __m256 tail = _mm256_mul_ps(erfc, half);
    return _mm256_blendv_ps(_mm256_sub_ps(one, tail), tail, x);  /* x < 0: the tail itself */
}

/* x[r, :] = gelu(x[r, :] + bias) = v Phi(v) for rows [lo, hi) of an (rows, n) matrix, n % 8 == 0. */
AVX2 static void bias_gelu_rows(float *x, const float *bias, int64_t n, int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
        float *row = x + r * n;
        for (int64_t c = 0; c < n; c += 8) {
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(bias + c));
            _mm256_storeu_ps(row + c, _mm256_mul_ps(v, normal_cdf256(v)));
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
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < (rows + 15) / 16; b++)
        bias_gelu_rows(x, bias, n, b * 16, b * 16 + 16 < rows ? b * 16 + 16 : rows);
}

void seqenc_add_layernorm(float *y, const float *bias, const float *residual, const float *gamma,
                          const float *beta, float eps, int64_t rows, int64_t n, int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < (rows + 15) / 16; b++)
        add_layernorm_rows(y, bias, residual, gamma, beta, eps, n, b * 16,
                           b * 16 + 16 < rows ? b * 16 + 16 : rows);
}
#endif
