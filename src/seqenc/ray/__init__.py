"""Bulk encoding on Ray Data: ``seqenc encode --engine ray`` and ``encode_dataset``.

Needs the ``ray`` extra (``pip install 'seqenc[ray]'``); importing this package does not
import Ray, calling ``encode_dataset`` does.
"""

from .api import RayEncodeResult, encode_dataset

__all__ = ["RayEncodeResult", "encode_dataset"]
