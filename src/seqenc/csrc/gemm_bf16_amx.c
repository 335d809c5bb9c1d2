/* gemm_bf16.c's GEMM on AMX tiles (TDPBF16PS): the same contract, the same packed weights.
 *
 *   A (N, K) bf16 rows, K % 32 == 0 (one A tile row is 32 k; the caller falls back to
 *     gemm_bf16.c otherwise)
 *   W packed by pack_bf16 as gemm_bf16.c says: panels of up to PANEL = 48 columns, pairs of k
 *     side by side. That is AMX's B-tile layout already: one panel row k2 is w columns x 2 k,
 *     so the B tile of columns c0 + 16 j .. + 16 and k = 32 kb .. + 32 is 16 rows of 64 bytes
 *     at panel + kb 16 (2 w) + 32 j values, row stride 2 w values. No second packed format:
 *     weights packed once run on either kernel set (SEQENC_ISA caps it in the same process).
 *   C (N, M) float32, row stride ldc; or with gelu_bias, gelu(A W^T + bias) rounded to bf16.
 *
 * Blocking: C tiles of 16 rows x 16 columns (float32), one row tile x one panel at a time:
 * 3 C tiles (tmm0-2), 1 A tile (tmm3) used by 3 B tiles (tmm4-6), over the whole K. Each
 * TDPBF16PS (16 x 16 x 32, 16 cycles) costs 4/3 tile loads, which L1/L2 keep up with; 2 x 2
 * blocking (1 load per product) would need a panel width of 32, a second packed format. The
 * float32 C tiles go straight to C (tilestored with C's row stride), or for the GELU epilogue
 * to a 16 x 48 float32 scratch on the stack that AVX-512 reads back (bias, GELU, bf16).
 * Rows: a tile config per row count, the last row tile of a task configured with N % 16
 * rows (AMX loads and stores only the configured rows: no padded copy of A).
 *
 * Work: tasks of up to TASK_ROWS rows x one panel, handed out dynamically by tasks.c, panel-major
 * (a thread's consecutive tasks reuse the panel). Each task loads its tile config and releases
 * the tiles at its end: tasks.c's helper threads are shared with other kernels, and a thread
 * holding tile state makes every context switch save 8 KB more.
 *
 * Arithmetic (Intel SDM, TDPBF16PS): each bf16 product is exact in float32 and is added to the
 * float32 accumulator with round-to-nearest-even (MXCSR ignored), so a C entry is a float32
 * dot product of length K, gemm_bf16.c's bound (kernels.GEMM_BF16_ERROR); but subnormal bf16
 * inputs are read as zero and subnormal sums flushed to zero (DAZ/FTZ), which adds at most
 * K 2^-126 (the bound's + 1e-30) and |a_k w_k| for a term with a subnormal factor.
 * tests/nn/test_gemm_bf16_amx.py checks both. */
#include "simd512.h"
#include "tasks.h"

#if defined(SEQENC_X86) && defined(__linux__) && defined(_tile_loadd) && defined(_tile_dpbf16ps)
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define AMX __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,"  \
                                  "avx512bf16,fma")))
#define PANEL 48 /* gemm_bf16.c's, kernels.GEMM_PANEL */
#define TASK_ROWS 64
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} TileConfig;

/* Whether this CPU has AMX-TILE and AMX-BF16 and Linux lets this process use the tile data
 * (asked once: the permission is the process's, every thread included). */
int seqenc_amx_usable(void) {
    static int usable = -1;
    if (usable < 0) {
        /* gcc 12's __builtin_cpu_supports has no amx names: CPUID leaf 7 EDX bits 22 and 24 */
        unsigned int a, b, c, d;
        __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
        const int cpu = (d >> 22 & 1) && (d >> 24 & 1);
        usable = cpu && syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    }
    return usable;
}

/* Tiles 0-2: C (rows x 16 floats), 3: A (rows x 32 bf16), 4-6: B (16 pairs of k x 16 columns). */
AMX static void configure(int rows) {
    TileConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 7; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = (uint8_t)(t < 4 ? rows : 16);
    }
    /* gcc 12's _tile_loadconfig names only 8 bytes of the config as its input: ours names all
     * 64, so the stores above cannot be dropped */
    __asm__ volatile("ldtilecfg %0" ::"m"(cfg));
}

typedef struct {
    const uint16_t *a, *packed;
    float *c;
    const float *gelu_bias;
    int64_t n, m, k, ldc, row_tasks;
} Job;

/* One row tile (rows <= 16, configured) x one panel of nt (1-3, constant) column tiles. */
__attribute__((always_inline)) AMX static inline void row_tile(
    const Job *job, int64_t r0, int rows, int64_t c0, int64_t width, const int nt) {
    const uint16_t *a = job->a + r0 * job->k, *b = job->packed + c0 * job->k;
    const int64_t a_stride = job->k * 2, b_stride = width * 4; /* bytes */
    _tile_zero(0);
    if (nt > 1) _tile_zero(1);
    if (nt > 2) _tile_zero(2);
    for (int64_t kb = 0; kb < job->k / 32; kb++) {
        const uint16_t *bk = b + kb * 32 * width;
        _tile_loadd(3, a + 32 * kb, a_stride);
        _tile_loadd(4, bk, b_stride);
        if (nt > 1) _tile_loadd(5, bk + 32, b_stride);
        if (nt > 2) _tile_loadd(6, bk + 64, b_stride);
        _tile_dpbf16ps(0, 3, 4);
        if (nt > 1) _tile_dpbf16ps(1, 3, 5);
        if (nt > 2) _tile_dpbf16ps(2, 3, 6);
    }
    if (!job->gelu_bias) { /* float32 tiles straight into C */
        float *c = job->c + r0 * job->ldc + c0;
        const int64_t c_stride = job->ldc * 4;
        _tile_stored(0, c, c_stride);
        if (nt > 1) _tile_stored(1, c + 16, c_stride);
        if (nt > 2) _tile_stored(2, c + 32, c_stride);
        return;
    }
    /* the FFN's up projection: bias + GELU, rounded to bf16 (the down GEMM's input) */
    float scratch[16 * PANEL] __attribute__((aligned(64)));
    _tile_stored(0, scratch, PANEL * 4);
    if (nt > 1) _tile_stored(1, scratch + 16, PANEL * 4);
    if (nt > 2) _tile_stored(2, scratch + 32, PANEL * 4);
    uint16_t *c16 = (uint16_t *)job->c + r0 * job->ldc + c0;
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < nt; j++) {
            const __m512 x = _mm512_add_ps(_mm512_load_ps(scratch + r * PANEL + 16 * j),
                                           _mm512_loadu_ps(job->gelu_bias + c0 + 16 * j));
            store_bf16(c16 + r * job->ldc + 16 * j, _mm512_mul_ps(x, normal_cdf512_for_bf16(x)));
        }
}

AMX static void task(void *ctx, int64_t t) {
    const Job *job = ctx;
    const int64_t p = t / job->row_tasks, lo = (t % job->row_tasks) * TASK_ROWS;
    const int64_t c0 = p * PANEL, width = job->m - c0 < PANEL ? job->m - c0 : PANEL;
    const int64_t hi = lo + TASK_ROWS < job->n ? lo + TASK_ROWS : job->n;
    int configured = 0;
    for (int64_t r0 = lo; r0 < hi; r0 += 16) {
        const int rows = (int)(hi - r0 < 16 ? hi - r0 : 16);
        if (rows != configured) configure(configured = rows);
        switch (width / 16) {
            case 1: row_tile(job, r0, rows, c0, width, 1); break;
            case 2: row_tile(job, r0, rows, c0, width, 2); break;
            default: row_tile(job, r0, rows, c0, width, 3); break;
        }
    }
    _tile_release();
}

/* 0, or -1 where AMX cannot run here (the caller checks seqenc_amx_usable first). */
int seqenc_gemm_bf16_amx(const uint16_t *a, const uint16_t *packed, float *c, int64_t n,
                         int64_t m, int64_t k, int64_t ldc, int threads,
                         const float *gelu_bias) {
    if (!seqenc_amx_usable()) return -1;
    Job job = {a, packed, c, gelu_bias, n, m, k, ldc, (n + TASK_ROWS - 1) / TASK_ROWS};
    seqenc_run_tasks(task, &job, (m + PANEL - 1) / PANEL * job.row_tasks, threads);
    return 0;
}
#elif defined(SEQENC_X86)
/* a compiler without AMX intrinsics (gcc < 11), or not Linux: never AMX */
int seqenc_amx_usable(void) { return 0; }

int seqenc_gemm_bf16_amx(const uint16_t *a, const uint16_t *packed, float *c, int64_t n,
                         int64_t m, int64_t k, int64_t ldc, int threads,
                         const float *gelu_bias) {
    (void)a, (void)packed, (void)c, (void)n, (void)m, (void)k, (void)ldc, (void)threads;
    (void)gelu_bias;
    return -1;
}
#endif
