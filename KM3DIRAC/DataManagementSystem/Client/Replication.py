"""DIRAC side of ``dirac-km3-replicate``: settings read once from the CS, the movers, the storage checksum reader.

Options (``KM3DIRAC/ConfigTemplate.cfg``, ``/Operations/<VO or Defaults>/KM3DIRAC/Replication``):
``Mover`` (``Rucio``, the default: rules only, Rucio's conveyor and FTS move the bytes; ``DIRAC-RMS``: the copies a
rule waits for are made by DIRAC's RMS ``ReplicateAndRegister``, run by the RequestExecutingAgent, and registered
through KM3DIRAC's catalog, which turns the COPYING replicas AVAILABLE so the rule's locks become OK) and
``SourceGraceSeconds`` (how long a released source copy stays before Rucio's judge-cleaner removes its rule;
3600, Rucio's own soft-delete delay).
"""

from __future__ import annotations

from dataclasses import dataclass

from KM3DIRAC.core.replication_policy import DEFAULT_SOURCE_GRACE_SECONDS, PendingCopy

SECTION = "KM3DIRAC/Replication"
MOVERS = ("Rucio", "DIRAC-RMS")
REQUEST_PREFIX = "km3-replicate"
#: requests tried for one (rule, RSE) before the mover stops asking (a cron job must not add one every run)
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class ReplicationSettings:
    mover: str = "Rucio"
    source_grace_seconds: int = DEFAULT_SOURCE_GRACE_SECONDS


def replication_settings() -> ReplicationSettings:
    from DIRAC.ConfigurationSystem.Client.Helpers.Operations import Operations

    from KM3DIRAC.core.errors import ConfigurationError

    operations = Operations()
    mover = operations.getValue(f"{SECTION}/Mover", "Rucio")
    if mover not in MOVERS:
        raise ConfigurationError(f"/Operations/.../{SECTION}/Mover = {mover!r}: one of {', '.join(MOVERS)}")
    grace = operations.getValue(f"{SECTION}/SourceGraceSeconds", DEFAULT_SOURCE_GRACE_SECONDS)
    try:
        grace = int(grace)
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"/Operations/.../{SECTION}/SourceGraceSeconds = {grace!r}: seconds") from error
    return ReplicationSettings(mover, grace)


class StorageChecksums:
    """adler32 of a replica read from its storage through Rucio's protocol for the RSE (posix computes it from
    the bytes; remote protocols ask the storage)."""

    def __init__(self) -> None:
        self._protocols: dict[str, object] = {}

    def __call__(self, rse: str, url: str) -> str:
        from rucio.rse import rsemanager

        protocol = self._protocols.get(rse)
        if protocol is None:
            info = rsemanager.get_rse_info(rse)
            scheme = url.split("://", 1)[0]
            protocol = rsemanager.create_protocol(info, "read", scheme=scheme)
            protocol.connect()
            self._protocols[rse] = protocol
        stat = protocol.stat(url)
        if not stat.get("adler32"):
            raise OSError(f"the storage of {rse} gives no adler32 for {url}")
        return str(stat["adler32"])


def request_name(pending: PendingCopy, attempt: int) -> str:
    return f"{REQUEST_PREFIX}.{pending.rule_id}.{pending.rse}.{attempt}"


def submit_rms_copies(pending_copies: list[PendingCopy], lfn_of) -> list[tuple[str, str]]:
    """One RMS request (a ReplicateAndRegister operation) per (rule, RSE) that waits for copies; a request still
    running for it is left alone (cron-safe), a finished one whose copies are still missing gets a next attempt.
    Returns ``[(request name, "submitted" | "in progress" | error)]``."""
    from DIRAC.RequestManagementSystem.Client.File import File
    from DIRAC.RequestManagementSystem.Client.Operation import Operation
    from DIRAC.RequestManagementSystem.Client.ReqClient import ReqClient
    from DIRAC.RequestManagementSystem.Client.Request import Request

    client = ReqClient()
    results = []
    for pending in pending_copies:
        attempt, running = 0, False
        while True:
            name = request_name(pending, attempt)
            found = client.getRequestIDForName(name)  # ReqManager's export, through DIRAC's Client
            if not found["OK"] or not found["Value"]:
                break  # no request of that name
            status = client.getRequestStatus(found["Value"])
            if status["OK"] and status["Value"] not in Request.FINAL_STATES:
                running = True
                break
            attempt += 1
        if running:
            results.append((name, "in progress"))
            continue
        if attempt >= MAX_ATTEMPTS:
            results.append((request_name(pending, attempt - 1),
                            f"gave up: {MAX_ATTEMPTS} requests ended without the copies (see the Request Monitor)"))
            continue
        request = Request()
        request.RequestName = name
        operation = Operation()
        operation.Type = "ReplicateAndRegister"
        operation.TargetSE = pending.rse
        for file in pending.files:
            rms_file = File()
            rms_file.LFN = lfn_of(file)
            rms_file.Size = int(file.get("bytes") or 0)
            if file.get("adler32"):
                rms_file.Checksum = file["adler32"]
                rms_file.ChecksumType = "ADLER32"
            operation.addFile(rms_file)
        request.addOperation(operation)
        put = client.putRequest(request)
        results.append((name, "submitted" if put["OK"] else f"not submitted: {put['Message']}"))
    return results
