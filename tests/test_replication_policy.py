"""The replication policy file (policies/replication.yaml): validation with errors naming the entry, and what
``apply`` / ``clean-source`` do on the session's real Rucio server before any copy exists (the copies themselves
and the release of the shore copy: tests/test_sandbox_replication.py)."""

from __future__ import annotations

import copy
import uuid
import zlib
from pathlib import Path

import pytest
import yaml

from KM3DIRAC.core.replication_policy import (
    DatasetDID,
    ReplicationPolicyError,
    apply_policy,
    check_against_rucio,
    clean_source,
    ensure_subscription,
    load_policy,
    parse_policy,
    verify_dataset,
)

SOURCE_ROOT = Path(__file__).resolve().parent.parent
GOOD = {
    "version": 1,
    "policies": [{
        "name": "raw",
        "scopes": ["km3net"],
        "match": {"datatype": "RAW"},
        "copies": [{"rse_expression": "KM3-DISK-1|KM3-DISK-2", "copies": 2, "medium": "disk"},
                   {"rse_expression": "KM3-TAPE-1", "copies": 1, "medium": "tape"}],
        "source": "KM3-SHORE",
        "delete_source_after_replication": True,
    }],
}


def test_the_shipped_policy_file_is_valid() -> None:
    policy = load_policy(SOURCE_ROOT / "policies" / "replication.yaml")
    (entry,) = policy.entries
    assert entry.match == {"datatype": "raw"} and entry.source == "KM3-SHORE" and entry.delete_source
    assert [(c.rse_expression, c.copies, c.medium) for c in entry.copies] == [
        ("KM3-DISK-1|KM3-DISK-2", 2, "disk"), ("KM3-TAPE-1", 1, "tape")]


def _broken(change) -> dict:
    document = copy.deepcopy(GOOD)
    change(document["policies"][0])
    return document


@pytest.mark.parametrize(("change", "message"), [
    (lambda e: e["copies"][1].update(copies="two"),
     "policies[0] (raw).copies[1].copies: a positive integer, got 'two'"),
    (lambda e: e["copies"][0].update(copies=0), "policies[0] (raw).copies[0].copies: a positive integer, got 0"),
    (lambda e: e["copies"][1].update(medium="cloud"), "policies[0] (raw).copies[1].medium: one of disk, tape"),
    (lambda e: e["copies"][0].pop("rse_expression"), "policies[0] (raw).copies[0].rse_expression: required"),
    (lambda e: e["copies"][0].update(rse="KM3-DISK-1"), "policies[0] (raw).copies[0]: unknown key(s) ['rse']"),
    (lambda e: e.pop("match"), "policies[0] (raw).match: required"),
    (lambda e: e.update(scopes=[]), "policies[0] (raw).scopes: required"),
    (lambda e: e.pop("source"), "policies[0] (raw).delete_source_after_replication: needs 'source'"),
    (lambda e: e.update(source="KM3-TAPE-1"), "the source RSE KM3-TAPE-1 cannot hold a required copy"),
    (lambda e: e.update({"as": "subscriptions"}), "policies[0] (raw).as: one of rules, subscription"),
    (lambda e: e.update(delete_source_after_replication="yes"),
     "policies[0] (raw).delete_source_after_replication: true or false, got 'yes'"),
    (lambda e: e.pop("name"), "policies[0].name: required"),
    (lambda e: e.update(copies=[{"rse_expression": "KM3-DISK-1", "copies": 1}] * 2), "appears twice"),
])
def test_a_bad_policy_entry_is_named_with_what_is_expected(change, message: str) -> None:
    with pytest.raises(ReplicationPolicyError) as raised:
        parse_policy(_broken(change), "policies/replication.yaml")
    assert str(raised.value).startswith("policies/replication.yaml: ")
    assert message in str(raised.value)


def test_a_bad_policy_file_fails_through_the_command_naming_the_entry(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "replication.yaml"
    path.write_text(yaml.safe_dump(_broken(lambda e: e["copies"][1].update(copies=-1))))
    result = subprocess.run([str(Path(sys.executable).parent / "dirac-km3-replicate"), "validate", str(path)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert f"{path}: policies[0] (raw).copies[1].copies: a positive integer, got -1" in result.stdout + result.stderr
    path.write_text("policies: [name: raw\n")
    result = subprocess.run([str(Path(sys.executable).parent / "dirac-km3-replicate"), "validate", str(path)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1 and f"{path}: not valid YAML" in result.stdout + result.stderr


# ------------------------------------------------------------------------------------------ on real Rucio
def _policy(scope: str, **changes) -> dict:
    entry = {"name": "raw", "scopes": [scope], "match": {"datatype": "RAW"},
             "copies": [{"rse_expression": "KM3-DISK-1", "copies": 1}], "source": "KM3-DISK-2",
             "delete_source_after_replication": True, **changes}
    return parse_policy({"policies": [entry]})


def _run_dataset(client, scope: str, close: bool = True) -> DatasetDID:
    """A run dataset as ingestion makes it: a file registered where it lies at the source, pinned there by a rule
    on the dataset, datatype=RAW."""
    name = f"/km3net/{scope}/raw/KM3NeT_00000049/{uuid.uuid4().hex[:6]}"
    content = uuid.uuid4().bytes * 10
    file = {"scope": scope, "name": f"{name}/KM3NeT_00000049_00000001.root", "bytes": len(content),
            "adler32": f"{zlib.adler32(content):08x}"}
    client.add_replicas("KM3-DISK-2", [file])
    client.add_dataset(scope, name)
    client.set_metadata(scope, name, "datatype", "RAW")  # (add_dataset's meta= refuses it: DID schema)
    client.attach_dids(scope, name, [{"scope": scope, "name": file["name"]}])
    client.add_replication_rule([{"scope": scope, "name": name}], 1, "KM3-DISK-2")
    if close:
        client.close(scope, name)
    return DatasetDID(scope, name)


@pytest.mark.rucio
def test_rse_expressions_and_scopes_are_checked_against_rucio(rucio_client, scope_factory) -> None:
    scope = scope_factory()
    check_against_rucio(rucio_client, _policy(scope))
    with pytest.raises(ReplicationPolicyError, match=r"policies\[0\] \(raw\)\.copies\[0\]: 'KM3-DISK-1' matches 1 "
                                                     r"RSE\(s\) \(KM3-DISK-1\), fewer than copies = 2"):
        check_against_rucio(rucio_client, _policy(scope, copies=[{"rse_expression": "KM3-DISK-1", "copies": 2}]))
    with pytest.raises(ReplicationPolicyError, match=r"copies\[0\]\.rse_expression 'KM3-NOSUCH'"):
        check_against_rucio(rucio_client, _policy(scope, copies=[{"rse_expression": "KM3-NOSUCH", "copies": 1}]))
    with pytest.raises(ReplicationPolicyError, match=r"includes the source RSE KM3-DISK-2"):
        check_against_rucio(rucio_client, _policy(scope, copies=[{"rse_expression": "KM3-DISK-1|KM3-DISK-2",
                                                                  "copies": 1}]))
    with pytest.raises(ReplicationPolicyError, match=r"policies\[0\] \(raw\)\.scopes: no Rucio scope 'nosuch"):
        check_against_rucio(rucio_client, _policy(f"nosuch{uuid.uuid4().hex[:6]}"))


@pytest.mark.rucio
def test_apply_twice_changes_nothing_and_nothing_is_released_before_the_copies(rucio_client, scope_factory) -> None:
    scope = scope_factory()
    closed, still_open = _run_dataset(rucio_client, scope), _run_dataset(rucio_client, scope, close=False)
    policy = _policy(scope)
    first = apply_policy(rucio_client, policy, "root")
    assert [(dataset, expression) for dataset, expression, _ in first.created] == [(str(closed), "KM3-DISK-1")]
    assert not first.failed
    second = apply_policy(rucio_client, policy, "root")
    assert not second.created and [u[:2] for u in second.unchanged] == [(str(closed), "KM3-DISK-1")]
    rules = {rule["rse_expression"]: rule for rule in rucio_client.list_did_rules(closed.scope, closed.name)}
    assert set(rules) == {"KM3-DISK-1", "KM3-DISK-2"} and rules["KM3-DISK-1"]["state"] == "REPLICATING"
    assert not [r for r in rucio_client.list_did_rules(still_open.scope, still_open.name)
                if r["rse_expression"] == "KM3-DISK-1"]  # an open run is left until it is complete

    # the copy does not exist yet (no mover ran): the source copy is the only one and stays
    verdict = verify_dataset(rucio_client, policy.entries[0], closed, lambda rse, url: "00000000")
    assert not verdict.verified
    assert any("is REPLICATING" in problem for problem in verdict.problems)
    assert any("0 of 1 copies at KM3-DISK-1" in problem for problem in verdict.problems)
    assert any("the source copy is the last one" in problem for problem in verdict.problems)
    report = clean_source(rucio_client, policy, lambda rse, url: "00000000", grace_seconds=0)
    assert not report.released and str(closed) in report.kept
    source_rule = next(r for r in rucio_client.list_did_rules(closed.scope, closed.name)
                       if r["rse_expression"] == "KM3-DISK-2")
    assert source_rule["expires_at"] is None  # untouched


@pytest.mark.rucio
def test_a_data_driven_entry_is_one_rucio_subscription(rucio_client, scope_factory) -> None:
    scope = scope_factory()
    entry = _policy(scope, **{"as": "subscription", "name": f"raw-{uuid.uuid4().hex[:6]}"}).entries[0]
    assert ensure_subscription(rucio_client, entry, "root") == "created"
    assert ensure_subscription(rucio_client, entry, "root") == "unchanged"
    (subscription,) = rucio_client.list_subscriptions(name=entry.name, account="root")
    assert "RAW" in str(subscription["filter"]) and "KM3-DISK-1" in str(subscription["replication_rules"])
    changed = _policy(scope, **{"as": "subscription", "name": entry.name,
                                "copies": [{"rse_expression": "KM3-DISK-1", "copies": 1, "medium": "disk"},
                                           {"rse_expression": "KM3-HASH-1", "copies": 1}]}).entries[0]
    assert ensure_subscription(rucio_client, changed, "root") == "updated"
    assert ensure_subscription(rucio_client, changed, "root") == "unchanged"
