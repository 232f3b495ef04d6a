"""The file side of a config: a TOML or JSON file read as one flat table of options.

What the options mean (names, presets, types) is :mod:`descentlab.train.config`'s;
this module only turns a file into a mapping, with one-line errors for a missing,
unparsable or wrongly shaped file.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from descentlab.errors import ConfigError

__all__ = ["read_options_table"]


def read_options_table(path: Path) -> dict[str, Any]:
    """The table of a TOML or JSON file; a TOML ``[train]`` table is merged into the top.

    Keys and values are returned as written (checked by the caller).
    """
    if not path.is_file():
        raise ConfigError(
            f"config file {str(path)!r} does not exist", hint="check the --config path"
        )
    data = _load_file(path)
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of options")
    if "train" in data and isinstance(data["train"], dict):
        rest = {k: v for k, v in data.items() if k != "train"}
        data = {**rest, **data["train"]}
    return data


def _load_file(path: Path) -> Any:
    text = path.read_bytes()
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return tomllib.loads(text.decode("utf-8"))
    except RecursionError:
        raise ConfigError(
            f"config file {str(path)!r} is nested too deeply",
            hint="a config file is a flat table of options",
        ) from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot parse config file {str(path)!r}: {exc}", hint="fix the file's syntax"
        ) from None
