"""Per-sample records: one JSON object per line, appended and fsynced as each sample completes.

Crash safety: each record is written with a single ``os.write`` of the whole line to a file opened with O_APPEND,
then ``fsync``ed. A process killed at any instant leaves every earlier record intact and at most one torn last line
(no trailing newline). Reading ignores a torn or unparseable line; opening for append first truncates a torn tail,
so the next record starts on a fresh line. The record's ``key`` identifies the work item; the last record for a key
wins (a failed sample rerun on resume supersedes its earlier failure).

A line that is not a record the report can read (bad JSON, a field missing or of the wrong type: a hand-edited or
foreign file) is skipped and counted, never a crash: pass ``skipped`` (a list) to learn which and why.
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


_NUM = (int, float)
#: field -> accepted types (None allowed where the second element says so)
_FIELDS: dict[str, tuple[tuple[type, ...], bool]] = {
    "key": ((str,), False), "task": ((str,), False), "benchmark": ((str,), False), "category": ((str,), False),
    "strategy": ((str,), False), "reasoning_effort": ((str,), False), "sampling_key": ((str,), False),
    "sample_id": ((str,), False), "status": ((str,), False), "score": (_NUM, True),
    "started_at": (_NUM, False), "ended_at": (_NUM, False), "usage": ((dict,), True),
    "grader_usage": ((dict,), True), "device_seconds": (_NUM, True)}


def check_record(rec: Any) -> str | None:
    """None when the report can use ``rec``; otherwise what is wrong with it."""
    if not isinstance(rec, dict):
        return f"not a JSON object but {type(rec).__name__}"
    for field, (types, nullable) in _FIELDS.items():
        if field not in rec:
            if nullable:
                continue
            return f"no {field!r} field"
        v = rec[field]
        if v is None and nullable:
            continue
        if isinstance(v, bool) or not isinstance(v, types):
            return f"{field!r} is {type(v).__name__} {str(v)[:40]!r}, expected {'/'.join(t.__name__ for t in types)}"
    if rec["status"] not in ("ok", "failed"):
        return f"status {rec['status']!r} is not ok or failed"
    if rec["status"] == "ok" and not isinstance(rec.get("score"), _NUM):
        return "status ok without a numeric score"
    for part in ("usage", "grader_usage"):
        for k, v in (rec.get(part) or {}).items():
            if v is not None and (isinstance(v, bool) or not isinstance(v, _NUM)):
                return f"{part}.{k} is {type(v).__name__}, expected a number"
    return None


def iter_records(path: Path, skipped: list | None = None) -> Iterator[dict[str, Any]]:
    """The records of one file. Unreadable lines are skipped; with ``skipped`` each is appended as
    ``(path, line number, reason)``. A torn last line (no newline: a crash mid-write) is ignored silently."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                return  # torn last line
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                if skipped is not None:
                    skipped.append((str(path), n, f"not JSON ({e})"))
                continue
            problem = check_record(rec)
            if problem is not None:
                if skipped is not None:
                    skipped.append((str(path), n, problem))
                continue
            yield rec


def load_records(paths: Iterable[Path], skipped: list | None = None) -> dict[str, dict[str, Any]]:
    """All records from ``paths`` keyed by work-item key; the last one for a key wins. ``skipped``: see
    `iter_records`."""
    out: dict[str, dict[str, Any]] = {}
    for p in sorted(paths):
        for rec in iter_records(p, skipped):
            out[rec["key"]] = rec
    return out


def record_files(out_dir: Path) -> list[Path]:
    return sorted(Path(out_dir).glob(RECORDS_GLOB))
