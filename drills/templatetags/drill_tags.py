"""Template helpers for drills: a small, escaping Markdown renderer for the procedures."""

from __future__ import annotations

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+\.\s+(.*)$")


def _inline(text: str) -> str:
    # Escape first, then add the two inline forms the procedures use; nothing else is HTML.
    html = escape(text)
    html = _CODE.sub(r"<code>\1</code>", html)
    return _BOLD.sub(r"<strong>\1</strong>", html)


@register.filter
def procedure_markdown(text: str) -> SafeString:
    """Headings, lists, fenced code blocks, paragraphs, **bold** and `code`; all text escaped."""
    out: list[str] = []
    in_code = False
    list_tag = ""
    paragraph: list[str] = []

    def close_paragraph() -> None:
        if paragraph:
            out.append(f"<p>{' '.join(_inline(line) for line in paragraph)}</p>")
            paragraph.clear()

    def close_list() -> None:
        nonlocal list_tag
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = ""

    for line in (text or "").splitlines():
        if line.strip().startswith("```"):
            close_paragraph()
            close_list()
            out.append("</code></pre>" if in_code else "<pre><code>")
            in_code = not in_code
            continue
        if in_code:
            out.append(escape(line) + "\n")
            continue
        if not line.strip():
            close_paragraph()
            close_list()
            continue
        heading = _HEADING.match(line)
        bullet = _BULLET.match(line)
        numbered = _NUMBERED.match(line)
        if heading:
            close_paragraph()
            close_list()
            level = min(len(heading.group(1)) + 1, 6)  # the page's own title is the h1
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif bullet or numbered:
            close_paragraph()
            tag = "ul" if bullet else "ol"
            if list_tag != tag:
                close_list()
                out.append(f"<{tag}>")
                list_tag = tag
            out.append(f"<li>{_inline((bullet or numbered).group(1))}</li>")
        else:
            close_list()
            paragraph.append(line.strip())
    close_paragraph()
    close_list()
    if in_code:
        out.append("</code></pre>")
    return mark_safe("\n".join(out))  # noqa: S308 - every piece of text above went through escape()


@register.filter
def minutes(value) -> str:
    """A timedelta as '12.5 min' (target tables)."""
    if value is None:
        return "—"
    total = value.total_seconds()
    if total < 60:
        return f"{total:.1f} s"
    mins = total / 60
    if mins < 120:
        return f"{mins:.1f} min".replace(".0 min", " min")
    return f"{mins / 60:.1f} h".replace(".0 h", " h")
