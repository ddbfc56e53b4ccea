"""Where many files have AVAILABLE replicas, proven per dataset instead of asked per file.

Rucio's ``list_replicas`` costs a few milliseconds a file on the server (it builds a URL per replica): an hour for a
1M-file transformation. When the caller needs only *which* RSEs hold a file (DIRAC's TransformationAgent asks
``getReplicasForJobs(lfns, getUrl=False)``), the answer can be had per dataset:

- ``list_content`` gives the files attached to the dataset (N of them);
- ``list_dataset_replicas(deep=True)`` counts, per RSE, the dataset's files with an AVAILABLE replica there, from
  Rucio's replicas table (not the rule, not the collection-replica cache, so nothing stale).

An RSE counting N holds an AVAILABLE replica of every attached file; an RSE counting 0 holds none. An RSE counting
0 < k < N holds some, unknown which: the dataset then proves nothing and its files are left to the per-file path,
as are files not attached to the dataset tried for them, datasets whose count disagrees with the listing (a file
attached in between), RSEs appearing twice (archive constituents) and files whose dataset is complete nowhere (the
per-file path then tells an existing file without replicas from a removed one). Only AVAILABLE replicas are
counted, so this answers ``allStatus=False`` questions only.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from KM3DIRAC.core.lfn import DID

log = logging.getLogger(__name__)

# a dataset is listed only for at least this many of the asked files: fewer are cheaper asked file by file
MIN_FILES_PER_DATASET = 20
FILE_TYPES = ("FILE", "F")
# datasets asked at once: the two calls per dataset are mostly waiting (measured 2x faster with 4 on 2 cores)
PARALLEL_DATASETS = 4


@dataclass
class Placement:
    """``proven``: DID -> RSEs holding an AVAILABLE replica (exact); ``unproven``: DIDs for the per-file path."""

    proven: dict[DID, list[str]] = field(default_factory=dict)
    unproven: list[DID] = field(default_factory=list)


def parent_dataset(did: DID) -> DID | None:
    """The dataset a KM3DIRAC file DID is normally attached to: its name's parent directory, same scope."""
    if not did.name.startswith("/"):
        return None  # a flat name (plain ``rucio upload``): no directory to try
    parent = did.name.rsplit("/", 1)[0]
    return DID(did.scope, parent) if parent.count("/") >= 3 else None  # /<vo>/<scope>/<dir>...


def readable_rses(client: Any) -> Callable[[str], bool]:
    """Whether an RSE has a protocol readable from the WAN: where ``list_replicas`` would give the file a URL (the
    per-file path lists an RSE only with a URL). Asked once per RSE."""
    known: dict[str, bool] = {}

    def readable(rse: str) -> bool:
        if rse not in known:
            protocols = client.get_rse(rse).get("protocols", [])
            known[rse] = any((p.get("domains", {}).get("wan", {}).get("read") or 0) > 0 for p in protocols)
        return known[rse]

    return readable


def prove_placement(client: Any, dids: Iterable[DID],
                    dataset_of: Callable[[DID], DID | None] = parent_dataset,
                    readable: Callable[[str], bool] | None = None,
                    min_files: int = MIN_FILES_PER_DATASET, workers: int = PARALLEL_DATASETS) -> Placement:
    """Split ``dids`` into files whose AVAILABLE replicas are proven per dataset and the rest; ``workers``
    datasets are asked at a time."""
    readable = readable or readable_rses(client)
    placement = Placement()
    by_dataset: dict[DID, list[DID]] = defaultdict(list)
    for did in dict.fromkeys(dids):
        dataset = dataset_of(did)
        if dataset is None:
            placement.unproven.append(did)
        else:
            by_dataset[dataset].append(did)
    eligible = [dataset for dataset, wanted in by_dataset.items() if len(wanted) >= min_files]
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(eligible) or 1))) as pool:
        futures = {dataset: pool.submit(_complete_rses, client, dataset, readable) for dataset in eligible}
        proofs = {dataset: future.result() for dataset, future in futures.items()}
    for dataset, wanted in by_dataset.items():
        if dataset not in proofs:
            placement.unproven.extend(wanted)
            continue
        complete_at = proofs[dataset]
        if complete_at is None:
            placement.unproven.extend(wanted)
            continue
        members, rses = complete_at
        for did in wanted:
            if did in members:
                placement.proven[did] = rses
            else:
                placement.unproven.append(did)
    log.debug("placement proven for %d files, %d left to the per-file path", len(placement.proven),
              len(placement.unproven))
    return placement


def _complete_rses(client: Any, dataset: DID, readable: Callable[[str], bool]) -> tuple[set[DID], list[str]] | None:
    """(attached files, readable RSEs holding all of them) or None when the dataset proves nothing."""
    from rucio.common.exception import DataIdentifierNotFound, ScopeNotFound

    try:
        content = list(client.list_content(dataset.scope, dataset.name))
    except (DataIdentifierNotFound, ScopeNotFound):
        return None
    if not content or any(str(row.get("type", "")).upper() not in FILE_TYPES for row in content):
        return None  # empty, or a container
    members = {DID(row["scope"], row["name"]) for row in content}
    count = len(content)
    complete: list[str] = []
    seen: set[str] = set()
    for row in client.list_dataset_replicas(dataset.scope, dataset.name, deep=True):
        rse, available = row["rse"], int(row.get("available_length") or 0)
        if rse in seen or int(row.get("length") or 0) != count:
            return None  # archive constituents counted apart, or files attached since the listing
        seen.add(rse)
        if available == count:
            complete.append(rse)
        elif available:
            return None  # some files there, unknown which
    complete = sorted(rse for rse in complete if readable(rse))
    return (members, complete) if complete else None
