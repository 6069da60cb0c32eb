"""An eval output folder's guards: one sweep at a time (an advisory lock) and one identity per folder.

Lock: ``<out_dir>/.lock`` (``.lock.replica-i-of-n`` for a replica) held with ``fcntl.flock`` for the whole sweep.
The kernel drops it when the process dies, even by ``kill -9``, so a crashed sweep never leaves a stale lock. A
second sweep on the same folder refuses at once, naming the process that holds it (or, with ``wait``, blocks until
it is released), so no sample ever runs twice.

Identity: ``<out_dir>/run.json`` records what the records measure: the model (name, backend kind, base URL, a
checkpoint fingerprint for a local model), the sampling grid, the seed, the tools offered and each task's version
(its definition and the sha256 of its data). A resume whose identity differs refuses and names every field that
differs; tasks new to the folder are added to it (a sweep may grow), tasks in both must match.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any, Mapping

IDENTITY_FILE = "run.json"


class FolderError(ValueError):
    """The folder is busy, or holds the records of another run."""


class FolderLock:
    def __init__(self, out_dir: Path, *, replica: tuple[int, int] = (0, 1), wait: bool = False, log=None):
        i, n = replica
        self.path = Path(out_dir) / (".lock" if n == 1 else f".lock.replica-{i}-of-{n}")
        self.wait = wait
        self.log = log
        self._fd = -1

    def acquire(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                os.close(fd)
                raise
            holder = _read_holder(self.path)
            if not self.wait:
                os.close(fd)
                raise FolderError(f"another sweep is running in {self.path.parent} ({holder}); wait for it to "
                                  "finish, pass --wait_for_lock to wait, or choose another --output_dir") from None
            if self.log is not None:
                self.log(f"waiting for the sweep running in {self.path.parent} ({holder}) to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
        return f"pid {info['pid']} on {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


# ---- identity ------------------------------------------------------------------------------------------------------
def checkpoint_fingerprint(path: str) -> str:
    """A cheap fingerprint of a checkpoint folder (no weights read): config.json's bytes, every file's name and
    size, and each safetensors header (tensor names, dtypes, shapes, offsets)."""
    root = Path(path)
    h = hashlib.sha256()
    if not root.exists():
        return "missing"
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    for p in files:
        rel = p.name if root.is_file() else str(p.relative_to(root))
        size = p.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        if p.name == "config.json" or p.suffix == ".json" and size < 1 << 20:
            h.update(p.read_bytes())
        elif p.suffix == ".safetensors" and size >= 8:
            with open(p, "rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if 0 < n < 1 << 27:
                    h.update(f.read(n))
    return h.hexdigest()[:16]


def model_identity(backend_cfg) -> dict[str, Any]:
    """What identifies the model a backend config points at (never the API key)."""
    ident: dict[str, Any] = {"backend": backend_cfg.kind, "model": backend_cfg.model}
    if backend_cfg.kind == "local":
        extra = dict(backend_cfg.extra)
        if backend_cfg.model and Path(backend_cfg.model).exists():
            ident["checkpoint"] = checkpoint_fingerprint(backend_cfg.model)
        else:  # a preset name: its synthetic checkpoint is drawn from this seed
            ident["checkpoint"] = f"preset {backend_cfg.model}, synthetic seed {extra.get('seed', '0')}"
        ident["dtype"] = extra.get("dtype", "bfloat16")
    else:
        ident["base_url"] = backend_cfg.base_url
        ident["reasoning_effort_param"] = backend_cfg.reasoning_effort_param
    return ident


def run_identity(config, model: Mapping[str, Any], loaded: Mapping[str, Any]) -> dict[str, Any]:
    """What a sweep's records measure: the model's identity, the sweep's sampling, seed and tools (a
    runner.SweepConfig), and each loaded task's version and data hash."""
    return {**dict(model), "sampling": [sp.to_dict() for sp in config.sampling], "seed": config.seed,
            "tools": sorted(list(t) for t in config.tools),  # a set of tool sets: order is not identity
            "tool_config": config.tool_config.describe() if any(config.tools) else None,
            "tasks": {name: lt.identity() for name, lt in loaded.items()}}


def identity_of(backend) -> Mapping[str, Any]:
    """A backend built from a BackendConfig is identified by it (no model load); others describe themselves."""
    from evals.backends.base import BackendConfig  # noqa: PLC0415

    config = getattr(backend, "config", None)
    if isinstance(config, BackendConfig):
        return model_identity(config)
    described = dict(backend.describe())
    return {"backend": described.pop("kind", type(backend).__name__), **described}


def short_hash(obj: Any, n: int = 8) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


def default_output_dir(name: str, identity: dict) -> Path:
    """runs/evals/<name>-<model>-<hash>: the hash covers the model, backend, URL, sampling, seed and tools, so a
    different run never resumes into another's folder by default."""
    model = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(identity.get("model") or "model")).name)[:40] or "model"
    return Path("runs") / "evals" / f"{name}-{model}-{short_hash(identity)}"


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between a folder's identity and a new run's (tasks: only those in both)."""
    out = []
    for k in sorted(set(old) | set(new)):
        if k == "tasks":
            continue
        if old.get(k) != new.get(k):
            out.append(f"{k}: folder has {old.get(k)!r}, this run has {new.get(k)!r}")
    old_tasks, new_tasks = old.get("tasks") or {}, new.get("tasks") or {}
    for t in sorted(set(old_tasks) & set(new_tasks)):
        if old_tasks[t] != new_tasks[t]:
            what = [f for f in sorted(set(old_tasks[t]) | set(new_tasks[t]))
                    if old_tasks[t].get(f) != new_tasks[t].get(f)]
            out.append(f"task {t}: {', '.join(what)} differ (folder {old_tasks[t]}, this run {new_tasks[t]})")
    return out


def check_identity(out_dir: Path, identity: Mapping[str, Any], *, has_records: bool,
                   recorded_backend: Mapping[str, Any] | None = None) -> None:
    """Refuse a resume whose identity differs from the folder's; record the identity (merging new tasks).
    A folder written before run.json existed is adopted when its records' backend (``recorded_backend``: kind,
    model, base URL) is this run's, and refused naming the difference otherwise."""
    path = Path(out_dir) / IDENTITY_FILE
    identity = json.loads(json.dumps(identity, default=str))  # as it reads back (tuples are lists)
    old = None
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise FolderError(f"{path} is unreadable ({e}); it records which run this folder holds: restore it or "
                              "choose another --output_dir") from None
    elif has_records:
        rec = dict(recorded_backend or {})
        seen = {"backend": rec.get("kind"), "model": rec.get("model")}
        if identity.get("backend") == "endpoint":
            seen["base_url"] = rec.get("base_url")
        diff = [f"{k}: folder's records have {v!r}, this run has {identity.get(k)!r}" for k, v in seen.items()
                if v != identity.get(k)]
        if diff:
            raise FolderError(f"{out_dir} holds the records of another run (it has no {IDENTITY_FILE}: written "
                              "by an older version); resuming there would mix them:\n  - " + "\n  - ".join(diff)
                              + "\n  choose another --output_dir")
    if old is not None:
        diff = differences(old, identity)
        if diff:
            raise FolderError(f"{out_dir} holds the records of another run; resuming there would mix them:\n  - "
                              + "\n  - ".join(diff) + "\n  choose another --output_dir (or remove the folder)")
        merged = {**old, "tasks": {**(old.get("tasks") or {}), **(identity.get("tasks") or {})}}
    else:
        merged = dict(identity)
    tmp = path.with_suffix(f".json.{os.getpid()}.tmp")  # replicas' leaders may write at once
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
