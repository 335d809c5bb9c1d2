/* What gemm_int8.c (the drivers) shares with the files of its micro-kernels, gemm_int8_vnni.c
 * (AVX512-VNNI, AVX-VNNI), gemm_int8_amx.c (AMX-INT8) and gemm_int8_avx2.c (AVX2 without VNNI): the tile's epilogue and
 * the tile entry points. Not part of module.c's interface (int8.h is). */
#ifndef SEQENC_INT8_TILE_H
#define SEQENC_INT8_TILE_H
#include "int8.h"

#ifdef SEQENC_X86
#include <string.h>

#define PANEL 48
#define TILE_ROWS 64

#define AVXVNNI __attribute__((target("avx2,fma,avxvnni")))
#define VNNI512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")))

static inline int32_t load4(const void *p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The tile's destination and epilogue: dequantise into out, or store the raw sums. */
typedef struct {
    const int32_t *corr;      /* (M,) subtracted from the sums, or NULL */
    const float *row_scale;   /* (N,), or NULL: int32 out */
    const float *col_scale;   /* (M,) */
    void *out;
    int64_t ldc;
    const float *gelu_bias;   /* (M,): gelu(sum + bias) stored (all kinds but VNNI256), or NULL */
} Epilogue;

AVX2 static inline void store8(const Epilogue *e, int64_t r, int64_t c, __m256i acc) {
    if (e->corr) acc = _mm256_sub_epi32(acc, _mm256_loadu_si256((const __m256i *)(e->corr + c)));
    if (!e->row_scale) {
        _mm256_storeu_si256((__m256i *)((int32_t *)e->out + r * e->ldc + c), acc);
        return;
    }
    const __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(e->row_scale[r]));
    __m256 y = _mm256_mul_ps(v, _mm256_loadu_ps(e->col_scale + c));
    if (e->gelu_bias) { /* bias_gelu_'s arithmetic (elementwise.c), on the tile in registers */
        y = _mm256_add_ps(y, _mm256_loadu_ps(e->gelu_bias + c));
        y = _mm256_mul_ps(y, normal_cdf256(y));
    }
    _mm256_storeu_ps((float *)e->out + r * e->ldc + c, y);
}

/* The 16-lane store8: VNNI512's epilogue, and AMX's on its stored C tiles. */
VNNI512 static inline void store16(const Epilogue *e, int64_t r, int64_t c, __m512i acc) {
    if (e->corr) acc = _mm512_sub_epi32(acc, _mm512_loadu_si512(e->corr + c));
    if (!e->row_scale) {
        _mm512_storeu_si512((int32_t *)e->out + r * e->ldc + c, acc);
        return;
    }
    const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), _mm512_set1_ps(e->row_scale[r]));
    __m512 y = _mm512_mul_ps(v, _mm512_loadu_ps(e->col_scale + c));
    if (e->gelu_bias) /* bias_gelu_'s int8 arithmetic (avx512.c), on the tile in registers */
        y = gelu512_for_int8(_mm512_add_ps(y, _mm512_loadu_ps(e->gelu_bias + c)));
    _mm512_storeu_ps((float *)e->out + r * e->ldc + c, y);
}

/* One tile: rows lo .. hi of A (k values each, the kind's format) against the panel at column
 * c0 of the given width, through e. The VNNI kinds (gemm_int8_vnni.c) and the AVX2 ones
 * (gemm_int8_avx2.c). */
void seqenc_int8_tile_vnni(int kind, const void *a, const void *packed, const Epilogue *e,
                           int64_t k, int64_t lo, int64_t hi, int64_t c0, int64_t width);
void seqenc_int8_tile_avx2(int kind, const void *a, const void *packed, const Epilogue *e,
                           int64_t k, int64_t lo, int64_t hi, int64_t c0, int64_t width);
/* INT8_AMX (gemm_int8_amx.c): rows lo .. hi against the panels from column c0 (a panel's
 * first) to c1; k % 64 == 0. seqenc_int8_amx_runs: the CPU has AMX-INT8 and Linux let this
 * process use it (asked once). */
void seqenc_int8_tile_amx(const void *a, const void *packed, const Epilogue *e, int64_t k,
                          int64_t lo, int64_t hi, int64_t c0, int64_t c1);
int seqenc_int8_amx_runs(void);
/* rows lo .. hi of x (n columns) quantised into q in `format` (gemm_int8_avx2.c). */
AVX2 void seqenc_int8_quantize_rows(const float *x, const float *mul, void *q, float *scale,
                                    int64_t n, int64_t lo, int64_t hi, int format);
/* The same into QUANT_U8 with 16 lanes (n % 16 == 0; gemm_int8_vnni.c), the same bits. */
VNNI512 void seqenc_int8_quantize_rows512(const float *x, const float *mul, uint8_t *q,
                                          float *scale, int64_t n, int64_t lo, int64_t hi);
/* LayerNorm(y + bias + residual) * gamma + beta on rows lo .. hi, 16 lanes (VNNI512 tasks) */
VNNI512 void seqenc_int8_add_layernorm512(float *y, int64_t ldc, const Int8Epilogue *p, int64_t n,
                                          int64_t lo, int64_t hi, float *row);
#endif
#endif
