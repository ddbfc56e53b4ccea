"""DIRAC replica and file statuses on Rucio's own replica states.

- ``AprioriGood`` (also ``Good``) = ``AVAILABLE``: ``update_replicas_states`` ``A`` (a declared-bad replica is
  marked recovered).
- ``Trash`` (also ``Problematic``, ``Bad``) = ``BAD``: ``declare_bad_file_replicas`` (Rucio's necromancer then
  recovers it from another replica or declares the file lost); state ``B`` where the account may not declare.
- ``Probing`` = ``TEMPORARY_UNAVAILABLE``: ``update_replicas_states`` ``T`` (from AprioriGood or Probing only, as
  Rucio allows).
- ``Removing`` / ``Removed`` = ``UNAVAILABLE``: ``update_replicas_states`` ``U``; the replica is no longer listed,
  even with ``allStatus``.

``getReplicas`` lists AVAILABLE replicas, with ``allStatus=True`` also BAD and TEMPORARY_UNAVAILABLE ones (their
bytes still exist); UNAVAILABLE, BEING_DELETED and COPYING replicas are never listed (no bytes to read). A file
status (``setFileStatus``) is applied to every replica of the file.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from KM3DIRAC.core.catalog_reads import REPLICA_STATUS, Bulk, chunks
from KM3DIRAC.core.catalog_writes import CatalogWrites
from KM3DIRAC.core.lfn import DID

STATUS_TO_RUCIO = {
    "AprioriGood": "A", "Good": "A",
    "Trash": "B", "Problematic": "B", "Bad": "B",
    "Probing": "T",
    "Removing": "U", "Removed": "U",
}
RUCIO_TO_STATUS = REPLICA_STATUS
STATE_LETTER = {"AVAILABLE": "A", "BAD": "B", "TEMPORARY_UNAVAILABLE": "T", "UNAVAILABLE": "U",
                "BEING_DELETED": "D", "COPYING": "C"}
KNOWN_STATUSES = ", ".join(STATUS_TO_RUCIO)


def status_problem(lfn: str, status: Any) -> str | None:
    if not isinstance(status, str) or status not in STATUS_TO_RUCIO:
        return f"{lfn}: replica status {status!r} unknown: use one of {KNOWN_STATUSES}"
    return None


class CatalogReplicaStatus(CatalogWrites):
    def raw_replica_states(self, dids: dict[str, DID]) -> dict[str, dict[str, str]]:
        """``{lfn: {rse: Rucio state}}`` of every replica record (any state), in bulk."""
        by_did = {did: lfn for lfn, did in dids.items()}
        states: dict[str, dict[str, str]] = defaultdict(dict)
        for chunk in chunks(list(by_did)):
            for row in self.client.list_replicas([d.as_dict() for d in chunk], all_states=True,
                                                 ignore_availability=True, resolve_archives=False):
                lfn = by_did.get(DID(row["scope"], row["name"]))
                if lfn is not None:
                    states[lfn].update(row.get("states", {}))
        return states

    def set_replica_status(self, lfns: dict[str, Any]) -> Bulk:
        """``{lfn: {"SE": se, "Status": status, "PFN"?}}`` (DFC form; one replica per LFN and call)."""
        wanted: dict[str, tuple[str, str]] = {}
        result = Bulk()
        for lfn, info in lfns.items():
            se = info.get("SE") if isinstance(info, dict) else None
            status = info.get("Status") if isinstance(info, dict) else None
            if not isinstance(se, str) or not se:
                result.failed[lfn] = f"{lfn}: give {{'SE': <storage element>, 'Status': <status>}}"
                continue
            problem = status_problem(lfn, status)
            if problem:
                result.failed[lfn] = problem
                continue
            wanted[lfn] = (se, STATUS_TO_RUCIO[str(status)])  # a known status (status_problem)
        self._apply_states(wanted, result)
        return result

    def set_file_status(self, lfns: dict[str, Any]) -> Bulk:
        """``{lfn: status}``: the status of every replica of the file (DFC file statuses on Rucio replicas)."""
        result = Bulk()
        candidates = {}
        for lfn, status in lfns.items():
            problem = status_problem(lfn, status)
            if problem:
                result.failed[lfn] = problem
            else:
                candidates[lfn] = status
        files_result, files, _ = self._files_only(candidates)
        result.failed.update(files_result.failed)
        states = self.raw_replica_states(files)
        per_replica: dict[tuple[str, str], tuple[str, str]] = {}
        for lfn in files:
            live = [rse for rse, state in states.get(lfn, {}).items() if state not in ("UNAVAILABLE", "BEING_DELETED")]
            if not live:
                result.failed[lfn] = f"{lfn}: the file has no replica to set to {candidates[lfn]}"
            for rse in live:
                per_replica[(lfn, rse)] = (rse, STATUS_TO_RUCIO[candidates[lfn]])
        replica_result = Bulk()
        by_rse: dict[str, dict[str, tuple[str, str]]] = defaultdict(dict)
        for (lfn, rse), target in per_replica.items():
            by_rse[rse][lfn] = target
        for rse_wanted in by_rse.values():
            self._apply_states(rse_wanted, replica_result)
        for lfn in files:
            if lfn in result.failed:
                continue
            if lfn in replica_result.failed:
                result.failed[lfn] = replica_result.failed[lfn]
            else:
                result.successful[lfn] = True
        return result

    def _apply_states(self, wanted: dict[str, tuple[str, str]], result: Bulk) -> None:
        """``{lfn: (rse, state letter)}``: check each replica exists, then one call per (RSE, state)."""
        files_result, files, _ = self._files_only(wanted)
        result.failed.update(files_result.failed)
        current = self.raw_replica_states(files)
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for lfn in files:
            rse, letter = wanted[lfn]
            state = current.get(lfn, {}).get(rse)
            if state is None or (state in ("UNAVAILABLE", "BEING_DELETED") and letter != "U"):
                result.failed[lfn] = f"{lfn}: no replica at {rse}"
            elif letter == "T" and state not in ("AVAILABLE", "TEMPORARY_UNAVAILABLE"):
                result.failed[lfn] = (f"{lfn}: the replica at {rse} is {RUCIO_TO_STATUS.get(state, state)}; Rucio sets "
                                      "Probing (TEMPORARY_UNAVAILABLE) only on an AprioriGood replica")
            elif STATE_LETTER.get(state) == letter:
                result.successful[lfn] = True
            else:
                groups[(rse, letter)].append(lfn)
        for (rse, letter), group in groups.items():
            dids = {lfn: files[lfn] for lfn in group}
            if letter == "B":
                self._declare_bad(rse, dids, result)
            else:
                self._set_states(rse, dids, letter, result)

    def _set_states(self, rse: str, dids: dict[str, DID], letter: str, result: Bulk) -> None:
        self._per_chunk(list(dids), lambda chunk: self.client.update_replicas_states(
            rse, [{**dids[lfn].as_dict(), "state": letter} for lfn in chunk]),
            f"setting the replica state at {rse} failed", result)

    def _declare_bad(self, rse: str, dids: dict[str, DID], result: Bulk) -> None:
        """Declare bad in Rucio (its necromancer recovers the file); state B where declaring is not allowed."""
        from rucio.common.exception import AccessDenied, RucioException

        for chunk in chunks(list(dids)):
            try:
                refused = self.client.declare_bad_file_replicas(
                    [{**dids[lfn].as_dict(), "rse": rse} for lfn in chunk], "DIRAC replica status Trash")
            except AccessDenied:
                refused = None
            except RucioException as error:
                result.fail(chunk, f"declaring the replicas at {rse} bad failed: {error}")
                continue
            if refused is None:
                self._set_states(rse, {lfn: dids[lfn] for lfn in chunk}, "B", result)
                continue
            problems = {text.split(" ", 1)[0].rstrip(":"): text for texts in refused.values() for text in texts}
            for lfn in chunk:
                text = problems.get(str(dids[lfn])) or problems.get(dids[lfn].name)
                if text:
                    result.failed[lfn] = f"{lfn}: Rucio refused to declare the replica at {rse} bad: {text}"
                else:
                    result.successful[lfn] = True
