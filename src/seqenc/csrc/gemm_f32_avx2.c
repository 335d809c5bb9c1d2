/* C = A W^T in float32 with AVX2 FMAs, and the post-norm layer's next step in the same pass.
 *
 * Why our own on AVX2-only CPUs: MKL's sgemm is a separate call before each of seqenc's
 * epilogues (bias + GELU, bias + residual + LayerNorm), so the (N, M) result goes out to memory
 * and comes back once more; here GELU runs on each register tile as it is stored (in L1), and
 * the LayerNorm on each task's rows while they are in L2 (the AVX-512 set has gemm_f32.c).
 *
 *   A (N, K) float32 rows, W (M, K) float32 rows (an nn.Linear weight as it is), C (N, M) with
 *   row stride ldc, M % 16 == 0.
 * W goes into panels of NR columns, k-major: packed[p K NR + k NR + j] = W[p NR + j, k] (M K
 * copies against 2 N M K flops), on the call into a buffer the thread keeps, or (w_packed)
 * once by nn/gemm_f32.py (SEQENC_F32_PACK_ONCE=1), which keeps the copy while the weight is
 * unchanged.
 * Work: tasks of up to A_BLOCK bytes of rows x every panel (the rows' A block stays in L2 while
 * the panels pass, each panel in L1 while it meets the block's register tiles), so a task ends
 * with whole rows: the LayerNorm's unit. A task first copies its rows into tiles of MR rows,
 * k-major (the micro-kernel's broadcasts then read one sequential stream instead of MR rows).
 * Each output is a float32 sum of K products in k order, each FMA rounding once: a float32 dot
 * product's error bound (tests/nn/test_gemm_f32_avx2.py), the same sums however it is split.
 * The epilogues are elementwise.c's arithmetic in the same order: bit for bit the separate
 * kernels' result on this GEMM's output.
 * Measured on a Zen 3 (benchmarks/RESULTS.md, issue 14), one thread: the row tiles 1.01-1.12x
 * on each GEMM; blocking K so that a panel's block stays in L1 (K = 1536: 96 KiB a panel) was
 * slower (0.94-0.96x the down projection at blocks of 192 and 384 k: the partial sums go back
 * to C between blocks), so each task runs all of K. */
#include "scratch.h"
#include "simd.h"

#ifdef SEQENC_X86
#include <omp.h>
#include <stdlib.h>

#define NR 16        /* columns per panel: two ymm vectors */
#define MR 6         /* rows per register tile: 12 accumulators + 2 weights + 1 broadcast */
#define A_BLOCK (192 << 10) /* bytes of A per task: in L2 with room for the panels passing */

/* gelu(C + bias) in place on rows x 16 columns of C: bias_gelu_rows' arithmetic
 * (elementwise.c), two rows at a time (gelu256x4: four independent chains) */
AVX2 static void gelu_tile(float *c, int64_t ldc, const float *bias, int rows) {
    const __m256 b0 = _mm256_loadu_ps(bias), b1 = _mm256_loadu_ps(bias + 8);
    for (int r = 0; r < rows; r += 2) {
        float *c1 = c + (r + 1 < rows ? r + 1 : r) * ldc; /* an odd last row: itself twice */
        __m256 v[4] = {_mm256_add_ps(_mm256_loadu_ps(c + r * ldc), b0),
                       _mm256_add_ps(_mm256_loadu_ps(c + r * ldc + 8), b1),
                       _mm256_add_ps(_mm256_loadu_ps(c1), b0),
                       _mm256_add_ps(_mm256_loadu_ps(c1 + 8), b1)};
        gelu256x4(v);
        _mm256_storeu_ps(c1, v[2]);
        _mm256_storeu_ps(c1 + 8, v[3]);
        _mm256_storeu_ps(c + r * ldc, v[0]);
        _mm256_storeu_ps(c + r * ldc + 8, v[1]);
    }
}

/* rows x 16 columns over all of K; always inlined with a constant row count so that the
 * accumulators stay in registers. a: the tile, k-major (MR floats per k, the first `rows`
 * used); b: the panel, k-major (NR floats per k). */
__attribute__((always_inline)) AVX2 static inline void micro(
    const float *a, const float *b, int64_t k, float *c, int64_t ldc, const float *gelu_bias,
    const int rows) {
    __m256 acc[MR][2];
    #pragma GCC unroll 8
    for (int r = 0; r < MR; r++) /* the next tile's C rows, a cache line each: in L1 by then */
        _mm_prefetch((const char *)(c + (MR + r) * ldc), _MM_HINT_T0);
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    #pragma GCC unroll 4
    for (int64_t i = 0; i < k; i++) {
        const __m256 w0 = _mm256_load_ps(b + i * NR), w1 = _mm256_load_ps(b + i * NR + 8);
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m256 x = _mm256_broadcast_ss(a + i * MR + r);
            acc[r][0] = _mm256_fmadd_ps(x, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(x, w1, acc[r][1]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++) {
        _mm256_storeu_ps(c + r * ldc, acc[r][0]);
        _mm256_storeu_ps(c + r * ldc + 8, acc[r][1]);
    }
    if (gelu_bias) /* then bias_gelu_rows' arithmetic (elementwise.c) on the tile, in L1: a
                    * loop of its own, not twelve GELUs on the twelve accumulators at once */
        gelu_tile(c, ldc, gelu_bias, rows);
}

AVX2 static void micro_any(const float *a, const float *b, int64_t k, float *c, int64_t ldc,
                           const float *gelu_bias, int rows) {
    switch (rows) {
        case 6: micro(a, b, k, c, ldc, gelu_bias, 6); break;
        case 5: micro(a, b, k, c, ldc, gelu_bias, 5); break;
        case 4: micro(a, b, k, c, ldc, gelu_bias, 4); break;
        case 3: micro(a, b, k, c, ldc, gelu_bias, 3); break;
        case 2: micro(a, b, k, c, ldc, gelu_bias, 2); break;
        default: micro(a, b, k, c, ldc, gelu_bias, 1); break;
    }
}

/* Panel p of W into its k-major layout, 8 x 8 blocks at a time (transpose8). */
AVX2 static void pack_panel(const float *w, float *packed, int64_t p, int64_t k) {
    float *dst = packed + p * k * NR;
    const float *src = w + p * NR * k;
    int64_t i = 0;
    for (; i + 8 <= k; i += 8)
        for (int j0 = 0; j0 < NR; j0 += 8) {
            __m256 r[8];
            for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(src + (j0 + j) * k + i);
            transpose8(r);
            for (int t = 0; t < 8; t++) _mm256_store_ps(dst + (i + t) * NR + j0, r[t]);
        }
    for (; i < k; i++)
        for (int j = 0; j < NR; j++) dst[i * NR + j] = src[j * k + i];
}

/* Rows [lo, hi) of A (N, K) into tiles of MR rows, k-major: tile t's (r, i) at
 * dst[t K MR + i MR + r] (a short last tile keeps the stride MR). Whole tiles go 8 k at a time
 * through transpose8 (two zero rows), each column stored as 8 floats at stride MR: its last 2
 * land where the next column's first 2 go, so dst has 8 floats to spare past the last tile. */
AVX2 static void pack_rows(const float *a, int64_t k, int64_t lo, int64_t hi, float *dst) {
    for (int64_t r0 = lo; r0 < hi; r0 += MR, dst += k * MR) {
        const int rows = (int)(hi - r0 < MR ? hi - r0 : MR);
        const float *src = a + r0 * k;
        int64_t i = 0;
        if (rows == MR)
            for (; i + 8 <= k; i += 8) {
                __m256 r[8];
                for (int j = 0; j < MR; j++) r[j] = _mm256_loadu_ps(src + j * k + i);
                r[6] = r[7] = _mm256_setzero_ps();
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
    const size_t tile_floats = (size_t)((g->rows + MR - 1) / MR * MR) * g->k + 8;
    float *tiles = seqenc_thread_buffer(SCRATCH_A_TILES, tile_floats * sizeof(float));
    if (!tiles) return -1;
    pack_rows(g->a, g->k, lo, hi, tiles);
    for (int64_t c0 = 0; c0 < g->m; c0 += NR) {
        const float *bias = e && e->gelu_bias ? e->gelu_bias + c0 : NULL;
        for (int64_t r = lo; r < hi; r += MR)
            micro_any(tiles + (r - lo) * g->k, g->packed + c0 * g->k, g->k,
                      g->c + r * g->ldc + c0, g->ldc, bias, (int)(hi - r < MR ? hi - r : MR));
    }
    if (e && e->gamma) /* whole rows, still in L2 (ldc == m) */
        seqenc_add_layernorm_rows(g->c, e->bias, e->residual, e->gamma, e->beta, e->eps, g->m,
                                  lo, hi);
    return 0;
}

void seqenc_pack_f32_avx2(const float *w, float *packed, int64_t m, int64_t k) {
    for (int64_t p = 0; p < m / NR; p++) pack_panel(w, packed, p, k);
}

int seqenc_gemm_f32_avx2(const float *a, const float *w, int w_packed, float *c, int64_t n,
                         int64_t m, int64_t k, int64_t ldc, int threads, const F32Epilogue *epi) {
    /* as many rows as fit A_BLOCK (each panel then streams past fewer tasks), in whole
     * register tiles; with several threads also ~4 tasks a thread at least (balance) */
    int64_t rows = A_BLOCK / (k * (int64_t)sizeof(float));
    if (threads > 1 && rows > n / (4 * threads)) rows = n / (4 * threads);
    rows = rows < MR ? MR : rows / MR * MR;
    const int64_t panels = m / NR, tasks = (n + rows - 1) / rows;
    const size_t w_bytes = (size_t)m * k * sizeof(float);
    float *packed = w_packed ? (float *)w : seqenc_thread_buffer(SCRATCH_PACKED_W, w_bytes);
    if (!packed) return -1;
    const Job g = {a, packed, c, n, m, k, ldc, rows, epi};
    int status = 0;
    if (threads <= 1 || tasks <= 1) { /* encode's side-by-side batches: no parallel region */
        if (!w_packed)
            for (int64_t p = 0; p < panels; p++) pack_panel(w, packed, p, k);
        for (int64_t t = 0; t < tasks; t++) status |= task(&g, t);
    } else {
#pragma omp parallel num_threads(threads) reduction(| : status)
        {
            if (!w_packed) {
#pragma omp for schedule(static)
                for (int64_t p = 0; p < panels; p++) pack_panel(w, packed, p, k);
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < tasks; t++) status |= task(&g, t);
        }
    }
    return status;
}
#endif
