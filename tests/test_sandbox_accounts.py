"""Who may do what, in the sandbox, through DIRAC's own commands as its people type them (``dirac-km3-sandbox env
--as <who>``): two users (alice, bob) and a production manager (km3prodmgr), each with a certificate and proxy of
their own, a DIRAC user in the Registry and a Rucio account of their own (KM3DIRAC.sandbox.accounts). Bob cannot
remove or overwrite alice's files, users cannot write or remove production data, the production manager can; and no
credential appears in a KM3DIRAC job's JDL, its job parameters, its output or the sandbox's logs."""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path

import pytest
from sandbox_fixtures import RunningSandbox

from KM3DIRAC.core.lfn import user_home

pytestmark = pytest.mark.sandbox

SE = "KM3-DISK-1"
JOB_TIMEOUT = 240
#: what a DIRAC proxy or a Rucio token file holds, never to be shown
CREDENTIAL_MARKERS = ("PRIVATE KEY", "BEGIN CERTIFICATE")


def _file(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    return path


def _output(result) -> str:
    return result.stdout + result.stderr


def _replicas(sandbox: RunningSandbox, lfn: str, as_identity: str = "user") -> str:
    found = sandbox.run("dirac-dms-lfn-replicas", lfn, as_identity=as_identity)
    assert found.returncode == 0, _output(found)
    return found.stdout


def test_each_person_acts_with_own_proxy_and_own_rucio_account(local_sandbox: RunningSandbox):
    for who, user, group, account in (("alice", "alice", "km3net_user", "alice"),
                                      ("bob", "bob", "km3net_user", "bob"),
                                      ("km3prodmgr", "km3prodmgr", "km3net_prod", "km3prod"),
                                      ("user", "km3user", "km3net_user", "root")):
        proxy = local_sandbox.run("dirac-proxy-info", as_identity=who)
        assert proxy.returncode == 0, _output(proxy)
        assert re.search(rf"^username\s*: {user}$", proxy.stdout, re.MULTILINE), proxy.stdout
        assert re.search(rf"^DIRAC group\s*: {group}$", proxy.stdout, re.MULTILINE), proxy.stdout
        assert re.search(rf"^identity\s*: /O=KM3DIRAC-Sandbox/CN={user}$", proxy.stdout, re.MULTILINE), proxy.stdout
        whoami = local_sandbox.run("rucio", "whoami", as_identity=who)
        assert re.search(rf"^account\s*: {account}$", whoami.stdout, re.MULTILINE), _output(whoami)


def test_a_user_cannot_remove_or_overwrite_another_users_files(local_sandbox: RunningSandbox, tmp_path: Path):
    tag = uuid.uuid4().hex[:8]
    lfn = f"{user_home('km3net', 'alice')}/accounts-{tag}/notes.dat"
    mine = _file(tmp_path, "notes.dat", f"alice's notes {tag}\n".encode() * 100)
    added = local_sandbox.run("dirac-dms-add-file", lfn, str(mine), SE, as_identity="alice")
    assert added.returncode == 0 and "Successfully uploaded" in added.stdout, _output(added)
    stored = local_sandbox.paths.storage_dir(SE) / lfn.lstrip("/")
    assert stored.read_bytes() == mine.read_bytes()

    removed = local_sandbox.run("dirac-dms-remove-files", lfn, as_identity="bob")
    refusal = _output(removed)
    assert "permission denied" in refusal.lower() and "bob" in refusal and "user.alice" in refusal, refusal
    (tmp_path / "bob").mkdir()
    other = _file(tmp_path / "bob", "notes.dat", f"bob was here {tag}\n".encode())
    overwritten = local_sandbox.run("dirac-dms-add-file", lfn, str(other), SE, as_identity="bob")
    refusal = _output(overwritten)
    assert overwritten.returncode != 0 or "Successfully uploaded" not in refusal, refusal
    assert "bob" in refusal and "user.alice" in refusal, refusal
    assert stored.read_bytes() == mine.read_bytes()  # neither removed nor overwritten: bytes and replica kept
    assert SE in _replicas(local_sandbox, lfn, as_identity="bob")

    removed = local_sandbox.run("dirac-dms-remove-files", lfn, as_identity="alice")
    assert removed.returncode == 0 and "permission denied" not in _output(removed).lower(), _output(removed)
    assert not stored.exists()
    assert SE not in _replicas(local_sandbox, lfn, as_identity="alice")


def test_the_production_manager_writes_production_data_and_users_cannot(local_sandbox: RunningSandbox,
                                                                        tmp_path: Path):
    tag = uuid.uuid4().hex[:8]
    lfn = f"/km3net/production/accounts-{tag}/mc_1.dat"
    # bytes of their own: dirac-dms-add-file's GUID is the md5 of the content, and a GUID is registered once
    data = _file(tmp_path, "mc_1.dat", f"simulated {tag}\n".encode() * 100)
    by_user = local_sandbox.run("dirac-dms-add-file", lfn, str(data), SE, as_identity="alice")
    refusal = _output(by_user)
    assert "Successfully uploaded" not in refusal and "permission denied" in refusal.lower(), refusal
    assert "alice" in refusal and "production" in refusal, refusal
    stored = local_sandbox.paths.storage_dir(SE) / lfn.lstrip("/")
    assert not stored.exists()  # refused before a byte moved

    by_manager = local_sandbox.run("dirac-dms-add-file", lfn, str(data), SE, as_identity="km3prodmgr")
    assert by_manager.returncode == 0 and "Successfully uploaded" in by_manager.stdout, _output(by_manager)
    assert stored.read_bytes() == data.read_bytes()

    removed = local_sandbox.run("dirac-dms-remove-files", lfn, as_identity="bob")
    refusal = _output(removed)
    assert "permission denied" in refusal.lower() and "bob" in refusal and "production" in refusal, refusal
    assert stored.exists() and SE in _replicas(local_sandbox, lfn)


def _secrets(sandbox: RunningSandbox) -> list[str]:
    """Every credential of the sandbox: the Rucio accounts' passwords, the proxies' key and certificate lines,
    the Rucio tokens its clients hold."""
    paths = sandbox.paths
    found = [json.loads(path.read_text())["password"] for path in paths.rucio_credentials_dir.glob("*.json")]
    for proxy in paths.certificates.directory.glob("*proxy*.pem"):
        found += [line for line in proxy.read_text().splitlines() if len(line) >= 40 and "-----" not in line]
    found += [path.read_text().strip() for path in paths.tmp_dir.rglob("auth_token_*") if path.is_file()]
    return [secret for secret in found if secret]


def _leaked(text: str, secrets: list[str]) -> list[str]:
    leaks = [marker for marker in CREDENTIAL_MARKERS if marker in text]
    return leaks + [f"{secret[:6]}..." for secret in secrets if secret in text]


def test_no_credential_in_a_km3dirac_jobs_jdl_parameters_output_or_the_logs(local_sandbox: RunningSandbox,
                                                                          tmp_path: Path):
    scope = f"c{uuid.uuid4().hex[:10]}"
    local_sandbox.dirac_client("add-scope", scope)
    (tmp_path / "summarise.py").write_text("from pathlib import Path\nPath('summary_1.json').write_text('{}')\n")
    products = f"/km3net/{scope}/products"
    rendered = local_sandbox.run(
        "dirac-km3-jdl-render", "user-analysis.jdl", "-p", "Name=credentials", "-p", "Command=python summarise.py",
        "-p", "InputSandbox=summarise.py", "-p", "InputData=", "-p", "OutputPatterns=summary_*.json",
        "-p", f"OutputPath={products}", "-p", f"OutputSE={SE}", "-p", "CPUTime=600", "--output=job.jdl",
        cwd=tmp_path)
    assert rendered.returncode == 0, _output(rendered)
    submitted = local_sandbox.run("dirac-wms-job-submit", "job.jdl", cwd=tmp_path)
    assert submitted.returncode == 0, _output(submitted)
    job_id = re.search(r"JobID = (\d+)", submitted.stdout).group(1)
    deadline = time.monotonic() + JOB_TIMEOUT
    attributes = {}
    while time.monotonic() < deadline:
        attributes = local_sandbox.dirac_client("job-attributes", job_id)
        if attributes["status"] in ("Done", "Failed", "Killed"):
            break
        time.sleep(2)
    assert (attributes["status"], attributes["application_status"]) == ("Done", "Registered"), attributes

    jdl = local_sandbox.run("dirac-wms-job-get-jdl", job_id)
    parameters = local_sandbox.run("dirac-wms-job-parameters", job_id)
    fetched = local_sandbox.run("dirac-wms-job-get-output", "-D", str(tmp_path / "out"), job_id)
    for result in (jdl, parameters, fetched):
        assert result.returncode == 0, _output(result)
    assert "dirac-km3-job-run" in jdl.stdout and "KM3OutputSE" in jdl.stdout, jdl.stdout  # the job's whole JDL
    assert "KM3OutputDIDs" in parameters.stdout, parameters.stdout  # the job's parameters, KM3DIRAC's among them
    outputs = "\n".join(path.read_text() for path in (tmp_path / "out" / job_id).glob("std.*"))
    secrets = _secrets(local_sandbox)
    assert len(secrets) >= 5, "the sandbox's credentials were not found: the check would prove nothing"
    for what, text in (("JDL", jdl.stdout), ("job parameters", parameters.stdout), ("job output", outputs)):
        assert not _leaked(text, secrets), f"credential in the {what} of job {job_id}: {_leaked(text, secrets)}"
    paths = local_sandbox.paths
    for log in [*paths.layout.logs_dir.glob("*.log"), *paths.rucio_dir.glob("*.log")]:
        assert not _leaked(log.read_text(errors="replace"), secrets), f"credential in {log}"
