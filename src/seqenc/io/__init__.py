"""Streaming input and output: records in from txt/jsonl/csv/tsv/parquet, vectors out."""

from seqenc.atomic import atomic_path

from .errors import InputError
from .readers import (
    FORMATS,
    INPUT_EXTENSIONS,
    ON_ERROR,
    Record,
    RecordReader,
    detect_format,
    open_records,
)
from .sparse_writers import SPARSE_EXTENSIONS, SparseWriter, sparse_format
from .writers import (
    OUTPUT_EXTENSIONS,
    OUTPUT_FORMATS,
    JsonlWriter,
    NpyWriter,
    ParquetWriter,
    VectorWriter,
    open_writer,
    output_format,
)

__all__ = [
    "FORMATS",
    "INPUT_EXTENSIONS",
    "ON_ERROR",
    "OUTPUT_EXTENSIONS",
    "OUTPUT_FORMATS",
    "SPARSE_EXTENSIONS",
    "InputError",
    "JsonlWriter",
    "NpyWriter",
    "ParquetWriter",
    "Record",
    "RecordReader",
    "SparseWriter",
    "VectorWriter",
    "atomic_path",
    "detect_format",
    "open_records",
    "open_writer",
    "output_format",
    "sparse_format",
]
