"""A small downloader: HTTP(S) GET into the cache with a progress bar, sha256 check, atomic rename, retries.

Nothing here knows about benchmarks; sources.py decides what to fetch.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

USER_AGENT = "gptoss-jax-evals/0.1 (+https://pypi.org/project/gptoss-jax)"
CHUNK = 1 << 16


class DownloadError(RuntimeError):
    pass


def default_cache_dir() -> Path:
    env = os.environ.get("GPTOSS_EVALS_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "gptoss_jax" / "evals"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _headers() -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT}
    token = os.environ.get("HF_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _progress(total: int | None, desc: str):
    try:
        from tqdm import tqdm  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, file=sys.stderr, leave=False,
                disable=not sys.stderr.isatty())


def _error_detail(e: urllib.error.HTTPError) -> str:
    """The server's own words, e.g. datasets-server's ``{"error": "The config does not exist."}``."""
    try:
        body = e.read(2000).decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001 - the status line alone is still a clear error
        return ""
    try:
        body = str(json.loads(body).get("error", body))
    except (ValueError, AttributeError):
        pass
    return f" ({body[:300]})" if body else ""


def _with_retries(fn: Callable[[], Any], what: str, attempts: int = 3) -> Any:
    for i in range(attempts):
        try:
            return fn()
        except urllib.error.HTTPError as e:
            if e.code < 500 and e.code != 429:
                raise DownloadError(f"{what}: HTTP {e.code} {e.reason}{_error_detail(e)}") from e
            err: Exception = e
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            err = e
        if i + 1 < attempts:
            time.sleep(min(2 ** i, 8))
    raise DownloadError(f"{what}: {type(err).__name__}: {getattr(err, 'reason', err)} (after {attempts} attempts)")


def download(url: str, dest: Path, *, sha256: str | None = None, timeout_s: float = 60.0) -> Path:
    """Fetch ``url`` into ``dest`` (atomically). Verifies ``sha256`` when given; returns ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)

    def fetch() -> Path:
        req = urllib.request.Request(url, headers=_headers())
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - http(s) URLs from the registry
            total = resp.headers.get("Content-Length")
            bar = _progress(int(total) if total and total.isdigit() else None, dest.name)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
            h = hashlib.sha256()
            try:
                with os.fdopen(fd, "wb") as out:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        h.update(block)
                        if bar is not None:
                            bar.update(len(block))
                    out.flush()
                    os.fsync(out.fileno())
                if sha256 and h.hexdigest() != sha256.lower():
                    raise DownloadError(f"{url}: sha256 {h.hexdigest()} does not match the expected {sha256}; "
                                        "the file changed upstream or the download is corrupt")
                os.replace(tmp, dest)
            finally:
                if bar is not None:
                    bar.close()
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return dest

    return _with_retries(fetch, url)


def get_json(url: str, *, timeout_s: float = 60.0) -> Any:
    def fetch():
        req = urllib.request.Request(url, headers=_headers())
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310
            return json.loads(resp.read().decode("utf-8"))
    return _with_retries(fetch, url)


def hf_rows_endpoint() -> str:
    return os.environ.get("GPTOSS_EVALS_HF_ROWS_URL", "https://datasets-server.huggingface.co/rows")


def download_hf_rows(dataset: str, config: str, split: str, dest: Path, *, max_rows: int | None = None,
                     page: int = 100) -> Path:
    """Page through the Hugging Face datasets-server ``/rows`` API and write the rows as JSONL (atomically).

    API (https://huggingface.co/docs/dataset-viewer/rows, source huggingface/dataset-viewer docs/source/rows.md):
    ``GET /rows?dataset=&config=&split=&offset=&length=`` with ``length`` at most 100, answering
    ``{"features": [...], "rows": [{"row_idx", "row", "truncated_cells"}], "num_rows_total", "num_rows_per_page",
    "partial"}``; ``partial: true`` means the split was too big to serve whole. Only datasets with a parquet export
    are served (no loading-script datasets). An incomplete download is an error, never a silently short table.
    """
    if not 1 <= page <= 100:
        raise ValueError(f"datasets-server pages hold 1 to 100 rows, not {page}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    offset = 0
    total = None
    bar = None
    try:
        while total is None or offset < total:
            length = page if max_rows is None else min(page, max_rows - offset)
            if length <= 0:
                break
            q = urllib.parse.urlencode({"dataset": dataset, "config": config, "split": split,
                                        "offset": offset, "length": length})
            data = get_json(f"{hf_rows_endpoint()}?{q}")
            if not isinstance(data, dict) or "rows" not in data:
                raise DownloadError(f"datasets-server returned no rows for {dataset}/{config}/{split}: "
                                    f"{str(data)[:200]}")
            if data.get("partial"):
                raise DownloadError(f"datasets-server serves only part of {dataset}/{config}/{split} (partial: "
                                    "true); download the dataset's files instead")
            total = int(data.get("num_rows_total", 0))
            if max_rows is not None:
                total = min(total, max_rows)
            if bar is None:
                bar = _progress(total, f"{dataset}:{split}")
                if bar is not None:
                    bar.unit = "rows"
            got = [r["row"] for r in data["rows"]]
            if not got:
                break
            rows.extend(got)
            offset += len(got)
            if bar is not None:
                bar.update(len(got))
    finally:
        if bar is not None:
            bar.close()
    if total is not None and len(rows) != total:
        raise DownloadError(f"datasets-server gave {len(rows)} of the {total} rows of {dataset}/{config}/{split}; "
                            "try again later")
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, dest)
    return dest
