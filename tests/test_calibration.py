"""Calibration sets (issue 14): registration from real KM3NeT calibration file names through `dirac-km3-calib`,
overlaps refused, boundary runs, frozen versions, tags moved, and jobs (`dirac-km3-job-run`, the
JobExecutionCoordinator) that get the calibration of their run, or fail before the payload without one, with the
calibration DIDs in their outputs' provenance. Against the session's real Rucio server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from KM3DIRAC.core.calibration import (
    CalibrationError,
    CalibrationIndex,
    Period,
    describe_calibration,
    from_file_name,
    overlap_problems,
    parse_requirement,
    parse_time,
)
from KM3DIRAC.core.trains import TrainDefinitionError, parse_train

BIN = Path(sys.executable).parent
PAYLOAD = Path(__file__).parent / "payloads" / "show_calibration.py"
TEMPLATES = Path(__file__).resolve().parent.parent / "jdl_templates"

# real KM3NeT calibration names (../shared/notes/km3net-conventions.md) and neighbours of the same shape
V1_FIRST = "KM3NeT_00000133_D_1.0.0_00017397_00017496_1.orientations.root"
V1_SECOND = "KM3NeT_00000133_D_1.0.0_00017497_00017596_1.orientations.root"
V1_OVERLAPPING = "KM3NeT_00000133_D_1.0.0_00017450_00017520_1.orientations.root"
V2_FIRST = "KM3NeT_00000133_D_2.0.0_00017397_00017596_1.orientations.root"


# ----------------------------------------------------------------------------------------------- the model alone
def test_real_km3net_names_tell_kind_detector_version_and_runs():
    assert from_file_name(V1_FIRST) == ("orientations", 133, "1.0.0", Period(17397, 17496))
    assert from_file_name("/km3net/x/KM3NeT_00000049_D_3.2.1-rc1_00011291_00011291_2.detx.gz")[:3] == \
        ("detx", 49, "3.2.1-rc1")
    with pytest.raises(CalibrationError, match=r"KM3NeT_00000133_20221025\.detx: not a KM3NeT calibration"):
        from_file_name("KM3NeT_00000133_20221025.detx")
    # values given win over the name; a name that cannot tell needs them all
    given = describe_calibration("t0.txt", "t0", 133, "1.0", Period(start=parse_time("2026-01-01"),
                                                                     end=parse_time("2026-01-31T23:59:59Z")))
    assert given.period.describe() == "2026-01-01T00:00:00Z..2026-01-31T23:59:59Z"
    with pytest.raises(CalibrationError, match="first run must be <= the last"):
        Period(20, 10)


def test_overlap_names_both_files_and_boundaries_resolve_exactly():
    first = describe_calibration(V1_FIRST)
    second = describe_calibration(V1_SECOND)
    overlapping = describe_calibration(V1_OVERLAPPING)
    other_version = describe_calibration(V2_FIRST)
    problems = overlap_problems([first], [second, overlapping, other_version])
    assert list(problems) == [V1_OVERLAPPING]
    assert V1_OVERLAPPING in problems[V1_OVERLAPPING] and V1_FIRST in problems[V1_OVERLAPPING]
    index = CalibrationIndex.build([first, second, other_version])
    assert index.find(133, "1.0.0", 17396) is None
    assert index.find(133, "1.0.0", 17397) == first and index.find(133, "1.0.0", 17496) == first
    assert index.find(133, "1.0.0", 17497) == second and index.find(133, "1.0.0", 17596) == second
    assert index.find(133, "1.0.0", 17597) is None and index.find(49, "1.0.0", 17400) is None
    assert index.latest(133, 17400) == other_version  # no version asked: the highest covering the run


def test_requirements_and_train_calibration_field():
    assert str(parse_requirement("orientations:1.0.0")) == "orientations:1.0.0"
    assert parse_requirement("detx:campaign-2026a").tag == "campaign-2026a"
    assert str(parse_requirement("t0")) == "t0:latest"
    with pytest.raises(CalibrationError, match="calibration kind '1x'"):
        parse_requirement("1x:1.0")
    data = {"name": "t", "steps": [{"name": "reco", "input": {"query": {"datatype": "raw"}}, "plugin": "ByRun",
                                    "jdl_template": "reconstruction.jdl", "calibration": ["orientations:1.0.0", "t0"],
                                    "output": {"path": "/km3net/data/reco", "se": "KM3-DISK-1"}}]}
    assert parse_train(data, "inline").steps[0].calibration == ("orientations:1.0.0", "t0:latest")
    data["steps"][0]["calibration"] = ["orientations:1.0.0", "orientations:2.0.0"]
    with pytest.raises(TrainDefinitionError, match=r"step 'reco'.calibration: calibration kinds asked for twice"):
        parse_train(data, "inline")


# ----------------------------------------------------------------------------------------------- on Rucio
@pytest.fixture
def calib_env(dirac_cs, scope_factory, tmp_path):
    """A fresh scope and base path, and a runner of `dirac-km3-calib` configured for them."""
    scope = scope_factory()
    base = f"/km3net/{scope}/calibration"
    cfg = tmp_path / "dirac.cfg"
    cfg.write_text(dirac_cs)
    options = ["--cfg", str(cfg), "-o", f"/Operations/Defaults/KM3DIRAC/Calibration/BasePath={base}"]

    def calib(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "dirac-km3-calib"), *options, *arguments], capture_output=True, text=True,
                              timeout=180, check=False, cwd=tmp_path)

    return scope, base, calib, options


def _write(directory: Path, name: str, text: str | None = None) -> Path:
    path = directory / name
    path.write_text(text or f"{name} {uuid.uuid4().hex}\n")
    return path


@pytest.mark.rucio
def test_register_list_show_resolve_overlap_freeze_and_tag(calib_env, rucio_client, tmp_path):
    scope, base, calib, _ = calib_env
    files = [_write(tmp_path, name) for name in (V1_FIRST, V1_SECOND)]
    registered = calib("register", *map(str, files))
    assert registered.returncode == 0, registered.stdout + registered.stderr
    dataset = f"{base}/orientations/1.0.0"
    assert sorted(d["name"] for d in rucio_client.list_content(scope, dataset)) == \
        [f"{dataset}/{V1_FIRST}", f"{dataset}/{V1_SECOND}"]
    meta = rucio_client.get_metadata(scope, f"{dataset}/{V1_FIRST}", plugin="ALL")
    assert (meta["calib_kind"], meta["calib_version"], meta["DetectorID"], meta["calib_first_run"],
            meta["calib_last_run"], meta["datatype"]) == ("orientations", "1.0.0", 133, 17397, 17496, "calibration")
    (replica,) = rucio_client.list_replicas([{"scope": scope, "name": f"{dataset}/{V1_FIRST}"}])
    assert replica["rses"].keys() == {"KM3-DISK-1"}

    # an overlapping period of the same kind, detector and version: refused, naming both files, nothing stored
    overlapping = calib("register", str(_write(tmp_path, V1_OVERLAPPING)))
    assert overlapping.returncode == 1
    assert V1_OVERLAPPING in overlapping.stderr and f"{dataset}/{V1_FIRST}" in overlapping.stderr, overlapping.stderr
    assert len(list(rucio_client.list_content(scope, dataset))) == 2
    assert not list(rucio_client.list_dids(scope, [{"name": f"*{V1_OVERLAPPING}"}], did_type="file"))

    # boundary runs: the first and the last of each period, and the runs just outside
    resolved = calib("resolve", "orientations:1.0.0", "17396-17397", "17496-17497", "17596-17597", "--detector",
                     "133")
    assert resolved.returncode == 1, resolved.stdout + resolved.stderr  # 17396 and 17597 have none
    rows = {int(line.split()[0]): line for line in resolved.stdout.splitlines() if line[:1].isdigit()}
    assert V1_FIRST in rows[17397] and V1_FIRST in rows[17496]
    assert V1_SECOND in rows[17497] and V1_SECOND in rows[17596]
    assert "NONE" in rows[17396] and "NONE" in rows[17597]

    # frozen: the dataset is closed and flagged, the command refuses new files, and so does Rucio itself
    frozen = calib("freeze", "orientations", "1.0.0")
    assert frozen.returncode == 0, frozen.stdout + frozen.stderr
    state = rucio_client.get_metadata(scope, dataset, plugin="ALL")
    assert state["is_open"] is False and state["calib_frozen"] is True
    late = calib("register", str(_write(tmp_path, "KM3NeT_00000133_D_1.0.0_00017600_00017700_1.orientations.root")))
    assert late.returncode == 1 and "frozen" in late.stderr, late.stdout + late.stderr
    assert len(list(rucio_client.list_content(scope, dataset))) == 2

    # a tag points at a version and moves to a new one
    assert calib("register", str(_write(tmp_path, V2_FIRST))).returncode == 0
    assert calib("tag", "orientations", "campaign-2026a", "1.0.0").returncode == 0
    before = calib("resolve", "orientations:campaign-2026a", "17500", "--detector", "133")
    assert before.returncode == 0 and V1_SECOND in before.stdout, before.stdout + before.stderr
    moved = calib("tag", "orientations", "campaign-2026a", "2.0.0")
    assert moved.returncode == 0 and "(was 1.0.0)" in moved.stdout, moved.stdout + moved.stderr
    after = calib("resolve", "orientations:campaign-2026a", "17500", "--detector", "133")
    assert after.returncode == 0 and V2_FIRST in after.stdout, after.stdout + after.stderr
    assert rucio_client.get_metadata(scope, f"{base}/orientations", plugin="JSON")["calib_tag_campaign-2026a"] == \
        "2.0.0"
    listing = calib("list", "orientations")
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines() if line[:1].isdigit()}
    assert lines["1.0.0"].split()[1:3] == ["2", "frozen"] and "campaign-2026a" in lines["2.0.0"]
    shown = calib("show", "orientations", "campaign-2026a")
    assert V2_FIRST in shown.stdout and "runs 17397..17596" in shown.stdout, shown.stdout + shown.stderr
    unknown_tag = calib("resolve", "orientations:nosuchtag", "17500", "--detector", "133")
    assert unknown_tag.returncode == 1 and "no tag nosuchtag" in unknown_tag.stdout + unknown_tag.stderr


@pytest.mark.rucio
def test_core_refuses_a_frozen_version_and_one_bad_file_leaves_the_good_ones(calib_env, rucio_client, tmp_path):
    from KM3DIRAC.core.calibration_store import CalibrationStore
    from KM3DIRAC.core.catalog import RucioCatalog

    _scope, base, _, _ = calib_env
    store = CalibrationStore(RucioCatalog(rucio_client), base)
    good, clash = describe_calibration(V1_FIRST), describe_calibration(V1_OVERLAPPING)
    paths = {V1_FIRST: _write(tmp_path, V1_FIRST), V1_OVERLAPPING: _write(tmp_path, V1_OVERLAPPING)}
    result = store.register([good, clash], paths, "KM3-DISK-1")
    assert list(result.successful) == [V1_FIRST] and list(result.failed) == [V1_OVERLAPPING]
    assert V1_FIRST in result.failed[V1_OVERLAPPING]
    again = store.register([good], paths, "KM3-DISK-1")  # the same file again: idempotent
    assert list(again.successful) == [V1_FIRST]
    store.freeze("orientations", "1.0.0")
    second = describe_calibration(V1_SECOND)
    refused = store.register([second], {V1_SECOND: _write(tmp_path, V1_SECOND)}, "KM3-DISK-1")
    assert "frozen" in refused.failed[V1_SECOND]
    assert [c.name for c in store.load_version("orientations", "1.0.0")] == [V1_FIRST]


def _upload_run(rucio_client, scope: str, tmp_path: Path, detector: int, run: int) -> str:
    from rucio.client.uploadclient import UploadClient

    dataset = f"/km3net/{scope}/raw/run{run}"
    name = f"KM3NeT_{detector:08d}_{run:08d}.root"
    path = _write(tmp_path, name)
    UploadClient(rucio_client).upload([{"path": str(path), "rse": "KM3-DISK-1", "did_scope": scope,
                                        "did_name": f"{dataset}/{name}", "dataset_scope": scope,
                                        "dataset_name": dataset}])
    rucio_client.set_metadata_bulk(scope, f"{dataset}/{name}", {"run_number": run, "DetectorID": detector})
    return dataset


@pytest.mark.rucio
def test_job_run_gets_the_calibration_of_its_run_or_fails_before_the_payload(calib_env, rucio_client, tmp_path):
    scope, base, calib, options = calib_env
    v1 = _write(tmp_path, V1_FIRST, "orientations v1 for 17397..17496\n")
    assert calib("register", str(v1)).returncode == 0
    assert calib("tag", "orientations", "campaign-2026a", "1.0.0").returncode == 0
    covered = _upload_run(rucio_client, scope, tmp_path, 133, 17496)  # the last run of the period
    uncovered = _upload_run(rucio_client, scope, tmp_path, 133, 17497)

    def job(inputs: str, calibration: str, workdir: Path) -> subprocess.CompletedProcess:
        workdir.mkdir()
        return subprocess.run(
            [str(BIN / "dirac-km3-job-run"), *options, f"--inputs={inputs}", f"--calibration={calibration}",
             "--outputs=seen_calibration.json", f"--output-path=/km3net/{scope}/products<run_number>",
             "--output-se=KM3-DISK-2", "--", sys.executable, str(PAYLOAD)],
            cwd=workdir, capture_output=True, text=True, timeout=300, env={**os.environ, "JOBID": "0"}, check=False)

    done = job(covered, "orientations:campaign-2026a", tmp_path / "job1")
    assert done.returncode == 0, done.stdout + done.stderr
    seen = json.loads((tmp_path / "job1" / "seen_calibration.json").read_text())
    path = Path(seen["env"]["KM3_CALIB_ORIENTATIONS"])
    assert path.name == V1_FIRST and seen["contents"]["KM3_CALIB_ORIENTATIONS"] == v1.read_text()
    did = f"{scope}:{base}/orientations/1.0.0/{V1_FIRST}"
    assert seen["file"]["run"] == 17496 and seen["file"]["calibrations"]["orientations"]["did"] == did
    output = f"/km3net/{scope}/products17496/seen_calibration.json"
    assert rucio_client.get_metadata(scope, output, plugin="JSON")["Calibrations"] == did

    failed = job(uncovered, "orientations:1.0.0", tmp_path / "job2")
    assert failed.returncode == 2, failed.stdout + failed.stderr
    message = failed.stdout + failed.stderr
    assert "orientations:1.0.0" in message and "run 17497" in message and "detector 133" in message, message
    assert "No calibration:" in message  # the ApplicationStatus sent
    assert not (tmp_path / "job2" / "seen_calibration.json").exists()  # the payload never ran


@pytest.mark.rucio
def test_job_execution_coordinator_gives_the_payload_its_calibration(calib_env, rucio_client, tmp_path,
                                                                     monkeypatch):
    from DIRAC import gConfig
    from DIRAC.ConfigurationSystem.Client.ConfigurationData import gConfigurationData

    from KM3DIRAC.WorkloadManagementSystem.JobWrapper.JobExecutionCoordinator import JobExecutionCoordinator

    scope, base, calib, _ = calib_env
    assert calib("register", str(_write(tmp_path, V1_FIRST))).returncode == 0
    run = _upload_run(rucio_client, scope, tmp_path, 133, 17397)  # the first run of the period
    option = "/Operations/Defaults/KM3DIRAC/Calibration/BasePath"
    gConfig.setOptionValue(option, base)
    gConfigurationData.generateNewVersion()  # DIRAC's Operations helper caches per configuration version
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job").mkdir()
    monkeypatch.chdir(tmp_path / "job")
    try:
        # a production task: DIRAC downloads InputData itself, the run comes from the task's LFNs
        lfn = next(iter(rucio_client.list_files(scope, run)))["name"]
        job_args = {"JobID": 0, "InputData": [f"LFN:{lfn}"], "KM3Calibration": ["orientations"],
                    "KM3OutputData": "seen_calibration.json", "KM3OutputPath": f"/km3net/{scope}/coordinated",
                    "KM3OutputSE": "KM3-DISK-1"}
        coordinator = JobExecutionCoordinator(jobArgs=job_args, ceArgs={})
        pre = coordinator.preProcess("payload", {"A": "1"})
        assert pre["OK"], pre
        env = pre["Value"]["env"]
        assert env["A"] == "1" and Path(env["KM3_CALIB_ORIENTATIONS"]).name == V1_FIRST
        subprocess.run([sys.executable, str(PAYLOAD)], check=True, env={**os.environ, **env})
        assert coordinator.postProcess()["OK"]
        meta = rucio_client.get_metadata(scope, f"/km3net/{scope}/coordinated/seen_calibration.json", plugin="JSON")
        assert meta["Calibrations"] == f"{scope}:{base}/orientations/1.0.0/{V1_FIRST}"
        missing = JobExecutionCoordinator({"JobID": 0, "InputData": [f"LFN:{lfn}"], "KM3Calibration": "detx:1.0"},
                                          {}).preProcess("payload", {})
        assert not missing["OK"] and "detx:1.0" in missing["Message"] and "run 17397" in missing["Message"]
    finally:
        gConfig.setOptionValue(option, "/km3net/calibration")
        gConfigurationData.generateNewVersion()


@pytest.mark.rucio
def test_train_plan_shows_each_runs_calibration_and_names_runs_without(calib_env, rucio_client, tmp_path):
    scope, _base, calib, options = calib_env
    assert calib("register", *(str(_write(tmp_path, name)) for name in (V1_FIRST, V2_FIRST))).returncode == 0
    for run in (17396, 17397, 17496):
        _upload_run(rucio_client, scope, tmp_path, 133, run)
    for run in (17396, 17397, 17496):
        rucio_client.set_metadata_bulk(scope, f"/km3net/{scope}/raw/run{run}/KM3NeT_00000133_{run:08d}.root",
                                       {"datatype": "raw"})
    train = {"name": f"calib-{scope}", "detector": 133, "steps": [{
        "name": "reco", "input": {"query": {"datatype": "raw"}, "path": f"/km3net/{scope}/raw"}, "plugin": "ByRun",
        "jdl_template": "reconstruction.jdl", "jdl_parameters": {"SoftwareVersion": "v19"},
        "calibration": ["orientations:1.0.0"],
        "output": {"path": f"/km3net/{scope}/reco", "se": "KM3-DISK-1"}}]}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(train))
    plan = subprocess.run([str(BIN / "dirac-km3-train"), *options, "plan", str(path)], capture_output=True,
                          text=True, timeout=180, check=False)
    assert plan.returncode == 0, plan.stdout + plan.stderr
    rows = {int(line.split()[2]): line for line in plan.stdout.splitlines() if line.startswith("reco ")
            and len(line.split()) == 5}
    # first and last run of the period; 17396 has none in 1.0.0 (version 2.0.0 does not stand in for it)
    assert V1_FIRST in rows[17397] and V1_FIRST in rows[17496] and "NONE" in rows[17396], plan.stdout
    assert "step reco: detector 133 run 17396 has no orientations:1.0.0 calibration" in plan.stdout, plan.stdout

    from KM3DIRAC.TransformationSystem.Client.Trains import step_job

    job_train = parse_train(train, "inline", TEMPLATES)
    assert "KM3Calibration = orientations:1.0.0" in step_job(job_train, job_train.steps[0], TEMPLATES)._toJDL()


@pytest.mark.rucio
def test_register_with_options_and_a_time_range(calib_env, rucio_client, tmp_path):
    scope, base, calib, _ = calib_env
    january = _write(tmp_path, "t0-january.txt")
    options = ["--kind", "t0", "--detector", "49", "--version", "1.0", "--start", "2026-01-01", "--end",
               "2026-01-31T23:59:59Z"]
    assert calib("register", str(january), *options).returncode == 0
    overlapping = _write(tmp_path, "t0-late-january.txt")
    refused = calib("register", str(overlapping), *options[:6], "--start", "2026-01-31", "--end", "2026-02-10")
    assert refused.returncode == 1 and "t0-january.txt" in refused.stderr, refused.stdout + refused.stderr
    meta = rucio_client.get_metadata(scope, f"{base}/t0/1.0/t0-january.txt", plugin="JSON")
    assert (meta["calib_start"], meta["calib_end"]) == ("2026-01-01T00:00:00Z", "2026-01-31T23:59:59Z")
    inside = calib("resolve", "t0:1.0", "11291", "--detector", "49", "--time", "2026-01-31T23:59:59Z")
    assert inside.returncode == 0 and "t0-january.txt" in inside.stdout, inside.stdout + inside.stderr
    outside = calib("resolve", "t0:1.0", "11291", "--detector", "49", "--time", "2026-02-01T00:00:00Z")
    assert outside.returncode == 1 and "NONE" in outside.stdout
    unnamed = calib("register", str(_write(tmp_path, "geometry.detx")))
    assert unnamed.returncode == 1 and "geometry.detx: not a KM3NeT calibration file name" in unnamed.stderr
