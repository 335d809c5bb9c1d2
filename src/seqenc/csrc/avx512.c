/* elementwise.c's fused epilogues with 16 lanes, reading and writing float32 or bfloat16
 * (bf16 is computed in float32 and rounded once, to nearest even, on the way out):
 *   bias + GELU in place; bias + residual + LayerNorm in place.
 * For float32 rows that feed a bf16 GEMM next (precision.bf16_encoder), LayerNorm can write a
 * bf16 copy beside its float32 result, so no separate conversion pass reads the rows again
 * (AVX512-BF16; the FFN's GELU runs in gemm_bf16.c's epilogue there).
 * Chosen by module.c when the CPU has AVX-512 (bf16 also needs AVX512-BF16) and n % 16 == 0. */
#include "simd512.h"

#ifdef SEQENC_X86
#include <omp.h>
#endif

#ifdef SEQENC_X86
AVX512BF16 static inline __m512 load16(const void *p, int64_t i, int dtype) {
    return dtype == DTYPE_BF16 ? load_bf16((const uint16_t *)p + i)
                               : _mm512_loadu_ps((const float *)p + i);
}

AVX512BF16 static inline void store16(void *p, int64_t i, __m512 v, int dtype) {
    if (dtype == DTYPE_BF16) store_bf16((uint16_t *)p + i, v);
    else _mm512_storeu_ps((float *)p + i, v);
}

/* The float32 and bf16 instances are separate functions (dtype is a constant in each), so the
 * per-element dtype test folds away. */
#define ROWS_KERNELS(SUFFIX, DT)                                                              \
    AVX512BF16 static void bias_gelu_rows_##SUFFIX(void *x, const void *bias, int64_t n,      \
                                                    int64_t lo, int64_t hi) {                 \
        for (int64_t r = lo; r < hi; r++) {                                                   \
            int64_t c = 0;                                                                    \
            for (; c + 64 <= n; c += 64) { /* gelu512x4: four chains to overlap, same bits */  \
                __m512 v[4];                                                                  \
                for (int j = 0; j < 4; j++)                                                   \
                    v[j] = _mm512_add_ps(load16(x, r * n + c + 16 * j, DT),                   \
                                         load16(bias, c + 16 * j, DT));                       \
                gelu512x4(v);                                                                 \
                for (int j = 0; j < 4; j++) store16(x, r * n + c + 16 * j, v[j], DT);         \
            }                                                                                 \
            for (; c < n; c += 16) {                                                          \
                __m512 v = _mm512_add_ps(load16(x, r * n + c, DT), load16(bias, c, DT));      \
                store16(x, r * n + c, _mm512_mul_ps(v, normal_cdf512(v)), DT);                \
            }                                                                                 \
        }                                                                                     \
    }

ROWS_KERNELS(f32, DTYPE_F32)
ROWS_KERNELS(bf16, DTYPE_BF16)

/* bias + residual + LayerNorm of bf16 rows [lo, hi): the row's float32 sum (bias + residual +
 * y) is kept in a scratch row (n floats), not re-read from y: that would round it to bf16
 * before the statistics. */
AVX512BF16 static void add_layernorm_rows_bf16(uint16_t *y, const uint16_t *bias,
                                               const uint16_t *residual, const uint16_t *gamma,
                                               const uint16_t *beta, float eps, int64_t n,
                                               int64_t lo, int64_t hi, float *row) {
    for (int64_t r = lo; r < hi; r++) {
        __m512 sum = _mm512_setzero_ps();
        for (int64_t c = 0; c < n; c += 16) {
            const __m512 v = _mm512_add_ps(
                _mm512_add_ps(load_bf16(y + r * n + c), load_bf16(bias + c)),
                load_bf16(residual + r * n + c));
            _mm512_storeu_ps(row + c, v);
            sum = _mm512_add_ps(sum, v);
        }
        const __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / (float)n);
        __m512 sq = _mm512_setzero_ps();
        for (int64_t c = 0; c < n; c += 16) {
            const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(row + c), mean);
            sq = _mm512_fmadd_ps(d, d, sq);
        }
        const float var = _mm512_reduce_add_ps(sq) / (float)n;
        const __m512 scale = _mm512_set1_ps(1.0f / sqrtf(var + eps));
        for (int64_t c = 0; c < n; c += 16) {
            const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(row + c), mean), scale);
            store_bf16(y + r * n + c,
                       _mm512_fmadd_ps(d, load_bf16(gamma + c), load_bf16(beta + c)));
        }
    }
}

/* bias + residual + LayerNorm of `rows` float32 rows from r0 at once, each row's arithmetic in
 * the same order as a row alone, so the bits do not depend on the grouping. Why: the sum and
 * the squared deviations are each one chain of n / 16 dependent adds per row (~100 cycles of
 * latency at n = 384), so a row alone leaves the adders mostly idle; `rows` independent chains
 * fill them (always inlined with a constant `rows`: the accumulators stay in registers). The
 * float32 sum y + bias + residual goes back into y (float32: the same bits a scratch row would
 * hold) and is re-read from there; a residual that is y itself is read before each element is
 * written. copy16: also the result rounded to bf16 (NULL: none). */
#define LN_ROWS 4
__attribute__((always_inline)) AVX512BF16 static inline void add_layernorm_f32_block(
    float *y, const float *bias, const float *residual, const float *gamma, const float *beta,
    float eps, int64_t n, int64_t r0, uint16_t *copy16, const int rows) {
    __m512 sum[LN_ROWS], sq[LN_ROWS], mean[LN_ROWS], scale[LN_ROWS];
    for (int j = 0; j < rows; j++) sum[j] = sq[j] = _mm512_setzero_ps();
    for (int64_t c = 0; c < n; c += 16) {
        const __m512 b = _mm512_loadu_ps(bias + c);
        for (int j = 0; j < rows; j++) {
            float *yr = y + (r0 + j) * n + c;
            const __m512 v = _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(yr), b),
                                           _mm512_loadu_ps(residual + (r0 + j) * n + c));
            _mm512_storeu_ps(yr, v);
            sum[j] = _mm512_add_ps(sum[j], v);
        }
    }
    for (int j = 0; j < rows; j++)
        mean[j] = _mm512_set1_ps(_mm512_reduce_add_ps(sum[j]) / (float)n);
    for (int64_t c = 0; c < n; c += 16)
        for (int j = 0; j < rows; j++) {
            const __m512 d = _mm512_sub_ps(_mm512_loadu_ps(y + (r0 + j) * n + c), mean[j]);
            sq[j] = _mm512_fmadd_ps(d, d, sq[j]);
        }
    for (int j = 0; j < rows; j++) {
        const float var = _mm512_reduce_add_ps(sq[j]) / (float)n;
        scale[j] = _mm512_set1_ps(1.0f / sqrtf(var + eps));
    }
    for (int64_t c = 0; c < n; c += 16) {
        const __m512 g = _mm512_loadu_ps(gamma + c), be = _mm512_loadu_ps(beta + c);
        for (int j = 0; j < rows; j++) {
            float *yr = y + (r0 + j) * n + c;
            const __m512 d = _mm512_fmadd_ps(
                _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(yr), mean[j]), scale[j]), g, be);
            _mm512_storeu_ps(yr, d);
            if (copy16) store_bf16(copy16 + (r0 + j) * n + c, d);
        }
    }
}

AVX512BF16 static void add_layernorm_rows_f32(float *y, const float *bias, const float *residual,
                                              const float *gamma, const float *beta, float eps,
                                              int64_t n, int64_t lo, int64_t hi,
                                              uint16_t *copy16) {
    int64_t r = lo;
    for (; r + LN_ROWS <= hi; r += LN_ROWS)
        add_layernorm_f32_block(y, bias, residual, gamma, beta, eps, n, r, copy16, LN_ROWS);
    switch (hi - r) { /* the last rows, each count its own instance */
        case 3: add_layernorm_f32_block(y, bias, residual, gamma, beta, eps, n, r, copy16, 3); break;
        case 2: add_layernorm_f32_block(y, bias, residual, gamma, beta, eps, n, r, copy16, 2); break;
        case 1: add_layernorm_f32_block(y, bias, residual, gamma, beta, eps, n, r, copy16, 1); break;
        default: break;
    }
}

/* bias + GELU on float32 rows quantised to int8 next: gelu512_for_int8, the GELU of the int8
 * GEMMs' epilogues (int8_tile.h's store16, gemm_int8_amx.c), so the separate passes give their
 * bits */
AVX512 static void bias_gelu_rows_int8(float *x, const float *bias, int64_t n, int64_t lo,
                                       int64_t hi) {
    for (int64_t r = lo; r < hi; r++)
        for (int64_t c = 0; c < n; c += 16)
            _mm512_storeu_ps(x + r * n + c,
                             gelu512_for_int8(_mm512_add_ps(_mm512_loadu_ps(x + r * n + c),
                                                            _mm512_loadu_ps(bias + c))));
}

/* one thread's float32 rows [lo, hi) of seqenc_add_layernorm512: gemm_f32.c's and the bf16
 * GEMMs' epilogue, the same function so the fused and separate passes give the same bits */
void seqenc_add_layernorm_rows512(float *y, const float *bias, const float *residual,
                                  const float *gamma, const float *beta, float eps, int64_t n,
                                  int64_t lo, int64_t hi, uint16_t *copy16) {
    add_layernorm_rows_f32(y, bias, residual, gamma, beta, eps, n, lo, hi, copy16);
}

void seqenc_bias_gelu512(void *x, const void *bias, int64_t rows, int64_t n, int threads,
                         int dtype, int for_int8) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < (rows + 15) / 16; b++) {
        const int64_t hi = b * 16 + 16 < rows ? b * 16 + 16 : rows;
        if (dtype == DTYPE_BF16) bias_gelu_rows_bf16(x, bias, n, b * 16, hi);
        else if (for_int8) bias_gelu_rows_int8(x, bias, n, b * 16, hi);
        else bias_gelu_rows_f32(x, bias, n, b * 16, hi);
    }
}

/* bf16 rows need a scratch row per thread (add_layernorm_rows_bf16); -1: no memory for it. */
int seqenc_add_layernorm512(void *y, const void *bias, const void *residual, const void *gamma,
                            const void *beta, float eps, int64_t rows, int64_t n, int threads,
                            int dtype, uint16_t *copy16) {
    float *scratch = NULL;
    if (dtype == DTYPE_BF16 && !(scratch = aligned_alloc(64, (size_t)threads * (size_t)n * 4)))
        return -1;
#pragma omp parallel num_threads(threads)
    {
        float *row = scratch ? scratch + (int64_t)omp_get_thread_num() * n : NULL;
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < (rows + 15) / 16; b++) {
            const int64_t hi = b * 16 + 16 < rows ? b * 16 + 16 : rows;
            if (dtype == DTYPE_BF16)
                add_layernorm_rows_bf16(y, bias, residual, gamma, beta, eps, n, b * 16, hi, row);
            else add_layernorm_rows_f32(y, bias, residual, gamma, beta, eps, n, b * 16, hi, copy16);
        }
    }
    free(scratch);
    return 0;
}
#endif

#ifdef SEQENC_X86
/* int8 activations, one scale per row: scale[r] = max_c |x[r, c] mul[c]| / 127 and q = round(x mul
 * / scale) (to nearest even, |q| <= 127), so |x mul - q scale| <= scale / 2 per element, x mul
 * rounded once in float32. mul (the inverse smoothing factors, or NULL for none) is applied here
 * so no smoothed copy of x is made. n % 16 == 0. */
AVX512 static inline __m512 scaled16(const float *row, const float *mul, int64_t c) {
    const __m512 v = _mm512_loadu_ps(row + c);
    return mul ? _mm512_mul_ps(v, _mm512_loadu_ps(mul + c)) : v;
}

AVX512 static void quantize_rows(const float *x, const float *mul, int8_t *q, float *scale,
                                 int64_t n, int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
        const float *row = x + r * n;
        __m512 top = _mm512_setzero_ps();
        for (int64_t c = 0; c < n; c += 16) top = _mm512_max_ps(top, _mm512_abs_ps(scaled16(row, mul, c)));
        float m = _mm512_reduce_max_ps(top);
        const float s = m > 1e-30f ? m / 127.0f : 1.0f;
        scale[r] = s;
        const __m512 inv = _mm512_set1_ps(1.0f / s);
        for (int64_t c = 0; c < n; c += 16) {
            __m512i v = _mm512_cvtps_epi32(_mm512_mul_ps(scaled16(row, mul, c), inv));
            v = _mm512_max_epi32(_mm512_min_epi32(v, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
            _mm_storeu_si128((__m128i *)(q + r * n + c), _mm512_cvtsepi32_epi8(v));
        }
    }
}

void seqenc_quantize_rows512(const float *x, const float *mul, int8_t *q, float *scale,
                             int64_t rows, int64_t n, int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < (rows + 15) / 16; b++)
        quantize_rows(x, mul, q, scale, n, b * 16, b * 16 + 16 < rows ? b * 16 + 16 : rows);
}

/* In place: the int32 products of int8 rows become float32, acc[r, c] row_scale[r] col_scale[c]
 * (exact up to one float32 rounding of each product). n % 16 == 0. */
AVX512 static void dequantize_rows(int32_t *acc, const float *row_scale, const float *col_scale,
                                   int64_t n, int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
        const __m512 rs = _mm512_set1_ps(row_scale[r]);
        for (int64_t c = 0; c < n; c += 16) {
            __m512 v = _mm512_cvtepi32_ps(_mm512_loadu_si512(acc + r * n + c));
            _mm512_storeu_ps((float *)(acc + r * n + c),
                             _mm512_mul_ps(_mm512_mul_ps(v, rs), _mm512_loadu_ps(col_scale + c)));
        }
    }
}

void seqenc_dequantize_rows512(int32_t *acc, const float *row_scale, const float *col_scale,
                               int64_t rows, int64_t n, int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < (rows + 15) / 16; b++)
        dequantize_rows(acc, row_scale, col_scale, n, b * 16, b * 16 + 16 < rows ? b * 16 + 16 : rows);
}
#endif
