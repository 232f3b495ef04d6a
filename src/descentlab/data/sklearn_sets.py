"""scikit-learn's bundled datasets (digits, iris, wine, breast-cancer): no download.

Split 60 / 20 / 20 % by :func:`~descentlab.data.splits.three_way_split` (seeded,
stratified); digits are 8x8 images with intensities 0..16, scaled to [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from descentlab.data.checks import dataset_from_raw
from descentlab.data.containers import (
    Dataset,
    LoadOptions,
)
from descentlab.data.splits import three_way_split

__all__ = ["sklearn_loader"]


def sklearn_loader(
    fn_name: str, *, image_side: int | None = None
) -> Callable[[str, LoadOptions], Dataset]:
    """The loader of ``sklearn.datasets.<fn_name>`` (8x8 images when ``image_side`` is set)."""

    def load(name: str, opts: LoadOptions) -> Dataset:
        # Imported here: scikit-learn takes about a second to import and only these
        # four datasets need it.
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, fn_name)()
        x = np.asarray(bunch.data, dtype=np.float64)
        scale = None
        if image_side is not None:
            # digits: 8x8 images with intensities 0..16.
            scale = 16.0
            x = (x / scale).reshape(-1, 1, image_side, image_side)
        y = np.asarray(bunch.target)
        raw = three_way_split(x, y, opts.valid_fraction, opts.seed)
        return dataset_from_raw(
            name,
            raw,
            opts,
            source="scikit-learn",
            where=name,
            n_classes=len(bunch.target_names),
            class_names=[str(c) for c in bunch.target_names],
            scale=scale,
            info={"format": "sklearn", "seed": opts.seed},
        )

    return load
