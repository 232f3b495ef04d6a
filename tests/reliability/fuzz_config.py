"""Fuzzing the config parser (optional; the quick version is test_config_fuzz.py).

    pip install atheris
    python tests/reliability/fuzz_config.py toml   [libFuzzer options, e.g. -runs=200000]
    python tests/reliability/fuzz_config.py json|mapping ...

Without atheris, ``python tests/reliability/fuzz_config.py TARGET --random N`` feeds N
random and mutated inputs (no coverage guidance) — a smoke run anywhere.

The contract: reading a config file (``resolve(config_file=...)``, what ``descentlab
train --config`` does) or building a config from a mapping (``from_mapping``, what
``fit(**options)`` does) returns a TrainConfig or raises ConfigError with a one-line
message.  Any other exception — or a crash, hang or huge allocation — is a bug, and
the fuzzer reports the input that caused it.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from descentlab.errors import ConfigError
from descentlab.train.config import FIELD_NAMES, from_mapping, resolve

_TMP = Path(tempfile.mkdtemp(prefix="descentlab-config-fuzz-"))


def _file_target(suffix: str) -> Callable[[bytes], None]:
    def target(data: bytes) -> None:
        path = _TMP / f"config{suffix}"
        path.write_bytes(data)
        try:
            resolve(config_file=path)
        except ConfigError as exc:
            if "\n" in str(exc):
                raise AssertionError(f"multi-line message: {exc!r}") from None

    return target


def _mapping_target(data: bytes) -> None:
    """Bytes → a JSON value (when they parse) → from_mapping."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return
    if isinstance(value, dict):
        with contextlib.suppress(ConfigError):
            from_mapping(value)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "toml": _file_target(".toml"),
    "json": _file_target(".json"),
    "mapping": _mapping_target,
}

SEEDS: dict[str, list[bytes]] = {
    "toml": [
        b'dataset = "digits"\nmodel = "mlp"\nhidden = [32, 16]\nlr = 0.1\n',
        b'preset = "dlt-mlp"\n[train]\nbatch_size = 20\nshuffle = true\n',
        b'optimizer = "adam"\nbetas = [0.9, 0.999]\nschedule = "linear:tau=10"\n[extra]\na=1\n',
    ],
    "json": [
        b'{"dataset": "digits", "lr": 0.1, "hidden": [32]}',
        b'{"optimizer": "rmsprop", "rho": 0.9, "momentum": null, "ema": 0.99}',
    ],
}
SEEDS["mapping"] = SEEDS["json"]


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "bool", "none", "big"] + (["list", "dict"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.randint(-5, 10_000)
    if kind == "big":
        return rng.choice([2**64, -(2**63), 10**30, 1e308, -0.0, 1e-320])
    if kind == "float":
        return rng.uniform(-2, 2)
    if kind == "str":
        return rng.choice(["", "nan", "inf", "1e999", "adam", "1,2", "true", "linear:tau=x"])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "none":
        return None
    if kind == "list":
        return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = [*FIELD_NAMES, "train", "preset", "extra", "zzz"]
    return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        at = rng.randint(0, len(buf))
        if op < 0.4 and buf:
            del buf[at : at + rng.randint(1, 4)]
        elif op < 0.8:
            buf[at:at] = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 4)))
        else:
            buf[at:at] = rng.choice([b"[", b"{", b'"', b"=", b"\n[train]\n", b"\x00", b"1e999"])
    return bytes(buf)


def random_inputs(target: str, n: int, seed: int = 0) -> list[bytes]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 3 == 0:
            nested = _random_value(rng, 1)
            doc = dict(nested) if isinstance(nested, dict) and i % 2 else {}
            doc.update({rng.choice(FIELD_NAMES): _random_value(rng) for _ in range(3)})
            if target == "toml":
                import tomli_w

                try:
                    out.append(tomli_w.dumps(_drop_none(doc)).encode())
                except (TypeError, ValueError):
                    out.append(json.dumps(doc).encode())
            else:
                out.append(json.dumps(doc).encode())
        else:
            out.append(_mutate(rng, rng.choice(SEEDS[target])))
    return out


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in TARGETS:
        print(__doc__)
        return 2
    name, rest = argv[0], argv[1:]
    target = TARGETS[name]
    if rest[:1] == ["--random"]:
        n = int(rest[1]) if len(rest) > 1 else 10_000
        for i, data in enumerate(random_inputs(name, n)):
            try:
                target(data)
            except Exception:
                print(f"input #{i} ({data[:200]!r}) raised:", file=sys.stderr)
                raise
        print(f"{name}: {n} random inputs, only ConfigError raised")
        return 0
    import atheris  # optional: coverage-guided fuzzing

    corpus = _TMP / f"corpus-{name}"
    corpus.mkdir(exist_ok=True)
    for i, seed in enumerate(SEEDS[name]):
        (corpus / f"seed-{i}").write_bytes(seed)
    atheris.instrument_all()
    atheris.Setup([sys.argv[0], str(corpus), *rest], target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
