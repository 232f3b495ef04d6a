"""Render a report to one self-contained HTML page and a Markdown file.

A report is a title and a list of sections; each section is a mapping ::

    {"title": "Configurations",
     "blocks": [
         {"kind": "text",   "value": "Ranked by **validation** error."},
         {"kind": "table",  "value": {"columns": [...], "rows": [[...], ...],
                                     "caption": "..." | None,
                                     "best": [(row, col), ...]}},   # optional
         {"kind": "figure", "value": "figures/curves.png"},          # or {"path", "caption"}
     ]}

(:mod:`descentlab.experiments.report` builds exactly this from its ``Section`` objects.)

A section may also be given in a simpler form, as a mapping or any object with these
attributes, with raw (unformatted) table values::

    {"heading": "Final errors",
     "paragraphs": ["..."],
     "tables": [{"columns": ["optimizer", "valid error", "accuracy"],
                 "rows": [["sgd", 0.0183, 0.9817], ["adam", 0.0171, 0.9829]],
                 "winner": ["valid error"],          # lower is better; or
                 # "winner": {"valid error": "min", "accuracy": "max"},
                 "caption": "..."}],
     "images": ["figures/curves.png"]}

Numbers are then formatted to four significant digits (``None`` shows as "–"), and
the lowest (or highest) number of each ``winner`` column is marked; ties are all
marked, and ``None``/NaN never win.

* ``report.html`` depends on nothing outside itself: images are embedded as base64
  ``data:`` URIs, the style sheet is inline, no script, no font, no link to fetch.  It
  can be mailed, archived or opened offline years later and look the same.
* ``report.md`` is for reading in a repository: tables as Markdown tables, images by
  their path relative to the report (an SVG beside a PNG is linked too).

The winner of a table column is marked by a ★ in the cell (the report builder puts it
there) or by the table's ``best`` cells (the renderer adds the ★); either way the cell
is shown in bold, so it stands out on screen, in print and in plain text.

Both files are rendered through jinja2 templates (``templates/report.html.j2`` and
``templates/report.md.j2``).  The HTML environment autoescapes everything: run labels
and option values are user text and never become markup.  The only markup added to
text is made by the ``inline`` filter, which escapes first and then turns the two
inline markups the report builder uses, ``**bold**`` and ```code```, into tags: a
cell holding ``<script>`` shows the word, it never runs.  In Markdown a ``<`` that
could open a tag is escaped, and so are pipes inside table cells.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from descentlab.errors import ConfigError
from descentlab.fsio import atomic_write_text

__all__ = ["MARKER", "render_report"]

#: What marks the best cell of a column (shared with the report builder's tables).
MARKER = "★"

_KINDS = ("text", "table", "figure")
_MIME = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".gif": "image/gif",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
}
# A cell that starts like a number ("12.3 ± 0.4%", "–", "[1.2, 3.4]%") is right-aligned,
# so that digits line up down the column.
_NUMERIC = re.compile(r"^\s*(?:[-−+]?\s*(?:\d|\.\d)|\[|–\s*$)")

# ===================================================================== simple sections
_SIMPLE_KEYS = ("heading", "paragraphs", "tables", "images")


def _field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _is_simple(sec: Any) -> bool:
    if isinstance(sec, Mapping):
        return "heading" in sec and "title" not in sec
    return getattr(sec, "heading", None) is not None


def _cell_text(value: Any) -> str:
    """A raw table value as text: 4 significant digits, "–" for not measured."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"  # nan and inf spell themselves out
    return str(value)


def _is_score(value: Any) -> bool:
    """A value that can win a column: a real, non-NaN number."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def _winner_cells(table: Mapping[str, Any], where: str) -> list[tuple[int, int]]:
    """(row, column) of the best value of every ``winner`` column; ties all win."""
    spec = table.get("winner")
    if not spec:
        return []
    if isinstance(spec, str):
        spec = {spec: "min"}
    elif not isinstance(spec, Mapping):
        spec = {name: "min" for name in spec}  # a list names lower-is-better columns
    columns = [str(c) for c in table["columns"]]
    cells = []
    for name, mode in spec.items():
        if str(name) not in columns:
            raise ConfigError(
                f"winner column {name!r} of a table in report section {where!r} is not a column",
                hint="columns are: " + ", ".join(columns),
            )
        if mode not in ("min", "max"):
            raise ConfigError(
                f"winner of column {name!r} must be 'min' or 'max', got {mode!r}",
                hint="a list of names means lower is better",
            )
        c = columns.index(str(name))
        scores = [(row[c], r) for r, row in enumerate(table["rows"]) if _is_score(row[c])]
        if scores:
            best = (min if mode == "min" else max)(v for v, _ in scores)
            cells += [(r, c) for v, r in scores if v == best]
    return cells


def _from_simple(sec: Any) -> dict[str, Any]:
    """A ``heading/paragraphs/tables/images`` section as a ``title/blocks`` one."""
    title = str(_field(sec, "heading"))
    if isinstance(sec, Mapping):
        unknown = sorted(set(sec) - set(_SIMPLE_KEYS), key=str)
        if unknown:
            raise ConfigError(
                f"report section {title!r} has an unknown key {unknown[0]!r}",
                hint="a section has " + ", ".join(_SIMPLE_KEYS),
            )
    blocks: list[dict[str, Any]] = []
    paragraphs = _field(sec, "paragraphs") or ()
    for text in [paragraphs] if isinstance(paragraphs, str) else paragraphs:
        blocks.append({"kind": "text", "value": str(text)})
    for table in _field(sec, "tables") or ():
        if not isinstance(table, Mapping):
            table = {
                k: getattr(table, k)
                for k in ("columns", "rows", "caption", "winner")
                if hasattr(table, k)
            }
        if "columns" in table and "rows" in table:
            # Dict rows are read by column name, so their key order does not matter.
            names = list(table["columns"])
            rows = []
            for k, row in enumerate(table["rows"]):
                if isinstance(row, Mapping):
                    extra = [key for key in row if key not in names]
                    if extra:
                        raise ConfigError(
                            f"row {k} of a table in report section {title!r} has a value for "
                            f"{extra[0]!r}, which is not a column",
                            hint="add it to columns or drop it from the row",
                        )
                    row = [row.get(name) for name in names]
                rows.append(list(row))
            table = {**table, "rows": rows}
        _check_table(table, title)
        blocks.append(
            {
                "kind": "table",
                "value": {
                    "columns": [str(c) for c in table["columns"]],
                    "rows": [[_cell_text(v) for v in row] for row in rows],
                    "caption": table.get("caption"),
                    "best": _winner_cells(table, title),
                },
            }
        )
    for image in _field(sec, "images") or ():
        blocks.append(
            {"kind": "figure", "value": image if isinstance(image, Mapping) else str(image)}
        )
    return {"title": title, "blocks": blocks}


# ============================================================================ checking
def _check_sections(sections: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The sections as a list, each checked for the shape the renderer reads."""
    out = []
    for i, sec in enumerate(sections):
        if _is_simple(sec):
            sec = _from_simple(sec)
        if not isinstance(sec, Mapping) or "title" not in sec:
            raise ConfigError(
                f"report section {i} has neither a 'title' nor a 'heading'",
                hint='give {"title": str, "blocks": [...]} or {"heading": str, "paragraphs": '
                '[...], "tables": [...], "images": [...]}',
            )
        for j, block in enumerate(sec.get("blocks", ())):
            kind = block.get("kind") if isinstance(block, Mapping) else None
            if kind not in _KINDS or "value" not in block:
                raise ConfigError(
                    f"block {j} of report section {sec['title']!r} has kind {kind!r}",
                    hint="each block is {'kind': 'text'|'table'|'figure', 'value': ...}",
                )
            if kind == "table":
                _check_table(block["value"], sec["title"])
        out.append(sec)
    return out


def _check_table(table: Any, where: str) -> None:
    if not isinstance(table, Mapping) or "columns" not in table or "rows" not in table:
        raise ConfigError(
            f"a table in report section {where!r} has no 'columns' and 'rows'",
            hint="give {'columns': [...], 'rows': [[...], ...], 'caption': str | None}",
        )
    width = len(table["columns"])
    for k, row in enumerate(table["rows"]):
        if len(row) != width:
            raise ConfigError(
                f"row {k} of a table in report section {where!r} has {len(row)} cells "
                f"for {width} columns",
                hint="give every row one cell per column (use '–' for a missing value)",
            )


def _figure(value: Any) -> tuple[Path, str | None]:
    if isinstance(value, Mapping):
        return Path(value["path"]), value.get("caption")
    return Path(value), None


def _best_cells(table: Mapping[str, Any]) -> set[tuple[int, int]]:
    """Cells to show as winners: those given in ``best`` and those already holding ★."""
    best = {(int(r), int(c)) for r, c in table.get("best") or ()}
    for r, row in enumerate(table["rows"]):
        for c, cell in enumerate(row):
            if MARKER in str(cell):
                best.add((r, c))
    return best


def _with_marker(cell: Any) -> str:
    text = str(cell)
    return text if MARKER in text else f"{text} {MARKER}"


# ======================================================================= view models
def _inline_html(text: Any) -> Markup:
    """Escaped text with ``**bold**`` and ```code``` turned into tags (the ``inline`` filter)."""
    html = str(escape(str(text)))
    html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
    return Markup(re.sub(r"`(.+?)`", r"<code>\1</code>", html))


def _html_table(table: Mapping[str, Any]) -> dict[str, Any]:
    """Cells with their text (★ added to winners) and classes; escaping is the template's."""
    best = _best_cells(table)
    rows = [
        [
            {
                "text": _with_marker(cell) if (r, c) in best else str(cell),
                "num": bool(_NUMERIC.match(str(cell))),
                "best": (r, c) in best,
            }
            for c, cell in enumerate(row)
        ]
        for r, row in enumerate(table["rows"])
    ]
    columns = [str(c) for c in table["columns"]]
    return {"kind": "table", "columns": columns, "rows": rows, "caption": table.get("caption")}


def _html_figure(value: Any) -> dict[str, Any]:
    path, caption = _figure(value)
    view: dict[str, Any] = {"kind": "figure", "name": path.name, "caption": caption}
    view["alt"] = caption or path.stem.replace("_", " ")
    mime = _MIME.get(path.suffix.lower())
    if mime is None or not path.is_file():
        view["missing"] = "unsupported image type" if path.is_file() else "file not found"
        return view
    view["src"] = f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"
    return view


def _anchor(index: int, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return f"s{index}-{slug}"[:60]


def _html_sections(sections: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, sec in enumerate(sections):
        blocks = []
        for block in sec.get("blocks", ()):
            kind, value = block["kind"], block["value"]
            if kind == "text":
                blocks.append({"kind": "text", "text": str(value)})
            elif kind == "table":
                blocks.append(_html_table(value))
            else:
                blocks.append(_html_figure(value))
        title = str(sec["title"])
        out.append({"title": title, "anchor": _anchor(i, title), "blocks": blocks})
    return out


def _md_text(text: Any) -> str:
    """Text for Markdown: only a ``<`` that could open an HTML tag is escaped.

    (``p < 0.05`` stays readable in the raw file; ``<script>`` is shown, not run.)
    """
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(text))


def _md_cell(cell: Any) -> str:
    """A table cell: pipes and backslashes escaped, on one line (a newline ends the row)."""
    text = _md_text(cell).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.split())


def _md_table(table: Mapping[str, Any]) -> dict[str, Any]:
    best = _best_cells(table)
    rows = []
    for r, row in enumerate(table["rows"]):
        cells = []
        for c, cell in enumerate(row):
            text = _md_cell(_with_marker(cell) if (r, c) in best else cell)
            cells.append(f"**{text}**" if (r, c) in best and text else text)
        rows.append(cells)
    columns = [_md_cell(c) or " " for c in table["columns"]]
    return {"kind": "table", "columns": columns, "rows": rows, "caption": table.get("caption")}


def _md_figure(value: Any, out_dir: Path) -> dict[str, Any]:
    path, caption = _figure(value)
    rel = Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
    svg = path.with_suffix(".svg")
    has_svg = path.suffix.lower() != ".svg" and svg.is_file()
    return {
        "kind": "figure",
        "alt": (caption or path.stem.replace("_", " ")).replace("]", ")"),
        "path": rel,
        "svg": Path(rel).with_suffix(".svg").as_posix() if has_svg else None,
        "caption": caption,
    }


def _md_sections(sections: Sequence[Mapping[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    out = []
    for sec in sections:
        blocks = []
        for block in sec.get("blocks", ()):
            kind, value = block["kind"], block["value"]
            if kind == "text":
                blocks.append({"kind": "text", "text": value})
            elif kind == "table":
                blocks.append(_md_table(value))
            else:
                blocks.append(_md_figure(value, out_dir))
        out.append({"title": sec["title"], "blocks": blocks})
    return out


def _environment(autoescape: bool) -> Environment:
    env = Environment(
        loader=PackageLoader("descentlab.experiments.report", "templates"),
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["inline"] = _inline_html
    env.filters["md"] = _md_text
    return env


_HTML = _environment(autoescape=True)
_MARKDOWN = _environment(autoescape=False)


# ============================================================================== public
def render_report(title: str, sections: Iterable[Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` into ``out_dir``.

    Parameters
    ----------
    title
        The page title (``<h1>`` and ``# ...``).
    sections
        ``{"title": str, "blocks": [{"kind": "text"|"table"|"figure", "value": ...}]}``
        in order.  A table value is ``{"columns", "rows", "caption"?, "best"?}`` with
        already formatted cells; a figure value is an image path (PNG, SVG, GIF, JPEG)
        or ``{"path": ..., "caption": ...}``.  A missing image is reported in the page,
        not raised: one lost figure should not cost the whole report.  Sections in the
        simple ``heading/paragraphs/tables/images`` form (module docstring) are
        accepted too, with raw numbers and a ``winner`` spec per table.

    Returns ``(html_path, md_path)``.  Malformed sections raise :class:`ConfigError`.
    """
    checked = _check_sections(sections)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    html_path, md_path = out / "report.html", out / "report.md"
    page = _HTML.get_template("report.html.j2").render(
        title=str(title), sections=_html_sections(checked)
    )
    atomic_write_text(html_path, page)
    text = _MARKDOWN.get_template("report.md.j2").render(
        title=str(title), sections=_md_sections(checked, out)
    )
    atomic_write_text(md_path, text.rstrip() + "\n")
    return html_path, md_path
