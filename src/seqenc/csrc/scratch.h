/* scratch.c: the GEMMs' per-thread scratch buffers (gemm_f32.c, gemm_f32_avx2.c, gemm_int8.c). */
#ifndef SEQENC_SCRATCH_H
#define SEQENC_SCRATCH_H
#include "simd.h"

#ifdef SEQENC_X86
/* One buffer per thread and use; a kernel holds several uses at once, never one use twice. */
typedef enum {
    SCRATCH_PACKED_W, /* float32 W in the GEMM's panels (gemm_f32*.c, packed on the call) */
    SCRATCH_A_TILES,  /* a task's rows of A in register tiles (gemm_f32*.c) */
    SCRATCH_INT8,     /* a task's quantised rows and results (gemm_int8.c) */
    SCRATCH_USES
} ScratchUse;

/* At least `bytes`, 64-byte aligned, this thread's for `use` until its next call with `use`;
 * NULL: no memory. */
void *seqenc_thread_buffer(ScratchUse use, size_t bytes);
/* How many threads hold scratch buffers now (for tests: freed when their thread exits). */
long seqenc_scratch_threads(void);
#endif
#endif
