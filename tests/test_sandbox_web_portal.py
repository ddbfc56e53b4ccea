"""DIRAC's web portal (WebAppDIRAC) of the local sandbox, looked at in a real headless chromium as a shifter would,
after a real user job read Rucio data, a second one ran through a real Rucio outage (the Rucio server stopped while
its payload ran: its registration deferred into an RMS request) and a real train ran (the demo train of
tests/test_sandbox_train.py: run again here, it is a no-op when that test ran before in the session): Job Monitor,
Transformation Monitor, Request Monitor (the request while Rucio is down, then Done) and File Catalog (by metadata,
by run, by train step), with screenshots in test-results/portal/. Also: nobody reaches the portal but through the
sandbox's loopback front, and no header makes the front's user anyone else.

The module name sorts after test_sandbox_train.py on purpose: the session's train is done when it runs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from portal_browser import PortalBrowser, quit_quietly, start_chromium
from sandbox_clients import (
    run_job_through_rucio_outage,
    submit_user_analysis_job,
    upload_offline_run_file,
    wait_for_job,
)
from sandbox_fixtures import RunningSandbox

from KM3DIRAC.sandbox.certificates import HOST_SUBJECT
from KM3DIRAC.sandbox.local_sandbox import PORTAL_FRONT, WEB_PORTAL, Sandbox
from KM3DIRAC.sandbox.portal_front import TOKEN_COOKIE
from KM3DIRAC.sandbox.state import SandboxState
from KM3DIRAC.sandbox.web_portal import PRODUCTION_MANAGER_GROUP

ROOT = Path(__file__).resolve().parent.parent
PAYLOAD = ROOT / "tests" / "payloads" / "count_events.py"
TRAIN = "km3demo"
DEMO_TIMEOUT = 480
REQUEST_TIMEOUT = 300

pytestmark = pytest.mark.sandbox


# ---------------------------------------------------------------------------------------------- the data
def _wait(check, what: str, timeout: float):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"{what}: not after {timeout} s (last: {value})")


@pytest.fixture(scope="module")
def user_job(local_sandbox: RunningSandbox, tmp_path_factory) -> dict:
    """A user job from KM3DIRAC's template reading a KM3NeT file from Rucio and registering its product. It runs
    before the train: DIRAC 9.1.22's OptimizationMind sets up its JobState databases on the first job it sees, and
    several jobs arriving first at once (a train's tasks) race in it (JobState.checkDBAccess marks the databases
    ready before creating them: "'NoneType' object has no attribute 'getJobAttributes'", every later job stuck in
    Received)."""
    work = tmp_path_factory.mktemp("portal-job")
    scope, run = upload_offline_run_file(local_sandbox, work, {"run_number": 11291, "DetectorID": 49,
                                                               "datatype": "raw"})
    shutil.copy(PAYLOAD, work / "count_events.py")
    products = f"/km3net/{scope}/products/run11291"
    job_id = submit_user_analysis_job(
        local_sandbox, work, Name="shifter", Command="python count_events.py", InputSandbox="count_events.py",
        InputData=run, OutputPatterns="summary_*.json", OutputPath=products, OutputSE="KM3-DISK-2")
    attributes = wait_for_job(local_sandbox, job_id)
    assert (attributes["status"], attributes["application_status"]) == ("Done", "Registered"), attributes
    return {"job_id": job_id, "products": products, "work": work}


@pytest.fixture(scope="module")
def demo_train(local_sandbox: RunningSandbox, user_job: dict, deferred_job: dict) -> str:
    """The demo train, run to the end (what test_sandbox_train.py runs; nothing is redone if it ran). It runs after
    the Rucio outage of ``deferred_job``, while the RequestExecutingAgent completes that job's request."""
    command = [sys.executable, "-m", "KM3DIRAC.demo.run_demo", "--inside", "--dir", str(local_sandbox.directory),
               "--runs", "2", "--new-runs", "0", "--files-per-run", "3", "--timeout", str(DEMO_TIMEOUT)]
    result = subprocess.run(command, env=local_sandbox.user_env(), capture_output=True, text=True,
                            timeout=DEMO_TIMEOUT + 120, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result.stdout


def _request_row(browser: PortalBrowser, request_id: str) -> dict[str, str]:
    """The Request Monitor's row of a KM3RegisterOutputs request. DIRAC 9.1's getRequestSummaryWeb returns no
    operation type, so the page's Operation Type column stays empty for every request: the request's operation
    shows by its row being there when the page's Operation Type selector asks for KM3RegisterOutputs."""
    browser.open_app("RequestMonitor")
    browser.choose_in_selector("Operation Type", "KM3RegisterOutputs")
    browser.click_button("Submit")
    rows = browser.wait_for_rows("RequestID", lambda rows: any(r["RequestID"] == request_id for r in rows),
                                 f"request {request_id}")
    return next(r for r in rows if r["RequestID"] == request_id)


@pytest.fixture(scope="module")
def deferred_job(local_sandbox: RunningSandbox, user_job: dict, browser: PortalBrowser, tmp_path_factory) -> dict:
    """A real user job during a real Rucio outage: the Rucio server stops while its payload runs, its outputs are
    stored, their registration deferred into a KM3RegisterOutputs request. While Rucio is still down, the shifter
    opens the Request Monitor: the request is there, Waiting, with the job's ID."""
    work = tmp_path_factory.mktemp("portal-deferred")
    scope, run = upload_offline_run_file(local_sandbox, work)
    shutil.copy(PAYLOAD, work / "count_events.py")
    seen: dict = {}

    def look_while_rucio_is_down(job_id: str) -> None:
        request = _wait(lambda: local_sandbox.dirac_client("job-requests", job_id)["requests"].get(job_id),
                        f"the request of job {job_id}", 60)
        assert [o["type"] for o in request["operations"]] == ["KM3RegisterOutputs"], request
        seen["request"] = request
        seen["row_while_down"] = _request_row(browser, str(request["request_id"]))
        browser.screenshot("request-monitor-rucio-down", fit=browser.grid("RequestID"))

    job_id, attributes = run_job_through_rucio_outage(local_sandbox, work, "deferred", run,
                                                      f"/km3net/{scope}/products/run11291",
                                                      while_down=look_while_rucio_is_down)
    return {"job_id": job_id, "while_down": attributes, **seen}


# ---------------------------------------------------------------------------------------------- the browser
@pytest.fixture(scope="module")
def login_url(local_sandbox: RunningSandbox) -> str:
    url = Sandbox(local_sandbox.directory).portal_url()
    assert url, "the sandbox has no portal"
    return url


@pytest.fixture(scope="module")
def browser(login_url: str) -> Iterator[PortalBrowser]:
    driver = start_chromium()
    try:
        portal = PortalBrowser(driver, login_url)
        user = portal.login()
        assert (user["username"], user["group"]) == ("km3user", "km3net_user"), user
        yield portal
    finally:
        quit_quietly(driver)


def _token(local_sandbox: RunningSandbox) -> str:
    return local_sandbox.paths.portal_token.read_text().strip()


def _get(url: str, headers: dict[str, str]) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


# ---------------------------------------------------------------------------------------------- tests
def test_status_prints_the_portal_url_logged_in_as_the_sandbox_user(local_sandbox: RunningSandbox, login_url):
    result = local_sandbox.sandbox_command("status", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"^web portal:\s+{re.escape(login_url)}\s+ok \(logged in as km3user/km3net_user\)$",
                     result.stdout, re.MULTILINE), result.stdout
    for component in (WEB_PORTAL, PORTAL_FRONT, "Monitoring/WebApp", "Framework/UserProfileManager"):
        assert re.search(rf"^{re.escape(component)}\s.*\sok$", result.stdout, re.MULTILINE), result.stdout


def _listening_tcp_inodes() -> dict[int, str]:
    """inode -> local address of every listening TCP socket of this machine (/proc/net/tcp, tcp6)."""
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening[int(fields[9])] = fields[1]
    return listening


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def test_only_the_loopback_front_listens_and_no_header_makes_it_anyone_else(local_sandbox: RunningSandbox):
    state = SandboxState.load(local_sandbox.directory)
    records = {record.name: record for record in state.components}
    listening = _listening_tcp_inodes()
    # the portal itself has no TCP listener at all (its one listener is a 0600 Unix socket)
    portal_tcp = [listening[inode] for inode in _socket_inodes(records[WEB_PORTAL].pid) if inode in listening]
    assert portal_tcp == [], f"the portal listens on TCP {portal_tcp}"
    assert local_sandbox.paths.portal_socket.stat().st_mode & 0o777 == 0o600
    # the front listens on 127.0.0.1 only (0100007F in /proc/net/tcp)
    front_tcp = [listening[inode] for inode in _socket_inodes(records[PORTAL_FRONT].pid) if inode in listening]
    assert front_tcp == [f"0100007F:{records[PORTAL_FRONT].port:04X}"], front_tcp

    base = f"http://127.0.0.1:{records[PORTAL_FRONT].port}/DIRAC/getConfigData"
    host_pem = local_sandbox.paths.certificates.host_cert.read_text()
    forged = {"X-SSL-CERT": urllib.parse.quote(host_pem), "X-Ssl_client_verify": "SUCCESS", "X-Scheme": "https",
              "X-Forwarded-Proto": "https", "X-Real-Ip": "10.0.0.1"}
    # without the login cookie: nothing, whatever the headers say
    status, body = _get(base, forged)
    assert status == 403 and "dirac-km3-sandbox status" in body, (status, body)
    status, _ = _get(base.replace("/DIRAC/getConfigData", "/login?token=guess"), {})
    assert status == 403
    # with it: the sandbox user, even when the headers claim the host certificate (a TrustedHost) and the
    # cookies ask for the portal's own session login
    status, body = _get(base, {**forged, "Cookie": f"{TOKEN_COOKIE}={_token(local_sandbox)}; authGrant=Session; "
                                                   "session_id=forged"})
    assert status == 200, body
    user = json.loads(body)["user"]
    assert (user["username"], user["DN"], user["group"]) == ("km3user", "/O=KM3DIRAC-Sandbox/CN=km3user",
                                                             "km3net_user"), user
    assert user["DN"] != HOST_SUBJECT


def test_job_monitor_shows_km3dirac_jobs_their_application_status_and_details(browser: PortalBrowser,
                                                                                user_job: dict, demo_train: str):
    browser.open_app("JobMonitor")
    browser.click_button("Submit")
    job_id = user_job["job_id"]
    rows = browser.wait_for_rows("JobID", lambda rows: any(r["JobID"] == job_id for r in rows), f"job {job_id}")
    job = next(r for r in rows if r["JobID"] == job_id)
    assert (job["Status"], job["MinorStatus"], job["ApplicationStatus"], job["JobName"], job["Owner"]) == (
        "Done", "Execution Complete", "Registered", "km3-analysis-shifter", "km3user"), job
    # the train's jobs: tasks of its steps' transformations, named <transformation>_<task>, done and registered
    steps = {int(number) for number in re.findall(r"^\[demo\] step \w+: transformation (\d+)", demo_train,
                                                  re.MULTILINE)}
    assert len(steps) == 2, demo_train
    train_jobs = [r for r in rows if re.fullmatch(r"\d{8}_\d{8}", r["JobName"]) and int(r["JobName"][:8]) in steps]
    assert len(train_jobs) == 6 and {r["Status"] for r in train_jobs} == {"Done"}, rows
    assert {r["ApplicationStatus"] for r in train_jobs} == {"Registered"}, train_jobs
    browser.screenshot("job-monitor", fit=browser.grid("JobID"))

    # a job's details: its logging info has every ApplicationStatus stage KM3DIRAC's wrapper reported
    browser.context_menu(browser.row_element(browser.grid("JobID"), "JobID", job_id), "Logging info")
    history = browser.window_grid_rows(f"Attributes for JobID:{job_id}")  # (sic: WebAppDIRAC's title)
    stages = [row["app_status"] for row in history if row["source"] == "KM3DIRAC"]
    downloads = [stage for stage in stages if stage.startswith("Downloading inputs ")]
    uploads = [stage for stage in stages if stage.startswith("Uploading outputs ")]
    # dirac-km3-job-run: inputs from Rucio, the payload, outputs to the RSE, their registration
    assert stages == [*downloads, "Running", *uploads, "Registered"], history
    assert downloads[-1] == "Downloading inputs 1/1", stages
    assert re.fullmatch(r"Uploading outputs (\d+)/\1", uploads[-1]), stages
    assert history[-1]["status"] == "Done"
    browser.maximize_window_of(browser.window_grid)
    browser.screenshot("job-monitor-logging-info")


def test_transformation_monitor_shows_each_train_step_with_files_and_tasks_by_state(browser: PortalBrowser,
                                                                                     demo_train: str):
    browser.open_app("TransformationMonitor")
    browser.click_button("Submit")
    names = {f"{TRAIN}.process", f"{TRAIN}.merge"}
    rows = browser.wait_for_rows("TransformationName",
                                 lambda rows: names <= {r["TransformationName"] for r in rows}, "the train's steps")
    steps = {r["TransformationName"]: r for r in rows if r["TransformationName"] in names}
    process, merge = steps[f"{TRAIN}.process"], steps[f"{TRAIN}.merge"]
    # 2 runs x 3 files, 2 tasks per run (ByRunFiles, GroupSize 2); merge: one task per run
    assert (process["Status"], process["Files_Total"], process["Files_PercentProcessed"]) == ("Active", "6",
                                                                                               "100.0"), process
    assert (process["Jobs_TotalCreated"], process["Jobs_Done"], process["Jobs_Failed"]) == ("4", "4", "0"), process
    assert (merge["Files_Total"], merge["Files_PercentProcessed"], merge["Jobs_Done"]) == ("6", "100.0", "2"), merge
    browser.screenshot("transformation-monitor", fit=browser.grid("TransformationName"))

    browser.context_menu(browser.row_element(browser.grid("TransformationName"), "TransformationName",
                                             f"{TRAIN}.process"), "File Status")
    files = browser.window_grid_rows(f"Production:{process['TransformationID']}")
    assert {row["status"]: row["count"] for row in files} == {"Processed": "6", "Total": "6"}, files


def test_request_monitor_shows_the_registration_a_job_left_while_rucio_was_down_then_done(
        browser: PortalBrowser, local_sandbox: RunningSandbox, deferred_job: dict, demo_train: str):
    job_id, request_id = deferred_job["job_id"], str(deferred_job["request"]["request_id"])
    while_down = deferred_job["row_while_down"]
    assert (while_down["JobID"], while_down["Status"], while_down["Owner"], while_down["OwnerGroup"]) == (
        job_id, "Waiting", "km3user", "km3net_user"), while_down
    # Rucio is back (since before the train): the RequestExecutingAgent registered the outputs
    _wait(lambda: local_sandbox.dirac_client("request-status", request_id)["status"] == "Done",
          f"request {request_id} Done", REQUEST_TIMEOUT)
    request = _request_row(browser, request_id)
    assert (request["JobID"], request["Status"], request["Owner"], request["OwnerGroup"]) == (
        job_id, "Done", "km3user", "km3net_user"), request
    browser.screenshot("request-monitor", fit=browser.grid("RequestID"))
    # and the job: Done once its request was, its outputs Registered (by the request: its logging info says when)
    browser.open_app("JobMonitor")
    browser.click_button("Submit")
    rows = browser.wait_for_rows("JobID", lambda rows: any(r["JobID"] == job_id for r in rows), f"job {job_id}")
    job = next(r for r in rows if r["JobID"] == job_id)
    assert (job["Status"], job["ApplicationStatus"], job["JobName"]) == ("Done", "Registered",
                                                                         "km3-analysis-deferred"), job
    browser.context_menu(browser.row_element(browser.grid("JobID"), "JobID", job_id), "Logging info")
    history = browser.window_grid_rows(f"Attributes for JobID:{job_id}")
    stages = [row["app_status"] for row in history if row["source"] == "KM3DIRAC"]
    assert stages[-3:] == [stages[-3], "Registration pending", "Registered"], history
    assert re.fullmatch(r"Uploading outputs (\d+)/\1", stages[-3]), stages


def test_file_catalog_browses_km3net_and_finds_files_by_metadata_over_rucio(browser: PortalBrowser,
                                                                            demo_train: str):
    browser.open_app("FileCatalog")
    # the metadata fields of KM3DIRAC's catalog, offered as the page's query fields
    fields = browser.wait_for_rows("Name", lambda rows: {"datatype", "run_number"} <= {r["Name"] for r in rows},
                                   "the metadata fields")
    assert {"datatype", "run_number", "DetectorID"} <= {row["Name"] for row in fields}, fields
    # browse: / -> km3net -> km3demo -> merged
    # ("raw" is missing below km3demo: KM3DIRAC's listDirectory shows only directories that are Rucio collections
    # one level down, and the raw runs are datasets two levels down, raw/KM3NeT_00000049/run<n>)
    for directory, children in (("km3net", {TRAIN}), (TRAIN, {"summaries", "merged"})):
        browser.expand_tree_node(directory)
        browser.wait_for(lambda children=children: children <= set(browser.tree_nodes()),
                         f"{children} below {directory}", lambda: f"tree: {browser.tree_nodes()}")
    browser.screenshot("file-catalog-tree")

    # search: datatype = merged, from the train's directory: one group per directory, a row per file
    browser.start_query_from(TRAIN)
    browser.choose_metadata_value("datatype", "merged")
    browser.click_button("Submit")
    files = browser.grid("filename")
    merged_group = f"Directory: /km3net/{TRAIN}/merged (2 Items)"
    browser.wait_for(lambda: browser.group_titles(files) == [merged_group], "the files found, by directory",
                     lambda: f"groups: {browser.group_titles(files)}")
    browser.expand_groups(files)
    rows = browser.wait_for_rows("filename", lambda rows: len(rows) == 2, "the merged files")
    assert {row["filename"] for row in rows} == {"run00011291.merged.json", "run00011292.merged.json"}, rows
    for row in rows:
        assert int(row["size"]) > 0, row
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", row["date"]), row
        assert "datatype: merged" in row["metadata"] and "TrainName: km3demo" in row["metadata"], row
    browser.screenshot("file-catalog-search")


def _demo_files(local_sandbox: RunningSandbox) -> dict[str, dict[str, str]]:
    """Every file of the demo's scope with its metadata, read with plain Rucio (what the page must agree with)."""
    return local_sandbox.dirac_client("rucio-files", TRAIN, f"/km3net/{TRAIN}/*")["files"]


def _files_on_the_page(browser: PortalBrowser) -> set[str]:
    """The LFNs the File Catalog's result grid shows: its groups opened, each group's directory with each of its
    file names (a group's title counts its files: all of them must be shown)."""
    files = browser.grid("filename")
    browser.expand_groups(files)
    counts = {}
    for title in browser.group_titles(files):
        directory, count = re.fullmatch(r"Directory: (\S+) \((\d+) Items?\)", title).groups()
        counts[directory] = int(count)
    groups = {title.removeprefix("Directory: "): names for title, names in browser.grouped_rows(files, "filename")
              .items()}
    if {directory: len(names) for directory, names in groups.items()} != counts:
        return set()  # still drawing
    return {f"{directory}/{name}" for directory, names in groups.items() for name in names}


def _search_from_the_train_directory(browser: PortalBrowser, choices: list[tuple[str, str]],
                                     expected: set[str]) -> set[str]:
    """A fresh File Catalog page: start from /km3net/km3demo, pick each (field, value), Submit; the LFNs shown once
    they are ``expected`` (the grid shows other files before the query's answer arrives), else after a minute."""
    browser.open_app("FileCatalog")
    browser.expand_tree_node("km3net")
    browser.wait_for(lambda: TRAIN in browser.tree_nodes(), f"{TRAIN} below km3net",
                     lambda: f"tree: {browser.tree_nodes()}")
    browser.start_query_from(TRAIN)
    for field, value in choices:
        browser.wait_for_rows("Name", lambda rows, field=field: field in {r["Name"] for r in rows},
                              f"{field} among the metadata fields")
        browser.choose_metadata_value(field, value)
    browser.click_button("Submit")
    shown: set[str] = set()

    def answer() -> bool:
        nonlocal shown
        shown = _files_on_the_page(browser)
        return shown == expected

    try:
        browser.wait_for(answer, f"the files found for {choices}")
    except AssertionError:
        pass  # the caller compares what is shown with what was expected
    return shown


def test_file_catalog_finds_exactly_a_runs_and_a_trains_files(browser: PortalBrowser, local_sandbox: RunningSandbox,
                                                              demo_train: str):
    """run_number, TrainName and TrainStep are directory metadata fields: the page offers them, sends them, and
    shows exactly the files plain Rucio says have that run, or come from that train step."""
    everything = _demo_files(local_sandbox)
    run = {lfn for lfn, meta in everything.items() if meta.get("run_number") == "11292"}
    # the run's raw files, its summaries and its merged file
    assert {lfn.split("/")[3] for lfn in run} == {"raw", "summaries", "merged"}, run
    assert _search_from_the_train_directory(browser, [("run_number", "11292")], run) == run
    browser.screenshot("file-catalog-run-search")

    step = {lfn for lfn, meta in everything.items()
            if meta.get("TrainName") == TRAIN and meta.get("TrainStep") == "process"}
    assert step and all("/summaries/" in lfn for lfn in step), step
    assert _search_from_the_train_directory(browser, [("TrainName", TRAIN), ("TrainStep", "process")],
                                            step) == step
    browser.screenshot("file-catalog-train-search")


def test_the_sandbox_user_is_a_production_manager_in_the_prod_group(browser: PortalBrowser):
    browser.open_app("TransformationMonitor", group=PRODUCTION_MANAGER_GROUP)
    user = browser.driver.execute_script("return GLOBAL.APP.configData.user")
    assert user["group"] == PRODUCTION_MANAGER_GROUP and "ProductionManagement" in user["properties"], user
