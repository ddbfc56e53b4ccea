#!/usr/bin/env python
"""Replication of run datasets to the computing centres and deletion at the shore station, from one policy file
(README.md "Replication and deletion at the shore station"; example: policies/replication.yaml). Safe to run from
cron: every action is idempotent and continues where a crashed run stopped.

  validate POLICY        check the file (and its RSE expressions, scopes, source RSEs against Rucio)
  apply POLICY           a Rucio rule per run dataset and copy requirement where missing (or the Rucio
                         subscription); with Mover = DIRAC-RMS also the RMS copies the rules wait for;
                         --wait SECONDS: until every rule is OK (exit code 3 if not by then)
  clean-source POLICY    release the source (shore station) copy of every run dataset whose copies are all
                         verified: rules OK, adler32 of every copy read from its storage equal to the catalog's;
                         datasets not verified keep it and every problem is named (exit code 2)
  status POLICY          per run dataset: the state of each required rule and of the source copy

Example:
  $ dirac-km3-replicate apply policies/replication.yaml
  $ dirac-km3-replicate apply --wait 600 policies/replication.yaml   # the demo: until the copies exist
  $ dirac-km3-replicate clean-source policies/replication.yaml
"""

import sys

from DIRAC.Core.Base.Script import Script

from KM3DIRAC.dirac_switches import register_value_switches

COMMANDS = ("validate", "apply", "clean-source", "status")


def _client_and_catalog():
    from KM3DIRAC.Resources.Catalog.RucioSettings import catalog_from_cs

    catalog = catalog_from_cs()
    return catalog.client, catalog


def _account(client) -> str:
    return client.whoami()["account"]


def validate(policy) -> int:
    from KM3DIRAC.core.replication_policy import check_against_rucio

    client, _ = _client_and_catalog()
    check_against_rucio(client, policy)
    for entry in policy.entries:
        copies = ", ".join(f"{c.copies}x {c.rse_expression} ({c.medium})" for c in entry.copies)
        print(f"{entry.name}: {entry.match} in {', '.join(entry.scopes)} -> {copies}"
              + (f"; source {entry.source} deleted after replication" if entry.delete_source else ""))
    print(f"{policy.source_path}: valid")
    return 0


def apply(policy, wait_seconds: float = 0) -> int:
    import time

    from KM3DIRAC.core.replication_policy import apply_policy, check_against_rucio, policy_status

    settings = _settings()
    client, catalog = _client_and_catalog()
    check_against_rucio(client, policy)
    report = apply_policy(client, policy, _account(client))
    _print_apply(report)
    _move(settings, client, catalog, policy)
    deadline = time.monotonic() + wait_seconds
    while wait_seconds:
        waiting = [row for row in policy_status(client, policy) if any(state != "OK" for _, state in row.rules)]
        if not waiting:
            print("every rule of the policy is OK")
            break
        if time.monotonic() > deadline:
            print(f"after {wait_seconds:.0f} s, {len(waiting)} run dataset(s) still wait for copies: "
                  + ", ".join(row.dataset for row in waiting))
            return 3
        time.sleep(5)
        _move(settings, client, catalog, policy, quiet=True)
    return 1 if report.failed else 0


def _settings():
    from KM3DIRAC.DataManagementSystem.Client.Replication import replication_settings

    return replication_settings()


def _print_apply(report) -> None:
    for dataset, expression, rule_id in report.created:
        print(f"rule created: {dataset} -> {expression} ({rule_id})")
    for name, what in report.subscriptions:
        print(f"subscription {name}: {what}")
    for where, reason in report.failed:
        print(f"FAILED {where}: {reason}")
    print(f"rules: {len(report.created)} created, {len(report.unchanged)} already there, {len(report.failed)} failed")


def _move(settings, client, catalog, policy, quiet: bool = False) -> None:
    """With the DIRAC-RMS mover: RMS requests for the copies the rules wait for (none twice)."""
    from KM3DIRAC.core.lfn import DID
    from KM3DIRAC.core.replication_policy import pending_copies
    from KM3DIRAC.DataManagementSystem.Client.Replication import submit_rms_copies

    if settings.mover != "DIRAC-RMS":
        if not quiet:
            print("mover Rucio: the rules' transfers are Rucio's (conveyor, FTS)")
        return
    pending = pending_copies(client, policy)
    results = submit_rms_copies(pending, lambda f: catalog.mapper.to_lfn(DID(f["scope"], f["name"])))
    for name, what in results:
        if not quiet or what != "in progress":
            print(f"copy request {name}: {what}")
    if not quiet:
        print(f"mover DIRAC-RMS: {sum(len(p.files) for p in pending)} file copies awaited in {len(pending)} "
              f"(rule, RSE) groups")


def clean_source(policy) -> int:
    from KM3DIRAC.core.replication_policy import check_against_rucio
    from KM3DIRAC.core.replication_policy import clean_source as release
    from KM3DIRAC.DataManagementSystem.Client.Replication import StorageChecksums

    settings = _settings()
    client, _ = _client_and_catalog()
    check_against_rucio(client, policy)
    report = release(client, policy, StorageChecksums(), settings.source_grace_seconds,
                     progress=lambda line: print(line, flush=True))
    for dataset, problems in report.kept.items():
        print(f"KEPT {dataset} at the source:")
        for problem in problems:
            print(f"  {problem}")
    for dataset, reason in report.failed.items():
        print(f"FAILED {dataset}: {reason}")
    print(f"source copies released: {len(report.released)} datasets ({report.files_released} files, "
          f"{report.bytes_released} bytes); released before: {len(report.already)}; kept: {len(report.kept)}; "
          f"failed: {len(report.failed)}; Rucio's reaper deletes released copies after "
          f"{settings.source_grace_seconds} s")
    return 0 if report.ok else 2


def status(policy) -> int:
    from KM3DIRAC.core.replication_policy import policy_status

    client, _ = _client_and_catalog()
    for row in policy_status(client, policy):
        rules = ", ".join(f"{expression}: {state}" for expression, state in row.rules)
        print(f"{row.dataset}  [{row.entry}]  {rules}  source: {row.source}")
    return 0


@Script()
def main():
    options = register_value_switches({"wait": "apply: wait up to SECONDS until every rule is OK (exit code 3 if not)"})
    Script.registerArgument(f"Command: one of {', '.join(COMMANDS)}", values=list(COMMANDS))
    Script.registerArgument("Policy: the policy file (YAML)")
    Script.parseCommandLine(ignoreErrors=False)
    command, policy_path = Script.getPositionalArgs()

    from DIRAC import gLogger

    from KM3DIRAC.core.errors import KM3DiracError
    from KM3DIRAC.core.replication_policy import load_policy

    try:
        policy = load_policy(policy_path)
        if command == "apply":
            wait = options.get("wait", "0")
            if not wait.isdigit():
                raise ValueError(f"--wait {wait!r}: seconds (an integer)")
            code = apply(policy, float(wait))
        else:
            code = {"validate": validate, "clean-source": clean_source, "status": status}[command](policy)
    except (KM3DiracError, ValueError) as error:
        gLogger.error(str(error))
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":
    main()
