/* What the AMX kernels share (gemm_bf16_amx.c; AMX-INT8 ones may follow): the target
 * attribute, the tile config's layout and its loading. seqenc_amx_usable() (simd512.h, defined
 * in gemm_bf16_amx.c) says whether the CPU has AMX-TILE + AMX-BF16 and Linux granted this
 * process the tile data; ask it before any tile instruction. SEQENC_AMX: this compiler has the
 * AMX intrinsics (gcc >= 11, clang >= 12) and the target is Linux; otherwise no AMX code is
 * built and seqenc_amx_usable() says 0. */
#ifndef SEQENC_AMX_H
#define SEQENC_AMX_H
#include "simd512.h"

#if defined(SEQENC_X86) && defined(__linux__) && defined(_tile_loadd) && defined(_tile_dpbf16ps)
#define SEQENC_AMX 1
#define AMX __attribute__((target("amx-tile,amx-bf16,amx-int8,avx512f,avx512bw,avx512vl,"     \
                                  "avx512dq,avx512bf16,avx512vnni,fma")))

/* Palette 1: 8 tiles of up to 16 rows x 64 bytes; a tile with 0 rows is unused. */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} TileConfig;

/* ldtilecfg: the thread's tiles as cfg says (zeroing them). gcc 12's _tile_loadconfig names
 * only 8 bytes of the config as its input, so stores to the rest may be dropped before it;
 * this names all 64. Pair with _tile_release() when the thread's tile work ends. */
AMX static inline void amx_load_config(const TileConfig *cfg) {
    __asm__ volatile("ldtilecfg %0" ::"m"(*cfg));
}
#endif
#endif
