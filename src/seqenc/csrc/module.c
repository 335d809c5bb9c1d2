/* seqenc._kernels: our CPU kernels for inference, called from seqenc/nn/kernels.py. This file
 * binds the kernel-set queries, attention, the elementwise epilogues and the peak probes;
 * module_gemm.c the float32 and bf16 GEMMs, module_int8.c the int8 GEMMs and quantisation.
 *
 *   attention.c    self-attention over sequences packed back to back (no gathers, no mask)
 *   attention512.c the same with 16 lanes (AVX-512)
 *   elementwise.c  bias + GELU, and bias + residual + LayerNorm, each in one pass
 *   avx512.c       the same epilogues with 16 lanes, float32 or bf16; int8 (de)quantisation
 *   gemm_bf16.c    bf16-input GEMM with float32 output (AVX512-BF16), optional GELU epilogue
 *   gemm_bf16_amx.c  the same on AMX tiles, the same packed weights
 *   gemm_f32.c     float32 GEMM with 512-bit FMAs
 *   gemm_f32_avx2.c  float32 GEMM with AVX2 FMAs and the layer's epilogues fused
 *   gemm_int8.c    int8 GEMMs with exact int32 sums (AVX2, AVX-VNNI, AVX512-VNNI, AMX-INT8), on
 *                  tasks.c; micro-kernels in gemm_int8_vnni.c, gemm_int8_amx.c, gemm_int8_avx2.c
 *   tasks.c        a parallel for that ends when its tasks are done (not a barrier)
 *   peak.c         arithmetic peak probes
 *   simd.h, simd512.h  the helpers they share
 *
 * Work runs in parallel on the OpenMP runtime PyTorch itself loaded (same soname), so the
 * threads are PyTorch's and do not fight its GEMM threads for the cores. The kernel set is
 * chosen at run time (`best_isa()`: AVX2 + FMA, AVX-512, AVX512-BF16, AMX); without AVX2 + FMA
 * seqenc uses PyTorch's kernels. Built by setup.py as an optional extension: without a C
 * compiler seqenc still installs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "int8.h"
#include "module.h"
#include "scratch.h"
#include "simd512.h"

static PyObject *supported(PyObject *self, PyObject *args) {
    (void)self; (void)args;
#ifdef SEQENC_X86
    __builtin_cpu_init();
    return PyBool_FromLong(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"));
#else
    Py_RETURN_FALSE;
#endif
}

/* The best kernel set this CPU runs: ISA_AVX2, ISA_AVX512 (F, BW, VL, DQ), ISA_AVX512BF16
 * (also AVX512-BF16) or ISA_AMX (also AMX-TILE + AMX-BF16, tile data granted by Linux: asked
 * here, once); -1 without AVX2 + FMA. */
static PyObject *best_isa(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    long isa = -1;
#ifdef SEQENC_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) isa = ISA_AVX2;
    if (isa == ISA_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
        isa = ISA_AVX512;
    if (isa == ISA_AVX512 && __builtin_cpu_supports("avx512bf16")) isa = ISA_AVX512BF16;
    if (isa == ISA_AVX512BF16 && seqenc_amx_usable()) isa = ISA_AMX;
#endif
    return PyLong_FromLong(isa);
}

#ifdef SEQENC_X86
static int valid_width(long long n, int threads) {
    if (n % 8 == 0 && threads > 0) return 1;
    PyErr_SetString(PyExc_ValueError, "width must be a multiple of 8");
    return 0;
}

/* Which implementation runs (isa, dtype) on width n: 512 for the AVX-512 one, 256 for the AVX2
 * one, 0 (with an error set) for a combination the kernels do not have. bf16 exists with 16
 * lanes only; float32 takes 16 lanes when asked for AVX-512 and n % 16 == 0. */
static int lanes_for(int isa, int dtype, long long n) {
    if (dtype == DTYPE_BF16) {
        if (isa >= ISA_AVX512BF16 && n % 16 == 0) return 512;
        PyErr_SetString(PyExc_ValueError,
                        "bf16 kernels need the avx512bf16 kernel set and a width divisible by 16");
        return 0;
    }
    if (dtype != DTYPE_F32 || isa < ISA_AVX2 || isa > ISA_AMX) {
        PyErr_SetString(PyExc_ValueError, "unknown kernel set or dtype");
        return 0;
    }
    return isa >= ISA_AVX512 && n % 16 == 0 ? 512 : 256;
}

/* attention(qkv_ptr, q_bias_ptr, v_bias_ptr, out_ptr, starts_ptr, lengths_ptr, n_seq, n_rows,
 *           n_heads, head_dim, scale, threads[, in_bf16[, out_bf16[, isa]]]): qkv bfloat16 when
 * in_bf16 is true (float32 otherwise), out bfloat16 when out_bf16 is (default: as qkv), the
 * biases always float32; isa (default ISA_AVX2) allows attention512.c's 16 lanes where the head
 * size is a multiple of 16 (and, for a bf16 output, the CPU has AVX512-BF16). Returns the lanes
 * that ran (256 or 512). Pointers are data_ptr()s of contiguous CPU tensors, checked by the
 * Python caller (seqenc/nn/kernels.py). The projection comes without
 * biases: the key bias adds the same q.b_k to every score of a row, which softmax cancels, and
 * the value bias comes out unchanged (weights sum to 1), so it is added to the output. */
static PyObject *attention(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long qkv, q_bias, v_bias, out, starts, lengths;
    long long n_seq, n_rows, n_heads, hd;
    float scale;
    int threads, in_bf16 = 0, out_bf16 = -1, isa = ISA_AVX2;
    if (!PyArg_ParseTuple(args, "KKKKKKLLLLfi|ppi", &qkv, &q_bias, &v_bias, &out, &starts,
                          &lengths, &n_seq, &n_rows, &n_heads, &hd, &scale, &threads, &in_bf16,
                          &out_bf16, &isa))
        return NULL;
    if (out_bf16 < 0) out_bf16 = in_bf16;
    if (hd <= 0 || hd % 8 != 0 || n_heads <= 0 || threads <= 0) {
        PyErr_SetString(PyExc_ValueError, "head_dim must be a positive multiple of 8");
        return NULL;
    }
    Problem pr = {in_bf16 ? NULL : (const float *)(uintptr_t)qkv,
                  (const float *)(uintptr_t)q_bias, (const float *)(uintptr_t)v_bias,
                  out_bf16 ? NULL : (float *)(uintptr_t)out, n_heads, hd, n_heads * hd, scale,
                  in_bf16 ? (const uint16_t *)(uintptr_t)qkv : NULL,
                  out_bf16 ? (uint16_t *)(uintptr_t)out : NULL};
    const int lanes = isa >= ISA_AVX512 && hd % 16 == 0 && (!out_bf16 || isa >= ISA_AVX512BF16)
                      ? 512 : 256;
    int status;
    Py_BEGIN_ALLOW_THREADS
    if (lanes == 512)
        status = seqenc_varlen_attention512(&pr, (const int64_t *)(uintptr_t)starts,
                                            (const int64_t *)(uintptr_t)lengths, n_seq, n_rows,
                                            threads);
    else
        status = seqenc_varlen_attention(&pr, (const int64_t *)(uintptr_t)starts,
                                         (const int64_t *)(uintptr_t)lengths, n_seq, n_rows,
                                         threads);
    Py_END_ALLOW_THREADS
    if (status == -2) {
        PyErr_Format(PyExc_ValueError, "sequence spans run outside the %lld packed rows",
                     n_rows);
        return NULL;
    }
    if (status != 0) return PyErr_NoMemory();
    return PyLong_FromLong(lanes);
}

/* A bf16 copy beside a float32 result: only the 512-lane float32 kernels write it, with
 * AVX512-BF16. */
static int valid_bf16_output(unsigned long long ptr, int isa, int dtype, int lanes) {
    if (!ptr || (lanes == 512 && dtype == DTYPE_F32 && isa >= ISA_AVX512BF16)) return 1;
    PyErr_SetString(PyExc_ValueError, "a bf16 output needs float32 rows, a width divisible by 16 "
                                      "and the avx512bf16 kernel set");
    return 0;
}

/* bias_gelu(x_ptr, bias_ptr, rows, n, threads, isa, dtype[, for_int8]): x = gelu(x + bias) in
 * place (erf form; for_int8, float32 on 512 lanes: simd512.h's gelu512_for_int8); returns the
 * lanes of the implementation that ran (256 or 512). */
static PyObject *py_bias_gelu(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long x, bias;
    long long rows, n;
    int threads, isa, dtype, for_int8 = 0;
    if (!PyArg_ParseTuple(args, "KKLLiii|p", &x, &bias, &rows, &n, &threads, &isa, &dtype,
                          &for_int8))
        return NULL;
    if (!valid_width(n, threads)) return NULL;
    const int lanes = lanes_for(isa, dtype, n);
    if (!lanes) return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (lanes == 512)
        seqenc_bias_gelu512((void *)(uintptr_t)x, (const void *)(uintptr_t)bias, rows, n, threads,
                            dtype, for_int8);
    else
        seqenc_bias_gelu((float *)(uintptr_t)x, (const float *)(uintptr_t)bias, rows, n, threads);
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(lanes);
}

/* add_layernorm(y_ptr, bias_ptr, residual_ptr, gamma_ptr, beta_ptr, eps, rows, n, threads,
 * isa, dtype[, copy16_ptr]): y = LayerNorm(y + bias + residual) in place, and with copy16_ptr
 * (float32 y) the result rounded to bf16 into copy16 as well; returns the lanes that ran. */
static PyObject *py_add_layernorm(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long y, bias, residual, gamma, beta, copy16 = 0;
    float eps;
    long long rows, n;
    int threads, isa, dtype, status = 0;
    if (!PyArg_ParseTuple(args, "KKKKKfLLiii|K", &y, &bias, &residual, &gamma, &beta, &eps,
                          &rows, &n, &threads, &isa, &dtype, &copy16))
        return NULL;
    if (!valid_width(n, threads)) return NULL;
    const int lanes = lanes_for(isa, dtype, n);
    if (!lanes || !valid_bf16_output(copy16, isa, dtype, lanes)) return NULL;
    Py_BEGIN_ALLOW_THREADS
    if (lanes == 512)
        status = seqenc_add_layernorm512((void *)(uintptr_t)y, (const void *)(uintptr_t)bias,
                                         (const void *)(uintptr_t)residual,
                                         (const void *)(uintptr_t)gamma,
                                         (const void *)(uintptr_t)beta, eps, rows, n, threads,
                                         dtype, (uint16_t *)(uintptr_t)copy16);
    else
        seqenc_add_layernorm((float *)(uintptr_t)y, (const float *)(uintptr_t)bias,
                      (const float *)(uintptr_t)residual, (const float *)(uintptr_t)gamma,
                      (const float *)(uintptr_t)beta, eps, rows, n, threads);
    Py_END_ALLOW_THREADS
    if (status) return PyErr_NoMemory();
    return PyLong_FromLong(lanes);
}

/* peak(kind, iters, threads): giga-operations/s of the cores on one probe of peak.c (a
 * multiply-add counts 2). The caller checks the CPU has the probe's instructions. */
static PyObject *py_peak(PyObject *self, PyObject *args) {
    (void)self;
    int kind, threads;
    long long iters;
    if (!PyArg_ParseTuple(args, "iLi", &kind, &iters, &threads)) return NULL;
    if (kind < PEAK_FMA256 || kind > PEAK_AMX_INT8 || iters <= 0 || threads <= 0
        || (kind == PEAK_AMXBF16 && !seqenc_amx_usable())) {
        PyErr_SetString(PyExc_ValueError, "unknown probe (or AMX without the amx kernel set), "
                        "or iterations/threads not positive");
        return NULL;
    }
    double gops;
    Py_BEGIN_ALLOW_THREADS
    gops = seqenc_peak_gops(kind, iters, threads);
    Py_END_ALLOW_THREADS
    return PyFloat_FromDouble(gops);
}

static PyObject *py_scratch_buffers(PyObject *self, PyObject *args) {
    (void)self; (void)args;
    return PyLong_FromLong(seqenc_scratch_threads());
}
#endif

static PyMethodDef methods[] = {
    {"supported", supported, METH_NOARGS, "Whether this CPU runs the kernels (AVX2 + FMA)."},
    {"best_isa", best_isa, METH_NOARGS, "The best kernel set: 0 AVX2, 1 AVX-512, 2 +BF16, 3 +AMX."},
#ifdef SEQENC_X86  /* elsewhere the module only says it is not supported */
    {"attention", attention, METH_VARARGS, "Self-attention over packed sequences."},
    {"bias_gelu", py_bias_gelu, METH_VARARGS, "x = gelu(x + bias), in place."},
    {"add_layernorm", py_add_layernorm, METH_VARARGS, "y = LayerNorm(y + bias + residual)."},
    {"peak", py_peak, METH_VARARGS, "Arithmetic peak of the cores for one instruction kind."},
    {"scratch_buffers", py_scratch_buffers, METH_NOARGS,
     "Threads holding the GEMMs' scratch buffers now (scratch.c)."},
#endif
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels", NULL, -1, methods,
                                     NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *m = PyModule_Create(&module);
#ifdef SEQENC_X86  /* the GEMM and int8 functions (module_gemm.c, module_int8.c) */
    if (m && (PyModule_AddFunctions(m, seqenc_gemm_methods)
              || PyModule_AddFunctions(m, seqenc_int8_methods))) {
        Py_DECREF(m);
        return NULL;
    }
#endif
    return m;
}
