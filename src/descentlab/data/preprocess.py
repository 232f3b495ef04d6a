"""Input scaling, standardization and one-hot encoding.

Standardization (zero mean, unit variance per feature) uses statistics of the
**training split only**::

    mu_j    = (1/N) sum_i x_ij                       over training examples i
    sigma_j = sqrt((1/N) sum_i (x_ij - mu_j)^2)      (population std)
    x'_ij   = (x_ij - mu_j) / sigma_j                for every split

Computing mu and sigma on validation or test data would leak information about them
into training.  Features that are constant on the training split (sigma_j = 0, e.g.
MNIST's border pixels) are only centred: their sigma is replaced by 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from descentlab.errors import DataError

__all__ = ["feature_stats", "one_hot", "scale_images", "standardize"]


def scale_images(images: np.ndarray, divisor: float = 255.0) -> torch.Tensor:
    """uint8 pixel intensities k = 0..255 -> float32 tensor ``k / divisor``.

    ``divisor`` 255 (the default) maps onto [0, 1].  256 is the Deep Learning
    Tutorials' ``mnist.pkl.gz`` encoding (its pixels are exactly k/256, so the largest
    is 255/256): reading the IDX files with ``divisor=256`` gives that file's values.
    """
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise DataError(f"expected uint8 pixel values, got {arr.dtype}")
    if not divisor > 0:
        raise DataError(f"pixel scale divisor must be > 0, got {divisor}")
    out = np.divide(arr, np.float32(divisor), dtype=np.float32)
    return torch.from_numpy(out)


def feature_stats(x: torch.Tensor, *, eps: float = 1e-7) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and population standard deviation over the first (example) axis.

    Both have shape ``x.shape[1:]``; a standard deviation below ``eps`` (a constant
    feature) is returned as 1 so that standardizing never divides by zero.
    Accumulates in float64 so 50,000 x 784 sums lose no precision.
    """
    if x.ndim < 1 or x.shape[0] == 0:
        raise DataError("cannot compute feature statistics of an empty split")
    x64 = x.to(torch.float64)
    mean = x64.mean(dim=0)
    std = x64.std(dim=0, correction=0)
    std = torch.where(std < eps, torch.ones_like(std), std)
    return mean.to(x.dtype), std.to(x.dtype)


def standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std``, with ``mean``/``std`` from :func:`feature_stats` of the train split."""
    if mean.shape != x.shape[1:] or std.shape != x.shape[1:]:
        raise DataError(
            f"standardization statistics have shape {tuple(mean.shape)} but the inputs have "
            f"feature shape {tuple(x.shape[1:])}",
            hint="fix: use the mean/std stored with the dataset the model was trained on",
        )
    return (x - mean.to(x.device)) / std.to(x.device)


def one_hot(
    y: torch.Tensor | np.ndarray | Sequence[int],
    n_classes: int,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Class indices ``(N,)`` -> one-hot matrix ``(N, n_classes)``: row i is e_{y_i}.

    The tutorial's ``numpy.eye(K)[y]``: selecting row ``y_i`` of the identity matrix.
    Labels outside ``[0, n_classes)`` raise :class:`~descentlab.errors.DataError`.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer):
        raise DataError(f"n_classes must be an integer, got {n_classes!r}")
    if n_classes < 1:
        raise DataError(f"n_classes must be >= 1, got {n_classes}")
    labels = torch.as_tensor(y)
    if labels.numel() == 0:
        labels = labels.to(torch.int64)  # torch.as_tensor([]) is float32
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise DataError(f"one_hot needs integer class labels, got dtype {labels.dtype}")
    if labels.ndim != 1:
        raise DataError(f"one_hot needs labels of shape (N,), got {tuple(labels.shape)}")
    labels = labels.to(torch.int64)
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        bad = labels[(labels < 0) | (labels >= n_classes)]
        raise DataError(
            f"{bad.numel()} labels are outside [0, {n_classes}) (e.g. {int(bad[0])})",
            hint="fix: labels must be class indices 0..n_classes-1",
        )
    out = torch.zeros(labels.shape[0], n_classes, dtype=dtype, device=labels.device)
    out[torch.arange(labels.shape[0], device=labels.device), labels] = 1
    return out
