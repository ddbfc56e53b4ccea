#!/usr/bin/env python
"""Run a local KM3DIRAC sandbox: real DIRAC services and agents, MariaDB and a Rucio server, on loopback only.

Usage:
  dirac-km3-sandbox up [--dir DIR] [--no-catalog] [--fresh] [--diracx]
                                                   start everything (says so if it already runs);
                                                   --fresh: reset first, start empty; --diracx: also a DiracX
                                                   server sharing DIRAC's job databases (README: DiracX)
  dirac-km3-sandbox status [--dir DIR]             each component with pid, port and health
  dirac-km3-sandbox down [--dir DIR]               stop what `up` started; files, rules, transformations and
                                                   jobs are kept for the next `up`
  dirac-km3-sandbox reset [--dir DIR]              stop and remove all state, Rucio and DIRAC side at once
  dirac-km3-sandbox env [--dir DIR] [--as ID]      shell lines that put a shell into the sandbox:
                                                   eval "$(dirac-km3-sandbox env)"
  dirac-km3-sandbox shell [--dir DIR] [--as ID] [-- COMMAND ...]
                                                   a shell (or COMMAND) with that environment and a prompt that
                                                   shows it

DIR defaults to .work/sandbox in the source tree. `status` exits with 1 when a component is not healthy.
Identities (--as): `user` (km3user, group km3net_user; the default) and `prodmanager` (km3user in group
km3net_prod, with ProductionManagement and JobAdministrator), both Rucio's administrator root; `alice` and `bob`
(users, Rucio accounts alice and bob owning their homes' scopes user.alice, user.bob) and `km3prodmgr` (the production
manager, group km3net_prod, Rucio account km3prod owning the scope production), each with own certificate, proxy and
rucio.cfg.
In that environment DIRAC's and Rucio's commands talk to the sandbox,
e.g. `dirac-wms-job-submit job.jdl` or `rucio whoami`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

COMMANDS = ("up", "status", "down", "reset", "env", "shell")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dirac-km3-sandbox", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=COMMANDS)
    parser.add_argument("--dir", type=Path, default=None, help="the sandbox directory (default: .work/sandbox)")
    parser.add_argument("--no-catalog", action="store_true",
                        help="leave /Operations/Defaults/Services/Catalogs/CatalogList empty")
    parser.add_argument("--fresh", action="store_true", help="up: remove the sandbox's state first (as reset)")
    parser.add_argument("--diracx", action="store_true",
                        help="up: also run DiracX (uvicorn, an S3 server) sharing DIRAC's job databases")
    parser.add_argument("--as", dest="identity", default="user",
                        help="env, shell: user (default), prodmanager, alice, bob or km3prodmgr")
    return parser


def _prompt_rc(root: Path, identity: str) -> Path:
    """An rc file for bash: the user's own ~/.bashrc, then a prompt naming the sandbox and the identity."""
    rc = Path(tempfile.mkstemp(prefix="km3dirac-sandbox-", suffix=".bashrc")[1])
    rc.write_text(f"""[ -f ~/.bashrc ] && . ~/.bashrc
unset REQUESTS_CA_BUNDLE CURL_CA_BUNDLE
PS1="(km3-sandbox {root.name} as {identity}) $PS1"
rm -f {rc}
""")
    return rc


def _shell(root: Path, identity: str, command: list[str]) -> int:
    from KM3DIRAC.sandbox.local_sandbox import SandboxPaths, user_environment

    env = user_environment(SandboxPaths(root), identity)
    if command:
        os.execvpe(command[0], command, env)
    shell = os.environ.get("SHELL", "/bin/bash")
    if Path(shell).name != "bash":
        env["PS1"] = f"(km3-sandbox {root.name} as {identity}) $ "
        os.execvpe(shell, [shell], env)
    os.execvpe("bash", ["bash", "--rcfile", str(_prompt_rc(root, identity)), "-i"], env)
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command_after = argv.index("--") if "--" in argv else len(argv)
    arguments = _parser().parse_args(argv[:command_after])
    arguments.shell_command = argv[command_after + 1:]
    from KM3DIRAC.sandbox.local_sandbox import (
        DEFAULT_DIRECTORY,
        Sandbox,
        SandboxError,
        SandboxPaths,
        environment_script,
        identity,
    )
    from KM3DIRAC.sandbox.processes import ServiceStartError

    root = (arguments.dir or DEFAULT_DIRECTORY).resolve()
    try:
        if arguments.shell_command and arguments.command != "shell":
            raise SandboxError(f"unexpected arguments: {' '.join(arguments.shell_command)}")
        if arguments.command in ("env", "shell"):
            identity(arguments.identity)
            if not SandboxPaths(root).layout.dirac_cfg.exists():
                raise SandboxError(f"no sandbox in {root}: start it with `dirac-km3-sandbox up`")
            if arguments.command == "env":
                print(environment_script(SandboxPaths(root), arguments.identity))
                return 0
            return _shell(root, arguments.identity, arguments.shell_command)
        sandbox = Sandbox(root)
        if arguments.command == "up":
            print(sandbox.up(with_catalog=not arguments.no_catalog, fresh=arguments.fresh,
                             with_diracx=arguments.diracx))
            return 0
        if arguments.command == "down":
            print(sandbox.down())
            return 0
        if arguments.command == "reset":
            print(sandbox.reset())
            return 0
        healthy, report = sandbox.status()
        print(report)
        return 0 if healthy else 1
    except (SandboxError, ServiceStartError) as error:
        print(f"dirac-km3-sandbox {arguments.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
