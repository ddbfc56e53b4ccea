"""A job's outputs into Rucio: upload to the destination RSE (or the next failover RSE), register with metadata
and provenance through :class:`KM3DIRAC.core.catalog.RucioCatalog` (bulk, idempotent), optional replication rule.

A retried job re-registers the same LFNs: same size and checksum is a success, nothing is registered twice. When
Rucio cannot be reached for registration, :class:`RegistrationPending` carries what is left to register, so the
caller (the DIRAC adapter) can hand it to DIRAC's Request Management System.
"""

from __future__ import annotations

import copy
import glob
import logging
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from KM3DIRAC.core import rucio_policy
from KM3DIRAC.core.access import AccessRefused, check_write_access
from KM3DIRAC.core.checksums import adler32_of_file, normalise_adler32
from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.lfn import LFNMapper

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


class OutputDataError(KM3DiracError):
    """Outputs that could not be stored anywhere; the message names them."""


class RegistrationPending(KM3DiracError):
    """Files are stored but not registered (Rucio unreachable); ``pending`` is what to register later."""

    def __init__(self, message: str, pending: dict[str, dict]) -> None:
        super().__init__(message)
        self.pending = pending


@dataclass
class OutputSpec:
    """Where outputs go and what they carry."""

    directory: str  # LFN of the dataset the outputs are attached to
    rse: str
    failover_rses: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # run, detector, data type, step, software version
    provenance: dict[str, Any] = field(default_factory=dict)  # parents, job id, transformation and task ids
    replicate_to: str | None = None  # RSE expression of an extra replication rule


@dataclass
class StoredOutput:
    path: Path
    lfn: str
    bytes: int
    adler32: str
    rse: str | None = None


def collect_outputs(patterns: Iterable[str], workdir: Path) -> list[Path]:
    """Files in ``workdir`` matching any of the glob ``patterns`` (sorted, each once); a pattern matching nothing
    is an error that names it."""
    found: dict[Path, None] = {}
    unmatched = []
    for pattern in patterns:
        matches = sorted(Path(p) for p in glob.glob(str(workdir / pattern)) if Path(p).is_file())
        if not matches:
            unmatched.append(pattern)
        found.update(dict.fromkeys(matches))
    if unmatched:
        raise OutputDataError(f"output patterns matched no file in {workdir}: {', '.join(unmatched)}")
    return list(found)


def _upload(client: Any, output: StoredOutput, rse: str, rse_settings: dict[str, dict],
            mapper: LFNMapper) -> None:
    from rucio.rse import rsemanager

    if rse not in rse_settings:
        rse_settings[rse] = client.get_rse(rse)
    did = mapper.to_did(output.lfn)
    protocol = rsemanager.create_protocol(copy.deepcopy(rse_settings[rse]), "write", domain="wan")
    protocol.connect()
    try:
        pfn = next(iter(protocol.lfns2pfns(did.as_dict()).values()))
        try:
            existing = protocol.stat(pfn)
        except Exception:  # not there yet
            existing = None
        if existing and int(existing.get("filesize", -1)) == output.bytes and \
                existing.get("adler32", output.adler32) == output.adler32:
            return  # a retried job: the same bytes are already in place
        temporary = f"{pfn}.km3dirac.upload"
        if hasattr(protocol, "pfn2path"):
            # rucio's posix put races when parallel uploads create the same directory: create it first
            os.makedirs(os.path.dirname(protocol.pfn2path(temporary)), exist_ok=True)
        protocol.put(output.path.name, temporary, str(output.path.parent))
        stat = protocol.stat(temporary)
        size, checksum = int(stat.get("filesize", -1)), stat.get("adler32")
        if size != output.bytes or (checksum and normalise_adler32(checksum) != output.adler32):
            protocol.delete(temporary)
            raise OutputDataError(f"{output.lfn}: at {rse} size {size} adler32 {checksum}, "
                                  f"expected {output.bytes} {output.adler32}")
        protocol.rename(temporary, pfn)
    finally:
        protocol.close()


def store_outputs(client: Any, paths: list[Path], spec: OutputSpec, mapper: LFNMapper | None = None,
                  progress: Progress | None = None, rse_settings: dict[str, dict] | None = None,
                  workers: int = 4) -> list[StoredOutput]:
    """Upload each file (``workers`` at a time) to ``spec.rse`` or, failing that, to the failover RSEs in order,
    verifying size and adler32 at the destination. ``rse_settings`` fetched at the start of the job let the upload
    itself go on while Rucio is unreachable."""
    rucio_policy.register()
    mapper = mapper or LFNMapper()
    rse_settings = rse_settings if rse_settings is not None else {}
    outputs = [StoredOutput(path, f"{spec.directory.rstrip('/')}/{path.name}", path.stat().st_size,
                            adler32_of_file(path)) for path in paths]
    for output in outputs:
        mapper.to_did(output.lfn)  # a bad destination fails before any transfer
    try:  # and so does a destination the job's Rucio account may not write (storage knows nothing of scopes)
        check_write_access(client, ((o.lfn, mapper.to_did(o.lfn)) for o in outputs), "write outputs")
    except AccessRefused as refused:
        raise OutputDataError(f"outputs refused: {refused}") from refused
    except Exception as error:  # Rucio unreachable: store now, Rucio's own check still guards the registration
        log.warning("write access not checked before the upload (Rucio: %s: %s)", type(error).__name__, error)
    def store_one(output: StoredOutput) -> str | None:
        errors = []
        for rse in [spec.rse, *spec.failover_rses]:
            try:
                _upload(client, output, rse, rse_settings, mapper)
                output.rse = rse
                return None
            except Exception as error:  # storage or Rucio unreachable: next RSE
                errors.append(f"{rse}: {type(error).__name__}: {error}")
        return f"{output.lfn} ({'; '.join(errors)})"

    failed = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, problem in enumerate(pool.map(store_one, outputs), 1):
            if problem:
                failed.append(problem)
            if progress:
                progress(done, len(outputs))
    if failed:
        raise OutputDataError(f"outputs could not be stored on any RSE: {'; '.join(failed)}")
    return outputs


def prefetch_rse_settings(client: Any, spec: OutputSpec) -> dict[str, dict]:
    """Protocol settings of the destination and failover RSEs, while Rucio answers (the start of the job)."""
    settings = {}
    for rse in [spec.rse, *spec.failover_rses]:
        try:
            settings[rse] = client.get_rse(rse)
        except Exception as error:  # an unknown or unreachable RSE is tried again at upload time
            log.warning("no settings for RSE %s yet: %s", rse, error)
    return settings


def registration_entries(outputs: list[StoredOutput], spec: OutputSpec) -> dict[str, dict]:
    """The catalog ``addFile`` entries of stored outputs: size, checksum, RSE, metadata + provenance."""
    meta = {**spec.metadata, **spec.provenance}
    return {o.lfn: {"Size": o.bytes, "Checksum": o.adler32, "ChecksumType": "AD", "SE": o.rse, "Meta": meta}
            for o in outputs}


def register_outputs(catalog: Any, entries: dict[str, dict], replicate_to: str | None = None) -> list[str]:
    """Register with ``catalog`` (a RucioCatalog); raise :class:`RegistrationPending` if Rucio is unreachable."""
    from KM3DIRAC.core.rucio_calls import is_unreachable

    try:
        result = catalog.add_files(entries)
    except Exception as error:  # whole call failed: Rucio down or silent (deferred), or a refusal (named)
        if is_unreachable(error) or _looks_transient(f"{type(error).__name__} {error}"):
            raise RegistrationPending(f"registration of {len(entries)} outputs deferred: {type(error).__name__}: "
                                      f"{error}", entries) from error
        raise OutputDataError(f"outputs refused by Rucio ({type(error).__name__}: {error}); they stay stored at "
                              f"{sorted({e['SE'] for e in entries.values()})}: {sorted(entries)}") from error
    if result.failed:
        transient = {lfn: entries[lfn] for lfn, reason in result.failed.items() if _looks_transient(reason)}
        permanent = {lfn: reason for lfn, reason in result.failed.items() if lfn not in transient}
        if permanent:
            raise OutputDataError(f"outputs refused by the catalog: {permanent}")
        raise RegistrationPending(f"registration of {len(transient)} outputs deferred: {transient_reasons(result)}",
                                  transient)
    if replicate_to:
        dids = [catalog.mapper.to_did(lfn).as_dict() for lfn in entries]
        catalog.client.add_replication_rule(dids, 1, replicate_to, grouping="NONE")
    return sorted(result.successful)


def transient_reasons(result: Any) -> str:
    return "; ".join(sorted({reason for reason in result.failed.values() if _looks_transient(reason)}))


def _looks_transient(reason: str) -> bool:
    lowered = reason.lower()
    return any(word in lowered for word in ("connection", "timeout", "timed out", "unavailable", "503", "502"))
