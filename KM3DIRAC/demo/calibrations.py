"""The demo's calibration sets: ``orientations`` of detector 49 in two versions, registered with
``dirac-km3-calib``'s own code (the store of the CS, default ``/km3net/calibration``). Version 1.0.0 covers runs
11291..11299; version 1.1.0 only run 11292, which therefore gets it (the demo's process step asks for
``orientations``: the newest version covering each run). Registering again changes nothing."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

DETECTOR = 49
CALIBRATIONS = (  # (version, first run, last run)
    ("1.0.0", 11291, 11299),
    ("1.1.0", 11292, 11292),
)


def register_demo_calibrations(catalog, work: Path, say) -> None:
    from rucio.common.exception import Duplicate

    from KM3DIRAC.core.calibration import describe_calibration
    from KM3DIRAC.DataManagementSystem.Client.Calibrations import calibration_settings, store_from_cs

    settings = calibration_settings()
    store = store_from_cs(catalog)
    try:
        catalog.client.add_scope(catalog.client.account, catalog.mapper.to_did(f"{store.base_path}/x").scope)
    except Duplicate:
        pass
    work.mkdir(parents=True, exist_ok=True)
    calibrations, paths = [], {}
    for version, first, last in CALIBRATIONS:
        name = f"KM3NeT_{DETECTOR:08d}_D_{version}_{first:08d}_{last:08d}_1.orientations.txt"
        path = work / name
        path.write_text(f"demo orientations of detector {DETECTOR}, version {version}, runs {first}..{last}\n")
        calibrations.append(describe_calibration(name))
        paths[name] = path
    result = store.register(calibrations, paths, settings.se, settings.failover_ses)
    if result.failed:
        raise RuntimeError(f"demo calibrations not registered: {result.failed}")
    for lfn in sorted(result.successful.values()):
        say(f"calibration {lfn} registered")


def calibrations_used(catalog, lfns: list[str]) -> dict[int, set[str]]:
    """Run -> the calibration DIDs recorded in the provenance of the outputs ``lfns``."""
    used: dict[int, set[str]] = defaultdict(set)
    for meta in catalog.user_metadata(dict.fromkeys(lfns)).successful.values():
        if meta.get("Calibrations") and meta.get("run_number") is not None:
            used[int(meta["run_number"])].update(str(meta["Calibrations"]).split(","))
    return dict(used)
