#!/usr/bin/env python
"""Calibration sets in Rucio: kinds, versions, applicability periods, tags (see README.md "Calibrations").

  register FILE...              upload and register calibration files; kind, detector, version and run range are
                                read from KM3NeT names (KM3NeT_00000133_D_1.0.0_00017397_00017496_1.orientations.root)
                                unless given; an overlapping period or a frozen version is refused
  list [KIND]                   the kinds, or the versions of KIND (files, frozen or open) and its tags
  show KIND VERSION|TAG         the files of a version with their periods
  resolve KIND[:VERSION|TAG] RUN...  the file valid for each run (RUN or FIRST-LAST; --detector required)
  freeze KIND VERSION           the version can no longer change (its dataset is closed)
  tag KIND TAG VERSION          point TAG at VERSION (again: move it)

Example:
  $ dirac-km3-calib register KM3NeT_00000133_D_1.0.0_00017397_00017496_1.orientations.root
  $ dirac-km3-calib resolve orientations:1.0.0 17397-17400 --detector 133
  $ dirac-km3-calib freeze orientations 1.0.0 && dirac-km3-calib tag orientations campaign-2026a 1.0.0
"""

import sys
from pathlib import Path

from DIRAC.Core.Base.Script import Script

from KM3DIRAC.dirac_switches import register_value_switches

COMMANDS = ("register", "list", "show", "resolve", "freeze", "tag")
SWITCHES = {
    "kind": "calibration kind (default: from the file name)",
    "detector": "detector id (default: from the file name; required by resolve)",
    "version": "version (default: from the file name)",
    "first-run": "first run of the period (default: from the file name)",
    "last-run": "last run of the period (default: from the file name)",
    "start": "start of the period, UTC ISO 8601 (with --end)",
    "end": "end of the period, UTC ISO 8601 (with --start)",
    "se": "RSE to upload to (default: the CS option Calibration/SE)",
    "time": "resolve: the time of the run(s), UTC ISO 8601 (for calibrations with a time range only)",
}


def _table(rows, header):
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _runs(items):
    from KM3DIRAC.core.calibration import CalibrationError

    runs = []
    for item in items:
        first, _, last = item.partition("-")
        if not first.isdigit() or (last and not last.isdigit()):
            raise CalibrationError(f"run {item!r}: expected RUN or FIRST-LAST")
        runs.extend(range(int(first), int(last or first) + 1))
    return runs


def _period(options):
    """The period given as options, or None (then it comes from the file name)."""
    from KM3DIRAC.core.calibration import Period, parse_time

    runs = [options.get("first-run"), options.get("last-run")]
    times = [options.get("start"), options.get("end")]
    if not any(runs + times):
        return None
    return Period(first_run=int(runs[0]) if runs[0] else None, last_run=int(runs[1]) if runs[1] else None,
                  start=parse_time(times[0], "--start") if times[0] else None,
                  end=parse_time(times[1], "--end") if times[1] else None)


def _version_of(store, kind, selector):
    from KM3DIRAC.core.calibration import Requirement, check_tag, check_version

    if selector[:1].isdigit():
        return check_version(selector)
    return store.versions_for(Requirement(kind, tag=check_tag(selector)))[0]


def register(store, settings, options, files):
    from KM3DIRAC.core.calibration import CalibrationError, describe_calibration

    calibrations, paths, failed = [], {}, {}
    period = _period(options)
    for name in files:
        path = Path(name)
        if not path.is_file():
            failed[name] = f"{name}: no such local file"
            continue
        try:
            detector = int(options["detector"]) if options.get("detector") else None
            calibration = describe_calibration(name, options.get("kind"), detector, options.get("version"), period)
        except (CalibrationError, ValueError) as error:
            failed[name] = str(error)
            continue
        calibrations.append(calibration)
        paths[name] = path
    result = store.register(calibrations, paths, options.get("se") or settings.se, settings.failover_ses)
    for lfn in sorted(result.successful.values()):
        print(f"registered {lfn}")
    for name, reason in sorted({**failed, **result.failed}.items()):
        print(f"refused {name}: {reason}", file=sys.stderr)
    return 0 if not failed and not result.failed else 1


def main_command(command, arguments, options):
    from KM3DIRAC.core.calibration import CalibrationError, parse_requirement, parse_time
    from KM3DIRAC.core.runs import RunKey
    from KM3DIRAC.DataManagementSystem.Client.Calibrations import calibration_settings, store_from_cs

    settings = calibration_settings()
    store = store_from_cs()
    expected = {"register": (1, None), "list": (0, 1), "show": (2, 2), "resolve": (2, None), "freeze": (2, 2),
                "tag": (3, 3)}[command]
    if len(arguments) < expected[0] or (expected[1] is not None and len(arguments) > expected[1]):
        raise CalibrationError(f"{command}: wrong number of arguments {arguments} (see -h)")
    if command == "register":
        return register(store, settings, options, arguments)
    if command == "list":
        if not arguments:
            kinds = store.kinds()
            print("\n".join(kinds) if kinds else f"no calibration kinds below {store.base_path}")
            return 0
        kind = arguments[0]
        tags = store.tags(kind)
        rows = []
        for version in store.versions(kind):
            state = store.version_state(kind, version) or {}
            rows.append((version, len(store.load_version(kind, version)), "frozen" if state.get("frozen") else "open",
                         ", ".join(sorted(t for t, v in tags.items() if v == version)) or "-"))
        _table(rows, ("version", "files", "state", "tags"))
        return 0
    if command == "show":
        kind, version = arguments[0], _version_of(store, arguments[0], arguments[1])
        rows = [(c.detector, c.period.describe(), c.name, c.adler32) for c in
                sorted(store.load_version(kind, version), key=lambda c: (c.detector, str(c.period.first_run)))]
        _table(rows, ("detector", "period", "file", "adler32"))
        return 0
    if command == "resolve":
        requirement = parse_requirement(arguments[0])
        if not options.get("detector"):
            raise CalibrationError("resolve: --detector is required")
        runs = [RunKey(int(options["detector"]), run) for run in _runs(arguments[1:])]
        when = {run: parse_time(options["time"], "--time") for run in runs} if options.get("time") else None
        resolution = store.resolve([requirement], runs, when)
        rows = []
        for run in runs:
            found = resolution.chosen[(str(requirement), run)]
            rows.append((run.run, found.version if found else "-", found.did if found else
                         f"NONE: no {requirement} calibration covers this run"))
        _table(rows, ("run", "version", "calibration"))
        return 0 if not resolution.missing() else 1
    if command == "freeze":
        store.freeze(arguments[0], arguments[1])
        print(f"{arguments[0]} version {arguments[1]} frozen ({store.dataset_lfn(arguments[0], arguments[1])} closed)")
        return 0
    kind, tag, version = arguments
    before = store.set_tag(kind, tag, version)
    print(f"tag {tag} of {kind}: {version}" + (f" (was {before})" if before and before != version else ""))
    return 0


@Script()
def main():
    options = register_value_switches(SWITCHES)
    Script.registerArgument(f"Command: one of {', '.join(COMMANDS)}", values=list(COMMANDS))
    Script.registerArgument(["Arguments: the command's arguments (see above)"], mandatory=False)
    Script.parseCommandLine(ignoreErrors=False)
    command, *arguments = Script.getPositionalArgs()

    from DIRAC import gLogger

    from KM3DIRAC.core.errors import KM3DiracError

    try:
        code = main_command(command, arguments, options)
    except (KM3DiracError, ValueError) as error:
        gLogger.error(str(error))
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    main()
