/* C = A W^T in float32 with AVX-512 FMAs (gemm_bf16.c's register tile, one k per step).
 *
 * Why our own: on the AMD EPYC (Zen 5) machines here MKL's sgemm runs its AVX2 code (probe: ~139
 * GFLOP/s on 2 threads), while the cores do twice that with 512-bit FMAs; ONNX Runtime and
 * OpenVINO (oneDNN) reach 190-210 GFLOP/s on MiniLM's shapes (benchmarks/RESULTS.md).
 *
 *   A (N, K) float32 rows, W (M, K) float32 rows (an nn.Linear weight as it is), C (N, M) float32
 *   with row stride ldc, M % 16 == 0.
 * W is not packed ahead of time (a cache of packed weights went stale when an optimizer changed
 * them in place without bumping their version): each thread copies the 48-column panel it works
 * on into a buffer, k-major (buf[k w + j] = W[c0 + j, k]), and keeps it while its next tiles are
 * in the same panel; that is M K copies per thread at most, against 2 N M K flops.
 * Each output is a float32 sum of K products, each FMA rounding once: the error bound is a
 * float32 dot product's (tests/nn/test_gemm_f32.py). */
#include "simd512.h"

#ifdef SEQENC_X86
#include <omp.h>

#define PANEL 48
#define MR 8
#define TILE_ROWS 128

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

static void pack_panel(const float *w, float *buf, int64_t c0, int64_t width, int64_t k) {
    for (int64_t j = 0; j < width; j++) {
        const float *src = w + (c0 + j) * k;
        for (int64_t i = 0; i < k; i++) buf[i * width + j] = src[i];
    }
}

/* -1: no memory for the panel buffers. */
int seqenc_gemm_f32(const float *a, const float *w, float *c, int64_t n, int64_t m, int64_t k,
                    int64_t ldc, int threads) {
    const int64_t panels = (m + PANEL - 1) / PANEL, row_tiles = (n + TILE_ROWS - 1) / TILE_ROWS;
    const size_t per_thread = ((size_t)k * PANEL * sizeof(float) + 63) / 64 * 64;
    float *buffers = aligned_alloc(64, per_thread * (size_t)threads);
    if (!buffers) return -1;
#pragma omp parallel num_threads(threads)
    {
        float *buf = (float *)((char *)buffers + per_thread * (size_t)omp_get_thread_num());
        int64_t packed = -1;  /* the panel in buf */
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < panels * row_tiles; t++) {
            const int64_t p = t / row_tiles, lo = (t % row_tiles) * TILE_ROWS;
            const int64_t c0 = p * PANEL, width = m - c0 < PANEL ? m - c0 : PANEL;
            const int64_t hi = lo + TILE_ROWS < n ? lo + TILE_ROWS : n;
            if (p != packed) {
                pack_panel(w, buf, c0, width, k);
                packed = p;
            }
            for (int64_t r = lo; r < hi; r += MR) {
                const int rows = (int)(hi - r < MR ? hi - r : MR);
                micro_f32_any(a + r * k, k, buf, width, k, c + r * ldc + c0, ldc, rows,
                              (int)(width / 16));
            }
        }
    }
    free(buffers);
    return 0;
}
#endif
