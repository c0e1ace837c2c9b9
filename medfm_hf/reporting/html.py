"""A report as a list of blocks, rendered to Markdown and to one self-contained HTML file.

The HTML has no external resource: figures are embedded as base64 PNG, the style sheet and the table-sorting
script are inline (click a column header to sort; estimates sort by their value, not their text).
"""

from __future__ import annotations

import base64
import html
import os
import re
from dataclasses import dataclass, field

import pandas as pd

from medfm_hf.reporting.formats import display, to_markdown
from medfm_hf.reporting.stats import Estimate


@dataclass
class Block:
    """``kind``: ``heading`` (text), ``markdown`` (text), ``table`` (frame, text = caption), ``figure``
    (path = PNG, text = caption)."""

    kind: str
    text: str = ""
    frame: pd.DataFrame | None = None
    path: str = ""
    drop: tuple[str, ...] = ()


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def heading(self, text: str) -> None:
        self.blocks.append(Block("heading", text))

    def markdown(self, text: str) -> None:
        self.blocks.append(Block("markdown", text))

    def table(self, frame: pd.DataFrame, caption: str = "", drop: tuple[str, ...] = ()) -> None:
        if frame is not None and not frame.empty:
            self.blocks.append(Block("table", caption, frame=frame, drop=drop))

    def figure(self, path: str | None, caption: str) -> None:
        if path:
            self.blocks.append(Block("figure", caption, path=path))

    def to_markdown(self, base: str, digits: int = 3) -> str:
        """Markdown with figure links relative to the folder ``base`` the file is written to."""
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            if b.kind == "heading":
                out += [f"## {b.text}", ""]
            elif b.kind == "markdown":
                out += [b.text.strip(), ""]
            elif b.kind == "table":
                if b.text:
                    out += [f"*{b.text}*", ""]
                out += [to_markdown(b.frame, digits, b.drop), ""]
            elif b.kind == "figure":
                rel = os.path.relpath(b.path, base).replace(os.sep, "/")
                out += [f"![{b.text}]({rel})", "", f"*{b.text}*", ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self, digits: int = 3) -> str:
        body, toc = [], []
        for i, b in enumerate(self.blocks):
            if b.kind == "heading":
                anchor = f"s{i}"
                toc.append(f'<a href="#{anchor}">{html.escape(b.text)}</a>')
                body.append(f'<h2 id="{anchor}">{html.escape(b.text)}</h2>')
            elif b.kind == "markdown":
                body.append(markdown_to_html(b.text))
            elif b.kind == "table":
                body.append(html_table(b.frame, b.text, digits, b.drop))
            elif b.kind == "figure":
                with open(b.path, "rb") as fh:
                    data = base64.b64encode(fh.read()).decode("ascii")
                body.append(f'<figure><img alt="{html.escape(b.text)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{html.escape(b.text)}</figcaption></figure>")
        return _PAGE.format(title=html.escape(self.title), toc=" · ".join(toc), body="\n".join(body),
                            style=_STYLE, script=_SCRIPT)


def html_table(df: pd.DataFrame, caption: str = "", digits: int = 3, drop: tuple[str, ...] = ()) -> str:
    """A sortable table: each cell carries its numeric value in ``data-v`` when it has one."""
    shown = display(df, digits, drop)
    cols = [c for c in df.columns if c not in drop]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in shown.columns)
    rows = []
    for (_, raw), (_, txt) in zip(df[cols].iterrows(), shown.iterrows()):
        cells = []
        for c, t in zip(cols, txt):
            v = raw[c]
            num = v.value if isinstance(v, Estimate) else v
            attr = ""
            if isinstance(num, (int, float)) and not isinstance(num, bool) and num == num:
                attr = f' data-v="{float(num):.10g}"'
            cls = ' class="num"' if attr else ""
            cells.append(f"<td{attr}{cls}>{html.escape(t)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (f'<div class="wrap"><table class="sortable">{cap}<thead><tr>{head}</tr></thead><tbody>'
            + "\n".join(rows) + "</tbody></table></div>")


_INLINE = [(re.compile(r"`([^`]+)`"), r"<code>\1</code>"), (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
           (re.compile(r"\*([^*]+)\*"), r"<em>\1</em>")]


def _inline(text: str) -> str:
    text = html.escape(text)
    for pat, rep in _INLINE:
        text = pat.sub(rep, text)
    return text


def markdown_to_html(text: str) -> str:
    """The Markdown the report's notes use: ``###`` headings, paragraphs, ``-`` lists, pipe tables, inline
    code / bold / italics."""
    out, para, items, table = [], [], [], []

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()
        if table:
            rows = [[c.strip() for c in r.strip().strip("|").split("|")] for r in table
                    if not re.fullmatch(r"\|?[\s:|-]+\|?", r.strip())]
            head = "".join(f"<th>{_inline(c)}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
            out.append(f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
            table.clear()

    for line in text.strip().splitlines():
        s = line.strip()
        if not s:
            flush()
        elif s.startswith("#"):
            flush()
            level = min(len(s) - len(s.lstrip("#")) + 1, 4)
            out.append(f"<h{level}>{_inline(s.lstrip('#').strip())}</h{level}>")
        elif s.startswith("|"):
            if para or items:
                flush()
            table.append(s)
        elif s.startswith(("- ", "* ")):
            if para or table:
                flush()
            items.append(s[2:])
        elif items and line.startswith("  "):
            items[-1] += " " + s
        else:
            if table:
                flush()
            para.append(s)
    flush()
    return "\n".join(out)


_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1400px;margin:0 auto;padding:1.2em 2em;
color:#1d1d1f;line-height:1.45}
h1{font-size:1.7em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
nav{font-size:.9em;color:#555;margin-bottom:1em}nav a{color:#0b5cad;text-decoration:none}
.wrap{overflow-x:auto}table{border-collapse:collapse;margin:.8em 0 1.4em;font-size:.86em}caption{text-align:left;font-style:italic;
color:#444;padding:.3em 0}th,td{padding:.28em .7em;border-bottom:1px solid #e4e4e4;text-align:left;white-space:nowrap}
thead th{border-bottom:2px solid #333;cursor:pointer;user-select:none;background:#fafafa}
th.asc::after{content:" \\25B2";font-size:.7em}th.desc::after{content:" \\25BC";font-size:.7em}
td.num{text-align:right;font-variant-numeric:tabular-nums}tbody tr:hover{background:#f3f7fc}
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.88em;color:#444}
code{background:#f2f2f2;padding:0 .25em;border-radius:3px}
"""

_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function(table){
  table.querySelectorAll("thead th").forEach(function(th, col){
    th.addEventListener("click", function(){
      var asc = !th.classList.contains("asc");
      table.querySelectorAll("thead th").forEach(function(h){h.classList.remove("asc","desc");});
      th.classList.add(asc ? "asc" : "desc");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function(a, b){
        var x = a.cells[col], y = b.cells[col];
        var xv = x.dataset.v, yv = y.dataset.v, r;
        if (xv !== undefined && yv !== undefined) { r = parseFloat(xv) - parseFloat(yv); }
        else if (xv !== undefined) { r = -1; } else if (yv !== undefined) { r = 1; }
        else { r = x.textContent.localeCompare(y.textContent, undefined, {numeric: true}); }
        return asc ? r : -r;
      });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title><style>{style}</style></head>
<body><h1>{title}</h1><nav>{toc}</nav>
{body}
<script>{script}</script>
</body></html>
"""
