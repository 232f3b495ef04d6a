"""Coverage-guided fuzzing of the data parsers with atheris (optional; not run in CI).

    pip install atheris
    python tests/data/fuzz_parsers.py idx    [atheris/libFuzzer options, e.g. -runs=100000]
    python tests/data/fuzz_parsers.py npz|csv|pickle ...

Each target writes the fuzzer's bytes to a file and loads it the way a user's file is
loaded.  The contract under test: a parser either returns data or raises DataError;
any other exception (or a crash, hang or huge allocation) is a bug that libFuzzer
reports with the input that caused it.

Without atheris, ``python tests/data/fuzz_parsers.py TARGET --random N`` feeds N
random and mutated inputs instead (no coverage guidance), which is handy as a smoke
run on machines without a compiler toolchain.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from descentlab.data.datasets import load_dataset
from descentlab.data.idx import read_idx
from descentlab.data.safe_pickle import restricted_loads
from descentlab.errors import DataError

_TMP = Path(tempfile.mkdtemp(prefix="descentlab-fuzz-"))


def _via_file(suffix: str, load: Callable[[Path], object]) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        path = _TMP / f"input{suffix}"
        path.write_bytes(data)
        with contextlib.suppress(DataError):
            load(path)

    return target


def _pickle_target(data: bytes) -> None:
    with contextlib.suppress(DataError):
        restricted_loads(data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "idx": _via_file("-ubyte", read_idx),
    "idx-gz": _via_file("-ubyte.gz", lambda p: read_idx(p)),
    "npz": _via_file(".npz", load_dataset),
    "csv": _via_file(".csv", load_dataset),
    "pickle": _pickle_target,
}

# Small valid-ish seeds so random mutation starts near the interesting formats.
SEEDS: dict[str, list[bytes]] = {
    "idx": [
        bytes([0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]),
        bytes([0, 0, 0x0D, 2, 0, 0, 0, 1, 0, 0, 0, 1]) + bytes(4),
    ],
    "csv": [b"a,b,label\n1,2,0\n3,4,1\n5,6,1\n7,8,0\n9,1,1\n"],
    "pickle": [b"\x80\x02cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R."],
}
SEEDS["idx-gz"] = [gzip.compress(s) for s in SEEDS["idx"]]
SEEDS["npz"] = [b"PK\x03\x04" + bytes(26)]


def _random_inputs(name: str, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    target = TARGETS[name]
    seeds = SEEDS.get(name, [b""])
    for i in range(n):
        if i % 2:
            data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 4)):
                if data:
                    data[rng.randrange(len(data))] = rng.getrandbits(8)
            data = bytes(data[: rng.randint(0, len(data))])
        target(data)
    print(f"{name}: {n} inputs, only DataError raised")


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in TARGETS:
        sys.exit(f"usage: {argv[0]} {{{'|'.join(TARGETS)}}} [--random N | atheris options]")
    name = argv[1]
    if len(argv) >= 4 and argv[2] == "--random":
        _random_inputs(name, int(argv[3]))
        return
    try:
        import atheris
    except ImportError:
        sys.exit("atheris is not installed: pip install atheris, or use --random N")
    os.environ.setdefault("DESCENTLAB_NO_CACHE", "1")
    atheris.Setup([argv[0], *argv[2:]], TARGETS[name])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
