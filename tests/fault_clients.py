"""Rucio actions of the fault suite, run as the fault sandbox's user (its rucio.cfg, its TMPDIR), each printing one
JSON line: ``python fault_clients.py <action> <arguments...>``."""

from __future__ import annotations

import json
import os
import sys
import zlib
from pathlib import Path


def _client():
    from rucio.client import Client

    return Client()


def inputs_with_two_replicas(scope: str, directory: str, count: str, first_dir: str, second_dir: str) -> dict:
    """``count`` small files uploaded to KM3-DISK-1 (dataset ``directory``) and copied, bytes and replica, to
    KM3-DISK-2; returns their LFNs and where each copy lies."""
    from rucio.client.uploadclient import UploadClient
    from rucio.common.exception import Duplicate

    client = _client()
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


def add_scope(scope: str) -> dict:
    from rucio.common.exception import Duplicate

    client = _client()
    try:
        client.add_scope(client.account, scope)
    except Duplicate:
        pass
    return {"scope": scope}


def replicas(scope: str, lfns_json: str) -> dict:
    """For each LFN: its replicas' states by RSE and its catalogue size and adler32 (absent: not registered)."""
    client = _client()
    dids = [{"scope": scope, "name": lfn} for lfn in json.loads(lfns_json)]
    found = {}
    for start in range(0, len(dids), 500):
        for row in client.list_replicas(dids[start:start + 500], all_states=True):
            found[row["name"]] = {"states": row.get("states", {}), "bytes": row["bytes"], "adler32": row["adler32"]}
    return {"replicas": found}


def suspicious(rse: str) -> dict:
    answer = _client().list_suspicious_replicas(rse_expression=rse)
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


ACTIONS = {"add-scope": add_scope, "inputs-with-two-replicas": inputs_with_two_replicas, "replicas": replicas,
           "suspicious": suspicious,
           "jobs": jobs, "application-history": application_history}

if __name__ == "__main__":
    action, *arguments = sys.argv[1:]
    if action in ("jobs", "application-history"):
        from DIRAC.Core.Base.Script import Script

        sys.argv = sys.argv[:1]
        Script.parseCommandLine(ignoreErrors=True)
    print(json.dumps(ACTIONS[action](*arguments)))
