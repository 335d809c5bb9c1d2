/* The int8 micro-kernels for CPUs with VNNI (gemm_int8.c says how the weights are packed and
 * what the sums are): vpdpbusd adds four uint8 x int8 products to each int32 lane, on uint8
 * activations q + 128 and int8 weights in quads; the shift's 128 sum_k w[c, k] is corr[c],
 * subtracted in the epilogue.
 *   INT8_VNNI512 (AVX512-VNNI): 8 rows x 3 vectors of 16 columns in zmm registers.
 *   INT8_VNNI256 (AVX-VNNI): 4 rows x 3 vectors of 8 columns.
 * And the 16-lane LayerNorm and quantisation the VNNI512 and AMX tasks run on their rows
 * (seqenc_quant_gemm_int8). */
#include "int8_tile.h"

#ifdef SEQENC_X86
#define MR512 8 /* rows x 3 vectors of 16 columns: 24 accumulators of 32 zmm registers */
#define MR256 4 /* rows x 3 vectors of 8 columns: 12 accumulators of 16 ymm registers */

/* rows x nv vectors over all of K, always inlined with constant rows and nv so that the
 * accumulators stay in registers. b points at the first column's k-group 0 in the panel,
 * stride the bytes from one k-group to the next (width 4). */
__attribute__((always_inline)) VNNI512 static inline void micro_vnni512(
    const uint8_t *a, int64_t lda, const int8_t *b, int64_t stride, int64_t groups,
    const Epilogue *e, int64_t r0, int64_t c0, const int rows, const int nv) {
    __m512i acc[MR512][3];
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_si512();
    for (int64_t g = 0; g < groups; g++) {
        __m512i w[3];
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) w[v] = _mm512_loadu_si512(b + g * stride + 64 * v);
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m512i x = _mm512_set1_epi32(load4(a + r * lda + 4 * g));
            #pragma GCC unroll 8
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], x, w[v]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) store16(e, r0 + r, c0 + 16 * v, acc[r][v]);
}

__attribute__((always_inline)) AVXVNNI static inline void micro_vnni256(
    const uint8_t *a, int64_t lda, const int8_t *b, int64_t stride, int64_t groups,
    const Epilogue *e, int64_t r0, int64_t c0, const int rows, const int nv) {
    __m256i acc[MR256][3];
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[r][v] = _mm256_setzero_si256();
    for (int64_t g = 0; g < groups; g++) {
        __m256i w[3];
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++)
            w[v] = _mm256_loadu_si256((const __m256i *)(b + g * stride + 32 * v));
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m256i x = _mm256_set1_epi32(load4(a + r * lda + 4 * g));
            #pragma GCC unroll 8
            for (int v = 0; v < nv; v++) acc[r][v] = _mm256_dpbusd_avx_epi32(acc[r][v], x, w[v]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 8
        for (int v = 0; v < nv; v++) store8(e, r0 + r, c0 + 8 * v, acc[r][v]);
}

/* The dispatch from run-time (rows, nv) to the inlined constant-shape micro kernels. */
#define CASE_NV(MICRO, ROWS)                                                                 \
    switch (nv) {                                                                            \
        case 1: MICRO(a, lda, b, stride, groups, e, r0, c0, ROWS, 1); break;                 \
        case 2: MICRO(a, lda, b, stride, groups, e, r0, c0, ROWS, 2); break;                 \
        default: MICRO(a, lda, b, stride, groups, e, r0, c0, ROWS, 3); break;                \
    }

VNNI512 static void any_vnni512(const uint8_t *a, int64_t lda, const int8_t *b,
                                   int64_t stride, int64_t groups, const Epilogue *e,
                                   int64_t r0, int64_t c0, int rows, int nv) {
    switch (rows) {
        case 8: CASE_NV(micro_vnni512, 8) break;
        case 7: CASE_NV(micro_vnni512, 7) break;
        case 6: CASE_NV(micro_vnni512, 6) break;
        case 5: CASE_NV(micro_vnni512, 5) break;
        case 4: CASE_NV(micro_vnni512, 4) break;
        case 3: CASE_NV(micro_vnni512, 3) break;
        case 2: CASE_NV(micro_vnni512, 2) break;
        default: CASE_NV(micro_vnni512, 1) break;
    }
}

AVXVNNI static void any_vnni256(const uint8_t *a, int64_t lda, const int8_t *b,
                                int64_t stride, int64_t groups, const Epilogue *e, int64_t r0,
                                int64_t c0, int rows, int nv) {
    switch (rows) {
        case 4: CASE_NV(micro_vnni256, 4) break;
        case 3: CASE_NV(micro_vnni256, 3) break;
        case 2: CASE_NV(micro_vnni256, 2) break;
        default: CASE_NV(micro_vnni256, 1) break;
    }
}

void seqenc_int8_tile_vnni(int kind, const void *a, const void *packed, const Epilogue *e,
                           int64_t k, int64_t lo, int64_t hi, int64_t c0, int64_t width) {
    if (kind == INT8_VNNI512) {
        const int8_t *b = (const int8_t *)packed + c0 * k;
        for (int64_t r = lo; r < hi; r += MR512)
            any_vnni512((const uint8_t *)a + r * k, k, b, 4 * width, k / 4, e, r, c0,
                        (int)(hi - r < MR512 ? hi - r : MR512), (int)(width / 16));
        return;
    }
    /* the panel in slices of up to 24 columns (3 vectors), each slice over the tile's rows
     * while it is in L1 */
    for (int64_t s = 0; s < width; s += 24) {
        const int nv = (int)((width - s < 24 ? width - s : 24) / 8);
        for (int64_t r = lo; r < hi; r += MR256) {
            const int rows = (int)(hi - r < MR256 ? hi - r : MR256);
            any_vnni256((const uint8_t *)a + r * k, k,
                        (const int8_t *)packed + c0 * k + 4 * s, 4 * width, k / 4, e, r,
                        c0 + s, rows, nv);
        }
    }
}

/* Row r of x (n values, n % 16 == 0) into QUANT_U8 given its maximum m of |x mul|:
 * seqenc_int8_quantize_rows' float32 operations on every value, so the same q. 64 values at a
 * time are narrowed by two saturating packs and one permute (4 shuffles where vpmovdb takes 8),
 * the packs' saturation at 127 standing in for the clamp from above (min(i, 127) then
 * max(., -127) equals max(i, -127) saturated to 127 for every int32 i). */
VNNI512 static inline void quantize_row512(const float *row, const float *mul, uint8_t *q,
                                           float *scale, int64_t n, float m) {
    const __m512i bottom_q = _mm512_set1_epi32(-127), top_q = _mm512_set1_epi32(127);
    /* packs interleave 128-bit lanes: dword 4 k + j of the packed bytes is vector j's k-th */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const float s = m > 1e-30f ? m / 127.0f : 1.0f;
    *scale = s;
    const __m512 inv = _mm512_set1_ps(1.0f / s);
#define Q_AT(c)                                                                              \
    _mm512_max_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(                                       \
        mul ? _mm512_mul_ps(_mm512_loadu_ps(row + (c)), _mm512_loadu_ps(mul + (c)))         \
            : _mm512_loadu_ps(row + (c)), inv)), bottom_q)
    int64_t c = 0;
    for (; c + 64 <= n; c += 64) {
        const __m512i w0 = _mm512_packs_epi32(Q_AT(c), Q_AT(c + 16));
        const __m512i w1 = _mm512_packs_epi32(Q_AT(c + 32), Q_AT(c + 48));
        const __m512i b = _mm512_permutexvar_epi32(order, _mm512_packs_epi16(w0, w1));
        _mm512_storeu_si512(q + c, _mm512_xor_si512(b, _mm512_set1_epi8((char)0x80)));
    }
    for (; c < n; c += 16)
        _mm_storeu_si128((__m128i *)(q + c),
                         _mm_xor_si128(_mm512_cvtepi32_epi8(_mm512_min_epi32(Q_AT(c), top_q)),
                                       _mm_set1_epi8((char)0x80)));
#undef Q_AT
}

/* seqenc_int8_quantize_rows into QUANT_U8 with 16 lanes (n % 16 == 0): the same float32
 * operations on every value and the same (exact) maximum of each row, so the same q and scales
 * in half the instructions; for the VNNI512 and AMX tasks. */
VNNI512 void seqenc_int8_quantize_rows512(const float *x, const float *mul, uint8_t *q,
                                          float *scale, int64_t n, int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; r++) {
        const float *row = x + r * n;
        /* four running maxima (max is exact and commutative: the same m): one chain of
         * vmaxps waits 4 cycles a vector */
        __m512 t0 = _mm512_setzero_ps(), t1 = t0, t2 = t0, t3 = t0;
#define ABS_AT(c) _mm512_abs_ps(mul ? _mm512_mul_ps(_mm512_loadu_ps(row + (c)),              \
                                                    _mm512_loadu_ps(mul + (c)))              \
                                    : _mm512_loadu_ps(row + (c)))
        int64_t c = 0;
        for (; c + 64 <= n; c += 64) {
            t0 = _mm512_max_ps(t0, ABS_AT(c));
            t1 = _mm512_max_ps(t1, ABS_AT(c + 16));
            t2 = _mm512_max_ps(t2, ABS_AT(c + 32));
            t3 = _mm512_max_ps(t3, ABS_AT(c + 48));
        }
        for (; c < n; c += 16) t0 = _mm512_max_ps(t0, ABS_AT(c));
#undef ABS_AT
        const float m = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(t0, t1),
                                                           _mm512_max_ps(t2, t3)));
        quantize_row512(row, mul, q + r * n, scale + r, n, m);
    }
}

/* y = LayerNorm(y + bias + residual) * gamma + beta on rows lo .. hi of the task's output, while
 * they are in its cache: add_layernorm_rows_f32's arithmetic (avx512.c), the same order of
 * every float32 operation, so the result is the separate pass's. row: n floats of scratch. */
VNNI512 void seqenc_int8_add_layernorm512(float *y, int64_t ldc, const Int8Epilogue *p,
                                          int64_t n, int64_t lo, int64_t hi, float *row) {
    for (int64_t r = lo; r < hi; r++) {
        float *yr = y + r * ldc;
        const float *res = p->residual + r * n;
        __m512 sum = _mm512_setzero_ps();
        for (int64_t c = 0; c < n; c += 16) {
            __m512 v = _mm512_add_ps(_mm512_add_ps(_mm512_loadu_ps(yr + c),
                                                   _mm512_loadu_ps(p->bias + c)),
                                     _mm512_loadu_ps(res + c));
            _mm512_storeu_ps(row + c, v);
            sum = _mm512_add_ps(sum, v);
        }
        const __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / (float)n);
        __m512 sq = _mm512_setzero_ps();
        for (int64_t c = 0; c < n; c += 16) {
            __m512 d = _mm512_sub_ps(_mm512_loadu_ps(row + c), mean);
            sq = _mm512_fmadd_ps(d, d, sq);
        }
        const float var = _mm512_reduce_add_ps(sq) / (float)n;
        const __m512 scale = _mm512_set1_ps(1.0f / sqrtf(var + p->eps));
        for (int64_t c = 0; c < n; c += 16) {
            __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_loadu_ps(row + c), mean), scale);
            _mm512_storeu_ps(yr + c, _mm512_fmadd_ps(d, _mm512_loadu_ps(p->gamma + c),
                                                     _mm512_loadu_ps(p->beta + c)));
        }
    }
}
#endif
