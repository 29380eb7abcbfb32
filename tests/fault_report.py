"""The fault suite (a pytest plugin, loaded by tests/conftest.py): every fault case is a test declared with

    @pytest.mark.fault("kill -9 of an ingest mid-transaction", "warehouse opens; row counts = last commit; ...")

`make chaos` runs the whole suite (`pytest tests -m fault`, long cases included) and writes the table (fault, what was
checked, outcome, seconds) to `benchmarks/results/chaos-<device>.{md,json}` (env `TRADECAST_CHAOS_REPORT`);
`make test` runs the fast cases (the ones not also marked `slow_chaos`)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import pytest

_CASES: list[dict] = []


def pytest_collection_modifyitems(config, items):
    if os.environ.get("TRADECAST_CHAOS_FULL"):
        return
    skip = pytest.mark.skip(reason="long fault case: run `make chaos`")
    for item in items:
        if item.get_closest_marker("slow_chaos"):
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("fault")
    if marker is None or report.when != "call" and not (report.when == "setup" and report.outcome != "passed"):
        return
    detail = getattr(item, "chaos_detail", "")
    _CASES.append({"test": item.nodeid, "fault": marker.args[0], "checked": marker.args[1],
                   "outcome": report.outcome, "seconds": round(report.duration, 1), "detail": detail})


@pytest.fixture
def chaos_detail(request):
    """``chaos_detail("p99 4.1 ms, 0 errors")``: a measured figure for this case's row in the report."""
    def say(text: str) -> None:
        request.node.chaos_detail = text
    return say


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("TRADECAST_CHAOS_REPORT")
    if not target or not _CASES:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    passed = sum(c["outcome"] == "passed" for c in _CASES)
    meta = {"created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
            "cpus": os.cpu_count(), "cases": len(_CASES), "passed": passed,
            "command": "make chaos"}
    path.with_suffix(".json").write_text(json.dumps({"meta": meta, "cases": _CASES}, indent=1))
    counts = ", ".join(f"{sum(c['outcome'] == o for c in _CASES)} {o}" for o in ("passed", "failed", "skipped")
                       if any(c["outcome"] == o for c in _CASES))
    lines = [f"# Fault suite (`make chaos`): {len(_CASES)} cases, {counts}",
             "", f"{meta['created']}, {meta['cpus']} CPUs ({meta['machine']}). Each row is one fault case "
             "(`pytest tests -m fault`): real processes, real files, real signals, localhost only.", "",
             "| fault | what was checked | outcome | measured | s |", "|---|---|---|---|---:|"]
    for case in _CASES:
        cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
        lines.append(f"| {cell(case['fault'])} | {cell(case['checked'])} | {case['outcome']} | "
                     f"{cell(case['detail'])} | {case['seconds']} |")
    path.with_suffix(".md").write_text("\n".join(lines) + "\n")
