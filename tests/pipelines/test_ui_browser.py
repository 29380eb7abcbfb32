"""The Dagster UI in a real browser: `dagster dev` on a free port with a temporary TRADECAST_HOME, headless Debian
Chromium driven by Playwright; one partition (`fx`) of `market_bars` is launched by clicks and its row count is
read back from the asset page.

Needs /usr/bin/chromium (`make test` installs Debian's `chromium`; Playwright's own browser download is not used).
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.conftest import ROOT

DAGSTER = ROOT / ".venv" / "bin" / "dagster"
CHROMIUM = Path("/usr/bin/chromium")
# --disable-background-networking & co: without them chromium stalls on a closed network
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READY_TIMEOUT_S = 120   # webserver up and the code location loaded
RUN_TIMEOUT_S = 150     # queued (pool duckdb_writer, limit 1) + the fx partition (~15-20 s) + its 5 checks
UI_TIMEOUT_MS = 60_000  # any one UI step; the first page load is slow on 2 cores
ASSET = "market_bars"
AUTOMATION = ("crypto_retrain_schedule", "equities_retrain_schedule", "fx_retrain_schedule",
              "weekly_benchmark_schedule", "incoming_files_sensor", "drift_sensor", "automation_condition_sensor",
              "freshness_checks_sensor", "run_failure_sensor")
PARTITION = "fx"
LOCATION_QUERY = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, chars: int = 6000) -> str:
    text = path.read_text(errors="replace") if path.exists() else "(no server log)"
    return f"\n--- dagster dev output (tail of {path}) ---\n{text[-chars:]}"


def _reset_signals():
    """In the child: default dispositions. An ignored SIGINT/SIGTERM is inherited through exec, and `dagster dev`
    maps SIGTERM onto SIGINT's handler, so an ignoring parent (CI runners, tool shells) would make it unkillable."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)


def _group_alive(pgid: int) -> list[int]:
    """Processes (not zombies) still in the process group."""
    import psutil

    alive = []
    for p in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(p.pid)
        except (ProcessLookupError, psutil.Error):
            pass
    return alive


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the whole process group (webserver, daemon, code servers, run workers), wait, then SIGKILL."""
    pgid = proc.pid  # start_new_session=True: the leader's pid is the group id
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=20)
    with suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # stragglers too, even when the leader exited cleanly
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _group_alive(pgid), f"dagster processes left behind: {_group_alive(pgid)}"


def _graphql(base: str, query: str) -> dict:
    req = urllib.request.Request(f"{base}/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.load(resp)


def _wait_ready(base: str, proc: subprocess.Popen, log: Path) -> None:
    """Until /server_info answers and the code location is LOADED (a load error fails at once)."""
    deadline, last = time.monotonic() + READY_TIMEOUT_S, "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"dagster dev exited with {proc.returncode} before it was ready" + _tail(log))
        try:
            with urllib.request.urlopen(f"{base}/server_info", timeout=5) as resp:
                last = f"server_info {resp.status}"
            entries = _graphql(base, LOCATION_QUERY)["data"]["workspaceOrError"]["locationEntries"]
            last = repr(entries)
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if errors:
                    pytest.fail("the code location failed to load in dagster dev:\n"
                                + "\n".join(e["locationOrLoadError"]["message"] for e in errors) + _tail(log))
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, KeyError, TypeError, ValueError) as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(1)
    pytest.fail(f"dagster dev not ready after {READY_TIMEOUT_S} s on {base} (last: {last})" + _tail(log))


def _require_browser() -> None:
    """A missing browser is a failure, not a skip: `make test` installs it."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: the browser test needs Debian's chromium "
                    "(`make test` installs it; or `apt-get install -y chromium`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is not installed: run `make setup` (it syncs .venv to uv.lock)")


@contextmanager
def dagster_dev(home: Path, tmp_path: Path):
    """`dagster dev` (webserver + daemon) on a free port, on the instance under the temporary TRADECAST_HOME;
    stopped (the whole process group) whatever happens."""
    from pipelines.instance import ensure_dagster_home

    dagster_home = ensure_dagster_home()  # dagster.yaml with the duckdb_writer pool
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "dagster_dev.log"
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "TRADECAST_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as out:  # a file, not a PIPE: nobody drains a pipe while the browser runs
        proc = subprocess.Popen([str(DAGSTER), "dev", "-h", "127.0.0.1", "-p", str(port), "-w", "workspace.yaml"],
                                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_reset_signals)
    try:
        _wait_ready(base, proc, log)
        yield {"base": base, "dagster_home": dagster_home, "log": log}
    finally:
        _stop(proc)


@contextmanager
def chromium_page():
    """A page of headless Debian Chromium; the community pop-up ("Join the Dagster community") is pre-dismissed."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(viewport={"width": 1600, "height": 1000})
            context.set_default_timeout(UI_TIMEOUT_MS)
            context.add_init_script("window.localStorage.setItem('communityNux', 'true');")
            yield context.new_page()
        finally:
            browser.close()


def _launched_run_ids(payload) -> list[str]:
    """Run ids in the answer to the UI's launch mutation (LaunchPipelineExecution or LaunchMultipleRuns)."""
    if isinstance(payload, list):
        return [i for item in payload for i in _launched_run_ids(item)]
    if not isinstance(payload, dict):
        return []
    if payload.get("__typename") == "LaunchRunSuccess":
        return [payload["run"]["id"]]
    return [i for value in payload.values() for i in _launched_run_ids(value)]


def _wait_for_run(dagster_home: Path, run_id: str, log: Path) -> int:
    """Poll the instance until the run ends; the row count its materialization of `market_bars` recorded."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        deadline, run = time.monotonic() + RUN_TIMEOUT_S, None
        while time.monotonic() < deadline:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                break
            time.sleep(1)
        status = run.status if run else "not found"
        if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
            errors = [str(e.dagster_event.event_specific_data)[:1500] for e in instance.all_logs(run_id)
                      if e.dagster_event and e.dagster_event.is_failure] if run else []
            pytest.fail(f"run {run_id} is {status} after {RUN_TIMEOUT_S} s; failures: {errors}" + _tail(log))
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(ASSET), asset_partitions=[PARTITION]), limit=20).records
        counts = [r.asset_materialization.metadata["dagster/row_count"].value for r in records if r.run_id == run_id]
        assert counts, f"run {run_id} recorded no materialization of {ASSET}[{PARTITION}]"
        return counts[0]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_materialize_one_partition_through_the_ui(home, tmp_path):
    _require_browser()
    with dagster_dev(home, tmp_path) as server, chromium_page() as page:
        _materialize_fx_through_the_ui(server, page, tmp_path / "screenshots")


def _materialize_fx_through_the_ui(server: dict, page, shots: Path) -> None:
    from playwright.sync_api import expect

    base = server["base"]
    shots.mkdir()
    try:
        # the asset graph of the `ingestion` group, with market_bars' node
        page.goto(f"{base}/asset-groups~group%3A%22ingestion%22", timeout=UI_TIMEOUT_MS)
        # the asset in the graph's side list; its name starts with the status icon's label ("missing market_bars …")
        node = page.get_by_role("button", name=re.compile(rf"(^|\s){ASSET}(\s|$)"))
        expect(node).to_be_visible(timeout=UI_TIMEOUT_MS)
        page.screenshot(path=shots / "1-asset-graph.png")
        node.click()
        page.get_by_role("link", name="View in Asset Catalog").click()
        expect(page).to_have_url(re.compile(rf"/assets/{ASSET}(\?|$)"), timeout=UI_TIMEOUT_MS)

        # Materialize… -> the partition dialog -> Custom selection = fx -> Launch 1 run
        page.get_by_role("button", name="Materialize…").click()
        dialog = page.get_by_role("dialog").filter(has_text=f"Launch runs to materialize {ASSET}")
        expect(dialog).to_be_visible(timeout=UI_TIMEOUT_MS)
        dialog.get_by_text("Select a partition or create one").click()
        page.get_by_role("menuitem", name=re.compile(rf"^{PARTITION}\b")).click()
        dialog.get_by_text(f"Launch runs to materialize {ASSET}").click()  # closes the partition picker
        expect(dialog.get_by_text("1 partition", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
        launch = dialog.get_by_role("button", name="Launch 1 run")
        with page.expect_response(lambda r: "/graphql" in r.url and r.request.method == "POST"
                                  and "mutation Launch" in (r.request.post_data or "")) as launched:
            launch.click()
        payload = launched.value.json()
        run_ids = _launched_run_ids(payload)
        assert len(run_ids) == 1, f"expected one launched run, the UI got: {payload}"
        run_id = run_ids[0]
        toast = page.get_by_text(re.compile(rf"Launched run\s*{run_id[:8]}"))
        expect(toast).to_be_visible(timeout=UI_TIMEOUT_MS)
        page.wait_for_timeout(800)  # the toast fades in (and out after a few seconds): only for the screenshot
        page.screenshot(path=shots / "2-after-launch.png")

        # the run, as the instance and as the UI see it
        row_count = _wait_for_run(server["dagster_home"], run_id, server["log"])
        assert row_count > 0
        page.goto(f"{base}/runs/{run_id}")
        expect(page.get_by_text("Success", exact=True).first).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(page.get_by_text(f"partition: {PARTITION}", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
        page.screenshot(path=shots / "3-run.png")

        # the asset page shows the row count (metadata dagster/row_count) of the new materialization
        page.goto(f"{base}/assets/{ASSET}")
        label = page.get_by_text("Row count", exact=True).first
        expect(label).to_be_visible(timeout=UI_TIMEOUT_MS)
        shown = label.locator("xpath=..").inner_text()
        page.screenshot(path=shots / "4-asset-page.png", full_page=True)
        match = re.search(r"Row count\s*([\d,]+)", shown)
        assert match, f"no number beside 'Row count' on the asset page: {shown!r}"
        assert int(match.group(1).replace(",", "")) == row_count > 0, (shown, row_count)

        # the schedules and sensors are listed, and on (they start RUNNING by default)
        page.goto(f"{base}/automation")
        for name in AUTOMATION:  # each row links to /locations/<location>/(schedules|sensors)/<name>
            expect(page.locator(f'a[href$="/{name}"]')).to_be_visible(timeout=UI_TIMEOUT_MS)
        # the row-selection boxes are unchecked; the checked boxes are the on/off toggles: all seven on
        expect(page.get_by_role("checkbox", checked=True)).to_have_count(len(AUTOMATION), timeout=UI_TIMEOUT_MS)
        page.screenshot(path=shots / "5-automation.png", full_page=True)
    except BaseException:
        print(_tail(server["log"]))  # shown with the failure
        with suppress(Exception):
            page.screenshot(path=shots / "failure.png", full_page=True)
        raise
