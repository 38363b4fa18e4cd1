"""The report's markdown lines rendered to one self-contained HTML file (figures embedded).

Only the few constructs the report uses (headings, bullets, tables, images, code, **bold**); a
markdown library would be a dependency for forty lines.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd


def md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(v) for v in r.values) + " |")
    return "\n".join(lines)


def _html_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p><em>(none)</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values) + "</tr>"
        for _, r in df.iterrows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def md_inline(text: str) -> str:
    """The one piece of markdown used in sentences: **bold**."""
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1f2328;line-height:1.5}table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
td,th{border:1px solid #d0d7de;padding:.3em .6em;text-align:left}th{background:#f6f8fa}
img{max-width:100%;border:1px solid #d0d7de}code,pre{background:#f6f8fa;padding:.1em .3em}
h1{border-bottom:1px solid #d0d7de}.caption{color:#57606a;font-size:.9em}"""


def render_html(md: list[str], folder: Path, figures: list[tuple[str, str, str]]) -> str:
    """Render the report's markdown lines (headings, bullets, tables, images) to one HTML file."""
    images = {f: base64.b64encode((folder / f).read_bytes()).decode() for f, _, _ in figures}
    out, table, in_code, bullets = [], [], False, []

    def flush() -> None:
        if table:
            rows = [r.strip().strip("|").split(" | ") for r in table if not r.startswith("|---")]
            out.append(_html_table(pd.DataFrame(rows[1:], columns=rows[0])))
            table.clear()
        if bullets:
            out.append("<ul>" + "".join(f"<li>{md_inline(b)}</li>" for b in bullets) + "</ul>")
            bullets.clear()

    for line in "\n".join(md).splitlines():
        if line.startswith("```"):
            flush()
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
        elif in_code:
            out.append(html.escape(line))
        elif line.startswith("|"):
            table.append(line)
        elif line.startswith("- "):
            bullets.append(line[2:])
        else:
            flush()
            if line.startswith("#"):
                level = len(line) - len(line.lstrip("#"))
                out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
            elif line.startswith("!["):
                name = line[line.index("(") + 1 : -1]
                out.append(
                    f'<img alt="{html.escape(name)}" src="data:image/png;base64,{images[name]}">'
                )
            elif line.strip():
                out.append(f"<p>{md_inline(line)}</p>")
    flush()
    body = "\n".join(out).replace("`", "")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>medcontrast report</title>"
        f"<style>{CSS}</style></head><body>{body}</body></html>"
    )
