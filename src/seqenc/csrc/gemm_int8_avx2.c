/* The int8 micro-kernels for AVX2 without VNNI, and the per-row quantisation that feeds every
 * kernel (gemm_int8.c says how the sums are formed and the weights packed).
 *
 *   INT8_I16: a and w as int16 in pairs; vpmaddwd multiplies 8 columns by a broadcast pair of
 *     k and adds each pair (two products of at most 127^2: exact), vpaddd accumulates: 16
 *     multiply-adds per vpmaddwd, which Zen 3 issues once a cycle, the fp32 FMA rate.
 *   INT8_U8S7: a as uint8 q + 128 (|q| <= 127), w int8 with |w| <= 64, in quads as for VNNI:
 *     vpmaddubsw multiplies 32 byte pairs and adds adjacent products into int16, vpmaddwd by
 *     ones adds those pairs into int32 (the four products vpdpbusd would add), vpaddd
 *     accumulates: 32 multiply-adds per vpmaddwd. vpmaddubsw saturates its int16 sums; two
 *     products are at most 2 255 64 = 32640 < 2^15, so it never does with 7-bit weights.
 *   INT8_U7S7: a as uint8 q + 64 (|q| <= 63), w as for U8S7: four products are at most
 *     4 127 64 = 32512 < 2^15, so two vpmaddubsw results (8 values of k) are added in int16
 *     (vpaddw) before one vpmaddwd widens them: 64 multiply-adds per vpmaddwd, and vpmaddubsw
 *     issues twice a cycle on Zen 3 (measured).
 * The shifts (128 or 64) add shift sum_k w[c, k] to every sum; corr[c] holds that and is
 * subtracted in the epilogue. */
#include "int8_tile.h"
#include "tasks.h"

#ifdef SEQENC_X86
/* rows of the register tiles (x 3 vectors of 8 columns; CASE_ROWS takes up to 4): 12 int32
 * accumulators of the 16 ymm registers for I16 and U8S7 (whose weights come as memory
 * operands from L1), 9 for U7S7, which holds two broadcasts and two products per step */
#define MR_I16 4
#ifndef MR_U8S7
#define MR_U8S7 4
#endif
#ifndef MR_U7S7
#define MR_U7S7 3
#endif

__attribute__((always_inline)) AVX2 static inline void micro_i16(
    const int16_t *a, int64_t lda, const int16_t *b, int64_t stride, int64_t groups,
    const Epilogue *e, int64_t r0, int64_t c0, const int rows, const int nv) {
    __m256i acc[MR_I16][3];
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[r][v] = _mm256_setzero_si256();
    for (int64_t g = 0; g < groups; g++) {
        __m256i w[3];
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            w[v] = _mm256_loadu_si256((const __m256i *)(b + g * stride + 16 * v));
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m256i x = _mm256_set1_epi32(load4(a + r * lda + 2 * g));
            #pragma GCC unroll 8
            for (int v = 0; v < nv; v++)
                acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(x, w[v]));
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) store8(e, r0 + r, c0 + 8 * v, acc[r][v]);
}

/* U8S7 (pairs 0) and U7S7 (pairs 1: two k-groups per widening; groups may be odd). b: the
 * slice's first column at k-group 0, stride: bytes from one k-group to the next. */
__attribute__((always_inline)) AVX2 static inline void micro_u(
    const uint8_t *a, int64_t lda, const int8_t *b, int64_t stride, int64_t groups,
    const Epilogue *e, int64_t r0, int64_t c0, const int rows, const int nv, const int pairs) {
    __m256i acc[4][3];
    const __m256i ones = _mm256_set1_epi16(1);
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[r][v] = _mm256_setzero_si256();
    int64_t g = 0;
    if (pairs) {
        for (; g + 1 < groups; g += 2) {
            #pragma GCC unroll 8
            for (int r = 0; r < rows; r++) {
                const __m256i x0 = _mm256_set1_epi32(load4(a + r * lda + 4 * g));
                const __m256i x1 = _mm256_set1_epi32(load4(a + r * lda + 4 * g + 4));
                #pragma GCC unroll 8
                for (int v = 0; v < nv; v++) {
                    const __m256i w0 = _mm256_loadu_si256((const __m256i *)(b + g * stride
                                                                            + 32 * v));
                    const __m256i w1 = _mm256_loadu_si256((const __m256i *)(b + (g + 1) * stride
                                                                            + 32 * v));
                    const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(x0, w0),
                                                       _mm256_maddubs_epi16(x1, w1));
                    acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(p, ones));
                }
            }
        }
    }
    for (; g < groups; g++) {
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m256i x = _mm256_set1_epi32(load4(a + r * lda + 4 * g));
            #pragma GCC unroll 8
            for (int v = 0; v < nv; v++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)(b + g * stride + 32 * v));
                acc[r][v] = _mm256_add_epi32(
                    acc[r][v], _mm256_madd_epi16(_mm256_maddubs_epi16(x, w), ones));
            }
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) store8(e, r0 + r, c0 + 8 * v, acc[r][v]);
}

__attribute__((always_inline)) AVX2 static inline void micro_u8s7(
    const uint8_t *a, int64_t lda, const int8_t *b, int64_t stride, int64_t groups,
    const Epilogue *e, int64_t r0, int64_t c0, const int rows, const int nv) {
    micro_u(a, lda, b, stride, groups, e, r0, c0, rows, nv, 0);
}

__attribute__((always_inline)) AVX2 static inline void micro_u7s7(
    const uint8_t *a, int64_t lda, const int8_t *b, int64_t stride, int64_t groups,
    const Epilogue *e, int64_t r0, int64_t c0, const int rows, const int nv) {
    micro_u(a, lda, b, stride, groups, e, r0, c0, rows, nv, 1);
}

/* The dispatch from run-time (rows, nv) to the inlined constant-shape micro kernels. */
#define CASE_NV(MICRO, ROWS)                                                                 \
    switch (nv) {                                                                            \
        case 1: MICRO(a, lda, b, stride, groups, e, r0, c0, ROWS, 1); break;                 \
        case 2: MICRO(a, lda, b, stride, groups, e, r0, c0, ROWS, 2); break;                 \
        default: MICRO(a, lda, b, stride, groups, e, r0, c0, ROWS, 3); break;                \
    }

#define CASE_ROWS(MICRO)                                                                     \
    switch (rows) {                                                                          \
        case 4: CASE_NV(MICRO, 4) break;                                                     \
        case 3: CASE_NV(MICRO, 3) break;                                                     \
        case 2: CASE_NV(MICRO, 2) break;                                                     \
        default: CASE_NV(MICRO, 1) break;                                                    \
    }

AVX2 static void any_i16(const int16_t *a, int64_t lda, const int16_t *b, int64_t stride,
                         int64_t groups, const Epilogue *e, int64_t r0, int64_t c0, int rows,
                         int nv) {
    CASE_ROWS(micro_i16)
}

AVX2 static void any_u8s7(const uint8_t *a, int64_t lda, const int8_t *b, int64_t stride,
                          int64_t groups, const Epilogue *e, int64_t r0, int64_t c0, int rows,
                          int nv) {
    CASE_ROWS(micro_u8s7)
}

AVX2 static void any_u7s7(const uint8_t *a, int64_t lda, const int8_t *b, int64_t stride,
                          int64_t groups, const Epilogue *e, int64_t r0, int64_t c0, int rows,
                          int nv) {
    CASE_ROWS(micro_u7s7)
}

void seqenc_int8_tile_avx2(int kind, const void *a, const void *packed, const Epilogue *e,
                           int64_t k, int64_t lo, int64_t hi, int64_t c0, int64_t width) {
    /* the panel in slices of up to 24 columns (3 vectors), each slice over the tile's rows
     * while it is in L1 */
    const int mr = kind == INT8_I16 ? MR_I16 : kind == INT8_U8S7 ? MR_U8S7 : MR_U7S7;
    for (int64_t s = 0; s < width; s += 24) {
        const int nv = (int)((width - s < 24 ? width - s : 24) / 8);
        for (int64_t r = lo; r < hi; r += mr) {
            const int rows = (int)(hi - r < mr ? hi - r : mr);
            if (kind == INT8_I16)
                any_i16((const int16_t *)a + r * k, k, (const int16_t *)packed + c0 * k + 2 * s,
                        2 * width, k / 2, e, r, c0 + s, rows, nv);
            else
                (kind == INT8_U8S7 ? any_u8s7 : any_u7s7)(
                    (const uint8_t *)a + r * k, k, (const int8_t *)packed + c0 * k + 4 * s,
                    4 * width, k / 4, e, r, c0 + s, rows, nv);
        }
    }
}

/* float32 rows -> quantised rows, one scale per row: scale[r] = max_c |x[r, c] mul[c]| / 127
 * (1 for an all-zero row) and q = x mul / scale rounded to nearest even, clamped to +-127:
 * the arithmetic of quantize_rows in avx512.c (x mul rounded once, times the reciprocal of
 * the scale), so both give the same q. mul NULL: no smoothing. Stored as int8, as uint8 q + 128
 * (the VNNI and U8S7 kernels' activations) or int16 (INT8_I16's); QUANT_U7 (U7S7's): 63 in
 * place of 127, stored as uint8 q + 64. n % 8 == 0. */
AVX2 static inline __m256 scaled8(const float *row, const float *mul, int64_t c) {
    const __m256 v = _mm256_loadu_ps(row + c);
    return mul ? _mm256_mul_ps(v, _mm256_loadu_ps(mul + c)) : v;
}

AVX2 void seqenc_int8_quantize_rows(const float *x, const float *mul, void *q, float *scale,
                                    int64_t n, int64_t lo, int64_t hi, int format) {
    const int u7 = format == QUANT_U7;
    const __m256i top_q = _mm256_set1_epi32(u7 ? 63 : 127);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t r = lo; r < hi; r++) {
        const float *row = x + r * n;
        __m256 top = _mm256_setzero_ps();
        for (int64_t c = 0; c < n; c += 8)
            top = _mm256_max_ps(top, _mm256_and_ps(scaled8(row, mul, c), abs_mask));
        const float m = horizontal_max(top);
        const float s = m > 1e-30f ? m / (u7 ? 63.0f : 127.0f) : 1.0f;
        scale[r] = s;
        const __m256 inv = _mm256_set1_ps(1.0f / s);
        for (int64_t c = 0; c < n; c += 8) {
            __m256i v = _mm256_cvtps_epi32(_mm256_mul_ps(scaled8(row, mul, c), inv));
            v = _mm256_max_epi32(_mm256_min_epi32(v, top_q), _mm256_sub_epi32(
                                 _mm256_setzero_si256(), top_q));
            if (u7) v = _mm256_add_epi32(v, _mm256_set1_epi32(64));
            const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(v),
                                                _mm256_extracti128_si256(v, 1));
            if (format == QUANT_I16) {
                _mm_storeu_si128((__m128i *)((int16_t *)q + r * n + c), w16);
                continue;
            }
            __m128i b8 = _mm_packs_epi16(w16, w16); /* low 8 bytes */
            if (format == QUANT_U8) b8 = _mm_xor_si128(b8, _mm_set1_epi8((char)0x80));
            _mm_storel_epi64((__m128i *)((int8_t *)q + r * n + c), b8);
        }
    }
}

typedef struct {
    const float *x, *mul;
    void *q;
    float *scale;
    int64_t rows, n;
    int format;
} Quantize;

static void quantize_task(void *ctx, int64_t b) {
    const Quantize *j = ctx;
    seqenc_int8_quantize_rows(j->x, j->mul, j->q, j->scale, j->n, b * 16,
                              b * 16 + 16 < j->rows ? b * 16 + 16 : j->rows, j->format);
}

void seqenc_quantize_int8(const float *x, const float *mul, void *q, float *scale,
                          int64_t rows, int64_t n, int threads, int format, int openmp) {
    const Quantize j = {x, mul, q, scale, rows, n, format};
    const int64_t blocks = (rows + 15) / 16;
    if (!openmp) {
        seqenc_run_tasks(quantize_task, (void *)&j, blocks, threads);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < blocks; b++) quantize_task((void *)&j, b);
}
#endif
