"""The built-in ``browser`` tool (search / open / find) as the harmony format describes it.

Every result is a *page* pushed on a stack; its index is the ``cursor`` shown in brackets at the top of the
display: ``[3] Title (url)\\n**viewing lines [0 - 41] of 120**\\n\\nL0: ...``. Links inside a page are shown
as ``【{id}†{text}†{domain}】`` and opened with ``open(id=..., cursor=...)``; search results are a page whose
links are the hits. The model cites with ``【{cursor}†L{start}(-L{end})?】`` (see ``citations()``).
"""
from __future__ import annotations

import dataclasses
import json
import re
import textwrap
from urllib.parse import urlparse

from ..builtin_tools import browser_namespace
from ..conversation import ToolNamespace
from .browser_backend import BrowserBackend, BrowserBackendError, Document

CITATION = re.compile(r"【(?P<cursor>\d+)†L(?P<start>\d+)(?:-L(?P<end>\d+))?】")


class BrowserToolError(ValueError):
    """A bad browser call (unknown function, bad arguments, cursor or link id out of range)."""


@dataclasses.dataclass
class Page:
    url: str
    title: str
    lines: list[str]
    links: dict[int, str]  # link id -> url


def _domain(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme == "local":
        return "local"
    return parsed.netloc or parsed.scheme


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    for raw in text.splitlines():
        if not raw.strip():
            lines.append("")
            continue
        lines.extend(textwrap.wrap(raw, width=width, break_long_words=True, break_on_hyphens=False) or [""])
    return lines


class BrowserTool:
    """Stateful browser over a backend (one instance per conversation)."""

    def __init__(self, backend: BrowserBackend, *, view_lines: int = 40, line_width: int = 100):
        self.backend = backend
        self.view_lines = view_lines
        self.line_width = line_width
        self.pages: list[Page] = []
        self.namespace: ToolNamespace = browser_namespace()

    # ----- pages
    def _page(self, cursor: int | None) -> Page:
        if not self.pages:
            raise BrowserToolError("no page is open yet; use search or open with a URL first")
        if cursor is None or cursor == -1:
            return self.pages[-1]
        if not isinstance(cursor, int) or not 0 <= cursor < len(self.pages):
            raise BrowserToolError(f"cursor {cursor!r} is out of range; valid cursors: 0 - {len(self.pages) - 1}")
        return self.pages[cursor]

    def _push(self, url: str, title: str, text: str, links: dict[int, str]) -> int:
        self.pages.append(Page(url, title, _wrap(text, self.line_width), links))
        return len(self.pages) - 1

    def _push_document(self, doc: Document) -> int:
        text, links = doc.text, {}
        for i, (anchor, target) in enumerate(doc.links):
            links[i] = target
            text = text.replace(f"[[{i}]]", f"【{i}†{anchor or target}†{_domain(target)}】", 1)
        return self._push(doc.url, doc.title, text, links)

    def display(self, cursor: int, loc: int = 0, num_lines: int = -1) -> str:
        page = self.pages[cursor]
        total = len(page.lines)
        if total == 0:
            return f"[{cursor}] {page.title} ({page.url})\n**empty page**\n"
        if not 0 <= loc < total:
            raise BrowserToolError(f"loc {loc} is out of range for this page; expected 0 - {total - 1}")
        count = self.view_lines if num_lines is None or num_lines <= 0 else num_lines
        end = min(total, loc + count)
        body = "\n".join(f"L{i}: {page.lines[i]}" for i in range(loc, end))
        return f"[{cursor}] {page.title} ({page.url})\n**viewing lines [{loc} - {end - 1}] of {total - 1}**\n\n{body}"

    # ----- functions the model calls
    def search(self, query: str, topn: int = 10, source: str | None = None) -> str:
        hits = self.backend.search(query, int(topn) if topn and topn > 0 else 10)
        lines, links = [], {}
        for i, hit in enumerate(hits):
            links[i] = hit.url
            lines.append(f"* 【{i}†{hit.title}†{_domain(hit.url)}】\n{hit.snippet}")
        text = "\n".join(lines) if lines else f"No results for `{query}`."
        cursor = self._push(f"search:{query}", f"Search results for `{query}`", text, links)
        return self.display(cursor)

    def open(self, id: int | str = -1, cursor: int = -1, loc: int = -1, num_lines: int = -1,
             view_source: bool = False, source: str | None = None) -> str:
        if isinstance(id, str) and id not in ("", "-1"):
            new = self._push_document(self.backend.fetch(id))
            return self.display(new, max(loc, 0), num_lines)
        link_id = int(id) if id not in ("", None) else -1
        page = self._page(cursor)
        if link_id < 0:  # scroll the page
            index = self.pages.index(page)
            return self.display(index, max(loc, 0), num_lines)
        if link_id not in page.links:
            raise BrowserToolError(f"link id {link_id} is not on page [{self.pages.index(page)}]; valid ids: "
                                   f"{sorted(page.links)}")
        new = self._push_document(self.backend.fetch(page.links[link_id]))
        return self.display(new, max(loc, 0), num_lines)

    def find(self, pattern: str, cursor: int = -1) -> str:
        if not isinstance(pattern, str) or not pattern:
            raise BrowserToolError("find needs a non-empty `pattern` string")
        page = self._page(cursor)
        needle = pattern.lower()
        chunks, links = [], {}
        for line_no, line in enumerate(page.lines):
            if needle in line.lower():
                idx = len(links)
                links[idx] = page.url
                context = "\n".join(page.lines[line_no:line_no + 4])
                chunks.append(f"# 【{idx}†match at L{line_no}】\n{context}")
        text = "\n\n".join(chunks) if chunks else f"No `find` results for pattern: `{pattern}`"
        new = self._push(f"{page.url}#find={pattern}", f"Find results for text: `{pattern}` in `{page.title}`",
                         text, links)
        return self.display(new)

    def call(self, recipient: str, content: str, content_type: str | None = None) -> str:
        """Dispatch a harmony message to ``browser.search`` / ``browser.open`` / ``browser.find``; errors come
        back as a JSON error text for the model."""
        name = recipient.split(".", 1)[1] if recipient.startswith("browser.") else ""
        functions = {"search": self.search, "open": self.open, "find": self.find}
        try:
            if name not in functions:
                raise BrowserToolError(f"unknown browser function {recipient!r}; expected browser.search, "
                                       "browser.open or browser.find")
            try:
                args = json.loads(content) if content.strip() else {}
            except json.JSONDecodeError as e:
                raise BrowserToolError(f"arguments are not valid JSON ({e.msg}); expected a JSON object") from e
            if not isinstance(args, dict):
                raise BrowserToolError("arguments must be a JSON object")
            try:
                return functions[name](**args)
            except TypeError as e:
                raise BrowserToolError(f"bad arguments for {recipient}: {e}") from e
        except (BrowserToolError, BrowserBackendError) as e:
            return json.dumps({"error": str(e)}, ensure_ascii=False)

    def citations(self, text: str) -> list[dict]:
        """Resolve ``【cursor†Lstart-Lend】`` citations in a model's answer to the cited page and lines."""
        out = []
        for m in CITATION.finditer(text):
            cursor = int(m["cursor"])
            if not 0 <= cursor < len(self.pages):
                continue
            page = self.pages[cursor]
            start = int(m["start"])
            end = int(m["end"]) if m["end"] else start
            out.append({"cursor": cursor, "url": page.url, "title": page.title, "start_line": start,
                        "end_line": end, "text": "\n".join(page.lines[start:end + 1]), "span": m.span()})
        return out
