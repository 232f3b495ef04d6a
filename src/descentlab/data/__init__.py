"""Datasets, their files, and on-device minibatches.

``load_dataset(name_or_path, ...) -> Dataset`` gives three :class:`Split` s of tensors;
``Batches(split, batch_size, ...)`` iterates over minibatches of one split by slicing.
See ``docs/data.md`` for the datasets, where files are looked for, and the formats.
"""

from descentlab.data.batching import Batches
from descentlab.data.checks import check_float32_range
from descentlab.data.datasets import (
    DATASETS,
    Dataset,
    DatasetInfo,
    Split,
    describe_datasets,
    load_dataset,
)
from descentlab.data.features import read_features
from descentlab.data.idx import read_idx, write_idx
from descentlab.data.preprocess import feature_stats, one_hot, scale_images, standardize
from descentlab.data.safe_pickle import load_mnist_pkl
from descentlab.data.sources import cache_dir, download, find_dataset_files, verify
from descentlab.data.splits import stratified_split

__all__ = [
    "DATASETS",
    "Batches",
    "Dataset",
    "DatasetInfo",
    "Split",
    "cache_dir",
    "check_float32_range",
    "describe_datasets",
    "download",
    "feature_stats",
    "find_dataset_files",
    "load_dataset",
    "load_mnist_pkl",
    "one_hot",
    "read_features",
    "read_idx",
    "scale_images",
    "standardize",
    "stratified_split",
    "verify",
    "write_idx",
]
