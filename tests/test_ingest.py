"""Shore-station ingestion (issue 13, deliverable 1): `dirac-km3-ingest` registers the DAQ's KM3NeT files where they
lie at a non-deterministic shore RSE, against the session's real Rucio server; metadata read back through DIRAC's
own FileCatalog() and `dirac-dms-lfn-metadata`; files being written skipped then ingested; the command killed with
SIGKILL at several points and run again, Rucio's state compared with the files on disk; bad names refused by name."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import pytest
from km3net_testdata import data_path

from KM3DIRAC.sandbox.rucio_setup import add_directory_rse

pytestmark = pytest.mark.rucio

BIN = Path(sys.executable).parent
ONLINE = Path(data_path("online/km3net_online.root")).parent
# real KM3NeT raw DAQ files of detector 267 run 25291 and detector 49 run 8456 (km3net-testdata)
RAW_FILES = ("KM3NeT_00000267_00025291_JDAQEvent_JDAQSummaryslice.root", "KM3NeT_00000267_00025291_L1.root",
             "KM3NeT_00000049_00008456.summaryslice-167941.root")
BAD_NAME = "KM3NeT_00000133_JDAQEvent.root"  # a real file whose name carries no run


@pytest.fixture
def shore(dirac_cs, rucio_client, scope_factory, tmp_path):
    """A fresh non-deterministic shore RSE whose storage holds the DAQ directory, a fresh scope, and a runner of
    `dirac-km3-ingest` configured for them (settle time 0 unless given)."""
    scope = scope_factory()
    rse = f"SHORE-{uuid.uuid4().hex[:8].upper()}"
    storage = tmp_path / "shore"
    add_directory_rse(rucio_client, rse, storage, deterministic=False)
    daq = storage / "daq"
    daq.mkdir()
    cfg = tmp_path / "dirac.cfg"
    cfg.write_text(dirac_cs)
    env = {key: value for key, value in os.environ.items() if key not in ("RUCIO_CONFIG", "RUCIO_HOME")}
    base = [str(BIN / "dirac-km3-ingest"), "--cfg", str(cfg), f"--directory={daq}", f"--rse={rse}",
            f"--scope={scope}"]

    def command(*arguments: str) -> list[str]:
        given = " ".join(arguments)
        return [*base, *([] if "--settle" in given else ["--settle=0"]), *arguments]

    def ingest(*arguments: str) -> subprocess.CompletedProcess:
        return subprocess.run(command(*arguments), capture_output=True, text=True, timeout=300, check=False,
                              env=env, cwd=tmp_path)

    return {"scope": scope, "rse": rse, "daq": daq, "ingest": ingest, "command": command, "env": env,
            "cfg": cfg, "tmp": tmp_path}


def _adler32(path: Path) -> str:
    return f"{zlib.adler32(path.read_bytes()) & 0xFFFFFFFF:08x}"


def _dataset(scope: str, detector: int, run: int) -> str:
    return f"/km3net/{scope}/raw/{detector}/{run}"


def _rucio_state(rucio_client, shore, runs: set[tuple[int, int]]) -> dict:
    """Per run dataset: its files (name -> bytes, adler32, replica PFN at the shore RSE, the run number and data
    type the file carries), its rules, open or not."""
    scope, rse = shore["scope"], shore["rse"]
    state = {}
    for detector, run in sorted(runs):
        dataset = _dataset(scope, detector, run)
        content = [row["name"] for row in rucio_client.list_content(scope, dataset)]
        assert len(content) == len(set(content)), f"{dataset} holds a file twice: {content}"
        files = {}
        if content:
            dids = [{"scope": scope, "name": name} for name in content]
            columns = {row["name"]: (row["run_number"], row["datatype"])
                       for row in rucio_client.get_metadata_bulk(dids, plugin="DID_COLUMN")}
            for replica in rucio_client.list_replicas(dids, all_states=True):
                files[replica["name"]] = (replica["bytes"], replica["adler32"],
                                          sorted(pfn for pfn in replica["pfns"]
                                                 if replica["pfns"][pfn]["rse"] == rse),
                                          *columns[replica["name"]])
        rules = [rule["rse_expression"] for rule in rucio_client.list_did_rules(scope, dataset)]
        meta = rucio_client.get_metadata(scope, dataset)
        state[dataset] = {"files": files, "rules": rules, "open": meta["is_open"]}
    return state


def _expected_state(shore, disk: dict[str, tuple[int, int]], closed: set[tuple[int, int]]) -> dict:
    """What Rucio must hold for the files on ``disk`` (path name -> (detector, run))."""
    scope, daq = shore["scope"], shore["daq"]
    state: dict = {}
    for name, (detector, run) in sorted(disk.items()):
        dataset = _dataset(scope, detector, run)
        entry = state.setdefault(dataset, {"files": {}, "rules": [shore["rse"]], "open": (detector, run) not in closed})
        path = daq / name
        entry["files"][f"{dataset}/{name}"] = (path.stat().st_size, _adler32(path), [f"file://localhost{path}"],
                                               run, "raw")
    return state


# ----------------------------------------------------------------------------------------------- the model alone
@pytest.mark.parametrize(("name", "run", "stream"), [
    ("KM3NeT_00000133_00012345.root", (133, 12345), ""),
    ("KM3NeT_00000267_00025291_JDAQEvent_JDAQSummaryslice.root", (267, 25291), "JDAQEvent_JDAQSummaryslice"),
    ("KM3NeT_00000049_00008456.summaryslice-167941.root", (49, 8456), "summaryslice-167941"),
])
def test_raw_names_give_detector_run_and_stream(name, run, stream):
    from KM3DIRAC.core.ingest import parse_raw_name

    assert parse_raw_name(name) == (run, stream)


def test_settings_and_run_lists_refuse_what_cannot_work(tmp_path):
    from KM3DIRAC.core.ingest import IngestError, IngestSettings, read_run_list
    from KM3DIRAC.core.runs import RunKey

    settings = IngestSettings(rse="S", directory=tmp_path, scope="raw",
                              layout="/{vo}/{scope}/raw/KM3NeT_{detector:08d}/run{run}")
    assert settings.dataset_lfn(RunKey(49, 11291)) == "/km3net/raw/raw/KM3NeT_00000049/run11291"
    with pytest.raises(IngestError, match=r"must lie below /km3net/raw/"):
        IngestSettings(rse="S", directory=tmp_path, scope="raw", layout="/km3net/other/{run}")
    with pytest.raises(IngestError, match=r"use the fields vo, scope, detector, run"):
        IngestSettings(rse="S", directory=tmp_path, scope="raw", layout="/{vo}/{scope}/{night}")
    with pytest.raises(IngestError, match=r"CloseRunsBy 'eor': choose one of marker, runlist, quiet, never"):
        IngestSettings(rse="S", directory=tmp_path, scope="raw", close_by="eor")
    runs = tmp_path / "runs.txt"
    runs.write_text("# km3smk run list\n00000133 00012345\n133 12346  # last\n")
    assert read_run_list(runs) == {RunKey(133, 12345), RunKey(133, 12346)}
    runs.write_text("133 12345\n133\n")
    with pytest.raises(IngestError, match=r"line 2: '133' is not '<detector> <run>'"):
        read_run_list(runs)


# ----------------------------------------------------------------------------------------------- real files
def test_real_km3net_files_with_metadata_seen_through_dirac(shore, rucio_client):
    from DIRAC.Resources.Catalog.FileCatalog import FileCatalog

    daq, scope = shore["daq"], shore["scope"]
    for name in (*RAW_FILES, BAD_NAME):
        shutil.copy(ONLINE / name, daq / name)
    (daq / "KM3NeT_00000267_00025291.end").write_text("")  # run 25291 ended; run 8456 did not
    result = shore["ingest"]()
    assert result.returncode == 1, result  # a refused file makes the exit code 1, the good ones are in
    assert f"refused {daq / BAD_NAME}: {BAD_NAME}: not a KM3NeT raw data file name" in result.stderr, result.stderr
    assert "3 files registered" in result.stdout and "runs closed: detector 267 run 25291" in result.stdout, \
        result.stdout
    assert "night " in result.stdout and "files/s" in result.stdout
    disk = {name: (267, 25291) for name in RAW_FILES[:2]} | {RAW_FILES[2]: (49, 8456)}
    assert _rucio_state(rucio_client, shore, {(267, 25291), (49, 8456)}) == \
        _expected_state(shore, disk, closed={(267, 25291)})
    assert not any(BAD_NAME in name for name in rucio_client.list_dids(scope, {"name": "*"}, did_type="file"))

    fc = FileCatalog()
    lfn = f"{_dataset(scope, 267, 25291)}/{RAW_FILES[0]}"
    meta = fc.getFileUserMetadata(lfn)
    assert meta["OK"], meta
    # events (13 in the real file's KM3NET_EVENT tree), run_number and datatype (FileMetadata columns, Rucio DID
    # columns); DetectorID is its directory's, the run dataset's
    assert {k: meta["Value"].get(k) for k in ("run_number", "datatype", "events")} == \
        {"run_number": 25291, "datatype": "raw", "events": 13}, meta
    assert not {"DetectorID", "Stream"} & set(meta["Value"]), meta
    directory = fc.getDirectoryUserMetadata(_dataset(scope, 267, 25291))
    assert directory["OK"], directory
    assert {k: directory["Value"].get(k) for k in ("DetectorID", "run_number", "datatype")} == \
        {"DetectorID": 267, "run_number": 25291, "datatype": "raw"}
    # DIRAC's searches: files inherit their directory's metadata
    run_files = [f"{_dataset(scope, 267, 25291)}/{n}" for n in RAW_FILES[:2]]
    found = fc.findFilesByMetadata({"run_number": 25291, "DetectorID": 267, "datatype": "raw"}, f"/km3net/{scope}")
    assert found["OK"] and sorted(found["Value"]) == sorted(run_files)
    with_13 = [f for f in run_files if fc.getFileUserMetadata(f)["Value"].get("events") == 13]
    found = fc.findFilesByMetadata({"events": 13, "run_number": 25291}, f"/km3net/{scope}")
    assert found["OK"] and sorted(found["Value"]) == sorted(with_13) and lfn in with_13, found
    listed = subprocess.run([str(BIN / "dirac-dms-lfn-metadata"), "--cfg", str(shore["cfg"]), lfn],
                            capture_output=True, text=True, timeout=180, check=False, env=shore["env"])
    assert listed.returncode == 0, listed
    assert _adler32(daq / RAW_FILES[0]) in listed.stdout.lower() and \
        str((daq / RAW_FILES[0]).stat().st_size) in listed.stdout, listed.stdout

    # night 2: the open run gets its end marker and a new run arrives; only the new file is registered
    (daq / "KM3NeT_00000049_00008456.end").write_text("")
    shutil.copy(ONLINE / "KM3NeT_00000267_00025291_SN.root", daq / "KM3NeT_00000267_00025292_SN.root")
    again = shore["ingest"]("--close-by=quiet", "--quiet=0", "--file-metadata=all")
    assert "1 files registered" in again.stdout and "3 already in Rucio" in again.stdout, again.stdout
    new_lfn = f"{_dataset(scope, 267, 25292)}/KM3NeT_00000267_00025292_SN.root"
    meta = fc.getFileUserMetadata(new_lfn)
    assert meta["OK"], meta
    assert {k: meta["Value"].get(k) for k in ("DetectorID", "run_number", "datatype", "Stream")} == \
        {"DetectorID": 267, "run_number": 25292, "datatype": "raw", "Stream": "SN"}, meta
    disk |= {"KM3NeT_00000267_00025292_SN.root": (267, 25292)}
    assert _rucio_state(rucio_client, shore, {(267, 25291), (49, 8456), (267, 25292)}) == \
        _expected_state(shore, disk, closed={(267, 25291), (49, 8456), (267, 25292)})


def test_file_being_written_is_skipped_then_ingested(shore, rucio_client):
    daq, scope = shore["daq"], shore["scope"]
    done = daq / "KM3NeT_00000133_00012345.f1.root"
    done.write_bytes(os.urandom(2000))
    os.utime(done, (time.time() - 600, time.time() - 600))
    fresh = daq / "KM3NeT_00000133_00012345.f2.root"   # written just now: younger than the settle time
    fresh.write_bytes(os.urandom(3000))
    part = daq / "KM3NeT_00000133_00012345.f3.root.part"  # the DAQ's temporary name
    part.write_bytes(os.urandom(1000))
    locked = daq / "KM3NeT_00000133_00012345.f4.root"
    locked.write_bytes(os.urandom(1000))
    os.utime(locked, (time.time() - 600, time.time() - 600))
    (daq / f"{locked.name}.lock").write_text("")
    (daq / "KM3NeT_00000133_00012345.end").write_text("")  # the run ended, but files are still being written
    first = shore["ingest"]("--settle=120")
    assert first.returncode == 0, first
    assert "1 files registered" in first.stdout and "3 still being written" in first.stdout, first.stdout
    dataset = _dataset(scope, 133, 12345)
    assert [r["name"] for r in rucio_client.list_content(scope, dataset)] == [f"{dataset}/{done.name}"]
    assert rucio_client.get_metadata(scope, dataset)["is_open"], "closed while files were still being written"

    part.rename(daq / part.name.removesuffix(".part"))
    (daq / f"{locked.name}.lock").unlink()
    second = shore["ingest"]()
    assert "3 files registered" in second.stdout and "runs closed: detector 133 run 12345" in second.stdout, \
        second.stdout
    disk = {p.name: (133, 12345) for p in daq.glob("*.root")}
    assert _rucio_state(rucio_client, shore, {(133, 12345)}) == _expected_state(shore, disk, closed={(133, 12345)})


# ----------------------------------------------------------------------------------------------- crashes
def _write_night(daq: Path, runs: list[int], files_per_run: int) -> dict[str, tuple[int, int]]:
    disk = {}
    for run in runs:
        for index in range(files_per_run):
            name = f"KM3NeT_00000133_{run:08d}.f{index:04d}.root"
            (daq / name).write_bytes(os.urandom(64) + name.encode())
            disk[name] = (133, run)
        (daq / f"KM3NeT_00000133_{run:08d}.end").write_text("")
    return disk


def _kill_at(shore, line_start: str) -> str:
    """Start the command, SIGKILL it as soon as a stdout line starts with ``line_start``; its output."""
    process = subprocess.Popen(shore["command"]("--read-events=no", "--chunk-files=10", "--streams=2"),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=shore["env"],
                               cwd=shore["tmp"])
    seen = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            if line.startswith(line_start):
                process.send_signal(signal.SIGKILL)
                break
    finally:
        process.wait(timeout=300)
    assert process.returncode == -signal.SIGKILL, f"not killed at {line_start!r}: {''.join(seen)}"
    return "".join(seen)


def test_killed_at_several_points_then_rerun_nothing_duplicated_nothing_missed(shore, rucio_client):
    daq = shore["daq"]
    # 300 files: chunks of 10 files per registration call, two calls in flight. Enough chunks that the ones still
    # running or queued when the progress line is read cannot all finish before the kill, even on a busy machine
    # (with 90 files, once, all were registered before the SIGKILL landed)
    disk = _write_night(daq, [20001, 20002, 20003], 100)
    runs = {(133, run) for run in (20001, 20002, 20003)}
    # killed while it checks Rucio (before any write), then twice after its first chunk (the next ones in flight)
    for point in ("scanned ", "registered 10/", "registered 10/"):
        _kill_at(shore, point)
    partial = _rucio_state(rucio_client, shore, runs)
    registered = sum(len(entry["files"]) for entry in partial.values())
    assert 20 <= registered < len(disk), registered  # the kills really cut registrations short
    # killed once every file is registered, while the runs' metadata is put on the files
    _kill_at(shore, "run metadata (")
    assert sum(len(entry["files"]) for entry in _rucio_state(rucio_client, shore, runs).values()) == len(disk)
    _kill_at(shore, "run detector 133 run 20001: complete")  # killed while it closes the complete runs
    assert rucio_client.get_metadata(shore["scope"], _dataset(shore["scope"], 133, 20001))["is_open"] is False
    final = shore["ingest"]("--read-events=no")
    assert final.returncode == 0, final
    assert _rucio_state(rucio_client, shore, runs) == _expected_state(shore, disk, closed=runs)
    again = shore["ingest"]("--read-events=no")
    assert "0 files registered" in again.stdout and f"{len(disk)} already in Rucio" in again.stdout, again.stdout


def test_registered_but_not_attached_is_attached_by_the_next_pass(shore, rucio_client):
    """The crash window between add_replicas and attach (one pass killed right after registering a chunk)."""
    daq, scope, rse = shore["daq"], shore["scope"], shore["rse"]
    disk = _write_night(daq, [30001], 3)
    dataset = _dataset(scope, 133, 30001)
    name = sorted(disk)[0]
    rucio_client.add_replicas(rse, [{"scope": scope, "name": f"{dataset}/{name}", "bytes": (daq / name).stat().st_size,
                                     "adler32": _adler32(daq / name), "pfn": f"file://localhost{daq / name}"}])
    result = shore["ingest"]("--read-events=no")
    assert "2 files registered" in result.stdout and "1 attached again" in result.stdout, result.stdout
    assert _rucio_state(rucio_client, shore, {(133, 30001)}) == _expected_state(shore, disk, closed={(133, 30001)})


def test_files_registered_and_attached_without_the_run_metadata_get_it_from_the_next_pass(shore, rucio_client):
    """The crash window between registration and the run's metadata on its files (a pass killed there): the files
    are in their open run dataset without run_number and datatype; the next pass registers nothing and sets them."""
    daq, scope = shore["daq"], shore["scope"]
    disk = _write_night(daq, [30002], 3)
    (daq / "KM3NeT_00000133_00030002.end").unlink()  # open: the pass would close it
    dataset = _dataset(scope, 133, 30002)
    first = shore["ingest"]("--read-events=no", "--file-metadata=none")
    assert "3 files registered" in first.stdout, first.stdout
    assert {row["run_number"] for row in rucio_client.get_metadata_bulk(
        [{"scope": scope, "name": f"{dataset}/{name}"} for name in disk], plugin="DID_COLUMN")} == {None}
    again = shore["ingest"]("--read-events=no")
    assert "0 files registered" in again.stdout and "3 already in Rucio" in again.stdout, again.stdout
    assert _rucio_state(rucio_client, shore, {(133, 30002)}) == _expected_state(shore, disk, closed=set())


def test_bad_names_and_conflicts_are_named_and_the_good_files_go_in(shore, rucio_client):
    daq, scope = shore["daq"], shore["scope"]
    good = daq / "KM3NeT_00000133_00040001.root"
    good.write_bytes(os.urandom(100))
    (daq / "notes.txt").write_text("shift log")
    (daq / "KM3NeT_133_40001.root").write_bytes(b"x")
    (daq / "sub").mkdir()
    (daq / "sub" / good.name).write_bytes(os.urandom(50))  # same name, another directory: same LFN
    result = shore["ingest"]("--close-by=never")
    assert result.returncode == 1
    for name in ("notes.txt", "KM3NeT_133_40001.root"):
        assert f"refused {daq / name}: {name}: not a KM3NeT raw data file name" in result.stderr, result.stderr
    assert f"refused {daq / 'sub' / good.name}: {daq / 'sub' / good.name}: a file of the same name is at {good}" \
        in result.stderr, result.stderr
    assert _rucio_state(rucio_client, shore, {(133, 40001)}) == \
        _expected_state(shore, {good.name: (133, 40001)}, closed=set())
    # the file changed after registration: refused, Rucio untouched
    good.write_bytes(os.urandom(120))
    changed = shore["ingest"]("--close-by=never")
    assert f"{good}: 120 bytes on disk, 100 in Rucio" in changed.stderr, changed.stderr
    assert rucio_client.get_metadata(scope, f"{_dataset(scope, 133, 40001)}/{good.name}")["bytes"] == 100
    missing_scope = shore["ingest"]("--close-by=never", "--scope=nosuchscope")
    assert missing_scope.returncode == 1 and "scope nosuchscope does not exist in Rucio" in missing_scope.stdout, \
        missing_scope


def test_a_name_rucio_would_refuse_is_named_and_the_others_go_in(shore, rucio_client):
    """'+' is outside Rucio's DID name pattern (KM3DIRAC's LFN checks allow it): Rucio would refuse every bulk call
    holding that file; it is refused by name before any call, the others are ingested, the run stays open."""
    daq = shore["daq"]
    disk = _write_night(daq, [50001], 11)
    bad = daq / "KM3NeT_00000133_00050001.a+b.root"
    bad.write_bytes(b"refused")
    result = shore["ingest"]("--read-events=no")
    assert result.returncode == 1, result
    assert f"refused {bad}: {bad}: /km3net/{shore['scope']}/raw/133/50001/{bad.name}: character(s) '+' not " \
        "allowed in a Rucio DID name" in result.stderr, result.stderr
    assert "11 files registered" in result.stdout and "1 refused" in result.stdout, result.stdout
    assert _rucio_state(rucio_client, shore, {(133, 50001)}) == _expected_state(shore, disk, closed=set())


def test_a_file_rucio_refuses_inside_a_registration_call_is_named_and_the_others_go_in(shore, rucio_client):
    """Another client registers one of the files (other content) after the pass checked Rucio: Rucio refuses the
    whole registration call; it is split until that file is named, the others of its call go in, nothing of the
    refused file is changed, and its run is not closed."""
    from KM3DIRAC.core.catalog import RucioCatalog
    from KM3DIRAC.core.checksums import adler32_of_file
    from KM3DIRAC.core.ingest import Ingestion, IngestSettings

    daq, scope, rse = shore["daq"], shore["scope"], shore["rse"]
    disk = _write_night(daq, [50002], 12)
    taken = sorted(disk)[5]
    taken_lfn = f"{_dataset(scope, 133, 50002)}/{taken}"
    other_rse = f"OTHER-{uuid.uuid4().hex[:8].upper()}"
    add_directory_rse(rucio_client, other_rse, shore["tmp"] / "other")

    def checksum_while_another_client_registers(path: Path) -> str:
        if path.name == taken:
            rucio_client.add_replicas(other_rse, [{"scope": scope, "name": taken_lfn, "bytes": 3,
                                                   "adler32": "00000001"}])
        return adler32_of_file(path)

    settings = IngestSettings(rse=rse, directory=daq, scope=scope, settle_seconds=0, read_events=False)
    result = Ingestion(RucioCatalog(rucio_client), settings, checksum=checksum_while_another_client_registers) \
        .run_pass()
    assert list(result.refused) == [str(daq / taken)], result.refused
    assert f"registration at {rse} failed" in result.refused[str(daq / taken)], result.refused
    assert result.files == 11 and not result.runs[next(iter(result.runs))].closed
    del disk[taken]
    assert _rucio_state(rucio_client, shore, {(133, 50002)}) == _expected_state(shore, disk, closed=set())
    assert rucio_client.get_metadata(scope, taken_lfn)["bytes"] == 3
    (replica,) = rucio_client.list_replicas([{"scope": scope, "name": taken_lfn}], all_states=True)
    assert set(replica["rses"]) == {other_rse}, replica  # no shore replica left by the refused call


# ----------------------------------------------------------------------------------------------- Rucio's daemons
def _run_rucio_daemons(rucio_server, names: str) -> None:
    """One pass of Rucio's daemons as the sandbox runs them (KM3DIRAC.sandbox.rucio_daemons), on the test server."""
    done = subprocess.run([str(rucio_server.venv / "bin" / "python"), "-m", "KM3DIRAC.sandbox.rucio_daemons",
                           "--once", f"--only={names}"], capture_output=True, text=True, timeout=300, check=False,
                          env=rucio_server.server_env(), cwd=rucio_server.work_dir)
    assert done.returncode == 0 and "pass failed" not in done.stderr, done.stderr[-3000:]


def test_a_subscription_makes_the_rule_of_a_newly_ingested_run_which_gets_its_later_files(shore, rucio_client,
                                                                                         rucio_server):
    """policies/replication.yaml's data-driven form: an entry ``as: subscription`` is a Rucio subscription; Rucio's
    transmogrifier makes its rule on the run dataset dirac-km3-ingest creates (datatype set at creation), and the
    judge-evaluator gives that rule of the still-open run the files ingested later."""
    from KM3DIRAC.core.replication_policy import ensure_subscription, parse_policy

    scope, daq = shore["scope"], shore["daq"]
    entry = parse_policy({"policies": [{
        "name": f"raw-{uuid.uuid4().hex[:8]}", "scopes": [scope], "match": {"datatype": "raw"},
        "copies": [{"rse_expression": "KM3-DISK-1", "copies": 1}], "as": "subscription"}]}).entries[0]
    assert ensure_subscription(rucio_client, entry, "root") == "created"
    (subscription,) = rucio_client.list_subscriptions(name=entry.name, account="root")
    _write_night(daq, [60001], 2)
    assert shore["ingest"]("--read-events=no", "--close-by=never").returncode == 0
    dataset = _dataset(scope, 133, 60001)
    _run_rucio_daemons(rucio_server, "transmogrifier,judge-evaluator")
    (rule,) = [r for r in rucio_client.list_did_rules(scope, dataset) if r["rse_expression"] == "KM3-DISK-1"]
    assert rule["subscription_id"] == subscription["id"], rule
    assert len(list(rucio_client.list_replica_locks(rule["id"]))) == 2
    later = daq / "KM3NeT_00000133_00060001.f0002.root"
    later.write_bytes(os.urandom(64))
    second = shore["ingest"]("--read-events=no", "--close-by=never")
    assert "1 files registered" in second.stdout, second.stdout
    _run_rucio_daemons(rucio_server, "transmogrifier,judge-evaluator")
    assert {lock["name"] for lock in rucio_client.list_replica_locks(rule["id"])} == \
        {f"{dataset}/{path.name}" for path in daq.glob("*.root")}
    assert [r["rse_expression"] for r in rucio_client.list_did_rules(scope, dataset)].count("KM3-DISK-1") == 1
    # the shore pin rule is made before its files, on the empty new dataset: the judge-evaluator locks every file
    (pin,) = [r for r in rucio_client.list_did_rules(scope, dataset) if r["rse_expression"] == shore["rse"]]
    assert {(lock["name"], lock["state"]) for lock in rucio_client.list_replica_locks(pin["id"])} == \
        {(f"{dataset}/{path.name}", "OK") for path in daq.glob("*.root")}
