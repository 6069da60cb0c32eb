"""A real search backend for the browser tool: any service speaking SearXNG's JSON API (``GET /search?q=...&
format=json`` -> ``{"results": [{"url", "title", "content"}]}``), e.g. a self-hosted SearXNG. Pages are fetched over
HTTP(S) and reduced to text and links by the harmony browser's own HTML reader.

Offline runs use the local BM25 index instead (``--browser_index``); this backend is used when ``--search_url`` is
given. Errors (service down, bad page) become the tool's error text for the model, never a failed sweep.
"""
from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from urllib.parse import urljoin

from gptoss_jax.harmony.tools.browser_backend import BrowserBackendError, Document, SearchHit, _HtmlText

USER_AGENT = "gptoss-jax-evals/0.1 (browser tool)"


class SearxngBackend:
    def __init__(self, url: str, *, timeout_s: float = 20.0, max_page_bytes: int = 2 << 20):
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"--search_url must be an http(s) URL, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_page_bytes = max_page_bytes

    def _get(self, url: str) -> tuple[bytes, str]:
        req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310 - user-configured
                return resp.read(self.max_page_bytes), resp.headers.get("Content-Type", "")
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise BrowserBackendError(f"could not fetch {url}: {e}") from None

    def search(self, query: str, topn: int = 10) -> list[SearchHit]:
        if not isinstance(query, str) or not query.strip():
            raise BrowserBackendError("search needs a non-empty `query` string")
        body, _ = self._get(f"{self.url}/search?{urllib.parse.urlencode({'q': query, 'format': 'json'})}")
        try:
            results = json.loads(body).get("results") or []
        except (ValueError, AttributeError):
            raise BrowserBackendError(f"the search service at {self.url} did not answer with SearXNG JSON") from None
        return [SearchHit(r["url"], r.get("title") or r["url"], (r.get("content") or "")[:200])
                for r in results[: max(1, int(topn))] if isinstance(r, dict) and r.get("url")]

    def fetch(self, url: str) -> Document:
        raw, ctype = self._get(url)
        text = raw.decode("utf-8", errors="replace")
        if "html" not in ctype and not text.lstrip().lower().startswith(("<!doctype", "<html")):
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), url)
            return Document(url, first[:120], text.strip())
        parser = _HtmlText()
        parser.feed(text)
        body = re.sub(r"[ \t]+", " ", "".join(parser.parts))
        body = re.sub(r"\n\s*\n+", "\n\n", body).strip()
        links = tuple((anchor, urljoin(url, href)) for anchor, href in parser.links)
        return Document(url, parser.title.strip() or url, body, links)
