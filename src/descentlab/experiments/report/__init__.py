"""The report of a sweep: tables over seeds, significance tests, figures, HTML + Markdown.

* :mod:`.context` — sections, tables, number formats and :class:`ReportContext`;
* :mod:`.tables`, :mod:`.significance`, :mod:`.figures` — the standard sections;
* :mod:`.build` — :func:`build_report`, reading a sweep folder and writing the report;
* :mod:`.render` — the HTML and Markdown files, through the jinja2 templates in
  ``templates/`` (HTML autoescaped: labels and option values are user text).
"""

from __future__ import annotations

from descentlab.experiments.report.build import (
    StudyReport,
    build_report,
    build_sections,
    comparison_sections,
    render,
)
from descentlab.experiments.report.context import (
    MAX_CURVES,
    STAR,
    ReportContext,
    Section,
    Table,
    error_ci,
    fmt_ci,
    fmt_num,
    fmt_pct,
    fmt_pm,
    fmt_sig,
    fmt_uncertain,
)
from descentlab.experiments.report.figures import figures_section
from descentlab.experiments.report.render import MARKER, render_report
from descentlab.experiments.report.significance import compare_top_two, significance_section
from descentlab.experiments.report.tables import (
    ConfigSummary,
    Spread,
    configuration_summaries,
    configuration_table,
    protocol_paragraphs,
    runs_table,
    selection_section,
)

__all__ = [
    "MARKER",
    "MAX_CURVES",
    "STAR",
    "ConfigSummary",
    "ReportContext",
    "Section",
    "Spread",
    "StudyReport",
    "Table",
    "build_report",
    "build_sections",
    "compare_top_two",
    "comparison_sections",
    "configuration_summaries",
    "configuration_table",
    "error_ci",
    "figures_section",
    "fmt_ci",
    "fmt_num",
    "fmt_pct",
    "fmt_pm",
    "fmt_sig",
    "fmt_uncertain",
    "protocol_paragraphs",
    "render",
    "render_report",
    "runs_table",
    "selection_section",
    "significance_section",
]
