"""The report of a sweep: a table over seeds, significance tests, figures, HTML + Markdown.

What it says, and why:

* **Table** — per configuration, mean ± sample std over seeds of the best validation
  error, the test error at that point, and the epochs and wall-clock seconds it took
  to get there; the best value of each column is marked ★.
* **Wilson 95% intervals** on every error rate (per configuration from the error
  counts pooled over its seeds, and per run in the appendix): an error rate measured
  on n examples is itself uncertain, whatever the seeds say.
* **McNemar's test** between the two configurations with the lowest mean validation
  error, on their *test-set predictions*: seed-matched runs are paired (same seed, same
  split, same examples), and the discordant counts b and c decide; the course notes'
  "rule of 30" asks whether the change affects at least 30 examples net (|b − c|).
* **Figures** — validation error against epochs and wall-clock seconds, training NLL
  against iterations (log scale), one curve per configuration (mean over seeds, band
  min–max), and learning-rate sensitivity (best validation error vs lr, log x).

The test set is reported, never used to choose: configurations are ranked, and the
top two picked for the test, by *validation* error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from descentlab.errors import CheckpointError
from descentlab.experiments.plan import config_key, format_value
from descentlab.experiments.report.context import ReportContext, Section
from descentlab.experiments.report.diagnostics import diagnostics_section
from descentlab.experiments.report.figures import figures_section
from descentlab.experiments.report.render import render_report
from descentlab.experiments.report.significance import significance_section
from descentlab.experiments.report.tables import (
    configuration_summaries,
    configuration_table,
    protocol_paragraphs,
    runs_table,
    selection_section,
)
from descentlab.experiments.store import collect_results


class StudyReport(Protocol):
    """What a built-in study adds to its sweep's report (see descentlab.experiments.studies)."""

    @property
    def split_by(self) -> str | None:
        """The option whose values get a comparison each (e.g. ``"dataset"``), or None."""

    @property
    def sections(self) -> Callable[[ReportContext], list[Section]]:
        """Builds the study's own sections, placed right after the protocol."""


def comparison_sections(ctx: ReportContext, suffix: str = "") -> list[Section]:
    """Table, tuning decisions, significance and figures for one set of configurations."""
    summaries = configuration_summaries(ctx)
    sections = [Section(f"Configurations{suffix}").table(configuration_table(ctx, summaries))]
    tuning = selection_section(ctx, f"Tuning on the validation set (stage 1){suffix}")
    if tuning is not None:
        sections.append(tuning)
    significance = significance_section(ctx, summaries)
    significance.title += suffix
    figures = figures_section(ctx, summaries)
    figures.title += suffix
    return [*sections, significance, figures]


def build_sections(ctx: ReportContext, split_by: str | None = None) -> list[Section]:
    """The standard sections of a sweep report.

    ``split_by`` (e.g. ``"dataset"``) repeats the comparison for each of its values:
    comparing an MLP's best optimizer with a logistic regression's is not a comparison.
    """
    sections = [Section("How this sweep was run").text(*protocol_paragraphs(ctx))]
    values = []
    if split_by:
        for row in ctx.final:
            key = config_key(row, [split_by])
            if key not in values:
                values.append(key)
    if len(values) > 1:
        for (value,) in values:
            sub = ctx.subset(split_by, value)  # type: ignore[arg-type]
            sections += comparison_sections(sub, f" — {split_by} {format_value(value)}")
    else:
        sections += comparison_sections(ctx)
    failed = [r for r in ctx.rows if r["status"] != "ok"]
    if failed:
        sections.append(
            Section("Runs that did not finish").text(
                *[f"`{r['name']}`: {r['status']} — {r.get('error') or ''}" for r in failed]
            )
        )
    diagnostics = diagnostics_section(ctx)
    if diagnostics is not None:
        sections.append(diagnostics)
    sections.append(Section("Every run").table(runs_table(ctx)))
    return sections


def build_report(
    sweep_dir: str | Path,
    *,
    title: str | None = None,
    extra: Callable[[ReportContext], list[Section]] | None = None,
    studies: Mapping[str, StudyReport] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` (and ``figures/``) into ``sweep_dir``.

    A sweep made by a built-in study gets the study's own sections (right after the
    protocol) and its per-dataset/per-model split, looked up by name in ``studies``
    (:func:`descentlab.experiments.build_report` passes the built-in ones); ``extra``
    may add more sections.
    Returns ``(html_path, md_path)``.
    """
    sweep_dir = Path(sweep_dir)
    plan, rows, selection = collect_results(sweep_dir)
    if not rows:
        raise CheckpointError(f"{sweep_dir} holds no runs yet", hint="run the sweep first")
    ctx = ReportContext(sweep_dir, plan, rows, selection, sweep_dir / "figures")
    study = studies.get(plan.study) if plan.study and studies is not None else None
    sections = build_sections(ctx, split_by=study.split_by if study else None)
    if study is not None:
        sections[1:1] = study.sections(ctx)
    if extra is not None:
        sections += extra(ctx)
    dataset = plan.fixed.get("dataset", "mnist")
    model = plan.fixed.get("model", "logreg")
    title = title or plan.title or f"Sweep: {model} on {dataset}"
    return render(title, sections, sweep_dir)


def render(title: str, sections: Sequence[Section], out_dir: Path) -> tuple[Path, Path]:
    """Write the report through :func:`descentlab.experiments.report.render.render_report`."""
    return render_report(title, [_as_render_section(s) for s in sections], out_dir)


def _as_render_section(section: Section) -> dict[str, Any]:
    blocks = []
    for kind, value in section.blocks:
        if kind == "table":
            value = {"columns": value.columns, "rows": value.rows, "caption": value.caption}
        elif kind == "figure":
            value = str(value)
        blocks.append({"kind": kind, "value": value})
    return {"title": section.title, "blocks": blocks}
