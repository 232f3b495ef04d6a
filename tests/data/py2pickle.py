"""Write pickles byte-for-byte as Python 2's cPickle (protocol 2) wrote them.

The tutorial's ``mnist.pkl.gz`` was produced by Python 2 + numpy 1.x: globals are
spelled ``numpy.core.multiarray._reconstruct`` and raw array bytes are Python-2 ``str``
(``BINSTRING`` opcodes), which Python 3 can only read with ``encoding="latin1"``.
Python 3's pickler cannot emit that form, so the tests assemble the opcodes directly.
"""

from __future__ import annotations

import struct

import numpy as np

PROTO_2 = b"\x80\x02"
MARK, STOP, TUPLE, TUPLE1, TUPLE3 = b"(", b".", b"t", b"\x85", b"\x87"
REDUCE, BUILD, NONE, NEWFALSE = b"R", b"b", b"N", b"\x89"


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(data: bytes) -> bytes:
    # Python 2 str: SHORT_BINSTRING below 256 bytes, BINSTRING otherwise.
    if len(data) < 256:
        return b"U" + bytes([len(data)]) + data
    return b"T" + struct.pack("<i", len(data)) + data


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    return b"J" + struct.pack("<i", value)


def _dtype(dt: np.dtype) -> bytes:
    # numpy.dtype('f4', 0, 1) then BUILD with the version-3 dtype state.
    code = dt.str[1:].encode()
    order = b"|" if dt.itemsize == 1 else b"<"
    return (
        _global("numpy", "dtype")
        + _str(code)
        + _int(0)
        + _int(1)
        + TUPLE3
        + REDUCE
        + MARK
        + _int(3)
        + _str(order)
        + NONE * 3
        + _int(-1) * 2
        + _int(0)
        + TUPLE
        + BUILD
    )


def _array(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr)
    shape = b"".join(_int(d) for d in arr.shape)
    out = (
        _global("numpy.core.multiarray", "_reconstruct")
        + _global("numpy", "ndarray")
        + _int(0)
        + TUPLE1
        + _str(b"b")
        + TUPLE3
        + REDUCE
    )
    state = (
        MARK
        + _int(1)
        + MARK
        + shape
        + TUPLE
        + _dtype(arr.dtype)
        + NEWFALSE
        + _str(arr.astype(arr.dtype.newbyteorder("<")).tobytes())
        + TUPLE
    )
    return out + state + BUILD


def _obj(obj) -> bytes:
    if isinstance(obj, np.ndarray):
        return _array(obj)
    if isinstance(obj, tuple):
        return MARK + b"".join(_obj(o) for o in obj) + TUPLE
    raise TypeError(type(obj))


def py2_dumps(obj) -> bytes:
    """Pickle nested tuples of numpy arrays as Python 2 cPickle protocol 2 would."""
    return PROTO_2 + _obj(obj) + STOP
