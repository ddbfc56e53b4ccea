"""DIRAC side of calibration sets: the store configured from the CS, read once.

Options (``KM3DIRAC/ConfigTemplate.cfg``): ``/Operations/<VO or Defaults>/KM3DIRAC/Calibration/BasePath`` (where
calibration sets live, default ``/km3net/calibration``), ``.../Calibration/SE`` (where ``dirac-km3-calib register``
uploads, default ``KM3-DISK-1``) and ``.../Calibration/FailoverSEs``. The catalog is KM3DIRAC's Rucio catalog
(``/Resources/FileCatalogs/RucioFileCatalog``), as for job data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from KM3DIRAC.core.calibration_store import DEFAULT_BASE_PATH, CalibrationStore

SECTION = "KM3DIRAC/Calibration"
DEFAULT_SE = "KM3-DISK-1"


@dataclass(frozen=True)
class CalibrationSettings:
    base_path: str = DEFAULT_BASE_PATH
    se: str = DEFAULT_SE
    failover_ses: tuple[str, ...] = field(default_factory=tuple)


def calibration_settings() -> CalibrationSettings:
    from DIRAC.ConfigurationSystem.Client.Helpers.Operations import Operations

    operations = Operations()
    return CalibrationSettings(
        base_path=operations.getValue(f"{SECTION}/BasePath", DEFAULT_BASE_PATH),
        se=operations.getValue(f"{SECTION}/SE", DEFAULT_SE),
        failover_ses=tuple(operations.getValue(f"{SECTION}/FailoverSEs", [])),
    )


def store_from_cs(catalog=None) -> CalibrationStore:
    from KM3DIRAC.WorkloadManagementSystem.JobData import catalog_from_cs

    return CalibrationStore(catalog or catalog_from_cs(), calibration_settings().base_path)


def print_train_calibrations(train, catalog) -> int:
    """``dirac-km3-train plan``: per step and run the calibration each requirement resolves to; returns the number
    of (step, run, requirement) without one, which are listed last."""
    from KM3DIRAC.core.calibration_store import plan_train_calibrations

    plans = plan_train_calibrations(train, store_from_cs(catalog))
    rows, missing = [], []
    for plan in plans:
        for (requirement, run), found in plan.resolution.chosen.items():
            rows.append((plan.step, run.detector if run.detector is not None else "?", run.run, requirement,
                         found.did if found else "NONE"))
            if found is None:
                missing.append(f"step {plan.step}: {run} has no {requirement} calibration")
    print()
    widths = [max(len(str(row[i])) for row in [("step", "detector", "run", "calibration", "file"), *rows])
              for i in range(5)]
    for row in [("step", "detector", "run", "calibration", "file"), *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if missing:
        print(f"\n{len(missing)} run(s) without calibration (their jobs would fail before the payload):")
        print("\n".join(f"  {line}" for line in missing))
    return len(missing)
