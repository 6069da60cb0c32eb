"""`gptoss eval` / `python -m evals.cli`: run an eval sweep and print the table.

Examples::

    # any OpenAI-compatible server (vLLM, SGLang, Ollama, a hosted provider)
    gptoss eval --tasks=aime2025,gpqa_diamond --base_url=http://localhost:8000/v1 --model=openai/gpt-oss-120b
    # the in-process JAX engine: one flag
    gptoss eval --tasks=aime2025,gpqa_diamond --backend=local --model=/ckpt/gpt-oss-120b
    # a sweep file; flags override it
    gptoss eval --config=configs/evals/model_card.yaml --limit=20
    # the table and reports again, from the records of a run (nothing runs)
    gptoss eval --config=configs/evals/model_card.yaml --report_only

Flags are defined at module level (absl). `main(argv)` parses them if the caller has not already.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from absl import app, flags

from gptoss_jax.harmony.constants import REASONING_EFFORTS

FLAGS = flags.FLAGS

# what to run
flags.DEFINE_list("tasks", [], "Comma-separated task names (see --list_tasks).")
flags.DEFINE_list("reasoning_efforts", list(REASONING_EFFORTS), f"Reasoning efforts to sweep: {', '.join(REASONING_EFFORTS)}.")
flags.DEFINE_integer("repeats", None, "Runs per question (default: each task's own, 8 for AIME and GPQA).")
flags.DEFINE_integer("limit", None, "Only the first N questions of each task.")
flags.DEFINE_string("config", None, "Sweep file (configs/evals/*.json|yaml); flags given explicitly override it.")
flags.DEFINE_bool("list_tasks", False, "Print the task registry and exit.")
# sampling
flags.DEFINE_list("temperature", ["1.0"], "Temperatures to sweep (gpt-oss recommends 1.0).")
flags.DEFINE_list("top_p", ["1.0"], "top_p values to sweep.")
flags.DEFINE_integer("max_tokens", None, "Completion token limit per request (default: each task's, 32768 as in "
                     "OpenAI's gpt-oss eval harness; see --list_tasks).")
flags.DEFINE_integer("seed", 0, "Base seed; each sample gets a seed derived from it and its key. -1: no seed.")
# backend
flags.DEFINE_enum("backend", "endpoint", ["endpoint", "local"], "Where the model runs.")
flags.DEFINE_string("base_url", None, "OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
flags.DEFINE_string("api_key", None, "API key (default: $OPENAI_API_KEY; 'EMPTY' for local servers).")
flags.DEFINE_string("model", None, "Model name at the endpoint, or checkpoint/preset for --backend=local.")
flags.DEFINE_integer("concurrency", 8, "Requests in flight at once (endpoint).")
flags.DEFINE_integer("max_retries", 4, "Retries per request on timeouts, connection errors, 429 and 5xx.")
flags.DEFINE_float("backoff_initial_s", 1.0, "First retry delay cap (exponential backoff with full jitter).")
flags.DEFINE_float("backoff_max_s", 60.0, "Largest retry delay.")
flags.DEFINE_float("timeout_s", 600.0, "Per-request timeout in seconds.")
flags.DEFINE_enum("reasoning_effort_param", "reasoning_effort",
                  ["reasoning_effort", "reasoning", "chat_template_kwargs", "system", "none"],
                  "How the endpoint takes the reasoning effort (see evals/backends/endpoint.py).")
flags.DEFINE_multi_string("backend_arg", [], "key=value passed to the backend verbatim (repeatable).")
# grader model (SimpleQA, HealthBench)
flags.DEFINE_enum("grader_backend", "endpoint", ["endpoint", "local"], "Backend of the grader model.")
flags.DEFINE_string("grader_base_url", None, "Grader endpoint (default: --base_url).")
flags.DEFINE_string("grader_api_key", None, "Grader API key (default: --api_key).")
flags.DEFINE_string("grader_model", None, "Grader model name; required by simpleqa and healthbench.")
flags.DEFINE_enum("grader_reasoning_effort", "low", list(REASONING_EFFORTS), "Reasoning effort of the grader.")
# user simulator (Tau-Bench)
flags.DEFINE_string("user_model", None, "Model playing the user in agentic tasks (Tau-Bench).")
flags.DEFINE_string("user_base_url", None, "Endpoint of the user model (default: --base_url).")
flags.DEFINE_string("user_api_key", None, "API key of the user model's endpoint (default: --api_key).")
flags.DEFINE_integer("grade_workers", 4, "Samples graded in parallel (code runs, grader calls).")
flags.DEFINE_float("code_timeout_s", 10.0, "Wall-clock limit for running one code sample's tests.")
# tools (evals/tooluse.py)
flags.DEFINE_multi_string("tools", [], "Harmony built-in tools offered to the model, run in a loop until it "
                          "answers: 'python', 'browser' or 'python,browser'; repeat the flag to sweep tool sets "
                          "('none' = no tools), e.g. --tools=none --tools=browser.")
flags.DEFINE_string("browser_index", None, "Folder of .txt/.md/.html documents the browser tool searches offline.")
flags.DEFINE_string("search_url", None, "A SearXNG-compatible search service for the browser tool (instead of "
                    "--browser_index), e.g. http://localhost:8888.")
flags.DEFINE_float("python_timeout_s", 30.0, "Wall-clock limit of one python tool call.")
flags.DEFINE_integer("max_tool_rounds", 16, "Model turns per sample in a tool loop.")
# output, resume, replicas
flags.DEFINE_string("output_dir", None, "Run directory (default: runs/evals/<config name>-<model>-<hash of the "
                    "run's identity>, so another model or sampling never lands in the same folder).")
flags.DEFINE_bool("wait_for_lock", False, "If another sweep is running in --output_dir, wait for it instead of "
                  "refusing.")
flags.DEFINE_bool("verbose", False, "Log every HTTP request and grader-library warnings on stderr.")
flags.DEFINE_bool("resume", True, "Skip samples already recorded in --output_dir (safe after a crash).")
flags.DEFINE_bool("rerun_failed", True, "On resume, run again the samples recorded as failed.")
flags.DEFINE_integer("replica_index", None, "This data-parallel replica (default: $GPTOSS_REPLICA_INDEX or 0).")
flags.DEFINE_integer("replica_count", None, "Number of replicas (default: $GPTOSS_REPLICA_COUNT or 1).")
flags.DEFINE_bool("report_only", False, "Do not run; rebuild the table and reports from --output_dir.")
flags.DEFINE_bool("progress", True, "Show a progress bar with ETA on stderr.")
# cost
flags.DEFINE_float("price_prompt", 0.15, "USD per million prompt tokens.")
flags.DEFINE_float("price_completion", 0.60, "USD per million completion tokens.")
flags.DEFINE_float("price_cached", 0.014, "USD per million cached prompt tokens.")
flags.DEFINE_float("device_hourly_rate", 0.0, "USD per device-hour (local engine cost).")
# data
flags.DEFINE_string("cache_dir", None, "Dataset cache (default: $GPTOSS_EVALS_CACHE or ~/.cache/gptoss_jax/evals).")
flags.DEFINE_bool("offline", False, "Never download; fail clearly when a dataset is not cached.")


def _given(name: str) -> bool:
    return FLAGS[name].present > 0


def _pick(name: str, file_value, default=None):
    if _given(name) or file_value is None:
        v = FLAGS[name].value
        return default if v is None else v
    return file_value


def _floats(name: str) -> list[float]:
    from evals.config import ConfigError  # noqa: PLC0415
    try:
        return [float(v) for v in FLAGS[name].value]
    except ValueError:
        raise ConfigError(f"--{name}: expected comma-separated numbers, got {FLAGS[name].value}") from None


def _kv(pairs: list[str]) -> dict[str, str]:
    from evals.config import ConfigError  # noqa: PLC0415
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"--backend_arg={p!r}: expected key=value")
        k, v = p.split("=", 1)
        out[k.strip()] = v
    return out


def _tool_sets(values) -> tuple[tuple[str, ...], ...]:
    """--tools values (or the file's ``tools`` list) -> tool sets; each value is one set ('python,browser')."""
    sets = []
    for v in values:
        names = v if isinstance(v, (list, tuple)) else [n for n in str(v).split(",")]
        names = tuple(n.strip() for n in names if n.strip() and n.strip() != "none")
        if names not in sets:
            sets.append(names)
    return tuple(sets) or ((),)


def list_tasks() -> str:
    from evals.registry import TASKS  # noqa: PLC0415
    lines = [f"{'task':<20} {'category':<22} {'benchmark':<24} {'strategy':<18} {'grader':<12} max_tokens"]
    for n, s in TASKS.items():
        lines.append(f"{n:<20} {s.category:<22} {s.benchmark:<24} {s.strategy.label():<18} {s.grader:<12} "
                     f"{s.default_max_tokens or 'server'}")
    return "\n".join(lines)


def build(file_cfg: dict):
    """Flags + sweep file -> (SweepConfig, BackendConfig, grader BackendConfig | None, Prices, name,
    user-simulator BackendConfig | None)."""
    from evals.backends.base import BackendConfig, Sampling  # noqa: PLC0415
    from evals.config import sampling_grid  # noqa: PLC0415
    from evals.report import Prices  # noqa: PLC0415
    from evals.runner import SweepConfig, TaskOverride  # noqa: PLC0415
    from evals.tooluse import ToolConfig  # noqa: PLC0415

    tasks = tuple(_pick("tasks", file_cfg.get("tasks")) or ())
    efforts = tuple(e.strip() for e in _pick("reasoning_efforts", file_cfg.get("reasoning_efforts")))
    if _given("temperature") or _given("top_p") or _given("max_tokens") or "sampling" not in file_cfg:
        sampling = tuple(Sampling(temperature=t, top_p=p, max_tokens=FLAGS.max_tokens)
                         for t in _floats("temperature") for p in _floats("top_p"))
    else:
        sampling = sampling_grid(file_cfg["sampling"])
    seed = _pick("seed", file_cfg.get("seed"))
    tool_sets = _tool_sets(FLAGS.tools if _given("tools") else (file_cfg.get("tools") or []))
    tool_config = ToolConfig(python_timeout_s=FLAGS.python_timeout_s, browser_index=FLAGS.browser_index,
                             search_url=FLAGS.search_url, max_rounds=FLAGS.max_tool_rounds)
    overrides = {k: TaskOverride(**v) for k, v in (file_cfg.get("task_overrides") or {}).items()}
    info = _replica()
    replica_index = FLAGS.replica_index if FLAGS.replica_index is not None else (
        info.index if info else int(os.environ.get("GPTOSS_REPLICA_INDEX", 0)))
    replica_count = FLAGS.replica_count if FLAGS.replica_count is not None else (
        info.count if info else int(os.environ.get("GPTOSS_REPLICA_COUNT", 1)))
    sweep = SweepConfig(tasks=tasks, efforts=efforts, repeats=_pick("repeats", file_cfg.get("repeats")),
                        sampling=sampling, limit=_pick("limit", file_cfg.get("limit")),
                        seed=None if seed == -1 else seed, overrides=overrides, replica_index=replica_index,
                        replica_count=replica_count, timeout_s=FLAGS.timeout_s, tools=tool_sets,
                        tool_config=tool_config)
    b = dict(file_cfg.get("backend") or {})
    backend = BackendConfig(
        kind=_pick("backend", b.get("kind")), model=_pick("model", b.get("model"), ""),
        base_url=_pick("base_url", b.get("base_url")),
        api_key=FLAGS.api_key or b.get("api_key") or os.environ.get("OPENAI_API_KEY"),
        concurrency=_pick("concurrency", b.get("concurrency")), max_retries=_pick("max_retries", b.get("max_retries")),
        backoff_initial_s=FLAGS.backoff_initial_s, backoff_max_s=FLAGS.backoff_max_s, timeout_s=FLAGS.timeout_s,
        reasoning_effort_param=_pick("reasoning_effort_param", b.get("reasoning_effort_param")),
        extra={**{k: str(v) for k, v in (b.get("extra") or {}).items()}, **_kv(FLAGS.backend_arg),
               # a multi-process job: the local engine builds its mesh over its replica's devices
               **({"replicas": str(info.count)} if info else {})})
    g = dict(file_cfg.get("grader") or {})
    grader_model = _pick("grader_model", g.get("model"))
    grader = None
    if grader_model:
        grader = dataclasses.replace(
            backend, kind=_pick("grader_backend", g.get("kind")), model=grader_model,
            base_url=_pick("grader_base_url", g.get("base_url")) or backend.base_url,
            api_key=FLAGS.grader_api_key or g.get("api_key") or backend.api_key, reasoning_effort_param="reasoning_effort")
    user = None
    if FLAGS.user_model:
        user = dataclasses.replace(backend, kind="endpoint", model=FLAGS.user_model,
                                   base_url=FLAGS.user_base_url or backend.base_url,
                                   api_key=FLAGS.user_api_key or backend.api_key,
                                   reasoning_effort_param="reasoning_effort", extra={})
    p = dict(file_cfg.get("prices") or {})
    prices = Prices(prompt=_pick("price_prompt", p.get("prompt")), completion=_pick("price_completion",
                                                                                     p.get("completion")),
                    cached=_pick("price_cached", p.get("cached")),
                    device_hour=_pick("device_hourly_rate", p.get("device_hour")))
    name = file_cfg.get("name") or (Path(FLAGS.config).stem if FLAGS.config else "sweep")
    return sweep, backend, grader, prices, name, user


def _replica():
    """This process's replica in a multi-process job (gptoss_jax.distributed), or None when running alone."""
    from gptoss_jax import distributed  # noqa: PLC0415

    if not distributed.is_initialized():
        return None
    replicas = FLAGS["replicas"].value if "replicas" in FLAGS else 1
    return distributed.replica_info(replicas)


def _check_replica_plan(info):
    """All processes of a replica must run the same samples in lockstep (one model spans them)."""
    from evals.runner import SweepError  # noqa: PLC0415
    from gptoss_jax import distributed  # noqa: PLC0415

    def check(keys):
        plans = distributed.allgather_json([info.index, len(keys), keys[:1] + keys[-1:]], what="eval plan")
        mine = [p for pid, p in enumerate(plans) if pid in info.process_ids]
        if any(p != mine[0] for p in mine):
            counts = {pid: plans[pid][1] for pid in info.process_ids}
            raise SweepError(f"the processes of replica {info.index} disagree on what is left to run ({counts} "
                             "samples): their --output_dir must be storage they all see (a shared filesystem)")
    return check


def write_reports(out_dir: Path, prices, task_order, meta: dict) -> str:
    from evals import html_report, records, report  # noqa: PLC0415
    skipped: list = []
    recs = records.load_records(records.record_files(out_dir), skipped)
    if skipped:
        path, line, why = skipped[0]
        print(f"gptoss eval: skipped {len(skipped)} unreadable record line(s) (first: {path}:{line}: {why})",
              file=sys.stderr)
        meta = {**meta, "skipped_records": len(skipped)}
    rows = report.summarize(recs, prices, task_order)
    (out_dir / "summary.json").write_text(report.to_json(rows, meta), encoding="utf-8")
    (out_dir / "summary.md").write_text(report.to_markdown(rows), encoding="utf-8")
    (out_dir / "report.html").write_text(html_report.render(rows, list(recs.values()), meta, prices),
                                         encoding="utf-8")
    return report.to_text(rows) + "\n" + report.cost_note(prices)


def run(argv=None) -> int:
    from evals.backends import BackendFatalError, make_backend  # noqa: PLC0415
    from evals.config import ConfigError, load_file  # noqa: PLC0415
    from evals.data import DatasetUnavailable, default_cache_dir  # noqa: PLC0415
    from evals.graders import GradeContext  # noqa: PLC0415
    from evals.registry import UnknownTask  # noqa: PLC0415
    from evals.runner import SweepError, run_sweep, summarize_outcome  # noqa: PLC0415
    from evals.run_folder import FolderError, default_output_dir, model_identity as model_identity_of  # noqa
    from evals.logs import quiet_logs  # noqa: PLC0415
    from evals import records  # noqa: PLC0415

    if FLAGS.list_tasks:
        print(list_tasks())
        return 0
    try:
        file_cfg = load_file(FLAGS.config) if FLAGS.config else {}
        sweep, bcfg, gcfg, prices, name, ucfg = build(file_cfg)
        model_identity = model_identity_of(bcfg)
        out_dir = Path(FLAGS.output_dir) if FLAGS.output_dir else default_output_dir(name, {
            **model_identity, "sampling": [sp.to_dict() for sp in sweep.sampling], "seed": sweep.seed,
            "tools": sorted(list(t) for t in sweep.tools)})
        quiet_logs(FLAGS.verbose)
        meta = {"name": name, "backend": bcfg.describe(), "efforts": list(sweep.efforts),
                "tools": ["+".join(t) or "none" for t in sweep.tools], "output_dir": str(out_dir),
                "tasks": list(sweep.tasks), "prices_per_million": [prices.prompt, prices.completion, prices.cached],
                "device_hourly_rate": prices.device_hour, "generated_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        failed = 0
        if not FLAGS.report_only:
            sweep.validate()
            if not FLAGS.resume and records.record_files(out_dir):
                raise SweepError(f"{out_dir} already holds records; pass --resume to continue that run or choose "
                                 "another --output_dir")
            backend = make_backend(bcfg)
            grader = make_backend(gcfg) if gcfg else None
            user = make_backend(ucfg) if ucfg else None
            ctx = GradeContext(grader_backend=grader, user_backend=user, code_timeout_s=FLAGS.code_timeout_s,
                               grader_reasoning_effort=FLAGS.grader_reasoning_effort)
            cache_dir = Path(FLAGS.cache_dir) if FLAGS.cache_dir else default_cache_dir()
            info = _replica()
            # in a replica of several processes only its leader keeps records; the others run in lockstep
            scratch = (out_dir / f".process-{os.getpid()}.jsonl"
                       if info is not None and not info.is_leader else None)
            try:
                outcome = run_sweep(sweep, backend, out_dir, cache_dir=cache_dir, offline=FLAGS.offline,
                                    grade_ctx=ctx, rerun_failed=FLAGS.rerun_failed, grade_workers=FLAGS.grade_workers,
                                    progress=FLAGS.progress, log=lambda m: print(m, file=sys.stderr),
                                    records_path=scratch, model_identity=model_identity,
                                    guard=info is None or info.is_leader, wait_for_lock=FLAGS.wait_for_lock,
                                    check_plan=_check_replica_plan(info) if info is not None else None)
            finally:
                backend.close()
                for other in (grader, user):
                    if other is not None:
                        other.close()
            print(summarize_outcome(outcome), file=sys.stderr)
            failed = outcome.failed
            if info is not None:  # every replica's records reach process 0, which writes the one report
                from gptoss_jax import distributed  # noqa: PLC0415

                if scratch is not None:
                    scratch.unlink(missing_ok=True)
                distributed.barrier("eval sweep done")
                mine = [outcome.records_path.name] if info.is_leader and outcome.records_path.exists() else []
                distributed.collect_files(str(out_dir), mine)
                if not distributed.is_main():
                    return 0
        elif not records.record_files(out_dir):
            raise SweepError(f"--report_only: no records in {out_dir}")
        print(write_reports(out_dir, prices, sweep.tasks, meta))
        print(f"\nreports: {out_dir / 'summary.md'}, {out_dir / 'summary.json'}, {out_dir / 'report.html'}",
              file=sys.stderr)
        if failed:  # scripts must not take a sweep with holes for a finished one
            print(f"gptoss eval: {failed} samples failed in this run (their errors are in the records); the same "
                  "command runs them again", file=sys.stderr)
            return 1
        return 0
    except (ConfigError, SweepError, UnknownTask, DatasetUnavailable, BackendFatalError, FolderError) as e:
        print(f"gptoss eval: error: {e}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    """Entry point for `gptoss eval` and `python -m evals.cli`."""
    if not FLAGS.is_parsed():
        FLAGS(list(argv) if argv is not None else sys.argv)
    return run(argv)


def _absl_main(argv):
    sys.exit(run(argv))


if __name__ == "__main__":
    app.run(_absl_main)
