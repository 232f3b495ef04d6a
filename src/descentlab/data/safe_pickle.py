"""Load the Deep Learning Tutorials' ``mnist.pkl.gz`` without trusting it.

The tutorial distributes MNIST as a gzip'd Python-2 pickle of three
``(images, labels)`` pairs of numpy arrays::

    f = gzip.open('mnist.pkl.gz', 'rb')
    train_set, valid_set, test_set = cPickle.load(f)

Unpickling is program execution: a pickle names callables (``GLOBAL`` opcodes) and
calls them with arguments (``REDUCE``), so ``pickle.load`` on a file from the internet
runs whatever the file asks for -- ``os.system``, ``builtins.eval``, ... .  This module
unpickles with :class:`RestrictedUnpickler`, whose :meth:`~RestrictedUnpickler.find_class`
admits only the handful of callables numpy array reconstruction needs and refuses
everything else *when the name is looked up*, i.e. before anything can be called.

Admitted (old and new spellings of the same numpy internals):

* ``numpy.core.multiarray._reconstruct`` / ``numpy._core.multiarray._reconstruct``
  -- builds an empty ndarray, which the pickle then fills through ``__setstate__``;
* ``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer`` -- protocol-5
  arrays written by Python 3;
* ``numpy.ndarray`` and ``numpy.dtype``;
* ``copy_reg._reconstructor`` (Python 2) / ``copyreg._reconstructor``, only for ndarray
  and dtype;
* ``_codecs.encode``, only with the ``latin1`` codec (Python 3 writes ``bytes`` that way
  in protocol-2 pickles).

Python-2 ``str`` payloads are decoded with ``encoding="latin1"``, which maps bytes
1:1 to code points, so numpy gets back exactly the original array bytes.
"""

from __future__ import annotations

import copyreg
import gzip
import io
import os
import pickle
import pickletools
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.errors import DataError
from descentlab.limits import check_bytes, limit, read_capped

__all__ = ["RestrictedUnpickler", "load_mnist_pkl", "restricted_loads"]

# The functions numpy's own pickles refer to, found through numpy's reducers so that
# we never import the deprecated ``numpy.core`` alias.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Stand-in for _codecs.encode: Python 3 pickles bytes in protocol 2 as
    # _codecs.encode(<latin1 text>, 'latin1'); no other codec is ever needed.
    if not isinstance(text, str) or encoding.replace("-", "").lower() != "latin1":
        raise pickle.UnpicklingError(
            f"refused _codecs.encode with encoding {encoding!r} (only latin1 is allowed)"
        )
    return text.encode("latin1", errors)


def _array_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    # Stand-in for copy_reg._reconstructor restricted to numpy's own classes.
    if cls not in (np.ndarray, np.dtype) or base not in (np.ndarray, np.dtype, object):
        raise pickle.UnpicklingError("refused copy_reg._reconstructor for a non-numpy class")
    return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy._core.numeric", "_frombuffer"): _FROMBUFFER,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("copy_reg", "_reconstructor"): _array_reconstructor,
    ("copyreg", "_reconstructor"): _array_reconstructor,
    ("_codecs", "encode"): _latin1_encode,
}


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle asked for a callable outside the allow-list."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name
        super().__init__(f"{module}.{name}")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else.

    Every ``GLOBAL`` / ``STACK_GLOBAL`` / extension-registry lookup goes through
    :meth:`find_class`; anything not in the allow-list raises :class:`RefusedGlobal`
    there, before the pickle reaches the ``REDUCE`` that would call it.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent id (dataset pickles never use them)")


# A tutorial pickle memoizes a few dozen objects; a memo index beyond this is a damaged
# or hostile file (the C unpickler would grow its memo table to that size first).
_MAX_MEMO_INDEX = 1 << 16
_REFUSED_OPCODES = {"PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4", "INST", "OBJ"}


def _prescan(data: bytes) -> None:
    """Walk the opcodes without executing any, refusing what a dataset never contains.

    This is a second line of defence in front of :meth:`RestrictedUnpickler.find_class`:
    it also rejects ``GLOBAL`` names outside the allow-list, opcodes that reach objects
    by other routes (``INST``/``OBJ``, persistent ids, the extension registry), and
    absurd memo indices, which would otherwise make the unpickler allocate gigabytes.
    """
    max_ops = limit("DESCENTLAB_MAX_PICKLE_OPS")
    for n_ops, (opcode, arg, _pos) in enumerate(pickletools.genops(data)):
        if max_ops and n_ops >= max_ops:
            raise DataError(
                f"the pickle has more than {max_ops} opcodes; a dataset pickle has a few dozen",
                hint="fix: use the IDX files or a .npz, or raise DESCENTLAB_MAX_PICKLE_OPS",
            )
        name = opcode.name
        if name in _REFUSED_OPCODES:
            raise pickle.UnpicklingError(f"opcode {name} is not allowed in a dataset pickle")
        if name == "GLOBAL":
            module, _, attr = str(arg).partition(" ")
            if (module, attr) not in _ALLOWED:
                raise RefusedGlobal(module, attr)
        elif name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg or 0) > _MAX_MEMO_INDEX:
            raise pickle.UnpicklingError(f"memo index {arg} is implausibly large")
        elif name == "STOP":
            return


def restricted_loads(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler` (``encoding="latin1"``).

    The opcodes are first scanned without executing anything (:func:`_prescan`).
    Raises :class:`~descentlab.errors.DataError` for a refused callable or a damaged pickle.
    """
    try:
        with warnings.catch_warnings():
            # A damaged file can make pickletools or numpy warn (bad escapes, odd dtype
            # arguments) before it fails; the failure becomes a DataError, the warnings
            # are noise.
            warnings.simplefilter("ignore")
            _prescan(data)
            return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
    except RefusedGlobal as exc:
        raise DataError(
            f"refused to load {source}: it asks to call {exc.module}.{exc.name}, which a "
            "dataset pickle never needs (the file may be malicious)",
            hint="fix: use the IDX files or a .npz instead, or re-download the pickle "
            "from the Deep Learning Tutorials",
        ) from None
    except DataError:
        raise
    except Exception as exc:
        # Any failure inside the unpickler (bad opcode, truncated stream, a numpy
        # __setstate__ rejecting its state) means a damaged file.
        raise DataError(
            f"{source} is not a readable pickle ({type(exc).__name__}: {exc})",
            hint="fix: re-download it or use the IDX files",
        ) from exc


def _check_natural(array: np.ndarray, where: str) -> None:
    """Refuse arrays that claim more data than their buffer holds.

    A crafted pickle can build an array of any shape with zero (or overlapping)
    strides over a one-byte buffer: it passes every shape check and then explodes into
    gigabytes on the first copy.  Arrays from a file must be dense, with the strides
    that their shape and dtype imply.
    """
    if array.size and not (array.flags.c_contiguous or array.flags.f_contiguous):
        raise DataError(
            f"{where} is not a dense array (strides {array.strides} for shape {array.shape}); "
            "the file is damaged or crafted",
            hint="fix: re-download the pickle or use the IDX files",
        )
    # A float32 copy is made of every array (4 bytes per element at most on top).
    check_bytes(array.size * max(array.itemsize, 4), f"{where} (shape {array.shape})")


XY = tuple[np.ndarray, np.ndarray]
PklSplits = tuple[XY, XY, XY]


def load_mnist_pkl(path: str | os.PathLike[str]) -> PklSplits:
    """Load a tutorial-format ``mnist.pkl.gz`` (or an uncompressed ``.pkl``) safely.

    Returns ``((x_train, y_train), (x_valid, y_valid), (x_test, y_test))`` as numpy
    arrays, exactly the structure ``cPickle.load`` gives in the tutorial: ``x`` of shape
    ``(N, 784)`` (float32 in [0, 1] in the original) and ``y`` of shape ``(N,)``.
    Raises :class:`~descentlab.errors.DataError` if the file is missing, damaged, tries
    to call anything beyond numpy array reconstruction, or has the wrong structure.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{path} does not exist",
            hint="fix: give the path of the tutorial's mnist.pkl.gz",
        )
    try:
        with open(path, "rb") as probe:
            compressed = probe.read(2) == b"\x1f\x8b"
        # Decide by content, not name: people gunzip the file and keep the name, or not.
        # Decompression streams and stops at the byte limit (a gzip bomb never fills memory).
        opener = gzip.open if compressed else open
        with opener(path, "rb") as stream:
            data = read_capped(stream, str(path))
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is not a readable gzip file ({exc})", hint="fix: re-download it"
        ) from exc
    obj = restricted_loads(data, source=str(path))
    return _validate_splits(obj, path)


def _validate_splits(obj: Any, path: Path) -> PklSplits:
    shape_hint = (
        "fix: the file must hold ((x_train, y_train), (x_valid, y_valid), (x_test, y_test))"
    )
    if not isinstance(obj, tuple | list) or len(obj) != 3:
        raise DataError(
            f"{path} holds a {type(obj).__name__}, not the tutorial's three (x, y) splits",
            hint=shape_hint,
        )
    splits = []
    for split_name, pair in zip(("train", "valid", "test"), obj):
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise DataError(
                f"{path}: the {split_name} split is not an (x, y) pair", hint=shape_hint
            )
        x, y = pair
        if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
            raise DataError(
                f"{path}: the {split_name} split does not hold numpy arrays", hint=shape_hint
            )
        if x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
            raise DataError(
                f"{path}: the {split_name} split has non-numeric arrays "
                f"(x: {x.dtype}, y: {y.dtype})",
                hint=shape_hint,
            )
        for array, which in ((x, "x"), (y, "y")):
            _check_natural(array, f"{path}: the {split_name} split's {which}")
        if x.ndim < 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise DataError(
                f"{path}: the {split_name} split has x of shape {x.shape} and y of shape "
                f"{y.shape}; expected (N, features) and (N,)",
                hint=shape_hint,
            )
        splits.append((x, y))
    return (splits[0], splits[1], splits[2])
