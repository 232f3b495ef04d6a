"""Run the descentlab CLI over a generated corpus of hostile inputs, under a memory cap.

Each case is one ``python -m descentlab ...`` process run with its address space
capped at ``--as`` (RLIMIT_AS, as ``prlimit --as=4G`` / ``ulimit -v`` would set it;
default 4G) and a wall-clock timeout.  A case is *clean* when
the process exits 0, or exits 2/3 with exactly one stderr line and no traceback or
"internal error", within the time limit and, for refusals, under 1 GB peak RSS.
Anything else is a failure and is printed with its command.

    python scripts/fuzz_cli.py --cases 200 --seed 1
    python scripts/fuzz_cli.py --cases 50 --as 4G --timeout 60 --keep /tmp/corpus

The corpus (written to a temporary folder): IDX files with random headers and gzip
bombs, tutorial pickles with crafted arrays (zero strides, opcode floods, bombs), NPZ
zip bombs and lying .npy headers, CSVs with huge or odd labels, random option values
(hidden sizes, seeds, names, out paths), damaged and crafted run directories
(model metadata, flipped bytes), and prediction inputs that overflow float32.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import pickle
import random
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

# The CLI runner and the refusal check are the test suite's (tests/clihelpers.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from clihelpers import SRC, refusal_problem, run_measured

MAX_REFUSAL_RSS = 1 << 30


class _Strided:
    def __init__(self, shape: tuple[int, ...], strides: tuple[int, ...]) -> None:
        self.shape, self.strides = shape, strides

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (np.ndarray, (self.shape, np.dtype("u1"), b"\x00", 0, self.strides))


def _idx(code: int, dims: list[int]) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def _mnist_folder(root: Path, rng: random.Random, bad: bytes, gz: bool) -> Path:
    folder = root / f"idx-{rng.getrandbits(32):08x}"
    folder.mkdir()
    names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ]
    victim = rng.choice(names)
    for name in names:
        if name == victim:
            data = bad
        elif "images" in name:
            data = _idx(8, [12, 28, 28]) + bytes(12 * 784)
        else:
            data = _idx(8, [12]) + bytes(range(10)) + b"\x00\x01"
        target = folder / (name + (".gz" if gz else ""))
        target.write_bytes(gzip.compress(data, 1) if gz else data)
    return folder


def case_idx(root: Path, rng: random.Random) -> list[str]:
    kind = rng.choice(["random", "bomb", "dims255", "huge"])
    if kind == "random":
        dims = [
            rng.choice([0, 1, 2, 28, 2**16, 2**31, 2**32 - 1]) for _ in range(rng.randint(1, 5))
        ]
        bad = _idx(rng.choice([8, 9, 11, 12, 13, 14, 7]), dims) + os.urandom(rng.randint(0, 64))
    elif kind == "bomb":
        bad = _idx(8, [60000 * 50, 28, 28]) + bytes(8 << 20)
    elif kind == "dims255":
        bad = _idx(8, [1] * 255) + b"\x00"
    else:
        bad = _idx(14, [2**20, 2**20])
    folder = _mnist_folder(root, rng, bad, gz=rng.random() < 0.7)
    return [
        "train",
        "--dataset",
        str(folder),
        "--max-epochs",
        "1",
        "--quiet",
        "--out",
        str(root / "o"),
    ]


def case_pickle(root: Path, rng: random.Random) -> list[str]:
    path = root / f"p{rng.getrandbits(32):08x}" / "mnist.pkl.gz"
    path.parent.mkdir()
    kind = rng.choice(["strided", "ops", "bomb", "shape"])
    y = np.zeros(3, dtype=np.int64)
    if kind == "strided":
        shape = (rng.choice([3, 50000, 10**6]), rng.choice([784, 10**4]))
        x = _Strided(shape, (rng.choice([0, 1]), 0))
        data = pickle.dumps(((x, y), (x, y), (x, y)), protocol=2)
    elif kind == "ops":
        data = pickle.dumps(list(range(rng.choice([10**5, 2 * 10**6]))), protocol=2)
    elif kind == "bomb":
        data = bytes(rng.choice([1 << 20, 64 << 20]))
    else:
        x = np.zeros((3, 784), dtype=np.float32)
        data = pickle.dumps(((x, y), (x, y[:2]), (x, y)), protocol=2)
    path.write_bytes(gzip.compress(data, 1))
    return [
        "train",
        "--dataset",
        str(path),
        "--max-epochs",
        "1",
        "--quiet",
        "--out",
        str(root / "o"),
    ]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def case_npz(root: Path, rng: random.Random) -> list[str]:
    path = root / f"n{rng.getrandbits(32):08x}.npz"
    kind = rng.choice(["bomb", "liar", "nox", "labels"])
    if kind == "bomb":
        # A real deflate bomb: 2 GiB of zeros in a few MB, streamed into the archive.
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 15, 1 << 14)}
        )
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            with archive.open("x.npy", "w", force_zip64=True) as member:
                member.write(header.getvalue())
                chunk = bytes(1 << 24)
                for _ in range(128):
                    member.write(chunk)
            archive.writestr("y.npy", _npy(np.zeros(1 << 15)))
    elif kind == "liar":
        header = io.BytesIO()
        shape = (rng.choice([10**9, 2**40]), 100)
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f8", "fortran_order": False, "shape": shape}
        )
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("x.npy", header.getvalue())
            archive.writestr("y.npy", header.getvalue())
    elif kind == "nox":
        np.savez(path, features=np.zeros((10, 3)), y=np.arange(10) % 2)
    else:
        y = np.arange(40) % 2
        y[-1] = rng.choice([10**8, 2**62, -1])
        np.savez(path, x=np.random.default_rng(0).normal(size=(40, 3)), y=y)
    return [
        "train",
        "--dataset",
        str(path),
        "--max-epochs",
        "1",
        "--quiet",
        "--out",
        str(root / "o"),
    ]


def case_csv(root: Path, rng: random.Random) -> list[str]:
    path = root / f"c{rng.getrandbits(32):08x}.csv"
    label = rng.choice(["100000000", "1e300", "nan", "-1", "2.5", "1"])
    rows = ["a,b,label"] + [f"{i},{i % 3},{i % 2}" for i in range(30)] + [f"1,2,{label}"]
    path.write_text("\n".join(rows) + "\n")
    extra = rng.choice([[], ["--label-column", "b"], ["--label-column", "zz"]])
    return [
        "train",
        "--dataset",
        str(path),
        "--max-epochs",
        "1",
        "--quiet",
        "--out",
        str(root / "o"),
        *extra,
    ]


def case_options(root: Path, rng: random.Random) -> list[str]:
    opt = rng.choice(["hidden", "seeds", "name", "out", "optimizer", "label"])
    base = ["train", "--dataset", "digits", "--max-epochs", "1", "--quiet"]
    if opt == "hidden":
        value = rng.choice(["1000000000", "10,,10", ",", "2e7", "-3", "10,x", "500" * 30])
        return [*base, "--model", "mlp", "--hidden", value, "--out", str(root / "o")]
    if opt == "seeds":
        return ["compare", "--dataset", "digits", "--seeds", rng.choice(["100000000", "0", "1,1"]),
                "--out", str(root / "s"), "--no-report"]  # fmt: skip
    if opt == "name":
        name = rng.choice(["../../../x", "..", "a/b", "x" * 300, "", "\x00"])
        return [*base, "--name", name]
    if opt == "out":
        out = rng.choice(["", "x" * 300, os.fsdecode(b"bad\xff"), str(root / "file.txt")])
        (root / "file.txt").write_text("mine")
        return [*base, "--out", out]
    if opt == "optimizer":
        name = rng.choice(["torch.SparseAdam", "torch.Nope", "torch.", "os.system"])
        return [*base, "--optimizer", name, "--out", str(root / "o")]
    return [*base, "--label-column", "y", "--out", str(root / "o")]


def _run_dir(root: Path) -> Path:
    cached = root / "_base_run"
    if not cached.exists():
        subprocess.run(
            [sys.executable, "-m", "descentlab", "train", "--dataset", "digits",
             "--max-epochs", "1", "--quiet", "--out", str(cached)],
            env={**os.environ, "PYTHONPATH": str(SRC)}, check=True, capture_output=True,
        )  # fmt: skip
    copy = root / f"run{random.getrandbits(32):08x}"
    shutil.copytree(cached, copy)
    return copy


def case_run(root: Path, rng: random.Random) -> list[str]:
    run = _run_dir(root)
    kind = rng.choice(["flip", "meta", "predict-big", "predict-npz", "evaluate-shape", "landscape"])
    if kind == "flip":
        model = run / "model.safetensors"
        data = bytearray(model.read_bytes())
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        model.write_bytes(bytes(data))
        return ["evaluate", str(run)]
    if kind == "meta":
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file

        with safe_open(str(run / "model.safetensors"), framework="pt") as f:
            meta = json.loads(f.metadata()["descentlab"])
        key = rng.choice(["input_shape", "input_scale", "model_spec", "n_classes"])
        meta[key] = rng.choice([None, "x", [2e7], {"hidden": [2 * 10**7]}, -1, [1, "a"], True])
        if key == "model_spec" and isinstance(meta[key], dict):
            meta[key] = {
                "name": "mlp",
                "input_shape": [1, 8, 8],
                "n_classes": 10,
                "hidden": [2 * 10**7],
            }
        save_file(load_file(run / "model.safetensors"), run / "model.safetensors",
                  metadata={"descentlab": json.dumps(meta)})  # fmt: skip
        return ["evaluate", str(run)]
    if kind == "predict-big":
        np.save(root / "big.npy", np.full((2, 64), rng.choice([1e300, np.nan, np.inf])))
        return ["predict", str(run), str(root / "big.npy")]
    if kind == "predict-npz":
        np.savez(
            root / "two.npz",
            x_train=np.zeros((2, 64)),
            x_test=np.ones((2, 64)),
            images=np.ones((2, 64)),
        )
        return ["predict", str(run), str(root / "two.npz")]
    if kind == "evaluate-shape":
        return ["evaluate", str(run), "--dataset", rng.choice(["iris", "wine", "breast-cancer"])]
    (root / "exists.txt").write_text("mine")
    return ["landscape", "--out", str(root / "exists.txt")]


CASES: dict[str, Callable[[Path, random.Random], list[str]]] = {
    "idx": case_idx,
    "pickle": case_pickle,
    "npz": case_npz,
    "csv": case_csv,
    "options": case_options,
    "run": case_run,
}


def _bytes(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    text = text.strip().upper()
    return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(text)


def run_case(argv: list[str], cap: str, timeout: float) -> tuple[int, str, float, int]:
    limit = _bytes(cap)

    def cap_address_space() -> None:
        # What `prlimit --as=CAP` / `ulimit -v` set: RLIMIT_AS of the child.  (Set here
        # rather than through the prlimit binary, which crashes on some sandboxed hosts.)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    code, err, seconds, peak = run_measured(
        argv,
        env={"DESCENTLAB_NO_CACHE": "1"},
        timeout=timeout,
        preexec_fn=cap_address_space,
    )
    return (124, "timeout", seconds, peak) if code is None else (code, err, seconds, peak)


def verdict(code: int, err: str, peak: int) -> str | None:
    """None if clean, else why not."""
    if code == 0:
        return None
    if code == 124:
        return "timeout"
    problem = refusal_problem(code, err, exit_codes=(2, 3), usage_ok=True)
    if problem is None and peak > MAX_REFUSAL_RSS:
        return f"refusal used {peak / 2**30:.2f} GB"
    return problem


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--as", dest="cap", default="4G", help="prlimit --as value (default 4G)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    parser.add_argument("--keep", default=None, help="keep the corpus in this folder")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(args.keep or tempfile.mkdtemp(prefix="descentlab-fuzz-"))
    root.mkdir(parents=True, exist_ok=True)
    tried = clean = 0
    failures: list[str] = []
    slowest = 0.0
    try:
        for i in range(args.cases):
            family = list(CASES)[i % len(CASES)]
            case_root = root / f"case{i:04d}"
            case_root.mkdir()
            if family == "run":
                base = root / "_base_run"
                if base.exists() and not (case_root / "_base_run").exists():
                    (case_root / "_base_run").symlink_to(base)
            argv = CASES[family](root if family == "run" else case_root, rng)
            # exec cannot pass a NUL inside an argument (no shell can type one either)
            argv = [arg.replace("\0", "") for arg in argv]
            code, err, seconds, peak = run_case(argv, args.cap, args.timeout)
            tried += 1
            slowest = max(slowest, seconds)
            why = verdict(code, err, peak)
            if why is None:
                clean += 1
            else:
                failures.append(f"[{family}] {' '.join(argv)} -> {why}")
                print(failures[-1], flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(f"tried {tried}, clean {clean}, failures {len(failures)} (slowest case {slowest:.1f} s, "
          f"memory cap --as={args.cap})")  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
