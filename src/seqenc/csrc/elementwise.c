/* The elementwise work around the matmuls, fused: bias + GELU, bias + residual + LayerNorm. */
#include "simd.h"

#ifdef SEQENC_X86
/* x[r, :] = gelu(x[r, :] + bias) = v Phi(v) for rows [lo, hi) of an (rows, n) matrix, n % 8 == 0. */
AVX2 static void bias_gelu_rows(float *x, const float *bias, int64_t n, int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
        float *row = x + r * n;
        int64_t c = 0;
        for (; c + 32 <= n; c += 32) { /* four vectors' chains side by side (simd.h) */
            __m256 v[4];
            for (int j = 0; j < 4; j++)
                v[j] = _mm256_add_ps(_mm256_loadu_ps(row + c + 8 * j),
                                     _mm256_loadu_ps(bias + c + 8 * j));
            gelu256x4(v);
            for (int j = 0; j < 4; j++) _mm256_storeu_ps(row + c + 8 * j, v[j]);
        }
        for (; c < n; c += 8) {
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(bias + c));
            _mm256_storeu_ps(row + c, _mm256_mul_ps(v, normal_cdf256(v)));
        }
    }
}

/* y[r, :] = LayerNorm(y[r, :] + bias + residual[r, :]) * gamma + beta, rows [lo, hi), n % 8 == 0.
 * Also the epilogue of the AVX2 GEMMs (gemm_f32_avx2.c, gemm_int8.c's int16 kernel): the same
 * function, so the fused and the separate passes give the same bits. */
AVX2 void seqenc_add_layernorm_rows(float *y, const float *bias, const float *residual,
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
        seqenc_add_layernorm_rows(y, bias, residual, gamma, beta, eps, n, b * 16,
                           b * 16 + 16 < rows ? b * 16 + 16 : rows);
}
#endif
