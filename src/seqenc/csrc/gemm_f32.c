/* C = A W^T in float32 with AVX-512 FMAs, weights packed once (gemm_bf16.c's layout and tiling,
 * one k per step instead of a pair).
 *
 * Why our own: on the AMD EPYC (Zen 5) machines here MKL's sgemm runs its AVX2 code (probe: ~139
 * GFLOP/s on 2 threads), while the cores do twice that with 512-bit FMAs; ONNX Runtime and
 * OpenVINO (oneDNN) reach 190-210 GFLOP/s on MiniLM's shapes (benchmarks/RESULTS.md).
 *
 *   A (N, K) float32 rows, C (N, M) float32 with row stride ldc;
 *   W (M, K) packed: panel p (columns c0 .. c0 + w, w = PANEL but in the last panel, a multiple of
 *   16) holds packed[c0 K + k w + j] = W[c0 + j, k].
 * Each output is a float32 sum of K float32 products, each FMA rounding once: the error bound
 * is a float32 dot product's (tests/nn/test_gemm_f32.py). */
#include "simd512.h"

#ifdef SEQENC_X86
#define PANEL 48
#define MR 8
#define TILE_ROWS 64

__attribute__((always_inline)) AVX512 static inline void micro_f32(
    const float *a, int64_t lda, const float *b, int64_t width, int64_t k, float *c,
    int64_t ldc, const int rows, const int nv) {
    __m512 acc[MR][3];
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t i = 0; i < k; i++) {
        const float *bk = b + i * width;
        __m512 w[3];
        for (int v = 0; v < nv; v++) w[v] = _mm512_loadu_ps(bk + 16 * v);
        for (int r = 0; r < rows; r++) {
            const __m512 x = _mm512_set1_ps(a[r * lda + i]);
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(x, w[v], acc[r][v]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
}

#define MICRO_F32_NV(ROWS)                                                                  \
    switch (nv) {                                                                           \
        case 1: micro_f32(a, lda, b, width, k, c, ldc, ROWS, 1); break;                     \
        case 2: micro_f32(a, lda, b, width, k, c, ldc, ROWS, 2); break;                     \
        default: micro_f32(a, lda, b, width, k, c, ldc, ROWS, 3); break;                    \
    }

AVX512 static void micro_f32_any(const float *a, int64_t lda, const float *b, int64_t width,
                                 int64_t k, float *c, int64_t ldc, int rows, int nv) {
    switch (rows) {
        case 8: MICRO_F32_NV(8) break;
        case 7: MICRO_F32_NV(7) break;
        case 6: MICRO_F32_NV(6) break;
        case 5: MICRO_F32_NV(5) break;
        case 4: MICRO_F32_NV(4) break;
        case 3: MICRO_F32_NV(3) break;
        case 2: MICRO_F32_NV(2) break;
        default: MICRO_F32_NV(1) break;
    }
}

void seqenc_gemm_f32(const float *a, const float *packed, float *c, int64_t n, int64_t m,
                     int64_t k, int64_t ldc, int threads) {
    const int64_t panels = (m + PANEL - 1) / PANEL, row_tiles = (n + TILE_ROWS - 1) / TILE_ROWS;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t t = 0; t < panels * row_tiles; t++) {
        const int64_t p = t / row_tiles, lo = (t % row_tiles) * TILE_ROWS;
        const int64_t c0 = p * PANEL, width = m - c0 < PANEL ? m - c0 : PANEL;
        const int64_t hi = lo + TILE_ROWS < n ? lo + TILE_ROWS : n;
        const float *b = packed + c0 * k;
        for (int64_t r = lo; r < hi; r += MR) {
            const int rows = (int)(hi - r < MR ? hi - r : MR);
            micro_f32_any(a + r * k, k, b, width, k, c + r * ldc + c0, ldc, rows,
                          (int)(width / 16));
        }
    }
}
#endif
