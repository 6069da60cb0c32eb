"""Search/fetch backends for the browser tool, and an offline one over a local folder of documents.

``LocalFolderBackend`` indexes text, Markdown, reStructuredText and HTML files with BM25 via ``bm25s``
(chosen over rank_bm25: it scores with sparse matrices instead of a Python loop over every document, is
maintained, and needs only numpy, so indexing and queries stay fast on large folders). Documents get
``local://<relative path>`` URLs; HTML links between local files are kept as links.
"""
from __future__ import annotations

import dataclasses
import html.parser
import os
import re
from typing import Protocol, Sequence

_WORD = re.compile(r"\w+", re.UNICODE)
_SUFFIXES = ("ingly", "edly", "ing", "ies", "ied", "es", "ed", "ly", "s")


class BrowserBackendError(RuntimeError):
    """A backend failure (unknown URL, unreadable folder): the browser shows it to the model as an error."""


@dataclasses.dataclass(frozen=True)
class SearchHit:
    url: str
    title: str
    snippet: str


@dataclasses.dataclass(frozen=True)
class Document:
    url: str
    title: str
    text: str  # plain text; links may appear as 【id†text】 markers once rendered by the browser
    links: tuple[tuple[str, str], ...] = ()  # (anchor text, url) in page order


class BrowserBackend(Protocol):
    def search(self, query: str, topn: int) -> list[SearchHit]: ...

    def fetch(self, url: str) -> Document: ...


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


class _HtmlText(html.parser.HTMLParser):
    """HTML -> text, keeping link anchors as ``[[n]]`` placeholders resolved by the backend."""

    _BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.links: list[tuple[str, str]] = []
        self.title = ""
        self._in_title = False
        self._skip = 0
        self._href: str | None = None
        self._anchor: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "a":
            self._href = dict(attrs).get("href")
            self._anchor = []
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag == "a" and self._href is not None:
            text = "".join(self._anchor).strip()
            self.links.append((text, self._href))
            self.parts.append(f"[[{len(self.links) - 1}]]")
            self._href = None
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self._skip:
            return
        if self._in_title:
            self.title += data
        elif self._href is not None:
            self._anchor.append(data)
        else:
            self.parts.append(data)


class LocalFolderBackend:
    """BM25 search over the documents of a local folder (read once at construction)."""

    EXTENSIONS = (".txt", ".md", ".rst", ".html", ".htm")

    def __init__(self, folder: str, *, extensions: Sequence[str] = EXTENSIONS, max_file_bytes: int = 5 << 20):
        import bm25s

        if not os.path.isdir(folder):
            raise BrowserBackendError(f"documents folder {folder!r} does not exist or is not a folder")
        self.folder = os.path.realpath(folder)
        self.documents: list[Document] = []
        for root, _dirs, files in sorted(os.walk(self.folder)):
            for name in sorted(files):
                if not name.lower().endswith(tuple(extensions)):
                    continue
                path = os.path.join(root, name)
                if os.path.getsize(path) > max_file_bytes:
                    continue
                with open(path, encoding="utf-8", errors="replace") as f:
                    raw = f.read()
                self.documents.append(self._document(os.path.relpath(path, self.folder), raw))
        self._by_url = {d.url: d for d in self.documents}
        self._tokenizer = bm25s.tokenization.Tokenizer(stopwords="en", stemmer=_stem, lower=True)
        self._retriever = bm25s.BM25()
        if self.documents:
            corpus = [f"{d.title}\n{d.text}" for d in self.documents]
            ids = self._tokenizer.tokenize(corpus, show_progress=False, return_as="ids")
            self._retriever.index(ids, show_progress=False)

    def _document(self, relpath: str, raw: str) -> Document:
        url = "local://" + relpath.replace(os.sep, "/")
        if relpath.lower().endswith((".html", ".htm")):
            parser = _HtmlText()
            parser.feed(raw)
            text = re.sub(r"[ \t]+", " ", "".join(parser.parts))
            text = re.sub(r"\n\s*\n+", "\n\n", text).strip()
            links = []
            for anchor, href in parser.links:
                target = href
                if href and "://" not in href and not href.startswith("#"):
                    target = "local://" + os.path.normpath(os.path.join(os.path.dirname(relpath), href)).replace(
                        os.sep, "/")
                links.append((anchor, target))
            title = parser.title.strip() or relpath
            return Document(url, title, text, tuple(links))
        first = next((line.strip().lstrip("#").strip() for line in raw.splitlines() if line.strip()), "")
        return Document(url, first[:120] or relpath, raw.strip())

    def search(self, query: str, topn: int = 10) -> list[SearchHit]:
        if not isinstance(query, str) or not query.strip():
            raise BrowserBackendError("search needs a non-empty `query` string")
        if not self.documents:
            return []
        ids = self._tokenizer.tokenize([query], show_progress=False, return_as="ids", update_vocab=False)
        if not ids or not ids[0]:
            return []
        k = max(1, min(int(topn), len(self.documents)))
        docs, scores = self._retriever.retrieve(ids, k=k, show_progress=False)
        hits = []
        terms = {_stem(w.lower()) for w in _WORD.findall(query)}
        for doc_id, score in zip(docs[0], scores[0]):
            if score <= 0:
                continue
            d = self.documents[int(doc_id)]
            hits.append(SearchHit(d.url, d.title, _snippet(d.text, terms)))
        return hits

    def fetch(self, url: str) -> Document:
        doc = self._by_url.get(url)
        if doc is None:
            raise BrowserBackendError(f"no document at {url!r} (this offline backend serves local:// URLs of "
                                      f"{self.folder})")
        return doc


def _snippet(text: str, terms: set[str], width: int = 200) -> str:
    best_line, best_score = "", -1
    for line in text.splitlines():
        words = {_stem(w.lower()) for w in _WORD.findall(line)}
        score = len(words & terms)
        if score > best_score and line.strip():
            best_line, best_score = line.strip(), score
    best_line = re.sub(r"\[\[\d+\]\]", "", best_line)
    return best_line[:width]
