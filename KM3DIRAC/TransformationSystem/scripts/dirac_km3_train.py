#!/usr/bin/env python
"""Processing trains: chained transformations described in one YAML file (see trains/ and README.md).

  validate  check the file; errors name the file, the step and the field
  plan      dry run: per step, how many files the catalog has for it now and how many tasks they would give,
            and per run the calibration each step will use (runs with none are named)
  create    create the steps' transformations in DIRAC (again: nothing is duplicated)
  status    per step: transformation, status, files and tasks by state, the files that failed too often
            (Problematic); then per run: files and tasks (jobs) by state in each step
  advance   one cycle of what the TrainAgent does for every running train: task status from the jobs, files of
            failed tasks retried (MaxRetries, then Problematic), each run's output dataset of a step closed once
            the run is done there (with the TrainAgent installed nobody needs to run it)
  stop      every step Stopped: no new tasks (running jobs finish); the TrainAgent leaves the train alone
  start     every step Active again (after stop)
  flush     every step Flush (DIRAC's): the plugins make tasks of incomplete groups, open runs included; DIRAC
            sets each step Active again once its tasks are made
  reprocess <runs>: the runs' files go back through every step as a new processing pass: new outputs go below
            pass<N> next to the earlier ones (Rucio never reuses a file name: versioned, not replaced)

Example:
  $ dirac-km3-train validate trains/reco-and-merge.yaml
  $ dirac-km3-train create trains/reco-and-merge.yaml
  $ dirac-km3-train reprocess trains/reco-and-merge.yaml 12345 12346
"""

import sys
from pathlib import Path

from DIRAC.Core.Base.Script import Script

import KM3DIRAC

COMMANDS = ("validate", "plan", "create", "status", "advance", "stop", "start", "flush", "reprocess")
STATUS_OF_COMMAND = {"stop": "Stopped", "start": "Active", "flush": "Flush"}
DEFAULT_TEMPLATES = Path(KM3DIRAC.__file__).resolve().parent.parent / "jdl_templates"


def _print_table(rows: list[tuple], header: tuple) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _summary(counts: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items()) if value and key != "Total") or "-"


def _run_numbers(values: list[str]) -> list[int]:
    from KM3DIRAC.core.errors import KM3DiracError

    bad = [value for value in values if not value.isdigit() or int(value) <= 0]
    if bad:
        raise KM3DiracError(f"not run numbers: {' '.join(bad)} (give positive integers, e.g. 12345 12346)")
    return sorted({int(value) for value in values})


def _manage(command: str, train, templates: Path, runs: list[int]) -> None:
    from KM3DIRAC.TransformationSystem.Client.Trains import TrainManager
    from KM3DIRAC.WorkloadManagementSystem.JobData import catalog_from_cs

    manager = TrainManager(train, templates)
    if command == "create":
        states = manager.create()
        _print_table([(s.step, s.transformation_id, "created" if s.created else "exists") for s in states],
                     ("step", "transformation", ""))
    elif command == "advance":
        from DIRAC import gConfig
        from DIRAC.ConfigurationSystem.Client.PathFinder import getAgentSection

        from KM3DIRAC.TransformationSystem.Client.Trains import DEFAULT_MAX_RETRIES

        max_retries = gConfig.getValue(f"{getAgentSection('Transformation/TrainAgent')}/MaxRetries",
                                       DEFAULT_MAX_RETRIES)
        report = manager.cycle(catalog_from_cs(), max_retries)
        lines = [f"closed {dataset}" for dataset in report.closed]
        lines += [f"retried in step {step}: {lfn}" for step, lfns in report.retried.items() for lfn in lfns]
        lines += [f"Problematic in step {step} (failed more than {max_retries} retries): {lfn}"
                  for step, lfns in report.problematic.items() for lfn in lfns]
        print("\n".join(lines) or "no run completed since last time")
    elif command in STATUS_OF_COMMAND:
        states = manager.set_status(STATUS_OF_COMMAND[command])
        _print_table([(s.step, s.transformation_id, s.status) for s in states], ("step", "transformation", "status"))
    elif command == "reprocess":
        report = manager.reprocess(catalog_from_cs(), runs)
        print(f"train {train.name}: runs {' '.join(map(str, runs))} reprocessed as pass {report.processing_pass}")
        _print_table([(step, report.files.get(step, "fed by the step before"), path)
                      for step, path in report.output_paths.items()],
                     ("step", "files given back", "new outputs below"))
    else:
        states = manager.status()
        _print_table([(s.step, s.transformation_id or "-", s.status or "not created", _summary(s.files),
                       _summary(s.tasks)) for s in states],
                     ("step", "transformation", "status", "files", "tasks (jobs) by state"))
        problematic = [(s.step, lfn, count) for s in states for lfn, count in sorted(s.problematic.items())]
        if problematic:
            print("\nProblematic files (failed too often; left out of tasks, their runs wait; fix the cause, then "
                  "reprocess their runs):")
            _print_table(problematic, ("step", "file", "failures"))
        rows = manager.run_view(catalog_from_cs())
        if rows:
            print()
            _print_table([(row.run if row.run is not None else "-", row.step, _summary(row.files),
                           _summary(row.tasks)) for row in rows], ("run", "step", "files", "tasks (jobs) by state"))


@Script()
def main():
    templates = [DEFAULT_TEMPLATES]

    def set_templates(value):
        templates[0] = Path(value)
        return {"OK": True, "Value": None}

    Script.registerSwitch("", "templates=", f"JDL template directory (default {DEFAULT_TEMPLATES})", set_templates)
    Script.registerArgument(f"Command: one of {', '.join(COMMANDS)}", values=list(COMMANDS))
    Script.registerArgument("Train: the train's YAML file")
    Script.registerArgument(["Run: run numbers (reprocess only)"], mandatory=False)
    Script.parseCommandLine(ignoreErrors=False)
    command, train_file, *runs = Script.getPositionalArgs()

    from DIRAC import gLogger

    from KM3DIRAC.core.errors import KM3DiracError
    from KM3DIRAC.core.trains import load_train

    try:
        train = load_train(Path(train_file), templates[0])
        if command == "validate":
            print(f"{train_file}: train {train.name} is valid, {len(train.steps)} steps: "
                  + " -> ".join(f"{s.name} ({s.plugin})" for s in train.steps))
        elif command == "plan":
            from KM3DIRAC.TransformationSystem.Client.Trains import plan_train
            from KM3DIRAC.WorkloadManagementSystem.JobData import catalog_from_cs

            catalog = catalog_from_cs()
            plans = plan_train(train, catalog)
            _print_table([(p.step, p.files, p.tasks, p.waiting_runs, p.note) for p in plans],
                         ("step", "files", "tasks", "runs waiting", ""))
            if any(step.calibration for step in train.steps):
                from KM3DIRAC.DataManagementSystem.Client.Calibrations import print_train_calibrations

                print_train_calibrations(train, catalog)
        else:
            if runs and command != "reprocess":
                raise KM3DiracError(f"{command} takes no run numbers (only reprocess does): {' '.join(runs)}")
            _manage(command, train, templates[0], _run_numbers(runs))
    except KM3DiracError as error:
        gLogger.error(str(error))
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
