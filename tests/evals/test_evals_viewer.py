"""The HTML report and its transcript viewer: page defects fixed (backend shown as text, legends beside the points,
intervals that do not collapse), and the viewer driven in a real headless Chromium (Debian's `chromium` and
`chromium-driver`, installed by `make setup`): load, filter, open a sample, screenshot under
tests/evals/artifacts/."""
import re
import shutil
from pathlib import Path

import pytest

from evals import html_report
from evals.backends.scripted import ScriptedBackend
from evals.records import load_records, record_files
from evals.report import Prices, summarize
from evals.runner import SweepConfig, run_sweep
from evals.tooluse import ToolConfig

ARTIFACTS = Path(__file__).parent / "artifacts"


def _responder(req):
    """Python tool on AIME (right on the first question, wrong on the second); MMLU: A always."""
    if any("boxed" in (m.get("content") or "") for m in req.messages):
        tool = [m for m in req.messages if m["role"] == "tool"]
        if not tool:
            return {"content": "", "reasoning": "Use python.",
                    "tool_calls": [{"name": "python", "arguments": '{"code": "print(6 * 7)"}', "id": "c1"}]}
        return {"content": f"\\boxed{{{tool[-1]['content'].strip()}}}", "reasoning": "The tool says 42."}
    return {"content": "Answer: A", "reasoning": "Thinking about </script> tags & <b>markup</b>."}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from tests.evals.conftest import FIXTURE_CACHE
    cache = tmp_path_factory.mktemp("cache")
    shutil.copytree(FIXTURE_CACHE, cache, dirs_exist_ok=True)
    out = tmp_path_factory.mktemp("run")
    cfg = SweepConfig(tasks=("mmlu", "aime2025"), efforts=("low", "high"), repeats=2, tools=((), ("python",)),
                      tool_config=ToolConfig(python_timeout_s=20))
    run_sweep(cfg, ScriptedBackend(_responder), out, cache_dir=cache, offline=True, progress=False,
              log=lambda m: None)
    recs = load_records(record_files(out))
    rows = summarize(recs, Prices(), ["mmlu", "aime2025"])
    meta = {"name": "viewer-test", "backend": {"kind": "endpoint", "model": "m", "base_url": "http://h/v1"}}
    page = out / "report.html"
    page.write_text(html_report.render(rows, list(recs.values()), meta, Prices()), encoding="utf-8")
    return page, rows, recs


def test_page_defects_fixed(report):
    page, rows, _ = report
    text = page.read_text()
    assert "{'kind'" not in text and "kind: endpoint, model: m, base_url: http://h/v1" in text
    # legends live right of the plot area: no legend mark inside it, no point outside it
    for svg in re.findall(r"<svg.*?</svg>", text, re.S):
        for x in re.findall(r'<g class="legend"><rect x="([\d.]+)"', svg):
            assert float(x) > html_report.X1
        for cx in re.findall(r'<circle cx="([\d.]+)"', svg):
            assert html_report.PAD <= float(cx) <= html_report.X1
    constant = [r for r in rows if r["accuracy"] in (0.0, 1.0)]  # every repeat of every question alike
    assert constant and all(r["ci_high"] - r["ci_low"] > 0.3 for r in constant)  # no [0, 0] or [100, 100]
    # one self-contained file: nothing is loaded from elsewhere
    assert not re.search(r"<script[^>]+src=|<link|<img|url\(|fetch\(|XMLHttpRequest|import\(", text)
    assert "<\\/script>" in text  # a record's text cannot end the embedded JSON


def _chromium():
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("headless Chromium absent: install Debian's chromium and chromium-driver (make setup does)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium absent: pip install -e '.[test]'")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service(executable_path=driver), options=opts)


def test_viewer_in_headless_chromium(report):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
    page, rows, recs = report
    browser = _chromium()
    try:
        browser.get(page.as_uri())
        items = lambda: browser.find_elements(By.CSS_SELECTOR, "#list .item")  # noqa: E731
        assert len(items()) == len(recs) == 2 * 2 * 2 * (3 + 2)
        assert browser.find_element(By.ID, "count").text == f"{len(recs)} of {len(recs)} samples"
        # filter: the AIME samples with tools that were wrong
        Select(browser.find_element(By.ID, "f-task")).select_by_value("aime2025")
        Select(browser.find_element(By.ID, "f-tools")).select_by_value("python")
        Select(browser.find_element(By.ID, "f-outcome")).select_by_value("wrong")
        wrong = [r for r in recs.values() if r["task"] == "aime2025" and r["builtin_tools"] and r["score"] == 0]
        assert wrong and len(items()) == len(wrong)
        assert "outcome=wrong" in browser.current_url
        # open a sample: its transcript, tool output, answer, extracted answer and grade are shown
        items()[0].click()
        detail = browser.find_element(By.ID, "detail").text
        assert "AIME 2025" in browser.find_element(By.ID, "sample-title").text
        assert "print(6 * 7)" in detail and "42" in browser.find_element(By.CSS_SELECTOR, ".tool-output").text
        assert browser.find_element(By.ID, "answer").text == "\\boxed{42}"
        assert browser.find_element(By.ID, "parsed").text == "42" and "wrong" in detail
        assert "Chain of thought" in detail and "s in tools" in detail and "prompt" in detail
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "viewer.png"))
        # a table cell's link opens the viewer on exactly that row's samples
        mmlu_high = next(r for r in rows if r["task"] == "mmlu" and r["reasoning_effort"] == "high"
                         and not r["tools"])
        browser.get(page.as_uri())
        browser.find_element(By.CSS_SELECTOR, f"#summary a[href*='task=mmlu'][href*='effort=high']"
                                              f"[href*='tools=none']").click()
        assert len(items()) == mmlu_high["executions"]
        assert Select(browser.find_element(By.ID, "f-effort")).first_selected_option.text == "high"
        items()[0].click()
        assert "</script> tags & <b>markup</b>" in browser.find_element(By.ID, "reasoning").text
        browser.save_screenshot(str(ARTIFACTS / "viewer-from-table.png"))
    finally:
        browser.quit()
    assert (ARTIFACTS / "viewer.png").stat().st_size > 10_000
