"""Sweep files (configs/evals/*.json | *.yaml): the same settings as the flags, as data.

Keys (all optional except ``tasks``)::

    name: model-card                  # output goes to runs/evals/<name> unless --output_dir
    tasks: [aime2025, gpqa_diamond]
    reasoning_efforts: [low, medium, high]
    repeats: 1                        # omit: each task's default (8 for AIME and GPQA Diamond)
    limit: 50                         # first N questions of each task
    seed: 0
    sampling:                         # a grid: every combination is a sweep point
      temperature: [1.0]
      top_p: [1.0]
      max_tokens: 32768
    tools: [none, "python"]           # tool sets to sweep (evals/tooluse.py); default: no tools
    task_overrides:
      aime2025: {repeats: 8, max_tokens: 65536}
    prices: {prompt: 0.15, completion: 0.60, cached: 0.014, device_hour: 2.5}
    backend: {kind: endpoint, base_url: "http://localhost:8000/v1", model: openai/gpt-oss-120b, concurrency: 32}
    grader: {kind: endpoint, base_url: ..., model: ...}

A flag given on the command line overrides the file.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Mapping

from evals.backends.base import Sampling

KEYS = {"name", "tasks", "reasoning_efforts", "repeats", "limit", "seed", "sampling", "task_overrides", "prices",
        "backend", "grader", "tools"}
SAMPLING_KEYS = {"temperature", "top_p", "max_tokens", "top_k"}
OVERRIDE_KEYS = {"repeats", "limit", "max_tokens"}


class ConfigError(ValueError):
    pass


def load_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"sweep config {p} does not exist")
    text = p.read_text(encoding="utf-8")
    if p.suffix in (".yaml", ".yml"):
        try:
            import yaml  # noqa: PLC0415
        except ImportError as e:
            raise ConfigError(f"{p}: YAML sweep files need pyyaml (pip install -e '.[evals]'), or use JSON") from e
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML: {e}") from e
    elif p.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{p}: invalid JSON: {e}") from e
    else:
        raise ConfigError(f"{p}: sweep files must end in .json, .yaml or .yml")
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(data).__name__}")
    unknown = set(data) - KEYS
    if unknown:
        raise ConfigError(f"{p}: unknown key(s) {sorted(unknown)}; expected some of {sorted(KEYS)}")
    if "tasks" in data and isinstance(data["tasks"], str):
        data["tasks"] = [t.strip() for t in data["tasks"].split(",") if t.strip()]
    for name, ov in (data.get("task_overrides") or {}).items():
        bad = set(ov) - OVERRIDE_KEYS
        if bad:
            raise ConfigError(f"{p}: task_overrides.{name} has unknown key(s) {sorted(bad)}; expected "
                              f"{sorted(OVERRIDE_KEYS)}")
    return data


def sampling_grid(spec: Mapping[str, Any] | list | None) -> tuple[Sampling, ...]:
    """``{"temperature": [0.6, 1.0], "top_p": [1.0], "max_tokens": 4096}`` -> the cartesian product; a list of
    dicts is taken as explicit points."""
    if spec is None:
        return (Sampling(),)
    if isinstance(spec, list):
        return tuple(sampling_grid(s)[0] if isinstance(s, dict) else _bad(s) for s in spec)
    unknown = set(spec) - SAMPLING_KEYS
    if unknown:
        raise ConfigError(f"sampling has unknown key(s) {sorted(unknown)}; expected {sorted(SAMPLING_KEYS)}")
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in spec.items()}
    keys = sorted(axes)
    points = []
    for combo in itertools.product(*(axes[k] for k in keys)):
        kw = dict(zip(keys, combo))
        points.append(Sampling(temperature=kw.get("temperature", 1.0), top_p=kw.get("top_p", 1.0),
                               max_tokens=kw.get("max_tokens"), top_k=kw.get("top_k")))
    return tuple(points)


def _bad(s: Any):
    raise ConfigError(f"sampling list entries must be mappings, got {s!r}")
