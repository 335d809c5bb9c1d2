/* gemm_int8.c's entry points: int8 GEMMs with exact int32 sums and the quantisation that feeds
 * them (gemm_int8.c says how the weights are packed). */
#ifndef SEQENC_INT8_H
#define SEQENC_INT8_H
#include "simd512.h"

#ifdef SEQENC_X86
/* The kernels, by the instructions they need: AVX2 (int16 pairs, vpmaddwd), AVX-VNNI and
 * AVX512-VNNI (vpdpbusd on uint8 activations q + 128), AVX2's vpmaddubsw on 7-bit weights
 * with uint8 activations q + 128 (U8S7) or 7-bit ones, q + 64 (U7S7), and AMX-INT8 (tdpbusd on
 * VNNI512's operands and packing, with its epilogues; VNNI512's kernel where K % 64 != 0). */
enum { INT8_I16 = 0, INT8_VNNI256 = 1, INT8_VNNI512 = 2, INT8_U8S7 = 3, INT8_U7S7 = 4,
       INT8_AMX = 5 };
#define INT8_KINDS 6
/* How seqenc_quantize_int8 stores q: int8, uint8 q + 128, int16, uint8 q + 64 (|q| <= 63). */
enum { QUANT_I8 = 0, QUANT_U8 = 1, QUANT_I16 = 2, QUANT_U7 = 3 };

/* out (N, M) = dequantised A W^T (float32), or the int32 sums when row_scale is NULL; corr
 * (M,) int32 subtracted from the sums (NULL: none). K % 4 == 0, every panel's width and M
 * % 16 == 0, K <= 65536, and the CPU runs `kind` (seqenc_int8_kernels): checked by module.c. */
void seqenc_gemm_int8(int kind, const void *a, const void *packed, const int32_t *corr,
                      const float *row_scale, const float *col_scale, void *out, int64_t n,
                      int64_t m, int64_t k, int64_t ldc, int threads, int openmp);
/* float32 (rows, n) -> q (rows, n) in `format` and scale (rows,); n % 8 == 0; AVX2. Both run
 * on tasks.c's threads, or on OpenMP's when openmp is true. */
void seqenc_quantize_int8(const float *x, const float *mul, void *q, float *scale,
                          int64_t rows, int64_t n, int threads, int format, int openmp);
/* What a post-norm layer does after a GEMM, done by the GEMM's tasks (every kind but
 * INT8_VNNI256): gelu(y + gelu_bias) as each tile is stored (the FFN's up projection), or, with
 * gamma, LayerNorm(y + bias + residual) * gamma + beta on each task's rows (ldc == m; residual
 * (n, m)). The arithmetic of the separate kernels of the same width (avx512.c's for VNNI512,
 * elementwise.c's for the 8-lane kinds), in the same order: the same bits. */
typedef struct {
    const float *gelu_bias;
    const float *bias, *residual, *gamma, *beta;
    float eps;
    /* q_out (n, m) and scale_out (n,): the result rows quantised for the next GEMM (as
     * seqenc_quantize_int8 would, each column times q_mul first, NULL: none) in q_format (-1:
     * the kind's own, e.g. uint8 q + 128 for VNNI512, int16 for I16; else a QUANT_*, where the
     * next GEMM is of another kind) instead of stored in out (with gelu_bias, not with gamma). */
    void *q_out;
    float *scale_out;
    const float *q_mul;
    int q_format;
} Int8Epilogue;

/* Both in one pass over x (float32, n x k; mul as for seqenc_quantize_int8): out = the
 * dequantised product, float32, then epi (NULL: none). With x NULL the rows come quantised
 * already: q_in (n, k) in the kind's format and scale_in (n,) (an epilogue's q_out, scale_out).
 * -1: no memory for a thread's buffer. */
int seqenc_quant_gemm_int8(int kind, const float *x, const float *mul, const void *packed,
                           const int32_t *corr, const float *col_scale, float *out, int64_t n,
                           int64_t m, int64_t k, int64_t ldc, int threads,
                           const Int8Epilogue *epi, const void *q_in, const float *scale_in,
                           int openmp);
/* Bit INT8_* set for each kernel this CPU runs. */
int seqenc_int8_kernels(void);
/* The QUANT_* format a kind's activations come in. */
int seqenc_int8_format(int kind);
/* peak.c's PEAK_AMX_INT8 probe (gemm_int8_amx.c): operations done by `iters` rounds of
 * tdpbusd on this thread, 0 where AMX-INT8 does not run. */
double seqenc_int8_amx_peak(int64_t iters, float *sink);
#endif
#endif
