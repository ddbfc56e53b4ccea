#!/usr/bin/env python
"""Processing trains: chained transformations described in one YAML file (see trains/ and README.md).

  validate  check the file; errors name the file, the step and the field
  plan      dry run: per step, how many files the catalog has for it now and how many tasks they would give,
            and per run the calibration each step will use (runs with none are named)
  create    create the steps' transformations in DIRAC (again: nothing is duplicated)
  status    per step: transformation, status, files and tasks by state
  advance   close each run's output dataset of a step once the run is processed there (run it periodically)

Example:
  $ dirac-km3-train validate trains/reco-and-merge.yaml
  $ dirac-km3-train create trains/reco-and-merge.yaml
"""

import sys
from pathlib import Path

from DIRAC.Core.Base.Script import Script

import KM3DIRAC

COMMANDS = ("validate", "plan", "create", "status", "advance")
DEFAULT_TEMPLATES = Path(KM3DIRAC.__file__).resolve().parent.parent / "jdl_templates"


def _print_table(rows: list[tuple], header: tuple) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _summary(counts: dict) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items()) if value and key != "Total") or "-"


@Script()
def main():
    templates = [DEFAULT_TEMPLATES]

    def set_templates(value):
        templates[0] = Path(value)
        return {"OK": True, "Value": None}

    Script.registerSwitch("", "templates=", f"JDL template directory (default {DEFAULT_TEMPLATES})", set_templates)
    Script.registerArgument(f"Command: one of {', '.join(COMMANDS)}", values=list(COMMANDS))
    Script.registerArgument("Train: the train's YAML file")
    Script.parseCommandLine(ignoreErrors=False)
    command, train_file = Script.getPositionalArgs()

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
            from KM3DIRAC.TransformationSystem.Client.Trains import TrainManager

            manager = TrainManager(train, templates[0])
            if command == "advance":
                from KM3DIRAC.WorkloadManagementSystem.JobData import catalog_from_cs

                closed = manager.advance(catalog_from_cs())
                print("\n".join(f"closed {dataset}" for dataset in closed) or "no run completed since last time")
            elif command == "create":
                states = manager.create()
                _print_table([(s.step, s.transformation_id, "created" if s.created else "exists") for s in states],
                             ("step", "transformation", ""))
            else:
                states = manager.status()
                _print_table([(s.step, s.transformation_id or "-", s.status or "not created", _summary(s.files),
                               _summary(s.tasks)) for s in states],
                             ("step", "transformation", "status", "files", "tasks (jobs) by state"))
    except KM3DiracError as error:
        gLogger.error(str(error))
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
