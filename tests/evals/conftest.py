import shutil
from pathlib import Path

import pytest

from evals.prompts import build_messages
from evals.registry import TASKS, get_task, load_task
from tests.evals.fake_openai import FakeOpenAI, fingerprint
from tests.evals.gold import answer, grader_reply

FIXTURE_CACHE = Path(__file__).parent / "fixtures" / "cache"


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    """A copy of the fixture cache (tests must not write into the repo)."""
    d = tmp_path / "cache"
    shutil.copytree(FIXTURE_CACHE, d)
    return d


def answer_table(task_names, cache_dir, wrong_for=lambda task, sample: False):
    table = {}
    for name in task_names:
        lt = load_task(get_task(name), cache_dir=cache_dir, offline=True)
        for s in lt.samples:
            msgs = build_messages(lt.spec, s, lt.fewshot_pool)
            table[fingerprint(msgs, s.tools)] = answer(lt.spec, s, wrong_for(name, s))
    return table


def make_server(table, **kw) -> FakeOpenAI:
    def respond(body):
        first = body["messages"][0].get("content") or ""
        reply = grader_reply(first)
        if reply is not None:
            return {"content": reply, "reasoning": "Grading."}
        return table.get(fingerprint(body["messages"], body.get("tools")))
    return FakeOpenAI(respond, **kw)
