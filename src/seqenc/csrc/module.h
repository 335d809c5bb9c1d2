/* The method tables of seqenc._kernels' other binding files, added to the module by module.c. */
#ifndef SEQENC_MODULE_H
#define SEQENC_MODULE_H
#include <Python.h>

#ifdef SEQENC_X86
extern PyMethodDef seqenc_gemm_methods[]; /* module_gemm.c: float32 and bf16 GEMMs */
extern PyMethodDef seqenc_int8_methods[]; /* module_int8.c: int8 GEMMs and quantisation */
#endif
#endif
