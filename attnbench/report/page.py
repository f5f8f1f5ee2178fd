"""HTML building blocks for the report: escaped tables, embedded PNGs, links, the page shell.

The page is static and script-free: plots are PNGs inlined as base64 data URIs (the same PNGs
lie beside the HTML), so one file can be attached to a CI job and opened anywhere offline.
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable


class Html(str):
    """Markup that is already safe; any other str put into a page is escaped."""


def esc(value: object) -> Html:
    return value if isinstance(value, Html) else Html(html.escape("" if value is None else str(value)))


@dataclass
class Cell:
    """A table cell spanning several columns (a failed run's reason across its metric columns)."""

    content: object
    span: int = 1


_NUMBER = re.compile(r"^[-+]?[\d.,]+(e[-+]?\d+)?( \(\d+\.\d+x\))?%?$|^-$")


def _td(cell: object) -> str:
    span = cell.span if isinstance(cell, Cell) else 1
    content = cell.content if isinstance(cell, Cell) else cell
    attrs = f' colspan="{span}"' if span > 1 else ""
    if isinstance(content, (int, float)) or (isinstance(content, str) and not isinstance(content, Html)
                                             and _NUMBER.match(content)):
        attrs += ' class="n"'  # numbers right-aligned, text left
    return f"<td{attrs}>{esc(content)}</td>"


def table(header: Iterable[object], rows: Iterable[Iterable[object]], caption: str | None = None,
          row_classes: Iterable[str | None] | None = None) -> Html:
    rows = [list(r) for r in rows]
    classes = list(row_classes) if row_classes is not None else [None] * len(rows)
    parts = ['<div class="scroll"><table>']
    if caption:
        parts.append(f"<caption>{esc(caption)}</caption>")
    parts.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead><tbody>")
    for row, cls in zip(rows, classes):
        attr = f' class="{esc(cls)}"' if cls else ""
        parts.append(f"<tr{attr}>" + "".join(_td(c) for c in row) + "</tr>")
    parts.append("</tbody></table></div>")
    return Html("".join(parts))


def img(path: Path, alt: str, href: str) -> Html:
    """The PNG inlined (self-contained page) and linked to its file beside the report (`href`)."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return Html(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
                f'<figcaption>{esc(alt)} · {link(href, "PNG file")}</figcaption></figure>')


def link(href: str, text: object) -> Html:
    return Html(f'<a href="{esc(href)}">{esc(text)}</a>')


def relative(path: Path, base: Path) -> str:
    """A URL from the report's folder to `path` (POSIX separators, so it works in any browser)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def para(text: object, cls: str | None = None) -> Html:
    attr = f' class="{esc(cls)}"' if cls else ""
    return Html(f"<p{attr}>{esc(text)}</p>")


@dataclass
class Section:
    id: str
    title: str
    body: list[Html] = field(default_factory=list)

    def add(self, *parts: Html | str) -> "Section":
        self.body += [p if isinstance(p, Html) else para(p) for p in parts]
        return self


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1400px;padding:0 1.5em 3em;color:#1b1f24}
h1{margin-top:1em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:2em}h3{margin-top:1.5em}
nav a{margin-right:1em}
.scroll{overflow-x:auto;margin:.6em 0}
table{border-collapse:collapse;font-size:13px}caption{text-align:left;font-weight:600;padding:.3em 0}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;white-space:nowrap}
th{background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fff0f0;color:#a40e26}
.note{color:#57606a;font-size:13px}
figure{margin:1em 0}img{max-width:100%;height:auto;border:1px solid #eaeef2}
figcaption{color:#57606a;font-size:12px}
pre{background:#f6f8fa;padding:.6em;overflow-x:auto;font-size:12px;max-height:24em}
"""


def render(title: str, sections: list[Section], subtitle: str = "") -> str:
    nav = " ".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    body = "\n".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>\n' + "\n".join(s.body) + "</section>"
                     for s in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{STYLE}</style></head>\n'
            f"<body><h1>{esc(title)}</h1>{para(subtitle, 'note') if subtitle else ''}<nav>{nav}</nav>\n{body}\n"
            f"</body></html>\n")
