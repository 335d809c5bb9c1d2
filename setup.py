"""Build the optional C kernels (src/seqenc/csrc/); everything else is in pyproject.toml.

The extension is optional: where it cannot be built (no compiler, not x86-64 with GCC or
Clang) seqenc installs without it and runs PyTorch's kernels instead.
"""

import platform
import sys

from setuptools import Extension, setup

x86 = platform.machine().lower() in ("x86_64", "amd64")
ext_modules = []
if x86 and sys.platform != "win32":
    ext_modules.append(
        Extension(
            "seqenc._kernels",
            [f"src/seqenc/csrc/{name}.c"
             for name in ("module", "module_gemm", "module_int8", "attention", "attention512",
                          "elementwise", "avx512", "gemm_bf16", "gemm_bf16_amx", "gemm_f32",
                          "gemm_f32_avx2", "peak", "gemm_int8", "gemm_int8_vnni",
                          "gemm_int8_avx2", "gemm_int8_amx", "tasks", "scratch")],
            depends=["src/seqenc/csrc/simd.h", "src/seqenc/csrc/simd512.h",
                     "src/seqenc/csrc/int8.h", "src/seqenc/csrc/int8_tile.h",
                     "src/seqenc/csrc/tasks.h", "src/seqenc/csrc/amx.h",
                     "src/seqenc/csrc/module.h", "src/seqenc/csrc/scratch.h"],
            extra_compile_args=["-O3", "-fopenmp"],
            extra_link_args=["-fopenmp"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
