"""HTML renderings of the workflow's Markdown tables: standalone pages for ``snakemake --report`` (which
shows an HTML result inline, but a CSV or Markdown file only as a link), and fragments for the results
page (:mod:`lffood.report.page`). Only what the table writers produce is handled: headings, paragraphs,
pipe tables, **bold**, <u>underline</u> and <sup>note marks</sup>."""

from __future__ import annotations

import html
import re

#: the tables' style, shared by the standalone pages and the results page (lffood.report.page). A table
#: wider than the window scrolls inside its ``div.table-scroll``, never the page.
STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:13px;margin:1em;color:#222}
.table-scroll{overflow-x:auto;max-width:100%;margin:0.6em 0 1.4em}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;
white-space:nowrap}th{background:#f2f2f2}th:first-child,td:first-child{text-align:left}
.names-2 td:nth-child(-n+2),.names-3 td:nth-child(-n+3),.names-4 td:nth-child(-n+4){text-align:left}
tbody tr:nth-child(even){background:#fafafa}p{max-width:70em}h1{font-size:1.3em}h2{font-size:1.1em}"""


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for tag in ("u", "sup"):  # the tables' only HTML: underline (second best) and footnote marks
        out = out.replace(f"&lt;{tag}&gt;", f"<{tag}>").replace(f"&lt;/{tag}&gt;", f"</{tag}>")
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)


_NUMBER = re.compile(r"^(?:[^\d:]*: )?(?:\*\*|<u>|\s)*(?:[-+−–]?\d|[-–—]$|$)")


def _name_columns(rows: list[list[str]]) -> int:
    """How many leading columns of a table hold names (OOD set, method, scorer): those whose first body
    cell is not a number or a dash (a watermark prefix 'MARK: ' aside). They are left-aligned."""
    first = rows[0] if rows else []
    n = 0
    while n < len(first) and not _NUMBER.match(first[n]):
        n += 1
    return max(n, 1)


def markdown_fragment(md: str, top: int = 1) -> str:
    """The HTML of one of the workflow's Markdown tables, to place in a page: ``# `` headings become
    ``<h{top}>``, ``## `` ones ``<h{top + 1}>``; every table sits in a ``div.table-scroll``."""
    body, table, rows = [], None, []
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if table is None:
                rows = []
                table = ['<div class="table-scroll"><table>',
                         "<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells) + "</tr></thead>", "<tbody>"]
            elif not set("".join(cells)) <= set("-: "):
                table.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in cells) + "</tr>")
                rows.append(cells)
            continue
        if table is not None:
            table[0] = f'<div class="table-scroll"><table class="names-{_name_columns(rows)}">'
            body += table + ["</tbody></table></div>"]
            table = None
        if line.startswith("## "):
            body.append(f"<h{top + 1}>{_inline(line[3:])}</h{top + 1}>")
        elif line.startswith("# "):
            body.append(f"<h{top}>{_inline(line[2:])}</h{top}>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    if table is not None:
        table[0] = f'<div class="table-scroll"><table class="names-{_name_columns(rows)}">'
        body += table + ["</tbody></table></div>"]
    return "\n".join(body)


def markdown_to_html(md: str, title: str = "") -> str:
    """A complete HTML page from one of the workflow's Markdown tables."""
    head = f"<title>{html.escape(title)}</title>" if title else ""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">{head}<style>{STYLE}</style></head>\n<body>\n"
            + markdown_fragment(md) + "\n</body></html>\n")


def first_heading(md: str) -> str:
    """The text of the first ``# `` heading of a Markdown table (its title), or ``""``."""
    return next((line[2:] for line in md.splitlines() if line.startswith("# ")), "")


def write_html_from_markdown(md_path: str, html_path: str) -> None:
    from pathlib import Path

    from ..io import atomic_path

    md = Path(md_path).read_text()
    with atomic_path(html_path) as tmp:
        tmp.write_text(markdown_to_html(md, first_heading(md)))
