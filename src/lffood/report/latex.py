"""LaTeX tables (booktabs) for the workflow's tables: one function, used by every table writer. A
table compiles in any document that loads ``booktabs`` and ``graphicx`` (for its resizebox)."""

from __future__ import annotations

from collections.abc import Sequence

_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
            "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}",
            ">": r"\textgreater{}"}


def escape(text: str) -> str:
    """``text`` with LaTeX's special characters escaped (and ± / ↑ / ↓ / − as math)."""
    out = "".join(_ESCAPES.get(c, c) for c in str(text))
    return (out.replace("±", r"$\pm$").replace("↑", r"$\uparrow$").replace("↓", r"$\downarrow$")
            .replace("−", "$-$").replace("Δ", r"$\Delta$"))


def mark(text: str, how: str) -> str:
    """Bold (best) or underlined (second best), as the paper marks its tables; ``text`` is LaTeX already."""
    if how == "bold":
        return rf"\textbf{{{text}}}"
    if how == "underline":
        return rf"\underline{{{text}}}"
    return text


def footnote_mark(letter: str) -> str:
    """The mark of a table note on a cell, e.g. ``83.64\\textsuperscript{a}``."""
    return rf"\textsuperscript{{{letter}}}"


def tabular(header: Sequence[Sequence[tuple[str, int]]], rows: Sequence[Sequence[str]], *, caption: str, label: str,
            align: str, midrules_before: Sequence[int] = (), resize: bool = True, notes: Sequence[str] = ()) -> str:
    """A ``table`` environment with a booktabs ``tabular``. ``header``: rows of (text, column span),
    escaped here; ``rows``: LaTeX cells (already escaped and marked); ``midrules_before``: row indices
    that start a new block (a benchmark, a group of methods); ``notes``: LaTeX paragraphs set small
    under the table (the notes its cells' marks point to)."""
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{escape(caption)}}}", rf"\label{{{label}}}"]
    if resize:
        lines.append(r"\resizebox{\textwidth}{!}{%")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule"]
    for h in header:
        lines.append(" & ".join(escape(t) if span == 1 else rf"\multicolumn{{{span}}}{{c}}{{{escape(t)}}}"
                                for t, span in h) + r" \\")
    lines.append(r"\midrule")
    for i, r in enumerate(rows):
        if i in midrules_before and i:
            lines.append(r"\midrule")
        lines.append(" & ".join(r) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if resize:
        lines.append("}")
    if notes:
        lines += [r"\par\smallskip", r"{\footnotesize\raggedright"] + [n + r"\par" for n in notes] + ["}"]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
