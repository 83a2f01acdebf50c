"""CIFAR-10 as numpy arrays: sources, readers and the decoded-array cache.

Cheap to import: numpy and Pillow only (torchvision is imported to download, if ever).
"""

from cifarctl.data.cache import default_cache_dir
from cifarctl.data.sources import (
    CifarArrays,
    balanced_indices,
    channel_stats,
    data_summary,
    load_cifar,
    resolve_source,
    sample_indices,
    source_key,
    synthetic,
)

__all__ = [
    "CifarArrays",
    "balanced_indices",
    "channel_stats",
    "data_summary",
    "default_cache_dir",
    "load_cifar",
    "resolve_source",
    "sample_indices",
    "source_key",
    "synthetic",
]
