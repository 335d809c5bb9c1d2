/* The int8 micro-kernels for CPUs with AMX-INT8 (INT8_AMX; gemm_int8.c says how the weights are
 * packed and what the sums are). TDPBUSD multiplies a 16 x 64 uint8 tile of A (16 rows, 64 k)
 * by a 16 x 64-byte int8 tile of B (16 k-groups of 4, each 16 columns x 4 k) into a 16 x 16
 * int32 tile of C, the sums exact like vpdpbusd's (the same u8 x s8 products, added in int32):
 * 8 times vpdpbusd's work a cycle. The operands are VNNI512's as they are: uint8 activations
 * q + 128, and the packed panel's k-group rows (4 width bytes apart) are B's tile rows, so the
 * weights are packed once for both kinds and corr takes the shift back off the same way.
 *
 * Blocking: 2 row tiles x 2 column tiles of C (32 rows x 32 columns, all 8 tile registers with
 * the 2 A and 2 B tiles), then the panel's last 16 columns as 2 x 1; a task's row blocks run
 * panel by panel, so a panel's B tiles come from L1 after its first row block (1 x 3 blocks of
 * 16 x 48 measured the same). Each C tile is stored to a scratch block on the stack and run
 * through VNNI512's epilogue arithmetic (store16's: corr, scales, GELU) on the same int32 sums,
 * so the same bits as VNNI512.
 * K % 64 == 0 (gemm_int8.c runs the VNNI512 kernel otherwise); row tails take a second tile
 * configuration with fewer rows.
 *
 * Linux hands a process AMX's 8 KiB of tile state only on request (arch_prctl
 * ARCH_REQ_XCOMP_PERM, once: the permission is the process's, inherited by fork): amx.h's
 * seqenc_amx_usable asks, and INT8_AMX runs only where that succeeded and the CPU has
 * AMX-INT8. Every call loads its tile configuration (amx.h's amx_load_config) and releases the
 * tiles at the end, so a thread holds no tile state between GEMMs (no 8 KiB more to save on
 * each context switch). */
#include "int8_tile.h"
#include "amx.h"

#ifdef SEQENC_X86
int seqenc_int8_amx_runs(void) {
    static int runs = -1;
    if (runs < 0) {
        /* amx.h's permission (asked once, for the tile data every AMX kind uses), and the CPU
         * has AMX-INT8: CPUID leaf 7 EDX bit 25 (seqenc_amx_usable checked the max leaf) */
        unsigned int a, b, c, d = 0;
        if (seqenc_amx_usable())
            __asm__("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(7), "c"(0));
        runs = d >> 25 & 1;
    }
    return runs;
}
#endif

#ifdef SEQENC_AMX
/* Tile registers: C 0..3 (row tile i, column tile j: 2 i + j), A 4..5, B 6..7.
 * rows: of the A and C tiles (16, or a tail's); B's are 16 k-groups, every row 64 bytes. */
AMX static void configure(int rows) {
    TileConfig c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int t = 0; t < 8; t++) {
        c.rows[t] = (uint8_t)(t >= 6 ? 16 : rows);
        c.colsb[t] = 64;
    }
    amx_load_config(&c);
}

/* A block's C tiles, stored for the epilogue. */
typedef struct {
    int32_t c[4][16 * 16] __attribute__((aligned(64)));
    int64_t r0, c0;
    int rows, ra, nb;
} Stored;

/* rows rows of each C tile through the epilogue at (r0, c0): store16's arithmetic, in the same
 * order (the same bits), with each column tile's vectors loaded once. */
AMX static void finish(const Epilogue *e, Stored *s) {
    const __m512i zero = _mm512_setzero_si512();
    for (int j = 0; j < s->nb; j++) {
        const int64_t c = s->c0 + 16 * j;
        const __m512i corr = e->corr ? _mm512_loadu_si512(e->corr + c) : zero;
        if (!e->row_scale) {
            for (int i = 0; i < s->ra; i++)
                for (int r = 0; r < s->rows; r++)
                    _mm512_storeu_si512((int32_t *)e->out + (s->r0 + 16 * i + r) * e->ldc + c,
                                        _mm512_sub_epi32(_mm512_load_si512(
                                            s->c[2 * i + j] + 16 * r), corr));
            continue;
        }
        const __m512 col = _mm512_loadu_ps(e->col_scale + c);
        const __m512 bias = e->gelu_bias ? _mm512_loadu_ps(e->gelu_bias + c) : _mm512_setzero_ps();
        for (int i = 0; i < s->ra; i++)
            for (int r = 0; r < s->rows; r++) {
                const int64_t row = s->r0 + 16 * i + r;
                const __m512i acc = _mm512_sub_epi32(_mm512_load_si512(s->c[2 * i + j] + 16 * r),
                                                     corr);
                const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(acc),
                                               _mm512_set1_ps(e->row_scale[row]));
                __m512 y = _mm512_mul_ps(v, col);
                if (e->gelu_bias) {
                    y = _mm512_add_ps(y, bias);
                    y = _mm512_mul_ps(y, normal_cdf512(y));
                }
                _mm512_storeu_ps((float *)e->out + row * e->ldc + c, y);
            }
    }
}

/* C = A B over `steps` 64-k steps for ra row tiles (a: the first row, lda bytes apart) x nb
 * column tiles (b: the first column's k-group 0, ldb bytes from one k-group to the next), then
 * through the epilogue at (r0, c0) of the output. Inlined with constant ra, nb. (Running each
 * block's epilogue while the next block's tiles work, from a second Stored, measured no gain.) */
__attribute__((always_inline)) AMX static inline void block(
    const uint8_t *a, int64_t lda, const int8_t *b, int64_t ldb, int64_t steps,
    const Epilogue *e, int64_t r0, int64_t c0, int rows, const int ra, const int nb) {
    _tile_zero(0);
    if (nb > 1) _tile_zero(1);
    if (ra > 1) _tile_zero(2);
    if (ra > 1 && nb > 1) _tile_zero(3);
    for (int64_t s = 0; s < steps; s++) {
        const int8_t *bs = b + 16 * s * ldb;
        _tile_loadd(4, a + 64 * s, lda);
        _tile_loadd(6, bs, ldb);
        _tile_dpbusd(0, 4, 6);
        if (nb > 1) {
            _tile_loadd(7, bs + 64, ldb);
            _tile_dpbusd(1, 4, 7);
        }
        if (ra > 1) {
            _tile_loadd(5, a + 16 * lda + 64 * s, lda);
            _tile_dpbusd(2, 5, 6);
            if (nb > 1) _tile_dpbusd(3, 5, 7);
        }
    }
    Stored s;
    _tile_stored(0, s.c[0], 64);
    if (nb > 1) _tile_stored(1, s.c[1], 64);
    if (ra > 1) _tile_stored(2, s.c[2], 64);
    if (ra > 1 && nb > 1) _tile_stored(3, s.c[3], 64);
    s.r0 = r0, s.c0 = c0, s.rows = rows, s.ra = ra, s.nb = nb;
    finish(e, &s);
}

/* ra row tiles (the last one `rows` rows) across a panel of the given width. */
AMX static void row_block(const uint8_t *a, int64_t k, const int8_t *panel, int64_t width,
                          const Epilogue *e, int64_t r0, int64_t c0, int rows, int ra) {
    const int64_t ldb = 4 * width, steps = k / 64;
    int64_t j = 0;
    for (; j + 32 <= width; j += 32) {
        if (ra > 1) block(a, k, panel + 4 * j, ldb, steps, e, r0, c0 + j, rows, 2, 2);
        else block(a, k, panel + 4 * j, ldb, steps, e, r0, c0 + j, rows, 1, 2);
    }
    if (j < width) {
        if (ra > 1) block(a, k, panel + 4 * j, ldb, steps, e, r0, c0 + j, rows, 2, 1);
        else block(a, k, panel + 4 * j, ldb, steps, e, r0, c0 + j, rows, 1, 1);
    }
}

/* Rows lo .. hi of A (uint8 q + 128, k per row) against the panels from column c0 (a panel's
 * first) to c1, through e. k % 64 == 0. */
AMX void seqenc_int8_tile_amx(const void *a, const void *packed, const Epilogue *e, int64_t k,
                              int64_t lo, int64_t hi, int64_t c0, int64_t c1) {
    const int64_t full = lo + (hi - lo) / 16 * 16, tail = hi - full;
    configure(16);
    for (int64_t p = c0; p < c1; p += PANEL) {
        const int64_t width = c1 - p < PANEL ? c1 - p : PANEL;
        const int8_t *panel = (const int8_t *)packed + p * k;
        for (int64_t r = lo; r < full; r += 32) {
            const int ra = full - r >= 32 ? 2 : 1;
            row_block((const uint8_t *)a + r * k, k, panel, width, e, r, p, 16, ra);
        }
    }
    if (tail) { /* the last rows, fewer than 16: A and C tiles of that many rows */
        configure((int)tail);
        for (int64_t p = c0; p < c1; p += PANEL)
            row_block((const uint8_t *)a + full * k, k, (const int8_t *)packed + p * k,
                      c1 - p < PANEL ? c1 - p : PANEL, e, full, p, (int)tail, 1);
    }
    _tile_release();
}

/* peak.c's AMX-INT8 probe: tdpbusd into 6 independent C tiles from one A and one B tile, in
 * registers (no memory traffic): 16 x 16 x 64 products, each added, per instruction. The
 * operations done (0 where AMX does not run); *sink depends on them. */
AMX double seqenc_int8_amx_peak(int64_t iters, float *sink) {
    if (!seqenc_int8_amx_runs()) return 0.0;
    static const uint8_t ones[16 * 64] __attribute__((aligned(64))) = {1};
    int32_t c[16 * 16] __attribute__((aligned(64)));
    configure(16);
    _tile_loadd(6, ones, 64);
    _tile_loadd(7, ones, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_zero(4);
    _tile_zero(5);
    for (int64_t n = 0; n < iters; n++) {
        _tile_dpbusd(0, 6, 7);
        _tile_dpbusd(1, 6, 7);
        _tile_dpbusd(2, 6, 7);
        _tile_dpbusd(3, 6, 7);
        _tile_dpbusd(4, 6, 7);
        _tile_dpbusd(5, 6, 7);
    }
    _tile_stored(5, c, 64);
    _tile_release();
    *sink = (float)c[0];
    return 2.0 * 16 * 16 * 64 * 6 * (double)iters;
}
#elif defined(SEQENC_X86) /* no AMX intrinsics: never called (seqenc_int8_amx_runs is 0) */
void seqenc_int8_tile_amx(const void *a, const void *packed, const Epilogue *e, int64_t k,
                          int64_t lo, int64_t hi, int64_t c0, int64_t c1) {
    (void)a, (void)packed, (void)e, (void)k, (void)lo, (void)hi, (void)c0, (void)c1;
}

double seqenc_int8_amx_peak(int64_t iters, float *sink) {
    (void)iters, (void)sink;
    return 0.0;
}
#endif
