"""A report as a list of blocks, rendered to Markdown and to self-contained HTML (images inlined)."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path

STYLE = (
    "body{font-family:sans-serif;max-width:72em;margin:2em auto;line-height:1.4}"
    "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #bbb;padding:2px 6px}"
    "img{max-width:100%}"
)


class Document:
    """Headings, paragraphs, bullet lists, tables and PNG figures, in order.

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
        self.blocks.append(("bullets", list(items)))

    def table(self, header, rows) -> None:
        """Add a table; cells are turned into text."""
        self.blocks.append(("table", list(header), [list(map(str, row)) for row in rows]))

    def image(self, path, caption: str) -> None:
        """Add a PNG figure with its caption."""
        self.blocks.append(("image", Path(path), caption))

    def markdown(self, relative_to: Path) -> str:
        """Markdown text; figures are linked relative to ``relative_to``."""
        lines = [f"# {self.title}", ""]
        for block in self.blocks:
            kind = block[0]
            if kind == "heading":
                lines += ["#" * block[1] + " " + block[2], ""]
            elif kind == "paragraph":
                lines += [block[1], ""]
            elif kind == "bullets":
                lines += [f"- {item}" for item in block[1]] + [""]
            elif kind == "table":
                lines += ["| " + " | ".join(block[1]) + " |", "|" + "---|" * len(block[1])]
                lines += ["| " + " | ".join(row) + " |" for row in block[2]] + [""]
            elif kind == "image":
                lines += [f"![{block[2]}]({block[1].relative_to(relative_to).as_posix()})", ""]
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
