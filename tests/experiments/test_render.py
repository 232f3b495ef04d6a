"""The report renderer: a self-contained HTML page and well-formed Markdown."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from descentlab.errors import ConfigError
from descentlab.experiments.report.render import MARKER, render_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    """Collects tables (as lists of rows of (text, bold)), images and external references."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[tuple[str, bool]]]] = []
        self.images: list[str] = []
        self.external: list[str] = []
        self.scripts = 0
        self._cell: list[str] | None = None
        self._bold = False
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell, self._bold = [], False
        elif tag == "strong" and self._cell is not None:
            self._bold = True
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "script":
            self.scripts += 1
        for key in ("href", "src"):
            value = attrs.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append(("".join(self._cell), self._bold))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _png(path: Path) -> Path:
    fig = Figure(figsize=(2, 1.5), dpi=50)
    FigureCanvasAgg(fig)
    fig.subplots().plot(np.arange(5), np.arange(5) ** 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    fig.savefig(path.with_suffix(".svg"))
    return path


def _sections(fig: Path) -> list[dict]:
    table = {
        "columns": ["configuration", "best valid error", "seconds"],
        "rows": [
            ["adam", f"3.20 ± 0.28% {MARKER}", "12.0"],
            ["sgd | momentum", "4.00 ± 0.10%", "10.0"],
            ["<script>alert(1)</script>", "5.00 ± 0.50%", "11.0"],
        ],
        "caption": f"mean ± std; {MARKER} = best of the column",
        "best": [(1, 2)],  # the fastest, marked by position
    }
    return [
        {"title": "How", "blocks": [{"kind": "text", "value": "Ranked by **validation** error."}]},
        {"title": "Table", "blocks": [{"kind": "table", "value": table}]},
        {"title": "Figures", "blocks": [{"kind": "figure", "value": str(fig)}]},
    ]


def test_html_is_self_contained_with_real_tables_and_embedded_images(tmp_path):
    fig = _png(tmp_path / "figures" / "curves.png")
    html_path, md_path = render_report("Sweep <1>", _sections(fig), tmp_path)
    assert html_path == tmp_path / "report.html" and md_path == tmp_path / "report.md"
    page = _Page()
    page.feed(html_path.read_text(encoding="utf-8"))
    assert page.external == [] and page.scripts == 0
    assert len(page.images) == 1 and page.images[0].startswith("data:image/png;base64,")
    assert base64.b64decode(page.images[0].split(",", 1)[1]) == fig.read_bytes()
    (table,) = page.tables
    header, *rows = table
    assert [text for text, _ in header] == ["configuration", "best valid error", "seconds"]
    assert rows[0][1] == (f"3.20 ± 0.28% {MARKER}", True)  # winner: bold + marker
    assert rows[1][2] == (f"10.0 {MARKER}", True)  # "best" cell gets the marker added
    assert rows[1][1] == ("4.00 ± 0.10%", False)
    assert rows[2][0] == ("<script>alert(1)</script>", False)  # shown as text


def test_text_is_escaped_before_markup(tmp_path):
    sections = [
        {
            "title": "<b>t</b>",
            "blocks": [{"kind": "text", "value": "p < 0.05 and **bold** and `<i>code</i>`"}],
        }
    ]
    html_path, md_path = render_report("x & y", sections, tmp_path)
    page = html_path.read_text(encoding="utf-8")
    assert "<title>x &amp; y</title>" in page
    assert "&lt;b&gt;t&lt;/b&gt;" in page and "<b>t</b>" not in page
    assert "p &lt; 0.05 and <strong>bold</strong> and <code>&lt;i&gt;code&lt;/i&gt;</code>" in page
    md = md_path.read_text(encoding="utf-8")
    assert "p < 0.05" in md and "&lt;i>code&lt;/i>" in md


def _md_tables(text: str) -> list[list[str]]:
    tables, current = [], []
    for line in text.splitlines():
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    if current:
        tables.append(current)
    return tables


def _md_cells(line: str) -> list[str]:
    assert (line.startswith("| ") and line.endswith(" |")) or line.startswith("|---")
    inner = line.strip()[1:-1]
    cells, cell, i = [], "", 0
    while i < len(inner):  # split on unescaped pipes
        if inner[i] == "\\" and i + 1 < len(inner):
            cell += inner[i : i + 2]
            i += 2
            continue
        if inner[i] == "|":
            cells.append(cell.strip())
            cell = ""
        else:
            cell += inner[i]
        i += 1
    return [*cells, cell.strip()]


def test_markdown_tables_are_well_formed_and_images_relative(tmp_path):
    fig = _png(tmp_path / "figures" / "curves.png")
    _, md_path = render_report("Sweep", _sections(fig), tmp_path)
    text = md_path.read_text(encoding="utf-8")
    assert text.startswith("# Sweep\n")
    (table,) = _md_tables(text)
    widths = {len(_md_cells(line)) for line in table}
    assert widths == {3}
    assert set(table[1].replace("|", "").replace("-", "")) == set()  # the separator row
    assert table[2] == f"| adam | **3.20 ± 0.28% {MARKER}** | 12.0 |"
    assert "sgd \\| momentum" in table[3] and f"**10.0 {MARKER}**" in table[3]
    assert "&lt;script>" in table[4] and "<script>" not in text
    assert "![curves](figures/curves.png) ([SVG](figures/curves.svg))" in text
    assert f"*mean ± std; {MARKER} = best of the column*" in text


def test_missing_figure_is_reported_not_raised(tmp_path):
    sections = [{"title": "F", "blocks": [{"kind": "figure", "value": tmp_path / "nope.png"}]}]
    html_path, _ = render_report("t", sections, tmp_path / "out")
    assert "[figure nope.png: file not found]" in html_path.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("sections", "match"),
    [
        ([{"blocks": []}], "title"),
        ([{"title": "a", "blocks": [{"kind": "video", "value": 1}]}], "kind 'video'"),
        ([{"title": "a", "blocks": [{"kind": "table", "value": {"rows": []}}]}], "columns"),
        (
            [
                {
                    "title": "a",
                    "blocks": [{"kind": "table", "value": {"columns": ["x"], "rows": [[1, 2]]}}],
                }
            ],
            "2 cells for 1 columns",
        ),
    ],
)
def test_malformed_sections_are_config_errors(tmp_path, sections, match):
    with pytest.raises(ConfigError, match=match):
        render_report("t", sections, tmp_path)


def test_simple_sections_with_raw_numbers_and_winner_columns(tmp_path):
    from types import SimpleNamespace

    fig = _png(tmp_path / "figures" / "lr.png")
    table = {
        "columns": ["optimizer", "valid error", "test error", "accuracy"],
        "rows": [
            ["sgd", 0.0183, 0.0191, 0.9817],
            {"accuracy": 0.9829, "optimizer": "adam", "valid error": 0.0171, "test error": None},
            ["nesterov", 0.0171, float("nan"), 0.9829],
        ],
        # valid error lower-is-better via the list form; accuracy via the mapping form
        "winner": {"valid error": "min", "test error": "min", "accuracy": "max"},
        "caption": "3 seeds",
    }
    sections = [
        {"heading": "Final <errors>", "paragraphs": ["a & b"], "tables": [table], "images": [fig]},
        SimpleNamespace(heading="Object form", paragraphs="one string", tables=(), images=()),
    ]
    html_path, md_path = render_report("Simple", sections, tmp_path)
    raw = html_path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(raw)
    assert page.external == [] and page.scripts == 0
    assert len(page.images) == 1 and page.images[0].startswith("data:image/png;base64,")
    assert "<h2" in raw and "Final &lt;errors&gt;</h2>" in raw and "a &amp; b" in raw
    (rows,) = page.tables
    body = rows[1:]
    assert [c for c, _ in body[1]] == ["adam", f"0.0171 {MARKER}", "–", f"0.9829 {MARKER}"]
    bold = {(r, c) for r, row in enumerate(body) for c, (_, b) in enumerate(row) if b}
    # ties all win; None and NaN never do
    assert bold == {(1, 1), (2, 1), (0, 2), (1, 3), (2, 3)}
    assert [c for c, _ in body[2]][2] == "nan"
    md = md_path.read_text(encoding="utf-8")
    assert "## Object form" in md and "one string" in md
    assert "![lr](figures/lr.png)" in md

    listed = {**table, "winner": ["valid error"]}
    html_path, _ = render_report("L", [{"heading": "h", "tables": [listed]}], tmp_path / "l")
    page = _Page()
    page.feed(html_path.read_text(encoding="utf-8"))
    assert {
        (r, c) for r, row in enumerate(page.tables[0][1:]) for c, (_, b) in enumerate(row) if b
    } == {(1, 1), (2, 1)}


@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"heading": "h", "paragraph": ["typo"]}, "unknown key 'paragraph'"),
        (
            {"heading": "h", "tables": [{"columns": ["a"], "rows": [[1]], "winner": ["b"]}]},
            "winner column 'b'",
        ),
        (
            {"heading": "h", "tables": [{"columns": ["a"], "rows": [[1]], "winner": {"a": "low"}}]},
            "'min' or 'max'",
        ),
        ({"heading": "h", "tables": [{"columns": ["a"], "rows": [{"b": 1}]}]}, "not a column"),
        ({"heading": "h", "tables": [{"columns": ["a"], "rows": [[1, 2]]}]}, "2 cells"),
    ],
)
def test_malformed_simple_sections_are_config_errors(tmp_path, section, match):
    with pytest.raises(ConfigError, match=match):
        render_report("t", [section], tmp_path)
