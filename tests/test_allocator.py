"""The allocator tuning is idempotent and serves large buffers from the heap, not from mmap."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from seqenc.allocator import release_free_memory, reuse_large_buffers

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt only")

# Hold a 64 MiB buffer and print how many bytes glibc serves through mmap (mallinfo2.hblkhd).
PROBE = """
import ctypes, sys
import numpy as np
if sys.argv[1] == "tuned":
    from seqenc.allocator import reuse_large_buffers
    assert reuse_large_buffers()
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
buffer = np.ones(1 << 24, dtype=np.float32)
print(libc.mallinfo2().hblkhd)
"""


def mmapped_bytes(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True)
    return int(out.stdout.strip())


@glibc
def test_second_call_is_a_no_op():
    assert reuse_large_buffers() is True
    assert reuse_large_buffers() is True


@glibc
def test_large_buffers_come_from_the_heap_once_tuned():
    assert mmapped_bytes("plain") >= 1 << 26  # untuned: the 64 MiB buffer is its own mmap
    assert mmapped_bytes("tuned") < 1 << 26  # tuned: it lives in the heap, reusable after free


def test_release_free_memory_runs():
    assert release_free_memory() is sys.platform.startswith("linux")


def test_tune_memory_caps_onednn_cache_unless_the_user_chose(monkeypatch):
    from seqenc.allocator import tune_memory

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    tune_memory()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "64"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "7")
    tune_memory()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "7"
