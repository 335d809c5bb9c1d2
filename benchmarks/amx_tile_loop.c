/* The AMX-INT8 tile loop alone (no epilogue): where gemm_int8_amx.c's time goes on this host.
 * 32 rows x M columns x K, 2 x 2 blocks of 16 x 16 int32 C tiles as the kernel blocks them, B in
 * the kernel's 48-column panels (contig 0) or as contiguous 1 KB tiles (contig 1); C stored to a
 * static scratch. mode: 0 the kernel's first load order, 1 the same plus prefetches of the next
 * column pair's B lines, 2 no B loads in the loop, 3 no tile loads at all, 4 each tile's next
 * load after the step's last product that reads it (what the kernel does now). Thread CPU time,
 * best of 7.
 *
 *   gcc -O2 -mamx-tile -mamx-int8 -mavx512f -o /tmp/amx_tile_loop benchmarks/amx_tile_loop.c
 *   /tmp/amx_tile_loop M K reps mode contig     # e.g. 1152 384 200 0 0
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
typedef struct { uint8_t palette, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } Cfg;
static double now(void) { struct timespec t; clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
static void cfg(void) { Cfg c; memset(&c, 0, sizeof c); c.palette = 1; for (int t = 0; t < 8; t++) { c.rows[t] = 16; c.colsb[t] = 64; } __asm__ volatile("ldtilecfg %0" :: "m"(c)); }
static int32_t sink[4][256] __attribute__((aligned(64)));
/* M columns in panels of 48 (stride 192 per k-group row), K, rows 32: one 32 x M pass */
static void pass(const uint8_t *a, const int8_t *b, int M, int K, int pf, int contiguous) {
    const int steps = K / 64;
    for (int col = 0; col < M; col += 32) {
        const int8_t *b0, *b1; long ld0, ld1;
        if (contiguous) { /* tiles 1 KB each: [col tile][step] */
            b0 = b + (long)(col / 16) * K * 16; b1 = b0 + K * 16; ld0 = ld1 = 64;
        } else {
            int p0 = col / 48 * 48, p1 = (col + 16) / 48 * 48;
            b0 = b + (long)p0 * K + 4 * (col - p0); ld0 = 192;
            b1 = b + (long)p1 * K + 4 * (col + 16 - p1); ld1 = 192;
        }
        _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
        if (pf == 4) {
            _tile_loadd(4, a, K); _tile_loadd(6, b0, ld0); _tile_loadd(7, b1, ld1); _tile_loadd(5, a + 16 * K, K);
            for (int s = 0; s < steps; s++) {
                const int more = s + 1 < steps;
                _tile_dpbusd(0, 4, 6);
                _tile_dpbusd(1, 4, 7);
                if (more) _tile_loadd(4, a + 64 * (s + 1), K);
                _tile_dpbusd(2, 5, 6);
                if (more) _tile_loadd(6, b0 + 16L * (s + 1) * ld0, ld0);
                _tile_dpbusd(3, 5, 7);
                if (more) { _tile_loadd(7, b1 + 16L * (s + 1) * ld1, ld1); _tile_loadd(5, a + 16 * K + 64 * (s + 1), K); }
            }
        } else
        for (int s = 0; s < steps; s++) {
            long o0 = contiguous ? 1024L * s : 16L * s * ld0, o1 = contiguous ? 1024L * s : 16L * s * ld1;
            if (pf != 3) _tile_loadd(4, a + 64 * s, K);
            if (pf < 2) _tile_loadd(6, b0 + o0, ld0);
            _tile_dpbusd(0, 4, 6);
            if (pf < 2) _tile_loadd(7, b1 + o1, ld1);
            _tile_dpbusd(1, 4, 7);
            if (pf != 3) _tile_loadd(5, a + 16 * K + 64 * s, K);
            _tile_dpbusd(2, 5, 6);
            _tile_dpbusd(3, 5, 7);
            if (pf == 1) { /* next column pair's step s */
                const int8_t *n0 = contiguous ? b0 + 2 * K * 16 + 1024L * s : b0 + 128 + 16L * s * ld0;
                for (int r = 0; r < 16; r++) _mm_prefetch((const char *)n0 + r * (contiguous ? 64 : ld0), _MM_HINT_T0);
                const int8_t *n1 = n0 + (contiguous ? K * 16 : 0);
                if (contiguous) for (int r = 0; r < 16; r++) _mm_prefetch((const char *)n1 + r * 64, _MM_HINT_T0);
            }
        }
        _tile_stored(0, sink[0], 64); _tile_stored(1, sink[1], 64); _tile_stored(2, sink[2], 64); _tile_stored(3, sink[3], 64);
    }
}
int main(int argc, char **argv) {
    syscall(SYS_arch_prctl, 0x1023, 18);
    cfg();
    if (argc < 6) { fprintf(stderr, "usage: M K reps mode contig\n"); return 2; }
    int M = atoi(argv[1]), K = atoi(argv[2]), reps = atoi(argv[3]), pf = atoi(argv[4]), contig = atoi(argv[5]);
    uint8_t *a = aligned_alloc(64, 32 * K); int8_t *b = aligned_alloc(64, (size_t)M * K + 4096);
    memset(a, 3, 32 * K); memset(b, 1, (size_t)M * K + 4096);
    pass(a, b, M, K, pf, contig);
    double best = 1e9;
    for (int t = 0; t < 7; t++) {
        double t0 = now();
        for (int r = 0; r < reps; r++) pass(a, b, M, K, pf, contig);
        double dt = now() - t0; if (dt < best) best = dt;
    }
    double ops = 2.0 * 32 * M * K * reps;
    printf("M=%d K=%d pf=%d contig=%d: %.0f GOP/s (%.1f ns per tdp)\n", M, K, pf, contig, ops / best / 1e9, best / (reps * (M / 16) * 2 * (K / 64)) * 1e9);
    return 0;
}
