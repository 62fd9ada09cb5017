"""A report as a list of blocks, rendered to Markdown and to self-contained HTML (images inlined).

Every report goes through :class:`Document`, and so does every text a report puts in it (a title,
a heading, a paragraph, a bullet, a table cell, a caption): the text is plain, never markup, and
each renderer escapes it — :func:`markdown_text` for Markdown, :func:`html.escape` for HTML — so a
label such as ``<script>`` or ``a|b`` reads as typed and cannot add markup, a link or a table cell.
"""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path
from urllib.parse import quote

STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #bbb;padding:2px 6px}"
    "img{max-width:100%}"
)


MARKDOWN_ESCAPES = (
    (re.compile(r"\\"), r"\\\\"),  # first, so that no escape below can be undone
    (re.compile("&"), "&amp;"),
    (re.compile("<"), "&lt;"),
    (re.compile(">"), "&gt;"),
    (re.compile(r"\|"), r"\\|"),
    (re.compile(r"([*`~])"), r"\\\1"),  # emphasis, code spans, strike-through
    (re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])"), r"\\_"),  # _emphasis_ (efficientnet_lite0 stays as typed)
    (re.compile(r"\](?=[(\[:])"), r"\\]"),  # a link, an image or a link definition: ](url), ][ref], ]: url
)
"""What turns plain text into inert Markdown, in order: HTML (``<``, ``>``, ``&``), a table cell
(``|``), a link, an image or a link definition (a ``]`` followed by ``(``, ``[`` or ``:``; a
bracket alone, as in an interval ``91.7 [79.2, 100.0]``, links nothing and stays as typed).
Emphasis and code marks (``*``, the backtick, ``~``, and ``_`` where it can open or close emphasis) are
escaped too: a label such as ``**normal**`` reads as typed, not in bold."""
BRACKETS = (re.compile(r"([\[\]])"), r"\\\1")
"""Inside ``[...]`` (an image's alt text) every bracket is escaped, in place of the last rule above."""
LINE_STARTS = (
    (re.compile(r"^([#=+\-*_`~])"), r"\\\1"),  # a heading, a list, a rule or a fence
    (re.compile(r"^(\d+)([.)])(?=\s|$)"), r"\1\\\2"),  # an ordered list
)
"""What a text that starts a line (a title, heading, paragraph or bullet) could start: a block."""


def markdown_text(text, *, starts_line: bool = False, in_brackets: bool = False) -> str:
    """``text`` as Markdown that shows it as typed, on one line (see :data:`MARKDOWN_ESCAPES`).

    Parameters
    ----------
    text : object
        Turned into text with ``str``; line breaks become spaces.
    starts_line : bool
        Whether the text begins a Markdown line, where it could also start a block (default:
        False, as in a table cell); then leading spaces go and :data:`LINE_STARTS` are escaped.
    in_brackets : bool
        Whether the text stands inside ``[...]`` (an image's alt text, default False), where every
        bracket is escaped so that none can close the alt text early.
    """
    line = " ".join(str(text).splitlines())
    escapes = (*MARKDOWN_ESCAPES[:-1], BRACKETS) if in_brackets else MARKDOWN_ESCAPES
    if starts_line:
        line, escapes = line.lstrip(), escapes + LINE_STARTS
    for pattern, replacement in escapes:
        line = pattern.sub(replacement, line)
    return line


class Document:
    """Headings, paragraphs, bullet lists, tables and PNG figures, in order.

    Every text is plain text; the renderers escape it (see the module's docstring).

    Parameters
    ----------
    title : str
    """

    def __init__(self, title: str):
        self.title = title
        self.blocks = []

    def heading(self, text: str, level: int = 2) -> None:
        """Add a section heading."""
        self.blocks.append(("heading", level, text))

    def paragraph(self, text: str) -> None:
        """Add a paragraph of plain text."""
        self.blocks.append(("paragraph", text))

    def bullets(self, items) -> None:
        """Add a bullet list."""
        self.blocks.append(("bullets", [str(item) for item in items]))

    def table(self, header, rows) -> None:
        """Add a table; cells are turned into text."""
        self.blocks.append(("table", list(map(str, header)), [list(map(str, row)) for row in rows]))

    def image(self, path, caption: str) -> None:
        """Add a PNG figure with its caption."""
        self.blocks.append(("image", Path(path), caption))

    def markdown(self, relative_to: Path) -> str:
        """Markdown text; figures are linked relative to ``relative_to``."""

        def line(text):
            return markdown_text(text, starts_line=True)

        lines = [f"# {line(self.title)}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                lines += ["#" * block[1] + " " + line(block[2]), ""]
            elif kind == "paragraph":
                lines += [line(block[1]), ""]
            elif kind == "bullets":
                lines += [f"- {line(item)}" for item in block[1]] + [""]
            elif kind == "table":
                lines += ["| " + " | ".join(map(markdown_text, block[1])) + " |", "|" + "---|" * len(block[1])]
                lines += ["| " + " | ".join(map(markdown_text, row)) + " |" for row in block[2]] + [""]
            elif kind == "image":
                link = quote(block[1].relative_to(relative_to).as_posix())
                lines += [f"![{markdown_text(block[2], in_brackets=True)}]({link})", ""]
        return "\n".join(lines)

    def html(self) -> str:
        """One self-contained HTML page (figures embedded as base64 PNG)."""
        parts = [
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(self.title)}</title>",
            f"<style>{STYLE}</style></head><body>",
            f"<h1>{escape(self.title)}</h1>",
        ]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                parts.append(f"<h{block[1]}>{escape(block[2])}</h{block[1]}>")
            elif kind == "paragraph":
                parts.append(f"<p>{escape(block[1])}</p>")
            elif kind == "bullets":
                parts.append("<ul>" + "".join(f"<li>{escape(item)}</li>" for item in block[1]) + "</ul>")
            elif kind == "table":
                head = "".join(f"<th>{escape(cell)}</th>" for cell in block[1])
                body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in block[2])
                parts.append(f"<table><tr>{head}</tr>{body}</table>")
            elif kind == "image":
                data = base64.b64encode(block[1].read_bytes()).decode()
                parts.append(
                    f"<figure><img alt='{escape(block[2])}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{escape(block[2])}</figcaption></figure>"
                )
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self, out_dir) -> tuple[Path, Path]:
        """Write ``report.md`` and ``report.html`` into ``out_dir``; return both paths."""
        from featx.fileio import write_text_atomic

        out_dir = Path(out_dir)
        markdown = write_text_atomic(out_dir / "report.md", self.markdown(out_dir))
        html = write_text_atomic(out_dir / "report.html", self.html())
        return markdown, html
