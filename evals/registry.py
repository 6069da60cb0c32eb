"""The task registry: name -> TaskSpec, and loading a task's samples from its data tables."""
from __future__ import annotations

import dataclasses
import difflib
import importlib.util
from pathlib import Path

from evals.data.sources import DatasetUnavailable, load_rows, load_rows_traced
from evals.spec import Sample, TaskSpec
from evals.tasks import classification, coding, factuality, function_calling, health, instruction_following, maths
from evals.tasks import hle, multiple_choice
from evals.agentic import swebench, taubench

TASKS: dict[str, TaskSpec] = {}
for _module in (coding, multiple_choice, classification, factuality, maths, instruction_following, health,
                function_calling, hle, taubench, swebench):
    for _spec in _module.TASKS:
        if _spec.name in TASKS:
            raise RuntimeError(f"duplicate task name {_spec.name!r}")
        TASKS[_spec.name] = _spec


class UnknownTask(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return self.args[0]


def get_task(name: str) -> TaskSpec:
    spec = TASKS.get(name)
    if spec is None:
        close = [t for t in TASKS if name and name.lower() in t] or difflib.get_close_matches(name, TASKS, n=3)
        hint = f"; did you mean {', '.join(close[:3])}?" if close else "."
        raise UnknownTask(f"unknown task {name!r}{hint} Known tasks: {', '.join(sorted(TASKS))}")
    return spec


def check_requirements(spec: TaskSpec) -> None:
    """Raise a clear error up front when a task's grader needs a package that is not installed."""
    for module in spec.needs:
        if importlib.util.find_spec(module) is None:
            if module == "bfcl_eval":
                from evals.graders.bfcl import INSTALL  # noqa: PLC0415
                raise DatasetUnavailable(f"task {spec.name!r}: {INSTALL}")
            if module == "tau2":
                raise DatasetUnavailable(f"task {spec.name!r}: {taubench.INSTALL}")
            raise DatasetUnavailable(f"task {spec.name!r} needs the {module} package")
    if spec.runner == "swebench":
        try:
            swebench.preflight()
        except swebench.SwebenchUnavailable as e:
            raise DatasetUnavailable(f"task {spec.name!r}: {e}") from None


@dataclasses.dataclass(frozen=True)
class LoadedTask:
    spec: TaskSpec
    samples: list[Sample]
    fewshot_pool: list[Sample]
    provenance: dict = dataclasses.field(default_factory=dict)  # table -> evals.data.sources.provenance

    def identity(self) -> dict:
        """The task's part of a run's identity: its definition's version and the sha256 of its questions."""
        main = self.provenance.get("main") or {}
        return {"version": self.spec.version(), "data_sha256": main.get("sha256")}


def load_task(spec: TaskSpec, *, cache_dir: Path, offline: bool) -> LoadedTask:
    check_requirements(spec)
    tables, provenance = {}, {}
    for name, sources in spec.data.items():
        if name != "fewshot":
            tables[name], provenance[name] = load_rows_traced(f"{spec.name}:{name}" if name != "main" else spec.name,
                                                              sources, cache_dir=cache_dir, offline=offline)
    try:
        samples = spec.parser(tables)
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetUnavailable(f"task {spec.name!r}: could not parse its data: {e}") from e
    pool = samples
    if spec.strategy.kind == "few-shot" and "fewshot" in spec.data:
        rows = load_rows(f"{spec.name}:fewshot", spec.data["fewshot"], cache_dir=cache_dir, offline=offline)
        pool = spec.parser({**tables, "main": rows})
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        raise DatasetUnavailable(f"task {spec.name!r}: sample ids are not unique")
    return LoadedTask(spec, samples, pool, provenance)
