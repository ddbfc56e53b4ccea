"""A job's input data from Rucio: resolve DIDs to files, choose replicas by closeness, download in parallel.

Every file is checked against its adler32; a failed or corrupt copy makes the next replica be tried. Free disk
space is checked before anything is downloaded. Errors name the DID that could not be had.
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from KM3DIRAC.core import rucio_policy
from KM3DIRAC.core.checksums import adler32_of_file, normalise_adler32
from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.lfn import DID, LFNMapper

log = logging.getLogger(__name__)

DISK_MARGIN_BYTES = 100 * 1024 * 1024
Progress = Callable[[int, int], None]


class InputDataError(KM3DiracError):
    """Input data that cannot be had; the message names the DIDs."""


@dataclass
class InputFile:
    did: DID
    bytes: int
    adler32: str
    replicas: list[tuple[str, str]] = field(default_factory=list)  # (RSE, PFN), closest first
    local_path: Path | None = None
    source_rse: str | None = None


def resolve_inputs(client: Any, dids: Iterable[str], mapper: LFNMapper | None = None) -> list[InputFile]:
    """Files behind ``dids`` (files, datasets, containers; LFNs or ``scope:name``), each once, in input order."""
    from rucio.common.exception import DataIdentifierNotFound

    mapper = mapper or LFNMapper()
    files: dict[DID, InputFile] = {}
    missing = []
    for text in dids:
        did = mapper.to_did(text)
        try:
            content = list(client.list_files(did.scope, did.name))
        except DataIdentifierNotFound:
            missing.append(text)
            continue
        for entry in content:
            file_did = DID(entry["scope"], entry["name"])
            files.setdefault(file_did, InputFile(file_did, int(entry["bytes"] or 0), entry.get("adler32") or ""))
    if missing:
        raise InputDataError(f"input data not found in Rucio: {', '.join(missing)}")
    return list(files.values())


def attach_replicas(client: Any, files: list[InputFile], close_rses: Iterable[str] = ()) -> None:
    """Fill each file's replicas, the RSEs in ``close_rses`` (the job's site) first, in their given order."""
    close_order = {rse: rank for rank, rse in enumerate(close_rses)}
    by_did = {f.did: f for f in files}
    for start in range(0, len(files), 1000):
        chunk = files[start:start + 1000]
        for row in client.list_replicas([f.did.as_dict() for f in chunk], schemes=None, resolve_archives=False):
            entry = by_did[DID(row["scope"], row["name"])]
            available = [(rse, pfns[0]) for rse, pfns in row.get("rses", {}).items()
                         if pfns and row.get("states", {}).get(rse, "AVAILABLE") == "AVAILABLE"]
            entry.replicas = sorted(available, key=lambda pair: (close_order.get(pair[0], len(close_order)), pair[0]))


def check_free_space(files: list[InputFile], destination: Path, margin: int = DISK_MARGIN_BYTES) -> None:
    needed = sum(f.bytes for f in files) + margin
    free = shutil.disk_usage(destination).free
    if free < needed:
        raise InputDataError(f"not enough disk space in {destination}: {needed} bytes needed for "
                             f"{len(files)} input files (with margin), {free} free")


def _fetch_one(client: Any, entry: InputFile, destination: Path, rse_settings: dict[str, dict]) -> InputFile:
    from rucio.rse import rsemanager

    target = destination / entry.did.name.rsplit("/", 1)[-1]
    errors = []
    for rse, pfn in entry.replicas:
        partial = target.with_name(target.name + ".part")
        try:
            if rse not in rse_settings:
                rse_settings[rse] = client.get_rse(rse)
            protocol = rsemanager.create_protocol(copy.deepcopy(rse_settings[rse]), "read", domain="wan")
            protocol.connect()
            try:
                protocol.get(pfn, str(partial))
            finally:
                protocol.close()
            checksum = adler32_of_file(partial)
            if entry.adler32 and checksum != normalise_adler32(entry.adler32):
                errors.append(f"{rse}: adler32 {checksum} != {entry.adler32}")
                partial.unlink(missing_ok=True)
                continue
            partial.replace(target)
            entry.local_path, entry.source_rse = target, rse
            return entry
        except Exception as error:  # any transfer failure: try the next replica
            errors.append(f"{rse}: {type(error).__name__}: {error}")
            partial.unlink(missing_ok=True)
    raise InputDataError(f"{entry.did}: no replica could be downloaded ({'; '.join(errors) or 'no replica'})")


def download_inputs(client: Any, files: list[InputFile], destination: Path, workers: int = 4,
                    progress: Progress | None = None) -> list[InputFile]:
    """Download every file into ``destination`` (flat, by base name), ``workers`` at a time."""
    rucio_policy.register()
    destination.mkdir(parents=True, exist_ok=True)
    names = [f.did.name.rsplit("/", 1)[-1] for f in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputDataError(f"input files share base names {duplicates}: they would overwrite each other")
    check_free_space(files, destination)
    rse_settings: dict[str, dict] = {}
    done = 0
    failures = []
    if progress:
        progress(0, len(files))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(_fetch_one, client, entry, destination, rse_settings) for entry in files]
        for future in as_completed(futures):
            try:
                future.result()
            except InputDataError as error:
                failures.append(str(error))
            done += 1
            if progress:
                progress(done, len(files))
    if failures:
        raise InputDataError("; ".join(sorted(failures)))
    return files


def download_per_lfn(client: Any, lfns: Iterable[str], destination: Path, mapper: LFNMapper | None = None,
                     close_rses: Iterable[str] = (), workers: int = 4,
                     progress: Progress | None = None) -> tuple[dict[str, InputFile], dict[str, str]]:
    """Download the files ``lfns`` name (LFNs or ``scope:name``), each from the first replica that arrives whole
    (adler32 checked, the next replica tried otherwise): ``({lfn: downloaded file}, {lfn: why not})``. One bad
    LFN does not stop the others."""
    mapper = mapper or LFNMapper()
    wanted: dict[str, InputFile] = {}
    failed: dict[str, str] = {}
    for lfn in dict.fromkeys(lfns):
        try:
            resolved = resolve_inputs(client, [lfn], mapper)
        except KM3DiracError as error:
            failed[lfn] = str(error)
            continue
        if len(resolved) != 1 or mapper.to_lfn(resolved[0].did) != mapper.to_lfn(mapper.to_did(lfn)):
            failed[lfn] = f"{lfn} is not a file (it holds {len(resolved)} files): give file LFNs as InputData"
            continue
        wanted[lfn] = resolved[0]
    files = list(wanted.values())
    problem = ""
    if files:
        attach_replicas(client, files, close_rses)
        try:
            download_inputs(client, files, destination, workers, progress)
        except InputDataError as error:
            problem = str(error)
            log.warning("some inputs could not be downloaded: %s", problem)
    downloaded = {}
    for lfn, entry in wanted.items():
        if entry.local_path is not None:
            downloaded[lfn] = entry
        elif not entry.replicas:
            failed[lfn] = f"{lfn}: no AVAILABLE replica in Rucio"
        else:
            failed[lfn] = f"{lfn}: not downloaded ({problem})"
    return downloaded, failed
