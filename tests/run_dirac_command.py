"""Run an installed DIRAC command (its console-script entry point) as a separate process, with the StorageElement
statuses answered in-process: the Rucio test harness runs no ResourceStatus service (the local sandbox does).

Usage: ``python run_dirac_command.py SE1,SE2 dirac-dms-add-file --cfg dirac.cfg <arguments>``
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points


def main() -> None:
    storage_elements, command, *arguments = sys.argv[1:]
    from KM3DIRAC.sandbox.dirac_inprocess import answer_resource_status_in_process

    answer_resource_status_in_process(storage_elements.split(","))
    (entry_point,) = [e for e in entry_points(group="console_scripts") if e.name == command]
    sys.argv = [command, *arguments]
    sys.exit(entry_point.load()())


if __name__ == "__main__":
    main()
