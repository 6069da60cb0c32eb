"""Sweeps: tasks x reasoning efforts x sampling points x repeats, resumable, split across replicas.

Every work item has a key ``task|effort|sampling[+tools=...]|sample_id|repeat``. Before running, the records
already in the output directory are read and every key with a finished record (status ``ok``; ``failed`` too unless
``rerun_failed``) is skipped, so rerunning the same command after a crash (even ``kill -9``) neither repeats nor
loses a finished sample. With ``replica_count`` N > 1, replica i runs the keys whose sha256 is i mod N and writes its
own records file; the report merges all files in the directory.

The folder is guarded (evals/run_folder.py): a sweep holds an advisory lock on it while it runs, and a resume whose
identity (model, backend, sampling, seed, tools, task versions) differs from the folder's refuses.

Flow: the backend's ``complete_many`` streams results as they finish; each result is graded on a thread pool
(graders may run code or call a grader model) and its record is appended by the main thread, one fsynced line each.
"""
from __future__ import annotations

import dataclasses
import hashlib
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

from evals import records as rec_io
from evals.agentic.episodes import complete_episodes, episode_workers
from evals.backends.base import REASONING_EFFORTS, Backend, Request, Result, Sampling
from evals.graders import MODEL_GRADED, GradeContext, grade
from evals.prompts import build_messages
from evals.registry import LoadedTask, get_task, load_task
from evals.run_folder import FolderLock, check_identity, identity_of, run_identity, short_hash
from evals.spec import Sample, TaskSpec
from evals.tooluse import ToolConfig, ToolSetupError, check_tools


class SweepError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class TaskOverride:
    repeats: int | None = None
    limit: int | None = None
    max_tokens: int | None = None


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    tasks: tuple[str, ...]
    efforts: tuple[str, ...] = REASONING_EFFORTS
    repeats: int | None = None  # None: each task's default (8 for AIME and GPQA, as OpenAI runs them)
    sampling: tuple[Sampling, ...] = (Sampling(),)
    limit: int | None = None
    seed: int | None = 0
    overrides: Mapping[str, TaskOverride] = dataclasses.field(default_factory=dict)
    replica_index: int = 0
    replica_count: int = 1
    timeout_s: float | None = None
    tools: tuple[tuple[str, ...], ...] = ((),)  # tool sets to sweep; () = no tools (evals/tooluse.py)
    tool_config: ToolConfig = ToolConfig()

    def validate(self) -> None:
        if not self.tasks:
            raise SweepError("no tasks given: pass --tasks (comma-separated) or a config file with 'tasks'")
        for t in self.tasks:
            get_task(t)
        bad = [e for e in self.efforts if e not in REASONING_EFFORTS]
        if bad or not self.efforts:
            raise SweepError(f"reasoning efforts {bad or '[]'} invalid; expected a non-empty subset of "
                             f"{REASONING_EFFORTS}")
        if self.repeats is not None and self.repeats < 1:
            raise SweepError(f"repeats must be >= 1, got {self.repeats}")
        if self.limit is not None and self.limit < 1:
            raise SweepError(f"limit must be >= 1, got {self.limit}")
        if not (0 <= self.replica_index < self.replica_count):
            raise SweepError(f"replica index {self.replica_index} is not in [0, {self.replica_count})")
        unknown = set(self.overrides) - set(self.tasks)
        if unknown:
            raise SweepError(f"task_overrides name tasks not in the sweep: {sorted(unknown)}")
        if not self.sampling:
            raise SweepError("no sampling points")
        if not self.tools:
            raise SweepError("no tool sets (use ((),) for none)")
        for ts in self.tools:
            try:
                check_tools(ts, self.tool_config)
            except ToolSetupError as e:
                raise SweepError(str(e)) from None
        for sp in self.sampling:  # refused here, before any request: a backend would fail (or fill) every one
            if sp.temperature is not None and not sp.temperature >= 0:
                raise SweepError(f"temperature must be >= 0 (0 = greedy), got {sp.temperature}")
            if sp.top_p is not None and not 0 < sp.top_p <= 1:
                raise SweepError(f"top_p must be in (0, 1], got {sp.top_p}")
            if sp.max_tokens is not None and sp.max_tokens < 1:
                raise SweepError(f"max_tokens must be >= 1, got {sp.max_tokens}")
        for name, ov in self.overrides.items():
            for field in ("repeats", "limit", "max_tokens"):
                value = getattr(ov, field)
                if value is not None and value < 1:
                    raise SweepError(f"task_overrides {name}: {field} must be >= 1, got {value}")


@dataclasses.dataclass(frozen=True)
class WorkItem:
    key: str
    spec: TaskSpec
    sample: Sample
    effort: str
    sampling: Sampling
    repeat: int
    messages: tuple[dict[str, Any], ...]
    tools: tuple[str, ...] = ()
    tool_config: ToolConfig | None = None

    def request(self, timeout_s: float | None) -> Request:
        return Request(id=self.key, messages=self.messages, tools=self.sample.tools, reasoning_effort=self.effort,
                       sampling=self.sampling, timeout_s=timeout_s, builtin_tools=self.tools,
                       tool_config=self.tool_config,
                       metadata={"task": self.spec.name, "sample_id": self.sample.id,
                                 **({"runner": self.spec.runner, "domain": self.sample.meta.get("domain"),
                                     "episode": self.sample.meta.get("task")} if self.spec.runner else {})})


def work_key(task: str, effort: str, sampling: Sampling, sample_id: str, repeat: int,
             tools: Sequence[str] = ()) -> str:
    point = sampling.key() + (f"+tools={'+'.join(tools)}" if tools else "")
    return f"{task}|{effort}|{point}|{sample_id}|{repeat}"


def _hash_int(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def replica_of(key: str, count: int) -> int:
    return _hash_int(key) % count


def plan(config: SweepConfig, loaded: Mapping[str, LoadedTask]) -> list[WorkItem]:
    """All work items of this replica, in a deterministic order (task, effort, sampling, sample, repeat)."""
    items = []
    for name in config.tasks:
        lt = loaded[name]
        spec = lt.spec
        ov = config.overrides.get(name, TaskOverride())
        repeats = ov.repeats or config.repeats or spec.default_repeats
        limit = ov.limit or config.limit
        samples = lt.samples[:limit] if limit else lt.samples
        # a task whose prompt varies per repeat (GPQA's option order) gets one variant per (sample, repeat)
        variants = {(s.id, r): (spec.vary(s, r) if spec.vary else s) for s in samples for r in range(repeats)}
        messages: dict[tuple[str, int], tuple] = {}
        for (sid, r), v in variants.items():
            messages[(sid, r)] = (messages[(sid, 0)] if spec.vary is None and r > 0 else
                                  tuple(build_messages(spec, v, lt.fewshot_pool)))
        for effort in config.efforts:
            for base in config.sampling:
                max_tokens = ov.max_tokens or base.max_tokens or spec.default_max_tokens
                for tools in config.tools:
                    for s in samples:
                        for r in range(repeats):
                            sampling = dataclasses.replace(base, max_tokens=max_tokens)
                            key = work_key(name, effort, sampling, s.id, r, tools)
                            if (config.replica_count > 1
                                    and replica_of(key, config.replica_count) != config.replica_index):
                                continue
                            if config.seed is not None:
                                sampling = dataclasses.replace(sampling,
                                                               seed=(config.seed + _hash_int(key)) % (2 ** 31))
                            items.append(WorkItem(key, spec, variants[(s.id, r)], effort, sampling, r,
                                                  messages[(s.id, r)], tuple(tools),
                                                  config.tool_config if tools else None))
    return items


def make_record(item: WorkItem, result: Result, grade_obj, backend_info: Mapping[str, Any],
                replica: tuple[int, int], provenance: Mapping[str, Any] | None = None,
                run_id: str | None = None) -> dict[str, Any]:
    failed_run = not result.ok
    failed = failed_run or grade_obj is None or grade_obj.error is not None
    if failed_run:
        error = f"run: {result.error}"
    elif grade_obj is not None and grade_obj.error is not None:
        error = f"grade: {grade_obj.error}"
    else:
        error = None
    started = result.started_at if result.started_at is not None else time.time() - result.latency_s
    return {
        "v": rec_io.RECORD_VERSION,
        "key": item.key,
        "task": item.spec.name,
        "benchmark": item.spec.benchmark,
        "category": item.spec.category,
        "strategy": item.spec.strategy.label(),
        "reasoning_effort": item.effort,
        "sampling_key": item.sampling.key(),
        "sampling": item.sampling.to_dict(),
        "sample_id": item.sample.id,
        "repeat": item.repeat,
        "status": "failed" if failed else "ok",
        "error": error,
        "prompt": list(item.messages),
        "tools": [t["function"]["name"] for t in item.sample.tools] if item.sample.tools else [],
        "builtin_tools": list(item.tools),
        "output": {"content": result.content, "reasoning": result.reasoning,
                   "tool_calls": [tc.to_dict() for tc in result.tool_calls], "finish_reason": result.finish_reason,
                   "transcript": _jsonable(list(result.transcript)), "tool_seconds": result.tool_seconds,
                   "rounds": result.rounds},
        "target": _record_target(item),
        "parsed": None if grade_obj is None else _jsonable(grade_obj.parsed),
        "score": None if failed else grade_obj.score,
        "grade_details": {} if grade_obj is None else _jsonable(grade_obj.details),
        "usage": result.usage_dict(),
        "grader_usage": {} if grade_obj is None else dict(grade_obj.grader_usage),
        "latency_s": result.latency_s,
        "device_seconds": result.device_seconds,
        "attempts": result.attempts,
        "started_at": started,
        "ended_at": started + result.latency_s,
        "backend": dict(backend_info),
        "replica": list(replica),
        "data": dict(provenance or {}),
        "run_id": run_id,
    }


def _record_target(item: WorkItem) -> Any:
    t = item.sample.target
    if item.spec.grader == "humaneval":  # the test code is in the dataset; keep records small
        return {"entry_point": t.get("entry_point")}
    return _jsonable(t)


def _jsonable(x: Any) -> Any:
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return str(x)


@dataclasses.dataclass
class SweepOutcome:
    planned: int
    skipped: int
    ran: int
    failed: int
    records_path: Path


def _progress(total: int, enabled: bool):
    """Samples done of the sweep with an ETA (a redrawn line on a terminal, a plain line every 10 s elsewhere)."""
    from gptoss_jax.progress import Progress  # noqa: PLC0415
    return Progress(total, "eval", unit=" samples", enabled=enabled)


def _progress_note(tokens: int, failed: int, bar) -> str:
    rate = tokens / max(time.monotonic() - bar.t0, 1e-9)
    return f"{tokens:,} tokens ({rate:,.1f}/s)" + (f", {failed} failed" if failed else "")


def run_sweep(config: SweepConfig, backend: Backend, out_dir: Path, *, cache_dir: Path, offline: bool = False,
              grade_ctx: GradeContext | None = None, rerun_failed: bool = True, grade_workers: int = 4,
              progress: bool = True, log=print, records_path: Path | None = None,
              check_plan=None, model_identity: Mapping[str, Any] | None = None, guard: bool = True,
              wait_for_lock: bool = False) -> SweepOutcome:
    """Run what is left of the sweep. records_path: where this process appends records (default: its replica's
    file in out_dir). check_plan(keys): called with the keys about to run, before anything runs (multi-process
    replicas check there that all their processes agree). model_identity: what identifies the model (default:
    backend.describe()); guard: hold the folder's lock and check its identity (False only for the followers of a
    multi-process replica, whose leader does it); wait_for_lock: wait for another sweep on the folder to finish
    instead of refusing."""
    config.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lock = FolderLock(out_dir, replica=(config.replica_index, config.replica_count), wait=wait_for_lock, log=log)
    if guard:
        lock.acquire()
    try:
        return _run_locked(config, backend, out_dir, cache_dir=cache_dir, offline=offline, grade_ctx=grade_ctx,
                           rerun_failed=rerun_failed, grade_workers=grade_workers, progress=progress, log=log,
                           records_path=records_path, check_plan=check_plan, guard=guard,
                           model_identity=model_identity if model_identity is not None else identity_of(backend))
    finally:
        lock.release()


def _run_locked(config: SweepConfig, backend: Backend, out_dir: Path, *, cache_dir, offline, grade_ctx, rerun_failed,
                grade_workers, progress, log, records_path, check_plan, guard, model_identity) -> SweepOutcome:
    grade_ctx = grade_ctx or GradeContext()
    loaded = {name: load_task(get_task(name), cache_dir=cache_dir, offline=offline) for name in config.tasks}
    identity = run_identity(config, model_identity, loaded)
    existing = rec_io.load_records(rec_io.record_files(out_dir))
    if guard:
        check_identity(out_dir, identity, has_records=bool(existing),
                       recorded_backend=next((r.get("backend") for r in existing.values()), None))
    run_id = short_hash({k: v for k, v in identity.items() if k != "tasks"})
    for name in config.tasks:
        if get_task(name).grader in MODEL_GRADED and grade_ctx.grader_backend is None:
            raise SweepError(f"task {name!r} is graded by a grader model: pass --grader_model (with "
                             "--grader_base_url for an endpoint) or --grader_backend=local")
        if get_task(name).runner == "taubench" and grade_ctx.user_backend is None:
            raise SweepError(f"task {name!r} needs a user simulator: pass --user_model (with --user_base_url "
                             "for another endpoint than --base_url)")
    items = plan(config, loaded)
    path = records_path or rec_io.records_path(out_dir, config.replica_index, config.replica_count)
    done = {k for k, r in existing.items() if r.get("status") == "ok" or (r.get("status") == "failed" and
                                                                           not rerun_failed)}
    todo = [it for it in items if it.key not in done]
    skipped = len(items) - len(todo)
    if skipped:
        log(f"resume: {skipped} of {len(items)} samples already recorded in {out_dir}; running {len(todo)}")
    outcome = SweepOutcome(planned=len(items), skipped=skipped, ran=0, failed=0, records_path=path)
    if check_plan is not None:
        check_plan([it.key for it in todo])
    if not todo:
        return outcome
    by_key = {it.key: it for it in todo}
    backend_info = backend.describe()
    provenance = {name: {**lt.provenance.get("main", {}), "subset": lt.spec.benchmark, "rows": len(lt.samples),
                         "task_version": lt.spec.version()} for name, lt in loaded.items()}
    replica = (config.replica_index, config.replica_count)
    results: "queue.Queue[tuple[str, Any]]" = queue.Queue()
    stop = threading.Event()

    def produce() -> None:
        episodes = [it.request(config.timeout_s) for it in todo if it.spec.runner]
        plain = (it.request(config.timeout_s) for it in todo if not it.spec.runner)

        def both():  # agentic tasks first (evals/agentic/), then the plain requests
            if episodes:
                yield from complete_episodes(backend, grade_ctx.user_backend, episodes, episode_workers(backend))
            yield from backend.complete_many(plain)
        gen = both()
        try:
            with ThreadPoolExecutor(max_workers=grade_workers, thread_name_prefix="grade") as pool:
                for rid, result in gen:
                    if stop.is_set():
                        break
                    item = by_key[rid]

                    def job(item=item, result=result):
                        try:
                            g = grade(item.spec, item.sample, result, grade_ctx) if result.ok else None
                            results.put(("record", make_record(item, result, g, backend_info, replica,
                                                               provenance[item.spec.name], run_id)))
                        except BaseException as e:  # noqa: BLE001
                            results.put(("error", e))
                    pool.submit(job)
        except BaseException as e:  # noqa: BLE001 - forwarded to the main thread
            results.put(("fatal", e))
        finally:
            gen.close()
            results.put(("end", None))

    bar = _progress(len(todo), progress)
    producer = threading.Thread(target=produce, name="sweep-producer", daemon=True)
    tokens = 0
    with rec_io.RecordWriter(path) as writer:
        producer.start()
        try:
            while True:
                kind, payload = results.get()
                if kind == "record":
                    writer.write(payload)
                    outcome.ran += 1
                    if payload["status"] == "failed":
                        outcome.failed += 1
                        if outcome.failed <= 5:
                            log(f"sample failed ({payload['task']} {payload['sample_id']}): {payload['error']}")
                    tokens += (payload.get("usage") or {}).get("completion_tokens") or 0
                    bar.update(1, note=_progress_note(tokens, outcome.failed, bar))
                elif kind == "error":
                    raise payload
                elif kind == "fatal":
                    raise payload
                elif kind == "end":
                    break
        finally:
            stop.set()
            bar.close()
    producer.join(timeout=5)
    return outcome


def summarize_outcome(o: SweepOutcome) -> str:
    return (f"{o.ran} samples ran ({o.failed} failed), {o.skipped} already done, {o.planned} planned; "
            f"records: {o.records_path}")

