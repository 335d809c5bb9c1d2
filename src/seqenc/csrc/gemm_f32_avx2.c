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
#include <stdlib.h>

#define NR 16        /* columns per panel: two ymm vectors */
#define MR 6         /* rows per register tile: 12 accumulators + 2 weights + 1 broadcast */

/* experiment knobs (temporary) */
static int knob(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

static int prefetch_c;

/* rows x 16 columns over kc steps of k; always inlined with a constant row count so that the
 * accumulators stay in registers. a: element (r, i) at a[i ks + r rs]; b: the panel block,
 * k-major (NR floats per k). first: start from zero, else from C; gelu_bias: last block's. */
__attribute__((always_inline)) AVX2 static inline void micro(
    const float *a, const int64_t ks, const int64_t rs, const float *b, int64_t kc, float *c,
    int64_t ldc, int first, const float *gelu_bias, const int rows) {
    __m256 acc[MR][2];
    if (prefetch_c) {
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    }
    if (first) {
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    } else {
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            acc[r][0] = _mm256_loadu_ps(c + r * ldc);
            acc[r][1] = _mm256_loadu_ps(c + r * ldc + 8);
        }
    }
    #pragma GCC unroll 4
    for (int64_t i = 0; i < kc; i++) {
        const __m256 w0 = _mm256_load_ps(b + i * NR), w1 = _mm256_load_ps(b + i * NR + 8);
        #pragma GCC unroll 8
        for (int r = 0; r < rows; r++) {
            const __m256 x = _mm256_broadcast_ss(a + i * ks + r * rs);
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

/* packed A tile: (r, i) at a[i MR + r] */
AVX2 static void micro_packed(const float *a, const float *b, int64_t kc, float *c, int64_t ldc,
                              int first, const float *gelu_bias, int rows) {
    switch (rows) {
        case 6: micro(a, MR, 1, b, kc, c, ldc, first, gelu_bias, 6); break;
        case 5: micro(a, MR, 1, b, kc, c, ldc, first, gelu_bias, 5); break;
        case 4: micro(a, MR, 1, b, kc, c, ldc, first, gelu_bias, 4); break;
        case 3: micro(a, MR, 1, b, kc, c, ldc, first, gelu_bias, 3); break;
        case 2: micro(a, MR, 1, b, kc, c, ldc, first, gelu_bias, 2); break;
        default: micro(a, MR, 1, b, kc, c, ldc, first, gelu_bias, 1); break;
    }
}

/* A's rows as they are: (r, i) at a[r lda + i] */
AVX2 static void micro_rows(const float *a, int64_t lda, const float *b, int64_t kc, float *c,
                            int64_t ldc, int first, const float *gelu_bias, int rows) {
    switch (rows) {
        case 6: micro(a, 1, lda, b, kc, c, ldc, first, gelu_bias, 6); break;
        case 5: micro(a, 1, lda, b, kc, c, ldc, first, gelu_bias, 5); break;
        case 4: micro(a, 1, lda, b, kc, c, ldc, first, gelu_bias, 4); break;
        case 3: micro(a, 1, lda, b, kc, c, ldc, first, gelu_bias, 3); break;
        case 2: micro(a, 1, lda, b, kc, c, ldc, first, gelu_bias, 2); break;
        default: micro(a, 1, lda, b, kc, c, ldc, first, gelu_bias, 1); break;
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

/* rows [lo, hi) x columns [k0, k0 + kc) of A into tiles of MR rows, k-major within a tile:
 * tile t's (r, i) at dst[t kc MR + i MR + r] (a short last tile keeps the stride MR) */
AVX2 static void pack_a(const float *a, int64_t lda, int64_t lo, int64_t hi, int64_t k0,
                        int64_t kc, float *dst) {
    for (int64_t r0 = lo; r0 < hi; r0 += MR, dst += kc * MR) {
        const int rows = (int)(hi - r0 < MR ? hi - r0 : MR);
        for (int r = 0; r < rows; r++) {
            const float *src = a + (r0 + r) * lda + k0;
            for (int64_t i = 0; i < kc; i++) dst[i * MR + r] = src[i];
        }
    }
}

/* a growing buffer per thread, kept (encode's batch threads call again and again) */
static float *thread_buffer(size_t floats, int which) {
    static __thread float *buf[2];
    static __thread size_t cap[2];
    if (floats > cap[which]) {
        free(buf[which]);
        const size_t bytes = (floats * sizeof(float) + 4095) / 4096 * 4096;
        buf[which] = aligned_alloc(64, bytes);
        cap[which] = buf[which] ? bytes / sizeof(float) : 0;
    }
    return buf[which];
}

typedef struct {
    const float *a, *packed;
    float *c;
    int64_t n, m, k, ldc, rows, kc; /* rows: per task; kc: k per block */
    int pack_a;
    const F32Epilogue *epi;
} Job;

static int task(const Job *g, int64_t t) {
    const int64_t lo = t * g->rows, hi = lo + g->rows < g->n ? lo + g->rows : g->n;
    const F32Epilogue *e = g->epi;
    float *abuf = NULL;
    if (g->pack_a && !(abuf = thread_buffer((size_t)((g->rows + MR - 1) / MR * MR) * g->kc, 1)))
        return -1;
    for (int64_t k0 = 0; k0 < g->k; k0 += g->kc) {
        const int64_t kc = g->k - k0 < g->kc ? g->k - k0 : g->kc;
        const int first = k0 == 0, last = k0 + kc == g->k;
        if (abuf) pack_a(g->a, g->k, lo, hi, k0, kc, abuf);
        for (int64_t c0 = 0; c0 < g->m; c0 += NR) {
            const float *bias = last && e && e->gelu_bias ? e->gelu_bias + c0 : NULL;
            const float *b = g->packed + c0 * g->k + k0 * NR;
            for (int64_t r = lo; r < hi; r += MR) {
                const int rows = (int)(hi - r < MR ? hi - r : MR);
                float *c = g->c + r * g->ldc + c0;
                if (abuf)
                    micro_packed(abuf + (r - lo) * kc, b, kc, c, g->ldc, first, bias, rows);
                else
                    micro_rows(g->a + r * g->k + k0, g->k, b, kc, c, g->ldc, first, bias, rows);
            }
        }
    }
    if (e && e->gamma) /* whole rows, still in L2 (ldc == m) */
        seqenc_add_layernorm_rows(g->c, e->bias, e->residual, e->gamma, e->beta, e->eps, g->m,
                                  lo, hi);
    return 0;
}

/* W (m, k) into the panels the GEMM reads (m k floats at packed, 64-byte aligned) */
void seqenc_pack_f32_avx2(const float *w, float *packed, int64_t m, int64_t k) {
    for (int64_t p = 0; p < m / NR; p++) pack_panel(w, packed, p, k);
}

/* w: W as it is, or (w_packed) already in pack_panel's layout */
int seqenc_gemm_f32_avx2(const float *a, const float *w, int w_packed, float *c, int64_t n,
                         int64_t m, int64_t k, int64_t ldc, int threads, const F32Epilogue *epi) {
    const int64_t kc_max = knob("SEQENC_F32_KC", 1 << 30), a_block = knob("SEQENC_F32_AKB", 192) << 10;
    const int pack = knob("SEQENC_F32_PACKA", 0), tls = knob("SEQENC_F32_TLS", 0);
    prefetch_c = knob("SEQENC_F32_PFC", 0);
    /* k blocks of near-equal width, multiples of 8 */
    const int64_t blocks = (k + kc_max - 1) / kc_max;
    int64_t kc = (k + blocks - 1) / blocks;
    kc = (kc + 7) / 8 * 8;
    if (kc > k) kc = k;
    int64_t rows = a_block / (kc * (int64_t)sizeof(float));
    if (threads > 1 && rows > n / (4 * threads)) rows = n / (4 * threads);
    rows = rows < MR ? MR : rows / MR * MR;
    const int64_t panels = m / NR, tasks = (n + rows - 1) / rows;
    float *packed = (float *)w;
    if (!w_packed)
        packed = tls ? thread_buffer((size_t)m * k, 0)
                     : aligned_alloc(64, ((size_t)m * k * sizeof(float) + 63) / 64 * 64);
    if (!packed) return -1;
    const Job g = {a, packed, c, n, m, k, ldc, rows, kc, pack, epi};
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
    if (!w_packed && !tls) free(packed);
    return status;
}
#endif
