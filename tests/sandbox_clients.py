"""DIRAC and Rucio client calls the sandbox and fault tests make as the sandbox's user, each in a process of its own
(DIRAC keeps its configuration in globals; the test process has its own in-process one). Usage:
``python sandbox_clients.py <action> [args...]``; prints one JSON line, the result.

Also imported by the tests (run in the test process, through the installed commands): user jobs submitted and
waited for as a user does (:func:`submit_user_analysis_job`, :func:`wait_for_job`,
:func:`run_job_through_rucio_outage`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path


def _value(result: dict, what: str):
    if not result["OK"]:
        raise SystemExit(f"{what} failed: {result['Message']}")
    return result["Value"]


def forward_diset_request(value: str) -> dict:
    """Make a transformation, then ask the RMS to set its Description to ``value`` (ForwardDISET operation)."""
    from DIRAC.Core.Utilities import DEncode
    from DIRAC.RequestManagementSystem.Client.Operation import Operation
    from DIRAC.RequestManagementSystem.Client.ReqClient import ReqClient
    from DIRAC.RequestManagementSystem.Client.Request import Request
    from DIRAC.TransformationSystem.Client.TransformationClient import TransformationClient

    client = TransformationClient()
    name = f"rms-forward-{uuid.uuid4().hex[:8]}"
    transformation_id = _value(client.addTransformation(name, "RMS test", "RMS test", "MCSimulation", "Standard",
                                                        "Manual", ""), "addTransformation")
    direct = client.setTransformationParameter(transformation_id, "Description", "set directly")
    _value(direct, "setTransformationParameter")
    # the stub of a call just made, with another value: what a failed call leaves for the RMS to retry
    (url, options), method, arguments = direct["rpcStub"]
    operation = Operation()
    operation.Type = "ForwardDISET"
    operation.Arguments = DEncode.encode(((url, options), method, (arguments[0], arguments[1], value)))
    request = Request()
    request.RequestName = name
    request.addOperation(operation)
    request_id = _value(ReqClient().putRequest(request), "putRequest")
    return {"transformation_id": transformation_id, "request_id": request_id}


def _active_transformation(job, transformation_type: str, agent_type: str, purpose: str, plugin: str = "",
                           group_size: int = 0) -> int:
    """Add an Active transformation whose tasks run ``job``; return its ID."""
    from DIRAC.TransformationSystem.Client.Transformation import Transformation

    transformation = Transformation()
    _value(transformation.setTransformationName(f"sandbox-{uuid.uuid4().hex[:8]}"), "setTransformationName")
    transformation.setType(transformation_type)
    transformation.setDescription("KM3DIRAC sandbox test")
    transformation.setLongDescription(f"KM3DIRAC sandbox test: {purpose}")
    transformation.setBody(job.workflow.toXML())
    if plugin:
        transformation.setPlugin(plugin)
    if group_size:
        transformation.setGroupSize(group_size)
    _value(transformation.addTransformation(), "addTransformation")
    transformation_id = _value(transformation.getTransformationID(), "getTransformationID")
    _value(transformation.setStatus("Active"), "setStatus")
    _value(transformation.setAgentType(agent_type), "setAgentType")
    return transformation_id


def workflow_transformation(message: str, tasks: str) -> dict:
    """An active, automatic MCSimulation transformation whose job echoes ``message``, extended by ``tasks`` tasks."""
    from DIRAC.Interfaces.API.Job import Job
    from DIRAC.TransformationSystem.Client.TransformationClient import TransformationClient

    job = Job()
    job.setName("km3dirac-sandbox-task")
    job.setExecutable("/bin/echo", arguments=message)
    job.setCPUTime(1000)
    transformation_id = _active_transformation(job, "MCSimulation", "Automatic",
                                               "WorkflowTaskAgent submits the tasks as jobs")
    task_ids = _value(TransformationClient().extendTransformation(transformation_id, int(tasks)), "extend")
    return {"transformation_id": transformation_id, "task_ids": task_ids}


def files_transformation(directory: str, files: str) -> dict:
    """Upload ``files`` small files to Rucio (RSE KM3-DISK-1, fresh scope, DID name = LFN), then make an active
    Merge transformation (plugin Standard, one file per task) fed with their LFNs. Its agent type is Manual: the
    TransformationAgent makes its tasks, no job is submitted for them."""
    from pathlib import Path

    from DIRAC.Interfaces.API.Job import Job
    from DIRAC.TransformationSystem.Client.TransformationClient import TransformationClient
    from rucio.client import Client
    from rucio.client.uploadclient import UploadClient

    client = Client()
    scope = f"t{uuid.uuid4().hex[:12]}"
    client.add_scope("root", scope)
    lfns = []
    for index in range(int(files)):
        path = Path(directory) / f"file-{index}.dat"
        path.write_bytes(bytes([index]) * 1000)
        lfn = f"/km3net/{scope}/run1/{path.name}"
        UploadClient(client).upload([{"path": str(path), "rse": "KM3-DISK-1", "did_scope": scope, "did_name": lfn}])
        lfns.append(lfn)
    job = Job()
    job.setExecutable("/bin/true")
    transformation_id = _active_transformation(job, "Merge", "Manual", "TransformationAgent makes tasks from files",
                                               plugin="Standard", group_size=1)
    transformations = TransformationClient()
    added = _value(transformations.addFilesToTransformation(transformation_id, lfns), "addFilesToTransformation")
    return {"transformation_id": transformation_id, "lfns": lfns, "added": added}


def transformation_files(transformation_id: str) -> dict:
    from DIRAC.TransformationSystem.Client.TransformationClient import TransformationClient

    files = _value(TransformationClient().getTransformationFiles({"TransformationID": int(transformation_id)}),
                   "getTransformationFiles")
    return {"files": [{"lfn": file["LFN"], "status": file["Status"], "task_id": file["TaskID"],
                       "error_count": file["ErrorCount"]} for file in files]}


def transformation_tasks(transformation_id: str) -> dict:
    from DIRAC.TransformationSystem.Client.TransformationClient import TransformationClient

    tasks = _value(TransformationClient().getTransformationTasks({"TransformationID": int(transformation_id)}),
                   "getTransformationTasks")
    return {"tasks": [{"task_id": task["TaskID"], "status": task["ExternalStatus"], "job_id": task["ExternalID"]}
                      for task in tasks]}


def request_status(request_id: str) -> dict:
    from DIRAC.RequestManagementSystem.Client.ReqClient import ReqClient

    return {"status": _value(ReqClient().getRequestStatus(int(request_id)), "getRequestStatus")}


def transformation_parameter(transformation_id: str, name: str) -> dict:
    from DIRAC.TransformationSystem.Client.TransformationClient import TransformationClient

    client = TransformationClient()
    return {"value": _value(client.getTransformationParameters(int(transformation_id), name), "get parameter")}


def add_scope(scope: str) -> dict:
    """What a Rucio admin does once per scope (``CORSIKA_testing`` ...)."""
    from rucio.client import Client
    from rucio.common.exception import Duplicate

    client = Client()
    try:
        client.add_scope(client.account, scope)
    except Duplicate:
        pass
    return {"scope": scope}


def upload_km3net_file(scope: str, lfn: str, path: str, rse: str, metadata_json: str = "{}") -> dict:
    """rucio upload of ``path`` as ``scope:lfn`` into the dataset of its directory, with metadata, as a user would."""
    from rucio.client import Client
    from rucio.client.uploadclient import UploadClient
    from rucio.common.exception import Duplicate

    client = Client()
    try:
        client.add_scope(client.account, scope)
    except Duplicate:
        pass
    UploadClient(client).upload([{"path": path, "rse": rse, "did_scope": scope, "did_name": lfn,
                                  "dataset_scope": scope, "dataset_name": lfn.rsplit("/", 1)[0]}])
    metadata = json.loads(metadata_json)
    if metadata:
        client.set_metadata_bulk(scope, lfn, metadata)
    return {"did": f"{scope}:{lfn}"}


def close_dataset(scope: str, name: str) -> dict:
    """What ingestion does once a run is complete: its dataset closed."""
    from rucio.client import Client

    Client().close(scope, name)
    return {"closed": f"{scope}:{name}"}


def rucio_files(scope: str, pattern: str, filters_json: str = "{}") -> dict:
    """Files of ``scope`` whose name matches ``pattern`` (and filters), with all their metadata."""
    from rucio.client import Client

    client = Client()
    names = sorted(client.list_dids(scope, [{"name": pattern, **json.loads(filters_json)}], did_type="file"))
    return {"files": {name: {k: str(v) for k, v in client.get_metadata(scope, name, plugin="ALL").items()}
                      for name in names}}


def job_attributes(job_id: str) -> dict:
    from DIRAC.WorkloadManagementSystem.Client.JobMonitoringClient import JobMonitoringClient

    attributes = _value(JobMonitoringClient().getJobsStatus([int(job_id)]), "getJobsStatus")
    application = _value(JobMonitoringClient().getJobsApplicationStatus([int(job_id)]), "getJobsApplicationStatus")
    minor = _value(JobMonitoringClient().getJobsMinorStatus([int(job_id)]), "getJobsMinorStatus")
    return {"status": attributes[int(job_id)]["Status"], "minor_status": minor[int(job_id)]["MinorStatus"],
            "application_status": application[int(job_id)]["ApplicationStatus"]}


def leave_pending_registration(job_id: str, directory: str, path: str, rse: str, metadata_json: str) -> dict:
    """What a job leaves when Rucio stops answering after its upload, along KM3DIRAC's own code path: the file
    stored at the RSE (store_outputs), its registration deferred into the KM3RegisterOutputs request the JobWrapper
    forwards to the ReqManager (JobData.pending_request), for the RequestExecutingAgent to complete."""
    from pathlib import Path

    from DIRAC.RequestManagementSystem.Client.ReqClient import ReqClient

    from KM3DIRAC.core.job_outputs import OutputSpec, registration_entries, store_outputs
    from KM3DIRAC.WorkloadManagementSystem.JobData import catalog_from_cs, pending_request

    catalog = catalog_from_cs()
    spec = OutputSpec(directory=directory, rse=rse, metadata=json.loads(metadata_json),
                      provenance={"JobID": int(job_id)})
    stored = store_outputs(catalog.client, [Path(path)], spec, catalog.mapper)
    request = pending_request(registration_entries(stored, spec), int(job_id))
    request_id = _value(ReqClient().putRequest(request), "putRequest")
    return {"request_id": request_id, "request_name": request.RequestName, "lfns": [o.lfn for o in stored]}


def inputs_with_two_replicas(scope: str, directory: str, count: str, first_dir: str, second_dir: str) -> dict:
    """``count`` small files uploaded to KM3-DISK-1 (dataset ``directory``) and copied, bytes and replica, to
    KM3-DISK-2; returns their LFNs and where each copy lies."""
    from rucio.client import Client
    from rucio.client.uploadclient import UploadClient
    from rucio.common.exception import Duplicate

    client = Client()
    try:
        client.add_scope(client.account, scope)
    except Duplicate:
        pass
    work = Path(os.environ["TMPDIR"]) / f"inputs-{scope}"
    work.mkdir(parents=True, exist_ok=True)
    items, files = [], {}
    for index in range(int(count)):
        path = work / f"input_{index}.dat"
        data = os.urandom(30_000)
        path.write_bytes(data)
        lfn = f"{directory}/{path.name}"
        items.append({"path": str(path), "rse": "KM3-DISK-1", "did_scope": scope, "did_name": lfn,
                      "dataset_scope": scope, "dataset_name": directory})
        files[lfn] = {"first": str(Path(first_dir) / lfn.lstrip("/")),
                      "second": str(Path(second_dir) / lfn.lstrip("/")),
                      "bytes": len(data), "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"}
    UploadClient(client).upload(items)
    for where in files.values():
        Path(where["second"]).parent.mkdir(parents=True, exist_ok=True)
        Path(where["second"]).write_bytes(Path(where["first"]).read_bytes())
    client.add_replicas("KM3-DISK-2", [{"scope": scope, "name": lfn, "bytes": where["bytes"],
                                        "adler32": where["adler32"]} for lfn, where in files.items()])
    return {"files": files}


def replicas(scope: str, lfns_json: str) -> dict:
    """For each LFN: its replicas' states by RSE and its catalogue size and adler32 (absent: not registered)."""
    from rucio.client import Client

    client = Client()
    dids = [{"scope": scope, "name": lfn} for lfn in json.loads(lfns_json)]
    found = {}
    for start in range(0, len(dids), 500):
        for row in client.list_replicas(dids[start:start + 500], all_states=True):
            found[row["name"]] = {"states": row.get("states", {}), "bytes": row["bytes"], "adler32": row["adler32"]}
    return {"replicas": found}


def suspicious(rse: str) -> dict:
    from rucio.client import Client

    answer = Client().list_suspicious_replicas(rse_expression=rse)
    rows = [row for chunk in answer for row in (chunk if isinstance(chunk, list) else [chunk])]
    return {"suspicious": sorted({row["name"] for row in rows})}


def jobs(*job_ids: str) -> dict:
    """Status, minor status and application status of each job."""
    from DIRAC.WorkloadManagementSystem.Client.JobMonitoringClient import JobMonitoringClient

    ids = [int(job_id) for job_id in job_ids]
    monitor = JobMonitoringClient()
    answers = {}
    for what, call, key in (("status", monitor.getJobsStatus, "Status"),
                            ("minor_status", monitor.getJobsMinorStatus, "MinorStatus"),
                            ("application_status", monitor.getJobsApplicationStatus, "ApplicationStatus")):
        result = call(ids)
        if not result["OK"]:
            return {"error": result["Message"]}
        for job_id, row in result["Value"].items():
            answers.setdefault(str(job_id), {})[what] = row[key]
    return {"jobs": answers}


def application_history(job_id: str) -> dict:
    """Every ApplicationStatus the job reported (DIRAC's job logging records)."""
    from DIRAC.WorkloadManagementSystem.Client.JobMonitoringClient import JobMonitoringClient

    result = JobMonitoringClient().getJobLoggingInfo(int(job_id))
    if not result["OK"]:
        return {"error": result["Message"]}
    return {"application_status": [row[2] for row in result["Value"]]}


def job_requests(*job_ids: str) -> dict:
    """The RMS request each job left (its JobWrapper's failover request), for the jobs that have one: its ID,
    status as the RMS database holds it (``Assigned`` while an agent works on it: the ``Request`` object
    ``peekRequest`` gives derives its status from its operations and never says Assigned) and operations."""
    from DIRAC.RequestManagementSystem.Client.ReqClient import ReqClient

    client = ReqClient()
    found = _value(client.getRequestIDsForJobs([int(job_id) for job_id in job_ids]), "getRequestIDsForJobs")
    requests = {}
    for job_id, request_id in found["Successful"].items():
        request = _value(client.peekRequest(request_id), "peekRequest")
        status = _value(client.getRequestStatus(request_id), "getRequestStatus")
        requests[str(job_id)] = {"request_id": request.RequestID, "status": status, "job_id": request.JobID,
                                 "operations": [{"type": operation.Type, "status": operation.Status}
                                                for operation in request]}
    return {"requests": requests}


# ------------------------------------------------------------------------ user jobs, from the test process
JOB_TIMEOUT = 240
FINAL_JOB_STATES = ("Done", "Failed", "Killed")
OFFLINE_RUN_FILE = "KM3NeT_00000049_00011291.offline.root"


def upload_offline_run_file(sandbox, work: Path, metadata: dict | None = None) -> tuple[str, str]:
    """km3net_testdata's offline file uploaded (KM3-DISK-1) as run 11291 of detector 49 in a fresh user scope, with
    ``metadata`` (default: run_number and DetectorID): ``(scope, run directory)``."""
    from km3net_testdata import data_path

    scope = f"u{uuid.uuid4().hex[:10]}"
    run = f"/km3net/{scope}/offline/KM3NeT_00000049/run11291"
    source = work / OFFLINE_RUN_FILE
    shutil.copy(data_path("offline/km3net_offline.root"), source)
    sandbox.dirac_client("upload-km3net-file", scope, f"{run}/{source.name}", str(source), "KM3-DISK-1",
                         json.dumps(metadata or {"run_number": 11291, "DetectorID": 49}))
    return scope, run


def submit_jdl(sandbox, work: Path, jdl: str = "job.jdl") -> str:
    """``dirac-wms-job-submit <jdl>`` in ``work``: the JobID."""
    submitted = sandbox.run("dirac-wms-job-submit", jdl, cwd=work)
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    return re.search(r"JobID = (\d+)", submitted.stdout).group(1)


def submit_user_analysis_job(sandbox, work: Path, **parameters: str) -> str:
    """KM3DIRAC's ``user-analysis.jdl`` rendered with ``parameters`` (``Name``, ``Command``, ``InputData``, ...;
    CPUTime 600 unless given) by ``dirac-km3-jdl-render`` in ``work``, then submitted: the JobID."""
    options = [item for key, value in {"CPUTime": "600", **parameters}.items() for item in ("-p", f"{key}={value}")]
    rendered = sandbox.run("dirac-km3-jdl-render", "user-analysis.jdl", *options, "--output=job.jdl", cwd=work)
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    return submit_jdl(sandbox, work)


def wait_for_job(sandbox, job_id: str, until: Callable[[dict], bool] | None = None,
                 timeout: float = JOB_TIMEOUT, poll: float = 2) -> dict:
    """The job's status, minor and application status once ``until(attributes)`` (default: a final state)."""
    until = until or (lambda attributes: attributes["status"] in FINAL_JOB_STATES)
    deadline = time.monotonic() + timeout
    attributes: dict = {}
    while time.monotonic() < deadline:
        attributes = sandbox.dirac_client("job-attributes", job_id)
        if until(attributes):
            return attributes
        time.sleep(poll)
    raise AssertionError(f"job {job_id}: not as awaited after {timeout:.0f} s: {attributes}")


def run_job_through_rucio_outage(sandbox, work: Path, name: str, input_data: str, products: str,
                                 while_down: Callable[[str], None] | None = None) -> tuple[str, dict]:
    """A user job (count_events.py from ``work``) whose payload waits until the Rucio server is stopped: its outputs
    stay stored, their registration is deferred into an RMS request; the job ends Completed, "Registration
    pending". ``while_down(job_id)`` runs then, Rucio still stopped; Rucio is served again in any case.
    ``(job_id, attributes)`` as the job was while Rucio was down."""
    from KM3DIRAC.sandbox.local_sandbox import Sandbox

    marker = work / "rucio-is-down"
    job_id = submit_user_analysis_job(
        sandbox, work, Name=name, Command=f"python count_events.py --wait-for {marker}",
        InputSandbox="count_events.py", InputData=input_data, OutputPatterns="summary_*.json",
        OutputPath=products, OutputSE="KM3-DISK-2")
    # the payload runs (its inputs are downloaded): Rucio goes down now
    running = wait_for_job(sandbox, job_id, lambda a: a["application_status"] == "Running"
                           or a["status"] in FINAL_JOB_STATES, poll=1)
    assert running["application_status"] == "Running", running
    rucio = Sandbox(sandbox.directory)
    rucio.stop_rucio_server()
    try:
        marker.touch()
        attributes = wait_for_job(sandbox, job_id, lambda a: a["status"] in ("Completed", *FINAL_JOB_STATES),
                                  poll=1)
        assert (attributes["status"], attributes["application_status"]) == ("Completed", "Registration pending"), \
            attributes
        if while_down is not None:
            while_down(job_id)
    finally:
        rucio.start_rucio_server()
    return job_id, attributes


def register_run_datasets(scope: str, rse: str, storage_dir: str, runs_json: str) -> dict:
    """What nightly ingestion does for each run: files written at the shore station's storage (here: the bytes
    put at the RSE's path of their LFN), registered where they lie through the catalog (DIRAC's FileCatalog:
    KM3DIRAC's Rucio catalog), one dataset per run with ``datatype=RAW``, closed once the run is complete.
    ``runs_json``: ``{run directory LFN: {file name: content}}``."""
    import os
    import zlib

    from DIRAC.Resources.Catalog.FileCatalog import FileCatalog
    from rucio.client import Client

    client = Client()
    runs = json.loads(runs_json)
    registered = {}
    for directory, files in runs.items():
        entries = {}
        for name, content in files.items():
            lfn = f"{directory}/{name}"
            path = os.path.join(storage_dir, lfn.lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as output:
                output.write(content)
            entries[lfn] = {"PFN": path, "Size": len(content.encode()), "SE": rse, "GUID": str(uuid.uuid4()),
                            "Checksum": f"{zlib.adler32(content.encode()):08x}", "ChecksumType": "ADLER32"}
        result = _value(FileCatalog().addFile(entries), "addFile")
        if result["Failed"]:
            raise SystemExit(f"addFile failed: {result['Failed']}")
        client.set_metadata(scope, directory, "datatype", "RAW")
        client.close(scope, directory)
        registered[directory] = sorted(entries)
    return {"datasets": registered}


def replica_view(scope: str, datasets_json: str) -> dict:
    """Rucio's state of run datasets: per file the state of its replica at each RSE; per dataset its rules."""
    from rucio.client import Client

    client = Client()
    view = {}
    for dataset in json.loads(datasets_json):
        files = [{"scope": f["scope"], "name": f["name"]} for f in client.list_files(scope, dataset)]
        replicas = {r["name"]: r.get("states") or {} for r in client.list_replicas(files, all_states=True)}
        rules = [{"rse_expression": r["rse_expression"], "copies": r["copies"], "state": r["state"],
                  "expires_at": str(r["expires_at"]) if r.get("expires_at") else None}
                 for r in client.list_did_rules(scope, dataset)]
        view[dataset] = {"replicas": replicas, "rules": sorted(rules, key=lambda r: r["rse_expression"])}
    return view


ACTIONS = {
    "register-run-datasets": register_run_datasets,
    "replica-view": replica_view,
    "leave-pending-registration": leave_pending_registration,
    "upload-km3net-file": upload_km3net_file,
    "add-scope": add_scope,
    "close-dataset": close_dataset,
    "rucio-files": rucio_files,
    "job-attributes": job_attributes,
    "workflow-transformation": workflow_transformation,
    "transformation-tasks": transformation_tasks,
    "files-transformation": files_transformation,
    "transformation-files": transformation_files,
    "forward-diset-request": forward_diset_request,
    "request-status": request_status,
    "transformation-parameter": transformation_parameter,
    "inputs-with-two-replicas": inputs_with_two_replicas,
    "replicas": replicas,
    "suspicious": suspicious,
    "jobs": jobs,
    "application-history": application_history,
    "job-requests": job_requests,
}
#: actions of rucio-clients alone: no DIRAC configuration to load (the fault suite calls them often)
RUCIO_ONLY_ACTIONS = ("add-scope", "upload-km3net-file", "rucio-files", "inputs-with-two-replicas", "replicas",
                      "suspicious")

if __name__ == "__main__":
    action, arguments = sys.argv[1], sys.argv[2:]
    sys.argv = sys.argv[:1]
    if action not in RUCIO_ONLY_ACTIONS:
        from DIRAC.Core.Base.Script import Script

        Script.parseCommandLine(ignoreErrors=True)
    print(json.dumps(ACTIONS[action](*arguments)))
