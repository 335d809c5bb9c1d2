/* C = A W^T in float32 with AVX-512 FMAs, and the post-norm layer's next step in the same pass
 * (gemm_f32_avx2.c's design with 16 lanes and 32 registers).
 *
 * Why our own: on the AMD EPYC (Zen 5) machines here MKL's sgemm runs its AVX2 code (probe: ~139
 * GFLOP/s on 2 threads), while the cores do twice that with 512-bit FMAs; and a separate sgemm
 * sends its (N, M) result out to memory before each epilogue pass reads it back, where here
 * bias + GELU run on each register tile as it is stored (in L1) and bias + residual + LayerNorm
 * on each task's rows while they are in L2.
 *
 *   A (N, K) float32 rows, W (M, K) float32 rows (an nn.Linear weight as it is), C (N, M) float32
 *   with row stride ldc, M % 16 == 0.
 * W is not packed ahead of time (a cache of packed weights went stale when an optimizer changed
 * them in place without bumping their version): each call copies it into panels of NR columns,
 * k-major (panel at c0 K: buf[c0 K + k width + j] = W[c0 + j, k], width NR but the last), into a
 * buffer the thread keeps: M K copies against 2 N M K flops.
 * Work: tasks of up to A_BLOCK bytes of rows x every panel (the rows' A block stays in L2 while
 * the panels pass), so a task ends with whole rows: the LayerNorm's unit. A task first copies
 * its rows into tiles of MR rows, k-major (the broadcasts then read one sequential stream).
 * Each output is a float32 sum of K products in k order, each FMA rounding once: the error bound
 * is a float32 dot product's (tests/nn/test_gemm_f32.py), the same bits however it is split.
 * The epilogues are avx512.c's arithmetic in the same order: bit for bit the separate kernels'
 * result on this GEMM's output.
 * Measured on a Sapphire Rapids Xeon (issue 14, benchmarks/RESULTS.md), one thread, 1200 rows:
 * 69-73% of the FMA probe, 1.04-1.23x the kernel before (A read in place, 128-row tasks, no
 * epilogues; the least on K = 1536), 0.84-0.94x MKL's AVX-512 sgemm. Dropped there: blocking K
 * (128-256 k: 0.95-0.98x, the partial sums go back to C), tiles of 12 x 32, 14 x 32 or 6 x 64
 * (0.93-0.97x), software prefetch of the panel 4-16 k ahead (1.00x). */
#include "scratch.h"
#include "simd512.h"

#ifdef SEQENC_X86
#include <omp.h>
#include <stdlib.h>

#define NR 48 /* columns per panel: three zmm vectors */
#define MR 8  /* rows per register tile: 24 accumulators + 3 weights + a broadcast */
/* bytes of A per task: half of a Sapphire Rapids core's 2 MiB L2, with room for the panels
 * passing (gemm_f32_avx2.c's 192 KiB, sized for a Zen 3's 512 KiB L2, was 0.97-0.99x on
 * K = 384, M = 1152 / 1536, 0.90-0.94x on K = 1536, ~1.0x on M = 384; benchmarks/RESULTS.md) */
#define A_BLOCK (1 << 20)

/* gelu(C + bias) in place on rows x 16 nv columns of C: avx512.c's bias_gelu_rows arithmetic,
 * four vectors at a time (gelu512x4: four independent chains; a short last group repeats its
 * first vector, stored last so that its own result is what stays) */
AVX512 static void gelu_tile(float *c, int64_t ldc, const float *bias, int rows, int nv) {
    const int count = rows * nv;
    for (int q = 0; q < count; q += 4) {
        float *at[4];
        __m512 x[4];
        for (int j = 0; j < 4; j++) {
            const int i = q + j < count ? q + j : q, r = i / nv, v = i % nv;
            at[j] = c + r * ldc + 16 * v;
            x[j] = _mm512_add_ps(_mm512_loadu_ps(at[j]), _mm512_loadu_ps(bias + 16 * v));
        }
        gelu512x4(x);
        for (int j = 3; j >= 0; j--) _mm512_storeu_ps(at[j], x[j]);
    }
}

/* rows x 16 nv columns over all of K; always inlined with constant rows and nv so that the
 * accumulators stay in registers. a: the tile, k-major (MR floats per k, the first `rows`
 * used); b: the panel, k-major (16 nv floats per k). */
__attribute__((always_inline)) AVX512 static inline void micro(
    const float *a, const float *b, int64_t k, float *c, int64_t ldc, const float *gelu_bias,
    const int rows, const int nv) {
    __m512 acc[MR][3];
    for (int r = 0; r < MR; r++) /* the next tile's C rows: in L1 by the time they are stored */
        for (int v = 0; v < nv; v++) _mm_prefetch((const char *)(c + (MR + r) * ldc + 16 * v),
                                                  _MM_HINT_T0);
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) acc[r][v] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t i = 0; i < k; i++) {
        const float *bk = b + i * 16 * nv;
        __m512 w[3];
        for (int v = 0; v < nv; v++) w[v] = _mm512_loadu_ps(bk + 16 * v);
        for (int r = 0; r < rows; r++) {
            const __m512 x = _mm512_set1_ps(a[i * MR + r]);
            for (int v = 0; v < nv; v++) acc[r][v] = _mm512_fmadd_ps(x, w[v], acc[r][v]);
        }
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < nv; v++) _mm512_storeu_ps(c + r * ldc + 16 * v, acc[r][v]);
    if (gelu_bias) gelu_tile(c, ldc, gelu_bias, rows, nv);
}

#define MICRO_NV(ROWS)                                                                     \
    switch (nv) {                                                                          \
        case 1: micro(a, b, k, c, ldc, gelu_bias, ROWS, 1); break;                         \
        case 2: micro(a, b, k, c, ldc, gelu_bias, ROWS, 2); break;                         \
        default: micro(a, b, k, c, ldc, gelu_bias, ROWS, 3); break;                        \
    }

AVX512 static void micro_any(const float *a, const float *b, int64_t k, float *c, int64_t ldc,
                             const float *gelu_bias, int rows, int nv) {
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

/* The panel at column c0 (width columns, a multiple of 8) into its k-major layout, 8 x 8
 * blocks at a time (transpose8). */
AVX512 static void pack_panel(const float *w, float *packed, int64_t c0, int64_t width,
                              int64_t k) {
    float *dst = packed + c0 * k;
    const float *src = w + c0 * k;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        for (int64_t j0 = 0; j0 < width; j0 += 8) {
            __m256 r[8];
            for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(src + (j0 + j) * k + i);
            transpose8(r);
            for (int t = 0; t < 8; t++) _mm256_storeu_ps(dst + (i + t) * width + j0, r[t]);
        }
    for (; i < k; i++)
        for (int64_t j = 0; j < width; j++) dst[i * width + j] = src[j * k + i];
}

/* Rows [lo, hi) of A (N, K) into tiles of MR rows, k-major: tile t's (r, i) at
 * dst[t K MR + i MR + r] (a short last tile keeps the stride MR). */
AVX512 static void pack_rows(const float *a, int64_t k, int64_t lo, int64_t hi, float *dst) {
    for (int64_t r0 = lo; r0 < hi; r0 += MR, dst += k * MR) {
        const int rows = (int)(hi - r0 < MR ? hi - r0 : MR);
        const float *src = a + r0 * k;
        int64_t i = 0;
        if (rows == MR)
            for (; i + 8 <= k; i += 8) {
                __m256 r[8];
                for (int j = 0; j < MR; j++) r[j] = _mm256_loadu_ps(src + j * k + i);
                transpose8(r);
                for (int t = 0; t < 8; t++) _mm256_storeu_ps(dst + (i + t) * MR, r[t]);
            }
        for (; i < k; i++)
            for (int j = 0; j < rows; j++) dst[i * MR + j] = src[j * k + i];
    }
}

typedef struct {
    const float *a, *packed;
    float *c;
    int64_t n, m, k, ldc, rows; /* rows: per task */
    const F32Epilogue *epi;
} Job;

static int task(const Job *g, int64_t t) {
    const int64_t lo = t * g->rows, hi = lo + g->rows < g->n ? lo + g->rows : g->n;
    const F32Epilogue *e = g->epi;
    float *tiles = seqenc_thread_buffer(
        SCRATCH_A_TILES, (size_t)((g->rows + MR - 1) / MR * MR) * g->k * sizeof(float));
    if (!tiles) return -1;
    pack_rows(g->a, g->k, lo, hi, tiles);
    for (int64_t c0 = 0; c0 < g->m; c0 += NR) {
        const int64_t width = g->m - c0 < NR ? g->m - c0 : NR;
        const float *bias = e && e->gelu_bias ? e->gelu_bias + c0 : NULL;
        for (int64_t r = lo; r < hi; r += MR)
            micro_any(tiles + (r - lo) * g->k, g->packed + c0 * g->k, g->k,
                      g->c + r * g->ldc + c0, g->ldc, bias, (int)(hi - r < MR ? hi - r : MR),
                      (int)(width / 16));
    }
    if (e && e->gamma) /* whole rows, still in L2 (ldc == m) */
        seqenc_add_layernorm_rows512(g->c, e->bias, e->residual, e->gamma, e->beta, e->eps,
                                     g->m, lo, hi, NULL);
    return 0;
}

/* -1: no memory for the buffers. */
void seqenc_pack_f32(const float *w, float *packed, int64_t m, int64_t k) {
    for (int64_t c0 = 0; c0 < m; c0 += NR) pack_panel(w, packed, c0, m - c0 < NR ? m - c0 : NR, k);
}

int seqenc_gemm_f32(const float *a, const float *w, int w_packed, float *c, int64_t n,
                    int64_t m, int64_t k, int64_t ldc, int threads, const F32Epilogue *epi) {
    /* as many rows as fit A_BLOCK (each panel then streams past fewer tasks), in whole
     * register tiles; with several threads also ~4 tasks a thread at least (balance) */
    int64_t rows = A_BLOCK / (k * (int64_t)sizeof(float));
    if (threads > 1 && rows > n / (4 * threads)) rows = n / (4 * threads);
    rows = rows < MR ? MR : rows / MR * MR;
    const int64_t panels = (m + NR - 1) / NR, tasks = (n + rows - 1) / rows;
    const size_t w_bytes = (size_t)m * k * sizeof(float);
    float *packed = w_packed ? (float *)w : seqenc_thread_buffer(SCRATCH_PACKED_W, w_bytes);
    if (!packed) return -1;
    const Job g = {a, packed, c, n, m, k, ldc, rows, epi};
    int status = 0;
    if (threads <= 1 || tasks <= 1) { /* encode's side-by-side batches: no parallel region */
        for (int64_t p = 0; p < panels && !w_packed; p++)
            pack_panel(w, packed, p * NR, m - p * NR < NR ? m - p * NR : NR, k);
        for (int64_t t = 0; t < tasks; t++) status |= task(&g, t);
    } else {
#pragma omp parallel num_threads(threads) reduction(| : status)
        {
            if (!w_packed) {
#pragma omp for schedule(static)
                for (int64_t p = 0; p < panels; p++)
                    pack_panel(w, packed, p * NR, m - p * NR < NR ? m - p * NR : NR, k);
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < tasks; t++) status |= task(&g, t);
        }
    }
    return status;
}
#endif
