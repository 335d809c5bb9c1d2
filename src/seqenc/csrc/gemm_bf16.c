/* C = A W^T with bfloat16 inputs and float32 accumulation and output (AVX512-BF16, vdpbf16ps).
 *
 * Why our own: PyTorch's CPU bf16 matmul (oneDNN's) rounds its output to bf16, and the fused
 * bf16 layer then kept its residual stream in bf16 as well; together they cost the accuracy the
 * issue asks for (min cosine to fp32 0.99987 on the test sentences). With this GEMM only its
 * inputs are bf16: every output, the residual stream, LayerNorm and attention stay float32.
 *
 *   A (N, K) bf16 rows (K even; the caller converts them from float32 once per GEMM)
 *   W (M, K) packed once by the caller (seqenc/precision.py) into panels of up to PANEL columns:
 *     panel p (columns c0 .. c0 + w) holds, for each pair of k (k2 = k / 2), the w columns'
 *     two values side by side: packed[c0 K + k2 2w + 2j + t] = W[c0 + j, 2 k2 + t]
 *     so one 64-byte load is 16 columns x 2 k, what vdpbf16ps multiplies with a broadcast pair of
 *     A (w is PANEL except in the last panel; every w is a multiple of 16).
 *   C (N, M) float32, row stride ldc; or, given the FFN's up bias, gelu(A W^T + bias) rounded
 *     to bf16 (nearest even) as each register tile is stored: the down projection's input,
 *     with no float32 (N, 4D) matrix written and read back, and no separate GELU pass
 *     (simd512.h's gelu512_for_bf16_n: gemm_bf16.GELU_BF16_RELATIVE_ERROR, then bf16).
 *     Or, given norm (the out and down projections), C = LayerNorm(C + bias + residual) *
 *     gamma + beta (+ its bf16 copy) on each task's whole rows while they are in L2 (tasks of
 *     up to TILE_ROWS rows x every panel then): avx512.c's function, add_layer_norm_'s bits.
 *
 * Each product of two bf16 values is exact in float32 (8 x 8 significant bits) and the sums are
 * float32 additions, so the error against float64 on the same bf16 inputs is that of a float32
 * dot product of length K (tests/nn/test_gemm_bf16.py states and checks the bound).
 * Work: tiles of up to TILE_ROWS rows x one panel, handed out dynamically (a descheduled thread
 * does not own half the matrix), panel-major so a thread's consecutive tiles reuse the panel
 * (K x 48 x 2 bytes, <= 147 KB for K = 1536: in L2). Inside a tile, 8 rows at a time: 8 x 3
 * accumulators of 16 floats, all in registers for the whole K loop. */
#include "simd512.h"

#ifdef SEQENC_X86
#include <string.h>

#define PANEL 48
#define MR 8
#define TILE_ROWS 64

/* rows (<= MR) x nv (<= 3) vectors of 16 columns, over all K; always inlined with constant
 * rows and nv so the accumulators live in registers. */
__attribute__((always_inline)) AVX512BF16 static inline void micro(
    const uint16_t *a, int64_t lda, const uint16_t *b, int64_t width, int64_t k2n, float *c,
    int64_t ldc, const float *gelu_bias, uint16_t *c16, const int rows, const int nv) {
    __m512 acc[MR][3];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t k2 = 0; k2 < k2n; k2++) {
        const uint16_t *bk = b + k2 * 2 * width;
        __m512bh w[3];
        for (int v = 0; v < nv; v++) w[v] = (__m512bh)_mm512_loadu_si512(bk + 32 * v);
        for (int r = 0; r < rows; r++) {
            int32_t pair;
            memcpy(&pair, a + r * lda + 2 * k2, sizeof pair);
            const __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_dpbf16_ps(acc[r][v], x, w[v]);
        }
    }
    if (gelu_bias) { /* the FFN's up projection: bias + GELU, stored as the down GEMM's input;
                      * 8 vectors' GELU chains side by side (simd512.h's gelu512_for_bf16_n) */
        __m512 g[MR * 3];
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < nv; v++)
                g[r * nv + v] = _mm512_add_ps(acc[r][v], _mm512_loadu_ps(gelu_bias + 16 * v));
#pragma GCC unroll 3
        for (int i = 0; i < rows * nv; i += 8)
            gelu512_for_bf16_n(g + i, rows * nv - i < 8 ? rows * nv - i : 8);
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < nv; v++) store_bf16(c16 + r * ldc + 16 * v, g[r * nv + v]);
    } else
        for (int r = 0; r < rows; r++)
            for (int v = 0; v < nv; v++) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
}

#define MICRO_NV(ROWS)                                                                      \
    switch (nv) {                                                                           \
        case 1: micro(a, lda, b, width, k2n, c, ldc, gelu_bias, c16, ROWS, 1); break;       \
        case 2: micro(a, lda, b, width, k2n, c, ldc, gelu_bias, c16, ROWS, 2); break;       \
        default: micro(a, lda, b, width, k2n, c, ldc, gelu_bias, c16, ROWS, 3); break;      \
    }

AVX512BF16 static void micro_any(const uint16_t *a, int64_t lda, const uint16_t *b,
                                 int64_t width, int64_t k2n, float *c, int64_t ldc,
                                 const float *gelu_bias, uint16_t *c16, int rows, int nv) {
    switch (rows) {
        case 8: MICRO_NV(8) break;
        case 7: MICRO_NV(7) break;
        case 6: MICRO_NV(6) break;
        case 5: MICRO_NV(5) break;
        case 4: MICRO_NV(4) break;
        case 3: MICRO_NV(3) break;
        case 2: MICRO_NV(2) break;
        default: MICRO_NV(1) break;
    }
}

void seqenc_gemm_bf16(const uint16_t *a, const uint16_t *packed, float *c, int64_t n,
                      int64_t m, int64_t k, int64_t ldc, int threads, const float *gelu_bias,
                      const F32Epilogue *norm) {
    const int64_t k2n = k / 2;
    const int64_t panels = (m + PANEL - 1) / PANEL, row_tiles = (n + TILE_ROWS - 1) / TILE_ROWS;
    uint16_t *c16 = (uint16_t *)c;  /* the output's type with gelu_bias */
    if (norm && threads > 1 && n < 4 * threads * MR) {
        /* too few rows to give each thread whole rows of its own (8 rows on 2 threads: 0.6-0.85x
         * the split below): the panel-major GEMM, then the LayerNorm pass, the same bits */
        seqenc_gemm_bf16(a, packed, c, n, m, k, ldc, threads, NULL, NULL);
        seqenc_add_layernorm512(c, norm->bias, norm->residual, norm->gamma, norm->beta, norm->eps,
                                n, m, threads, DTYPE_F32, norm->copy16);
        return;
    }
    if (norm) { /* tasks of whole rows for the LayerNorm: every panel, then the rows' epilogue
                 * while their rows x M floats are in L2; TILE_ROWS rows, fewer where that
                 * leaves under 4 tasks a thread (64 rows on 2 threads in one task ran at half
                 * the panel-major tasks' speed) */
        int64_t rows = (n + 4 * threads - 1) / (4 * threads);
        rows = rows > TILE_ROWS ? TILE_ROWS : rows < MR ? MR : (rows + MR - 1) / MR * MR;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
        for (int64_t t = 0; t < (n + rows - 1) / rows; t++) {
            const int64_t lo = t * rows, hi = lo + rows < n ? lo + rows : n;
            for (int64_t c0 = 0; c0 < m; c0 += PANEL)
                for (int64_t r = lo; r < hi; r += MR)
                    micro_any(a + r * k, k, packed + c0 * k, m - c0 < PANEL ? m - c0 : PANEL,
                              k2n, c + r * ldc + c0, ldc, NULL, NULL,
                              (int)(hi - r < MR ? hi - r : MR),
                              (int)((m - c0 < PANEL ? m - c0 : PANEL) / 16));
            seqenc_add_layernorm_rows512(c, norm->bias, norm->residual, norm->gamma, norm->beta,
                                         norm->eps, m, lo, hi, norm->copy16);
        }
        return;
    }
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t t = 0; t < panels * row_tiles; t++) {
        const int64_t p = t / row_tiles, lo = (t % row_tiles) * TILE_ROWS;
        const int64_t c0 = p * PANEL, width = m - c0 < PANEL ? m - c0 : PANEL;
        const int64_t hi = lo + TILE_ROWS < n ? lo + TILE_ROWS : n;
        const uint16_t *b = packed + c0 * k;
        for (int64_t r = lo; r < hi; r += MR) {
            const int rows = (int)(hi - r < MR ? hi - r : MR);
            micro_any(a + r * k, k, b, width, k2n, c + r * ldc + c0, ldc,
                      gelu_bias ? gelu_bias + c0 : NULL, c16 + r * ldc + c0, rows,
                      (int)(width / 16));
        }
    }
}

/* float32 (N, K) -> bf16 rounded to nearest even (vcvtneps2bf16), K % 16 == 0: the GEMM's A. */
AVX512BF16 static void to_bf16_rows(const float *x, uint16_t *y, int64_t k, int64_t lo,
                                    int64_t hi) {
    for (int64_t i = lo * k; i < hi * k; i += 16) store_bf16(y + i, _mm512_loadu_ps(x + i));
}

void seqenc_to_bf16(const float *x, uint16_t *y, int64_t n, int64_t k, int threads) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t b = 0; b < (n + 63) / 64; b++)
        to_bf16_rows(x, y, k, b * 64, b * 64 + 64 < n ? b * 64 + 64 : n);
}
#endif
