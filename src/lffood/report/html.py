"""Standalone HTML renderings of the workflow's Markdown tables, for ``snakemake --report`` (which
shows an HTML result inline, but a CSV or Markdown file only as a link). Only what the table writers
produce is handled: headings, paragraphs, pipe tables, **bold**, <u>underline</u> and <sup>note marks</sup>."""

from __future__ import annotations

import html
import re

STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;font-size:13px;margin:1em;color:#222}
table{border-collapse:collapse;margin:0.6em 0 1.4em}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right;
white-space:nowrap}th{background:#f2f2f2}td:first-child,td:nth-child(2),th:first-child{text-align:left}
tbody tr:nth-child(even){background:#fafafa}p{max-width:70em}h1{font-size:1.3em}h2{font-size:1.1em}"""


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    for tag in ("u", "sup"):  # the tables' only HTML: underline (second best) and footnote marks
        out = out.replace(f"&lt;{tag}&gt;", f"<{tag}>").replace(f"&lt;/{tag}&gt;", f"</{tag}>")
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)


def markdown_to_html(md: str, title: str = "") -> str:
    """A complete HTML page from one of the workflow's Markdown tables."""
    body, table = [], None
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if table is None:
                table = ["<table>", "<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in cells) + "</tr></thead>",
                         "<tbody>"]
            elif not set("".join(cells)) <= set("-: "):
                table.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in cells) + "</tr>")
            continue
        if table is not None:
            body += table + ["</tbody></table>"]
            table = None
        if line.startswith("## "):
            body.append(f"<h2>{_inline(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{_inline(line[2:])}</h1>")
        elif line.strip():
            body.append(f"<p>{_inline(line)}</p>")
    if table is not None:
        body += table + ["</tbody></table>"]
    head = f"<title>{html.escape(title)}</title>" if title else ""
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">{head}<style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_html_from_markdown(md_path: str, html_path: str) -> None:
    from pathlib import Path

    from ..io import atomic_path

    md = Path(md_path).read_text()
    first = next((line[2:] for line in md.splitlines() if line.startswith("# ")), "")
    with atomic_path(html_path) as tmp:
        tmp.write_text(markdown_to_html(md, first))
