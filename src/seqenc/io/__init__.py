"""Streaming input and output: records in from txt/jsonl/csv/tsv/parquet, vectors out."""

from seqenc.atomic import atomic_path

from .errors import InputError
from .readers import FORMATS, ON_ERROR, Record, RecordReader, detect_format, open_records
from .writers import (
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
    "ON_ERROR",
    "OUTPUT_FORMATS",
    "InputError",
    "JsonlWriter",
    "NpyWriter",
    "ParquetWriter",
    "Record",
    "RecordReader",
    "VectorWriter",
    "atomic_path",
    "detect_format",
    "open_records",
    "open_writer",
    "output_format",
]
