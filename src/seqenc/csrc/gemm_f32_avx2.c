/* C = A W^T in float32 with AVX2 FMAs, and the post-norm layer's next step in the same pass.
 *
 * Why our own on AVX2-only CPUs: MKL's sgemm is a separate call before each of seqenc's
 * epilogues (bias + GELU, bias + residual + LayerNorm), so the (N, M) result goes out to memory
 * and comes back once more; here GELU runs on each register tile before it is stored, and
 * the LayerNorm on each task's rows while they are in L2 (the AVX-512 set has gemm_f32.c).
 *
 *   A (N, K) float32 rows, W (M, K) float32 rows (an nn.Linear weight as it is), C (N, M) with
 *   row stride ldc, M % 16 == 0.
 * W is packed on every call (nothing cached: a packed copy would go stale when an optimizer
 * writes the weight in place, see gemm_f32.c) into panels of NR columns, k-major:
 * packed[p K NR + k NR + j] = W[p NR + j, k]; M K copies against 2 N M K flops.
 * Work: tasks of up to A_BLOCK bytes of rows x every panel (the rows' A block stays in L2 while the panels
 * pass, each panel in L1 while it meets the block's register tiles), so a task ends with whole
 * rows: the LayerNorm's unit. Each output is a float32 sum of K products in k order, each FMA
 * rounding once: a float32 dot product's error bound (tests/nn/test_gemm_f32_avx2.py). The
 * epilogues are elementwise.c's arithmetic in the same order: bit for bit the separate
 * kernels' result on this GEMM's output. */
#include "simd.h"

#ifdef SEQENC_X86
#include <omp.h>

#define NR 16        /* columns per panel: two ymm vectors */
#define MR 6         /* rows per register tile: 12 accumulators + 2 weights + 1 broadcast */
#define A_BLOCK (192 << 10) /* bytes of A per task: in L2 with room for the panels passing */

/* rows x 16 columns over all of K; always inlined with a constant row count so that the
 * accumulators stay in registers. b: the panel, k-major (NR floats per k). */
__attribute__((always_inline)) AVX2 static inline void micro(
    const float *a, int64_t lda, const float *b, int64_t k, float *c, int64_t ldc,
    const float *gelu_bias, const int rows) {
    __m256 acc[MR][2];
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    #pragma GCC unroll 2
    for (int64_t i = 0; i < k; i++) {
        const __m256 w0 = _mm256_load_ps(b + i * NR), w1 = _mm256_load_ps(b + i * NR + 8);
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m256 x = _mm256_broadcast_ss(a + r * lda + i);
            acc[r][0] = _mm256_fmadd_ps(x, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(x, w1, acc[r][1]);
        }
    }
    #pragma GCC unroll 8
    for (int r = 0; r < rows; r++)
        #pragma GCC unroll 2
        for (int v = 0; v < 2; v++) {
            __m256 y = acc[r][v];
            if (gelu_bias) { /* bias_gelu_rows' arithmetic (elementwise.c) */
                y = _mm256_add_ps(y, _mm256_loadu_ps(gelu_bias + 8 * v));
                y = _mm256_mul_ps(y, normal_cdf256(y));
            }
            _mm256_storeu_ps(c + r * ldc + 8 * v, y);
        }
}

AVX2 static void micro_any(const float *a, int64_t lda, const float *b, int64_t k, float *c,
                           int64_t ldc, const float *gelu_bias, int rows) {
    switch (rows) {
        case 6: micro(a, lda, b, k, c, ldc, gelu_bias, 6); break;
        case 5: micro(a, lda, b, k, c, ldc, gelu_bias, 5); break;
        case 4: micro(a, lda, b, k, c, ldc, gelu_bias, 4); break;
        case 3: micro(a, lda, b, k, c, ldc, gelu_bias, 3); break;
        case 2: micro(a, lda, b, k, c, ldc, gelu_bias, 2); break;
        default: micro(a, lda, b, k, c, ldc, gelu_bias, 1); break;
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

typedef struct {
    const float *a, *packed;
    float *c;
    int64_t n, m, k, ldc, rows; /* rows: per task */
    const F32Epilogue *epi;
} Job;

static void task(const Job *g, int64_t t) {
    const int64_t lo = t * g->rows, hi = lo + g->rows < g->n ? lo + g->rows : g->n;
    const F32Epilogue *e = g->epi;
    for (int64_t c0 = 0; c0 < g->m; c0 += NR) {
        const float *bias = e && e->gelu_bias ? e->gelu_bias + c0 : NULL;
        for (int64_t r = lo; r < hi; r += MR)
            micro_any(g->a + r * g->k, g->k, g->packed + c0 * g->k, g->k,
                      g->c + r * g->ldc + c0, g->ldc, bias, (int)(hi - r < MR ? hi - r : MR));
    }
    if (e && e->gamma) /* whole rows, still in L2 (ldc == m) */
        seqenc_add_layernorm_rows(g->c, e->bias, e->residual, e->gamma, e->beta, e->eps, g->m,
                                  lo, hi);
}

int seqenc_gemm_f32_avx2(const float *a, const float *w, float *c, int64_t n, int64_t m,
                         int64_t k, int64_t ldc, int threads, const F32Epilogue *epi) {
    /* as many rows as fit A_BLOCK (each panel then streams past fewer tasks), in whole
     * register tiles; with several threads also ~4 tasks a thread at least (balance) */
    int64_t rows = A_BLOCK / (k * (int64_t)sizeof(float));
    if (threads > 1 && rows > n / (4 * threads)) rows = n / (4 * threads);
    rows = rows < MR ? MR : rows / MR * MR;
    const int64_t panels = m / NR, tasks = (n + rows - 1) / rows;
    float *packed = aligned_alloc(64, ((size_t)m * k * sizeof(float) + 63) / 64 * 64);
    if (!packed) return -1;
    const Job g = {a, packed, c, n, m, k, ldc, rows, epi};
    if (threads <= 1 || tasks <= 1) { /* encode's side-by-side batches: no parallel region */
        for (int64_t p = 0; p < panels; p++) pack_panel(w, packed, p, k);
        for (int64_t t = 0; t < tasks; t++) task(&g, t);
    } else {
#pragma omp parallel num_threads(threads)
        {
#pragma omp for schedule(static)
            for (int64_t p = 0; p < panels; p++) pack_panel(w, packed, p, k);
#pragma omp for schedule(dynamic, 1)
            for (int64_t t = 0; t < tasks; t++) task(&g, t);
        }
    }
    free(packed);
    return 0;
}
#endif
