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

All text is escaped (``html.escape``) before the two inline markups the report builder
uses, ``**bold**`` and ```code```, are turned into tags: a cell holding ``<script>``
shows the word, it never runs.
"""

from __future__ import annotations

import base64
import html
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from descentlab.errors import ConfigError

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

_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2430;
max-width:76em;margin:2em auto;padding:0 1.2em}
h1{font-size:1.7em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;
border-bottom:1px solid #d8dde6;padding-bottom:.2em}
nav ol{columns:2;font-size:.9em;color:#556}nav a{color:#2456a6;text-decoration:none}
.scroll{overflow-x:auto;margin:.8em 0}
table{border-collapse:collapse;font-size:.88em;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d8dde6;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#eef1f6}tr:nth-child(even) td{background:#f8f9fb}
td.num{text-align:right;white-space:nowrap}
td.best{background:#fff4cc!important}td.best strong{color:#7a4b00}
caption{caption-side:bottom;text-align:left;font-size:.85em;color:#556;padding-top:.4em}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #eef1f6}
figcaption{font-size:.85em;color:#556}code{background:#eef1f6;padding:0 .25em;border-radius:3px}
.missing{color:#a12}
"""


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


# ================================================================================ HTML
def _inline_html(text: str) -> str:
    """Escaped text with ``**bold**`` and ```code``` turned into tags."""
    text = html.escape(str(text))
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", text)


def _html_table(table: Mapping[str, Any]) -> str:
    best = _best_cells(table)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table["columns"])
    body = []
    for r, row in enumerate(table["rows"]):
        cells = []
        for c, cell in enumerate(row):
            classes = []
            if _NUMERIC.match(str(cell)):
                classes.append("num")
            if (r, c) in best:
                classes.append("best")
                content = f"<strong>{html.escape(_with_marker(cell))}</strong>"
            else:
                content = html.escape(str(cell))
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{content}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = table.get("caption")
    cap = f"<caption>{_inline_html(caption)}</caption>" if caption else ""
    return (
        f'<div class="scroll"><table>{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _html_figure(value: Any) -> str:
    path, caption = _figure(value)
    alt = html.escape(caption or path.stem.replace("_", " "))
    mime = _MIME.get(path.suffix.lower())
    if mime is None or not path.is_file():
        why = "unsupported image type" if path.is_file() else "file not found"
        return f'<p class="missing">[figure {html.escape(path.name)}: {why}]</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    cap = f"<figcaption>{_inline_html(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{alt}" src="data:{mime};base64,{data}">{cap}</figure>'


def _anchor(index: int, title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return f"s{index}-{slug}"[:60]


def _html_page(title: str, sections: Sequence[Mapping[str, Any]]) -> str:
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if len(sections) > 2:
        items = "".join(
            f'<li><a href="#{_anchor(i, s["title"])}">{html.escape(str(s["title"]))}</a></li>'
            for i, s in enumerate(sections)
        )
        parts.append(f"<nav><ol>{items}</ol></nav>")
    for i, sec in enumerate(sections):
        parts.append(f'<h2 id="{_anchor(i, sec["title"])}">{html.escape(str(sec["title"]))}</h2>')
        for block in sec.get("blocks", ()):
            kind, value = block["kind"], block["value"]
            if kind == "text":
                parts.append(f"<p>{_inline_html(value)}</p>")
            elif kind == "table":
                parts.append(_html_table(value))
            else:
                parts.append(_html_figure(value))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE.strip()}</style></head>\n"
        "<body>\n" + "\n".join(parts) + "\n</body></html>\n"
    )


# ============================================================================ Markdown
def _md_text(text: Any) -> str:
    """Text for Markdown: only a ``<`` that could open an HTML tag is escaped.

    (``p < 0.05`` stays readable in the raw file; ``<script>`` is shown, not run.)
    """
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", str(text))


def _md_cell(cell: Any) -> str:
    text = _md_text(cell).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.split())  # a newline would end the table row


def _md_table(table: Mapping[str, Any]) -> list[str]:
    best = _best_cells(table)
    columns = [_md_cell(c) or " " for c in table["columns"]]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r, row in enumerate(table["rows"]):
        cells = []
        for c, cell in enumerate(row):
            text = _md_cell(_with_marker(cell) if (r, c) in best else cell)
            cells.append(f"**{text}**" if (r, c) in best and text else text)
        lines.append("| " + " | ".join(cells) + " |")
    if table.get("caption"):
        lines += ["", f"*{_md_text(table['caption'])}*"]
    return lines


def _md_figure(value: Any, out_dir: Path) -> list[str]:
    path, caption = _figure(value)
    rel = Path(os.path.relpath(path.resolve(), out_dir.resolve())).as_posix()
    alt = (caption or path.stem.replace("_", " ")).replace("]", ")")
    lines = [f"![{_md_text(alt)}]({rel})"]
    svg = path.with_suffix(".svg")
    if path.suffix.lower() != ".svg" and svg.is_file():
        lines[0] += f" ([SVG]({Path(rel).with_suffix('.svg').as_posix()}))"
    if caption:
        lines += ["", f"*{_md_text(caption)}*"]
    return lines


def _markdown(title: str, sections: Sequence[Mapping[str, Any]], out_dir: Path) -> str:
    lines = [f"# {_md_text(title)}", ""]
    for sec in sections:
        lines += [f"## {_md_text(sec['title'])}", ""]
        for block in sec.get("blocks", ()):
            kind, value = block["kind"], block["value"]
            if kind == "text":
                lines.append(_md_text(value))
            elif kind == "table":
                lines += _md_table(value)
            else:
                lines += _md_figure(value, out_dir)
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


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
    html_path.write_text(_html_page(str(title), checked), encoding="utf-8")
    md_path.write_text(_markdown(str(title), checked, out), encoding="utf-8")
    return html_path, md_path
