"""Per-sample records: one JSON object per line, appended and fsynced as each sample completes.

Crash safety: each record is written with a single ``os.write`` of the whole line to a file opened with O_APPEND,
then ``fsync``ed. A process killed at any instant leaves every earlier record intact and at most one torn last line
(no trailing newline). Reading ignores a torn or unparseable line; opening for append first truncates a torn tail,
so the next record starts on a fresh line. The record's ``key`` identifies the work item; the last record for a key
wins (a failed sample rerun on resume supersedes its earlier failure).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

RECORD_VERSION = 1
RECORDS_GLOB = "records*.jsonl"


def records_path(out_dir: Path, replica_index: int, replica_count: int) -> Path:
    if replica_count == 1:
        return Path(out_dir) / "records.jsonl"
    return Path(out_dir) / f"records.replica-{replica_index}-of-{replica_count}.jsonl"


def repair_tail(path: Path) -> int:
    """Truncate a torn last line (no trailing newline). Returns the number of bytes dropped."""
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return 0
        # scan back for the last newline
        pos = size - 1
        block = 1 << 16
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        else:
            keep = 0
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
        return size - keep


class RecordWriter:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dropped_bytes = repair_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                return  # torn last line
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(rec, dict) and "key" in rec:
                yield rec


def load_records(paths: Iterable[Path]) -> dict[str, dict[str, Any]]:
    """All records from ``paths`` keyed by work-item key; the last one for a key wins."""
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(paths):
        for rec in iter_records(p):
            out[rec["key"]] = rec
    return out


def record_files(out_dir: Path) -> list[Path]:
    return sorted(Path(out_dir).glob(RECORDS_GLOB))
