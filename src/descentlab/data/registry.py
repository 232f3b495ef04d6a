"""The built-in datasets by name (``DATASETS``) and the aliases a name may be given by.

To add a dataset: write a loader returning a :class:`~descentlab.data.containers.Dataset`
(see :mod:`descentlab.data.mnist_family` and :mod:`descentlab.data.sklearn_sets`) and
register a :class:`~descentlab.data.containers.DatasetInfo` here.
"""

from __future__ import annotations

from descentlab.data.containers import DatasetInfo
from descentlab.data.mnist_family import FASHION_CLASSES, MNIST_CLASSES, named_idx_loader
from descentlab.data.sklearn_sets import sklearn_loader

__all__ = ["ALIASES", "DATASETS", "canonical_name"]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist",
        "image",
        10,
        (1, 28, 28),
        "MNIST handwritten digits (LeCun, Cortes, Burges), 28x28 grey",
        False,
        named_idx_loader(MNIST_CLASSES),
        tuple(MNIST_CLASSES),
    ),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist",
        "image",
        10,
        (1, 28, 28),
        "Fashion-MNIST clothing images (Xiao, Rasul, Vollgraf 2017), 28x28 grey",
        False,
        named_idx_loader(FASHION_CLASSES),
        tuple(FASHION_CLASSES),
    ),
    "digits": DatasetInfo(
        "digits",
        "image",
        10,
        (1, 8, 8),
        "scikit-learn's 8x8 handwritten digits (UCI optdigits test set), 1797 images",
        False,
        sklearn_loader("load_digits", image_side=8),
    ),
    "iris": DatasetInfo(
        "iris",
        "tabular",
        3,
        (4,),
        "Fisher's iris flowers, 150 examples, 4 measurements",
        True,
        sklearn_loader("load_iris"),
    ),
    "wine": DatasetInfo(
        "wine",
        "tabular",
        3,
        (13,),
        "UCI wine cultivars, 178 examples, 13 chemical measurements",
        True,
        sklearn_loader("load_wine"),
    ),
    "breast-cancer": DatasetInfo(
        "breast-cancer",
        "tabular",
        2,
        (30,),
        "Wisconsin diagnostic breast cancer, 569 examples, 30 features",
        True,
        sklearn_loader("load_breast_cancer"),
    ),
}

ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "breast_cancer": "breast-cancer",
    "breastcancer": "breast-cancer",
}


def canonical_name(name: str) -> str | None:
    """The registered name that ``name`` means (case and aliases aside), or ``None``."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return key if key in DATASETS else None
