"""A sweep's folder: the manifest, the run directories, results.csv — and reading them back.

    SWEEP_DIR/
      sweep.json        the plan, the runs (name, stage, options) and the tuning decisions
      results.csv       one row per run: every option, best valid error, test error at
                        best, epochs, wall seconds, iterations to a target error, status
      runs/<name>/      one run directory per run (see descentlab.train.run_dir), plus
                        sweep_run.json (status and the extra numbers of
                        :func:`descentlab.experiments.runs.run_extras`) and
                        test_labels.npy (to pair predictions in McNemar's test)
      report.html/.md   see descentlab.experiments.report

A run's own numbers are read back as a :class:`~descentlab.train.records.RunSummary`;
a *row* (what results.csv and the report hold) is that summary's fields plus the run's
options, its sweep status and its extra numbers.
"""

from __future__ import annotations

import csv
import json
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from descentlab.errors import CheckpointError, DescentlabError
from descentlab.experiments.plan import LABEL_KEY, SweepPlan, run_identity, run_name, train_options
from descentlab.fsio import atomic_writer
from descentlab.limits import check_bytes
from descentlab.train.checkpoint import atomic_write_bytes
from descentlab.train.config import FIELD_NAMES, from_mapping, read_config_file
from descentlab.train.records import RunSummary

__all__ = [
    "MANIFEST",
    "METRIC_FIELDS",
    "RESULTS_CSV",
    "RUNS_DIR",
    "RUN_STATUS",
    "Manifest",
    "collect_results",
    "read_history",
    "read_run",
    "read_status",
    "read_summary",
    "run_state",
    "sweep_rows",
    "write_json",
    "write_results",
]

MANIFEST = "sweep.json"
RESULTS_CSV = "results.csv"
RUN_STATUS = "sweep_run.json"
RUNS_DIR = "runs"

#: The result columns of ``results.csv`` after the options (errors are fractions).
METRIC_FIELDS = (
    "best_valid_error",
    "test_error",
    "best_valid_nll",
    "test_nll",
    "test_f1",
    "best_epoch",
    "best_iteration",
    "epochs_run",
    "iterations",
    "stopped_because",
    "train_seconds",
    "seconds_to_best",
    "examples_to_best",
    "wall_seconds",
    "n_train",
    "n_valid",
    "n_test",
    "valid_errors",
    "test_errors",
    "model_train_error",
    "model_valid_error",
    "model_test_error",
    "valid_target_epoch",
    "valid_target_iteration",
    "valid_target_examples",
    "valid_target_seconds",
)

# TrainConfig options that say nothing about a run's result and are left out of the CSV.
_CSV_SKIP_OPTIONS = ("out", "name", "quiet", "extra")


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON atomically (a crash leaves the old file or the new one)."""
    atomic_write_bytes(path, json.dumps(data, indent=2, default=str).encode("utf-8"))


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``sweep_run.json`` (status, error, extras), or None if absent or unreadable."""
    path = run_dir / RUN_STATUS
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _config_matches(run_dir: Path, options: Mapping[str, Any]) -> bool:
    path = run_dir / "config.toml"
    if not path.is_file():
        return False
    try:
        stored = run_identity(read_config_file(path))
    except DescentlabError:
        return False
    return stored == run_identity(options)


def run_state(run_dir: Path, options: Mapping[str, Any]) -> str:
    """``done`` (skip), ``resume`` (checkpoint, no summary), or ``fresh`` (start over).

    ``fresh`` also covers a run that failed before (it is tried again from scratch: the
    cause may have been fixed) and a directory whose options do not match.
    """
    if not run_dir.exists():
        return "fresh"
    matches = _config_matches(run_dir, options)
    status = read_status(run_dir)
    if (
        matches
        and (run_dir / "summary.json").is_file()
        and status is not None
        and status.get("status") == "ok"
    ):
        return "done"
    if (
        matches
        and not (run_dir / "summary.json").is_file()
        and (run_dir / "checkpoint").is_dir()
        and (status is None or status.get("status") in ("interrupted", "running"))
    ):
        return "resume"
    return "fresh"


def read_summary(run_dir: Path) -> RunSummary | None:
    """The run's ``summary.json`` as a :class:`RunSummary` (None: not finished or unreadable)."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return None
    try:
        row = json.loads(path.read_text(encoding="utf-8"))
        return RunSummary.from_row(row) if isinstance(row, dict) else None
    except Exception:  # any damage (bad JSON, wrong types, missing keys): unusable
        return None


def read_run(run_dir: Path) -> dict[str, Any]:
    """The numbers of one run directory: summary, sweep extras and status (missing: None).

    A run whose files are damaged gets status ``damaged`` and an error naming the file,
    so a report skips it and says so instead of failing as a whole.
    """
    summary = read_summary(run_dir)
    row: dict[str, Any] = summary.to_row() if summary is not None else {}
    status = read_status(run_dir)
    if status is not None:
        row.update(status)
    elif run_dir.exists():
        row["status"] = "incomplete"
    else:
        row["status"] = "pending"
    damaged = damaged_files(run_dir, summary is None)
    if damaged and row.get("status") == "ok":
        row.update(status="damaged", error=f"{', '.join(damaged)} damaged; run skipped")
    return row


def damaged_files(run_dir: Path, summary_unreadable: bool) -> list[str]:
    """The result files of a finished run that exist but cannot be read."""
    bad = []
    if summary_unreadable:
        bad.append("summary.json")
    if read_history(run_dir) is None:
        bad.append("metrics.jsonl")
    if (run_dir / "test_predictions.npy").is_file() and read_run_array(
        run_dir, "test_predictions.npy"
    ) is None:
        bad.append("test_predictions.npy")
    return bad


def read_history(run_dir: Path) -> list[dict[str, Any]] | None:
    """The run's validation rows (``metrics.jsonl``); empty if none yet, None if damaged."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        rows = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError, RecursionError):
        return None
    if not all(isinstance(r, dict) for r in rows):
        return None
    return rows


def read_run_array(run_dir: Path, name: str) -> np.ndarray | None:
    """A 1-D integer ``.npy`` of the run (predictions, labels), or None if absent or damaged."""
    path = run_dir / name
    try:
        check_bytes(path.stat().st_size, str(path))
        array = np.load(path, allow_pickle=False)
    except Exception:  # numpy raises many types for damaged files; all mean unusable
        return None
    if not isinstance(array, np.ndarray) or array.ndim != 1 or array.dtype.kind not in "iu":
        return None
    return array


class Manifest:
    """``sweep.json``: the plan, every run of this sweep (with its stages) and the decisions."""

    def __init__(self, path: Path, plan: SweepPlan) -> None:
        self.path = path
        self.plan = plan
        self.runs: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.selection: list[dict[str, Any]] = []
        self.started = time.strftime("%Y-%m-%d %H:%M:%S")
        self.command: list[str] | None = None

    def add(self, run: Mapping[str, Any], stage: str) -> str:
        name = run_name(train_options(run), self.plan.name_keys, run.get(LABEL_KEY))
        entry = self.runs.setdefault(
            name,
            {
                "name": name,
                "label": run.get(LABEL_KEY),
                "stages": [],
                "options": {k: _plain(v) for k, v in train_options(run).items()},
            },
        )
        if stage not in entry["stages"]:
            entry["stages"].append(stage)
        return name

    def save(self) -> None:
        data = {
            "format": 1,
            "plan": self.plan.to_dict(),
            "started": self.started,
            "command": self.command,
            "runs": list(self.runs.values()),
            "selection": self.selection,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_json(self.path, data)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def sweep_rows(out: Path, manifest: Manifest, stage: str | None = None) -> list[dict[str, Any]]:
    """One row per run of the manifest (of one ``stage`` if given), read from its directory."""
    rows = []
    for entry in manifest.runs.values():
        if stage is not None and stage not in entry["stages"]:
            continue
        rows.append(_row(out, entry))
    return rows


def _row(out: Path, entry: Mapping[str, Any]) -> dict[str, Any]:
    options = from_mapping(dict(entry["options"])).to_dict()
    # (the run's directory name replaces TrainConfig's own ``name`` option, unused in sweeps)
    row: dict[str, Any] = {
        **options,
        "name": entry["name"],
        "stages": list(entry["stages"]),
        "label": entry.get("label"),
    }
    measured = read_run(out / RUNS_DIR / entry["name"])
    for key in ("status", "error", *METRIC_FIELDS):
        row[key] = measured.get(key)
    row.setdefault("error", None)
    row["run_dir"] = str(Path(RUNS_DIR) / entry["name"])
    return row


def collect_results(
    sweep_dir: str | Path,
) -> tuple[SweepPlan, list[dict[str, Any]], list[dict[str, Any]]]:
    """Read a sweep directory back: ``(plan, rows, selection)`` (rows from the run dirs)."""
    sweep_dir = Path(sweep_dir)
    path = sweep_dir / MANIFEST
    if not path.is_file():
        raise CheckpointError(
            f"{sweep_dir} is not a sweep directory (no {MANIFEST})",
            hint="pass a directory written by 'descentlab compare' or 'descentlab study'",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    plan = SweepPlan.from_dict(data["plan"])
    rows = [_row(sweep_dir, entry) for entry in data.get("runs", [])]
    return plan, rows, list(data.get("selection") or [])


def write_results(sweep_dir: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """``results.csv``: one row per run — name, stage, status, error, every option, the numbers."""
    path = Path(sweep_dir) / RESULTS_CSV
    options = [k for k in FIELD_NAMES if k not in _CSV_SKIP_OPTIONS]
    fields = ["name", "stage", "label", "status", "error", *options, *METRIC_FIELDS, "run_dir"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            flat = {k: _csv_value(v) for k, v in row.items()}
            flat["stage"] = "+".join(row.get("stages", []))
            writer.writerow(flat)
    return path


def _csv_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if value is None:
        return ""
    return value
