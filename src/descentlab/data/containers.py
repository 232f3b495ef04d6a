"""The containers every loader returns: :class:`Split`, :class:`Dataset`, :class:`DatasetInfo`.

A loader turns checked raw arrays into tensors with :func:`split_from_arrays` and wraps
them with :func:`assemble_dataset`, which also applies (and records) the optional
standardization with training-split statistics.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from descentlab.data.preprocess import feature_stats, standardize
from descentlab.errors import DataError

__all__ = [
    "SPLITS",
    "Dataset",
    "DatasetInfo",
    "LoadOptions",
    "RawSplits",
    "Split",
    "assemble_dataset",
    "split_from_arrays",
]

SPLITS = ("train", "valid", "test")

# Raw arrays of the three splits, {"train": (x, y), ...}, before they become tensors.
RawSplits = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass
class Split:
    """One split, resident on one device.

    ``x``: float32, shape ``(N, *input_shape)``; ``y``: int64 class indices, shape ``(N,)``.
    """

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(
                f"split has {self.x.shape[0]} inputs but {self.y.shape[0]} labels",
                hint="fix: every example needs exactly one label",
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def device(self) -> torch.device:
        return self.x.device

    def to(self, device: torch.device | str) -> Split:
        """A copy of this split on ``device`` (this split itself if it is already there)."""
        return Split(self.x.to(device), self.y.to(device))


@dataclass
class Dataset:
    """Three splits plus what a model needs to know about them.

    ``scale``, ``mean`` and ``std`` record the input transform that was applied, so
    that a saved model can apply the same one to new raw inputs (:meth:`prepare`):
    ``x = (raw / scale - mean) / std``, each step only if set.
    """

    name: str
    train: Split
    valid: Split
    test: Split
    n_classes: int
    input_shape: tuple[int, ...]
    class_names: list[str] | None = None
    scale: float | None = None  # raw inputs were divided by this (255 for MNIST pixels)
    mean: torch.Tensor | None = None  # per-feature training mean, shape input_shape
    std: torch.Tensor | None = None  # per-feature training std (constant features: 1)
    source: str = ""  # where the data came from (a folder, file, or "scikit-learn")
    info: dict[str, Any] = field(default_factory=dict)

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "valid": self.valid, "test": self.test}

    def __iter__(self) -> Iterator[tuple[str, Split]]:
        return iter(self.splits().items())

    def to(self, device: torch.device | str) -> Dataset:
        """A copy with every split (and the standardization statistics) on ``device``."""
        return replace(
            self,
            train=self.train.to(device),
            valid=self.valid.to(device),
            test=self.test.to(device),
            mean=None if self.mean is None else self.mean.to(device),
            std=None if self.std is None else self.std.to(device),
        )

    def prepare(self, raw: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Apply this dataset's input transform to new raw inputs ``(N, *input_shape)``."""
        x = torch.as_tensor(np.asarray(raw) if not isinstance(raw, torch.Tensor) else raw)
        x = x.to(torch.float32)
        if tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"inputs have shape {tuple(x.shape[1:])} per example but {self.name} "
                f"expects {self.input_shape}"
            )
        if self.scale is not None:
            x = x / self.scale
        if self.mean is not None and self.std is not None:
            x = standardize(x, self.mean, self.std)
        return x

    def preprocessing(self) -> dict[str, Any]:
        """The input transform as plain data (for checkpoints): scale, mean, std."""
        return {
            "scale": self.scale,
            "mean": None if self.mean is None else self.mean.detach().cpu(),
            "std": None if self.std is None else self.std.detach().cpu(),
        }

    def __repr__(self) -> str:
        sizes = "/".join(str(len(s)) for _, s in self)
        return (
            f"Dataset({self.name!r}, train/valid/test={sizes}, n_classes={self.n_classes}, "
            f"input_shape={self.input_shape}, device={self.train.device})"
        )


@dataclass(frozen=True)
class LoadOptions:
    """The choices :func:`~descentlab.data.load_dataset` hands every loader (checked there)."""

    standardize: bool = False  # zero mean / unit variance per feature, training statistics
    valid_fraction: float | None = None  # None: the source's own split, else a stratified one
    seed: int = 0  # of every stratified split
    subset: int | None = None  # keep the first `subset` examples of each split
    data_dir: str | os.PathLike[str] | None = None  # searched first for MNIST-family files
    offline: bool = False  # never download
    quiet: bool = False  # no download progress bar
    # MNIST-family uint8 pixels k become k / pixel_scale; None: 255 ([0, 1]).  256 gives
    # the values of the tutorial's mnist.pkl.gz (see preprocess.scale_images).
    pixel_scale: float | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """What is known about a built-in dataset before loading it."""

    name: str
    kind: str  # "image" or "tabular"
    n_classes: int
    input_shape: tuple[int, ...]
    description: str
    standardize: bool  # the default when load_dataset(standardize=None)
    loader: Callable[[str, LoadOptions], Dataset] = field(repr=False, compare=False)
    class_names: tuple[str, ...] | None = None


def split_from_arrays(x: np.ndarray, y: np.ndarray, subset: int | None) -> Split:
    """float32 inputs and int64 labels as a :class:`Split`, cut to the first ``subset``."""
    if subset is not None:
        x, y = x[:subset], y[:subset]
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    return Split(xt, torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)))


def assemble_dataset(
    name: str,
    splits: dict[str, Split],
    *,
    n_classes: int,
    class_names: list[str] | None,
    standardize_inputs: bool,
    scale: float | None,
    source: str,
    info: dict[str, Any] | None = None,
) -> Dataset:
    """Wrap three splits as a :class:`Dataset`, standardizing them if asked."""
    input_shape = tuple(int(d) for d in splits["train"].x.shape[1:])
    mean = std = None
    if standardize_inputs:
        # Statistics of the training split only; applied unchanged to valid and test.
        mean, std = feature_stats(splits["train"].x)
        splits = {k: Split(standardize(s.x, mean, std), s.y) for k, s in splits.items()}
    return Dataset(
        name=name,
        train=splits["train"],
        valid=splits["valid"],
        test=splits["test"],
        n_classes=n_classes,
        input_shape=input_shape,
        class_names=class_names,
        scale=scale,
        mean=mean,
        std=std,
        source=source,
        info=info or {},
    )
