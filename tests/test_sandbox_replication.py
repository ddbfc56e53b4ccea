"""Replication and deletion at the shore station on the sandbox (issue 13, items 2 and 3), as a data manager runs
it: ``dirac-km3-replicate apply|clean-source|status`` on a policy file. Copies are made by DIRAC's RMS
(``ReplicateAndRegister`` run by the sandbox's real RequestExecutingAgent, registered through KM3DIRAC's catalog,
so that Rucio's rules become OK); the shore copy is released through Rucio (its rule expires) and deleted by
Rucio's own judge-cleaner and reaper, which the sandbox runs. Checked against Rucio's state and the bytes in the
storage directories. The sandbox's ``KM3-DISK-2`` plays the shore station here (files registered where they lie,
one closed dataset per run with ``datatype=RAW``, as ingestion makes them)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
import zlib
from pathlib import Path

import pytest
from sandbox_fixtures import BIN, RunningSandbox

pytestmark = pytest.mark.sandbox

SHORE, DISK, TAPE = "KM3-DISK-2", "KM3-DISK-1", "KM3-TAPE-1"
GOOD_RUNS = 4
COPY_TIMEOUT = 300
REAP_TIMEOUT = 120


def _policy(path: Path, scope: str) -> Path:
    path.write_text(f"""
version: 1
policies:
  - name: raw-test
    scopes: [{scope}]
    match: {{datatype: RAW}}
    copies:
      - {{rse_expression: {DISK}, copies: 1, medium: disk}}
      - {{rse_expression: {TAPE}, copies: 1, medium: tape}}
    source: {SHORE}
    delete_source_after_replication: true
""")
    return path


def _replicate(sandbox: RunningSandbox, *arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return sandbox.run("dirac-km3-replicate", *arguments, timeout=timeout)


def _adler32(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()):08x}"


def _phase(started: float, what: str) -> None:
    print(f"{time.monotonic() - started:6.1f} s  {what}")  # shown with pytest -s / -rA: where the time goes


def _wait(what: str, condition, timeout: float, interval: float = 3.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="module")
def runs(local_sandbox: RunningSandbox, tmp_path_factory) -> dict:
    """Run datasets at the shore station: GOOD_RUNS good ones, then 'badsum' (a copy will be corrupted),
    'nocopy' (a copy's bytes will be lost). Each run: two files."""
    scope = f"repl{uuid.uuid4().hex[:8]}"
    local_sandbox.dirac_client("add-scope", scope)
    base = f"/km3net/{scope}/raw/KM3NeT_00000049"
    names = [f"{base}/{8000 + index}" for index in range(GOOD_RUNS)] + [f"{base}/badsum", f"{base}/nocopy"]
    contents = {run: {f"KM3NeT_00000049_{index:08d}_{part}.root": f"{run} part {part} {uuid.uuid4().hex}" * 50
                      for part in (1, 2)} for index, run in enumerate(names)}
    local_sandbox.dirac_client("register-run-datasets", scope, SHORE, str(local_sandbox.paths.storage_dir(SHORE)),
                               json.dumps(contents), timeout=300)
    policy = _policy(tmp_path_factory.mktemp("policy") / "replication.yaml", scope)
    return {"scope": scope, "names": names, "policy": policy, "base": base}


def _view(sandbox: RunningSandbox, scope: str, datasets: list[str]) -> dict:
    return sandbox.dirac_client("replica-view", scope, json.dumps(datasets))


def _storage_file(sandbox: RunningSandbox, rse: str, lfn: str) -> Path:
    return sandbox.paths.storage_dir(rse) / lfn.lstrip("/")


def test_policy_rules_copies_by_the_rms_then_verified_release_of_the_shore_copy(local_sandbox: RunningSandbox,
                                                                                 runs: dict) -> None:
    scope, names, policy = runs["scope"], runs["names"], str(runs["policy"])
    started = time.monotonic()
    checked = _replicate(local_sandbox, "validate", policy)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # nothing is released before the copies exist: the source is the only copy
    early = _replicate(local_sandbox, "clean-source", policy)
    assert early.returncode == 2, early.stdout + early.stderr
    assert "no rule for 1x KM3-DISK-1" in early.stdout and "the source copy is the last one" in early.stdout

    applied = _replicate(local_sandbox, "apply", policy)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"rules: {2 * len(names)} created, 0 already there, 0 failed" in applied.stdout
    assert "mover DIRAC-RMS" in applied.stdout and "copy request km3-replicate." in applied.stdout

    def all_ok():
        view = _view(local_sandbox, scope, names)
        rules = [rule for dataset in view.values() for rule in dataset["rules"] if rule["rse_expression"] != SHORE]
        copies = [states for dataset in view.values() for states in dataset["replicas"].values()]
        # rules and replicas are read one after the other: wait until both tell the copies are there
        done = all(rule["state"] == "OK" for rule in rules) and len(rules) == 2 * len(names) and all(
            states.get(DISK) == states.get(TAPE) == "AVAILABLE" for states in copies)
        return view if done else None

    _phase(started, "validate, early clean-source, apply")
    view = _wait("the policy's rules to become OK (copies by the RequestExecutingAgent)", all_ok, COPY_TIMEOUT)
    _phase(started, "every rule OK (copies made by the RMS)")
    for dataset in names:
        for did, states in view[dataset]["replicas"].items():
            assert states == {SHORE: "AVAILABLE", DISK: "AVAILABLE", TAPE: "AVAILABLE"}, (did, states)
            source = _storage_file(local_sandbox, SHORE, did)
            for rse in (DISK, TAPE):
                assert _adler32(_storage_file(local_sandbox, rse, did)) == _adler32(source)
    # DIRAC sees the copies too
    lfn = next(iter(view[names[0]]["replicas"]))
    listed = local_sandbox.run("dirac-dms-lfn-replicas", lfn)
    assert listed.returncode == 0 and all(rse in listed.stdout for rse in (SHORE, DISK, TAPE)), listed.stdout

    # applying again changes nothing (and asks for no copy)
    again = _replicate(local_sandbox, "apply", "--wait", "60", policy)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"rules: 0 created, {2 * len(names)} already there, 0 failed" in again.stdout, again.stdout
    assert "0 file copies awaited" in again.stdout and "every rule of the policy is OK" in again.stdout

    # a wrong checksum at tape, lost bytes at disk: those runs keep their source copy, the file is named
    badsum_file = sorted(view[f"{runs['base']}/badsum"]["replicas"])[0]
    _storage_file(local_sandbox, TAPE, badsum_file).write_text("corrupted on tape")
    nocopy_file = sorted(view[f"{runs['base']}/nocopy"]["replicas"])[1]
    _storage_file(local_sandbox, DISK, nocopy_file).unlink()

    # crash and rerun: kill clean-source (SIGKILL) right after it released its first run
    command = [str(BIN / "dirac-km3-replicate"), "clean-source", policy]
    process = subprocess.Popen(command, env=local_sandbox.user_env(), stdout=subprocess.PIPE, text=True)
    seen = []
    for line in process.stdout:  # DIRAC's own lines first ("Running without remote configuration")
        seen.append(line)
        if line.startswith("released "):
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert seen and seen[-1].startswith("released "), seen
    rules_after_kill = _view(local_sandbox, scope, names)
    # released: its shore rule expires (or Rucio's judge-cleaner removed it already)
    released_at_kill = [d for d in names[:GOOD_RUNS] if not any(r["rse_expression"] == SHORE and not r["expires_at"]
                                                                  for r in rules_after_kill[d]["rules"])]
    assert 1 <= len(released_at_kill) < GOOD_RUNS, released_at_kill

    _phase(started, f"clean-source killed after releasing {len(released_at_kill)} of {GOOD_RUNS} runs")
    rerun = _replicate(local_sandbox, "clean-source", policy)
    _phase(started, "clean-source rerun")
    assert rerun.returncode == 2, rerun.stdout + rerun.stderr  # two runs kept
    assert f"source copies released: {GOOD_RUNS - len(released_at_kill)} datasets" in rerun.stdout, rerun.stdout
    assert f"KEPT {scope}:{runs['base']}/badsum" in rerun.stdout
    assert f"{scope}:{badsum_file}: copy at {TAPE} has adler32" in rerun.stdout
    assert f"KEPT {scope}:{runs['base']}/nocopy" in rerun.stdout
    assert f"{scope}:{nocopy_file}: copy at {DISK} unreadable" in rerun.stdout

    # Rucio's judge-cleaner and reaper delete the released shore copies, bytes included; nothing else
    good = names[:GOOD_RUNS]

    def shore_copies_gone():
        current = _view(local_sandbox, scope, good)
        return current if all(SHORE not in states for d in good for states in current[d]["replicas"].values()) \
            else None

    final = _wait("Rucio's reaper to delete the released shore copies", shore_copies_gone, REAP_TIMEOUT)
    _phase(started, "released shore copies deleted by Rucio's reaper")
    for dataset in good:
        assert [rule["rse_expression"] for rule in final[dataset]["rules"]] == [DISK, TAPE]
        assert all(rule["state"] == "OK" for rule in final[dataset]["rules"])
        for did, states in final[dataset]["replicas"].items():
            assert states == {DISK: "AVAILABLE", TAPE: "AVAILABLE"}, (did, states)
            assert not _storage_file(local_sandbox, SHORE, did).exists(), did
            for rse in (DISK, TAPE):
                assert _storage_file(local_sandbox, rse, did).exists(), (did, rse)
    kept = _view(local_sandbox, scope, names[GOOD_RUNS:])
    for dataset in names[GOOD_RUNS:]:
        shore_rules = [rule for rule in kept[dataset]["rules"] if rule["rse_expression"] == SHORE]
        assert shore_rules and not shore_rules[0]["expires_at"], kept[dataset]["rules"]
        for did, states in kept[dataset]["replicas"].items():
            assert states.get(SHORE) == "AVAILABLE" and _storage_file(local_sandbox, SHORE, did).exists(), did

    # a third run: everything released before, the two bad runs still kept; status tells the same
    third = _replicate(local_sandbox, "clean-source", policy)
    assert f"source copies released: 0 datasets (0 files, 0 bytes); released before: {GOOD_RUNS}" in third.stdout
    status = _replicate(local_sandbox, "status", policy)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count("source: gone") + status.stdout.count("source: released") == GOOD_RUNS
    assert status.stdout.count("source: present") == 2
