#!/usr/bin/env python
"""Run a local KM3DIRAC sandbox: real DIRAC services and agents, MariaDB and a Rucio server, on loopback only.

Usage:
  dirac-km3-sandbox up [--dir DIR] [--no-catalog]   start everything (says so if it already runs)
  dirac-km3-sandbox status [--dir DIR]              each component with pid, port and health
  dirac-km3-sandbox down [--dir DIR]                stop what `up` started

DIR defaults to .work/sandbox in the source tree. `status` exits with 1 when a component is not healthy. To talk
to the sandbox as its user, export the three variables `status` prints (DIRACSYSCONFIG, X509_USER_PROXY,
X509_CERT_DIR), then use DIRAC's commands, e.g. `dirac-wms-job-submit job.jdl`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dirac-km3-sandbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "status", "down"))
    parser.add_argument("--dir", type=Path, default=None, help="the sandbox directory (default: .work/sandbox)")
    parser.add_argument("--no-catalog", action="store_true",
                        help="leave /Operations/Defaults/Services/Catalogs/CatalogList empty")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    from KM3DIRAC.sandbox.local_sandbox import DEFAULT_DIRECTORY, Sandbox, SandboxError
    from KM3DIRAC.sandbox.processes import ServiceStartError

    sandbox = Sandbox(arguments.dir or DEFAULT_DIRECTORY)
    try:
        if arguments.command == "up":
            print(sandbox.up(with_catalog=not arguments.no_catalog))
            return 0
        if arguments.command == "down":
            print(sandbox.down())
            return 0
        healthy, report = sandbox.status()
        print(report)
        return 0 if healthy else 1
    except (SandboxError, ServiceStartError) as error:
        print(f"dirac-km3-sandbox {arguments.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
