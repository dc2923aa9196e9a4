"""A tiny document model rendered to Markdown and to standalone HTML (no extra dependency).

A report is a list of blocks: ``("h1"|"h2"|"h3", text)``, ``("p", text)``, ``("table", header, rows)``,
``("img", path, caption)``. :func:`side_by_side` builds the table rows that set our values beside the paper's.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Sequence

import numpy as np
from astropy.table import Table

from lenssearch.io import atomic_path

Block = tuple


def fmt(value, digits: int = 1) -> str:
    """A number for a table cell; NaN/None as an en dash."""
    if value is None:
        return "–"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not np.isfinite(v):
        return "–"
    return f"{v:.{digits}f}"


def side_by_side(
    ours: Table, paper: dict | None, columns: Sequence[str], digits: dict[str, int] | None = None, row_labels=None
) -> tuple[list[str], list[list[str]]]:
    """Header and rows with cells ``ours (paper)``, matched by row key and column name.

    ``paper`` is one table of ``angora2023_tables.yaml`` (``columns`` and ``rows``); cells the paper does not
    have show our value alone.
    """
    digits = digits or {}
    pcols = paper["columns"] if paper else []
    prow = paper["rows"] if paper else {}
    header = ["row"] + list(columns)
    rows = []
    for r in ours:
        key = str(r["row"])
        cells = [row_labels.get(key, key) if row_labels else key]
        for c in columns:
            d = digits.get(c, 3 if c.endswith(("_over_tn", "_over_tp", "_rate")) else 1)
            if key == "total" and not c.endswith(("_over_tn", "_over_tp", "_rate")):
                d = 0
            cell = fmt(r[c], d) if c in ours.colnames else "–"
            if c in pcols and key in prow:
                cell += f" ({fmt(prow[key][pcols.index(c)], d)})"
            cells.append(cell)
        rows.append(cells)
    return header, rows


def to_markdown(blocks: list[Block]) -> str:
    """Render blocks as GitHub-flavoured Markdown."""
    out = []
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + b[1])
        elif kind == "p":
            out.append(b[1])
        elif kind == "table":
            header, rows = b[1], b[2]
            out.append("| " + " | ".join(header) + " |")
            out.append("|" + "|".join("---" for _ in header) + "|")
            out.extend("| " + " | ".join(r) + " |" for r in rows)
        elif kind == "img":
            out.append(f"![{b[2]}]({b[1]})")
        out.append("")
    return "\n".join(out)


def to_html(blocks: list[Block], title: str) -> str:
    """Render blocks as a standalone HTML page."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        f"<html><head><meta charset='utf-8'><title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:auto}table{border-collapse:collapse;"
        "font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}td:first-child{text-align:"
        "left}img{max-width:100%}</style></head><body>",
    ]
    for b in blocks:
        kind = b[0]
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{e(b[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{e(b[1])}</p>")
        elif kind == "table":
            parts.append("<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in b[1]) + "</tr>")
            parts.extend("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b[2])
            parts.append("</table>")
        elif kind == "img":
            parts.append(f"<figure><img src='{e(b[1])}'><figcaption>{e(b[2])}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(blocks: list[Block], md_path: Path, title: str) -> tuple[Path, Path]:
    """Write ``md_path`` and the HTML twin beside it (same stem, ``.html``), atomically."""
    md_path = Path(md_path)
    html_path = md_path.with_suffix(".html")
    with atomic_path(md_path) as tmp:
        tmp.write_text(to_markdown(blocks))
    with atomic_path(html_path) as tmp:
        tmp.write_text(to_html(blocks, title))
    return md_path, html_path
