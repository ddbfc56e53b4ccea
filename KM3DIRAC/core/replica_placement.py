"""Where many files have AVAILABLE replicas, proven per dataset instead of asked per file.

Rucio's ``list_replicas`` costs a few milliseconds a file on the server (it builds a URL per replica): an hour for a
1M-file transformation. When the caller needs only *which* RSEs hold a file (DIRAC's TransformationAgent asks
``getReplicasForJobs(lfns, getUrl=False)``), the answer can be had per dataset, in two calls:

- ``list_dataset_replicas(deep=True)`` counts, per RSE, the dataset's files with an AVAILABLE replica there, from
  Rucio's replicas table (not the rule, not the collection-replica cache, so nothing stale), and how many files
  are attached (N);
- only when some readable RSE counts N: ``list_files`` gives the files attached to the dataset (its contents rows).

An RSE counting N holds an AVAILABLE replica of every attached file; an RSE counting 0 holds none. An RSE counting
0 < k < N holds some, unknown which: the dataset then proves nothing and its files are left to the per-file path,
as are files not attached to the dataset tried for them, datasets whose count disagrees with the listing (a file
attached or detached in between), RSEs appearing twice (archive constituents) and files whose dataset is complete
nowhere (the per-file path then tells an existing file without replicas from a removed one). A directory that also
holds sub-directories keeps its files in its companion DATASET ``D/`` (:mod:`KM3DIRAC.core.catalog_directories`),
tried when ``D`` counts no file replica. Only AVAILABLE replicas are counted, so this answers ``allStatus=False``
questions only.

Not used as proof: Rucio's collection replicas (``list_dataset_replicas_bulk``, non-deep ``list_dataset_replicas``)
are a cache that only the abacus-collection-replica daemon and replica deletion update: a replica declared BAD or
UNAVAILABLE leaves ``available_length`` as it was. Nor the dataset's rules (an OK rule stays OK when a replica is
declared bad until the judge repairs it).
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from KM3DIRAC.core.errors import InvalidLFNError
from KM3DIRAC.core.lfn import DID
from KM3DIRAC.core.rucio_calls import list_attached_files

log = logging.getLogger(__name__)

K = TypeVar("K")

# a dataset is listed only for at least this many of the asked files: fewer are cheaper asked file by file
MIN_FILES_PER_DATASET = 20
FILE_TYPES = ("FILE", "F")
# datasets asked at once: the two calls per dataset are mostly waiting (measured 2x faster with 4 on 2 cores)
PARALLEL_DATASETS = 4


class Members:
    """The files attached to a dataset: the names of those in the dataset's own scope (all, for KM3DIRAC's
    datasets) kept apart, so that a membership test hashes a name the LFN already hashed."""

    def __init__(self, files: list[tuple[str, str]], scope: str) -> None:
        self.scope = scope
        self.names = {name for file_scope, name in files if file_scope == scope}
        self.others = {DID(*file) for file in files if file[0] != scope}
        self.count = len(files)

    def __contains__(self, did: DID) -> bool:
        return did.name in self.names if did.scope == self.scope else did in self.others


@dataclass
class Placement(Generic[K]):
    """``proven``: key -> RSEs holding an AVAILABLE replica (exact); ``unproven``: keys for the per-file path. The
    keys are the DIDs asked, or the keys of the mapping asked (an LFN -> DID mapping: LFNs)."""

    proven: dict[K, list[str]] = field(default_factory=dict)
    unproven: list[K] = field(default_factory=list)


def parent_dataset(did: DID) -> DID | None:
    """The dataset a KM3DIRAC file DID is normally attached to: its name's parent directory, same scope."""
    if not did.name.startswith("/"):
        return None  # a flat name (plain ``rucio upload``): no directory to try
    return _directory_dataset(did.scope, did.name.rpartition("/")[0])


@functools.lru_cache(maxsize=4096)
def _directory_dataset(scope: str, directory: str) -> DID | None:
    return DID(scope, directory) if directory.count("/") >= 3 else None  # /<vo>/<scope>/<dir>...


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


class DatasetProofs:
    """The per-dataset calls of :func:`prove_placement`, ``workers`` datasets at a time, asked as early as the
    caller knows the datasets: a million-LFN caller asks them from the LFN strings (:meth:`ask_for_lfns`) and
    validates the LFNs while the server answers. A dataset asked that turns out not to be needed costs its calls,
    nothing else; one needed but not asked is asked when needed. Use as a context manager (the pool is shut down
    on leaving, waiting for the calls in flight)."""

    def __init__(self, client: Any, readable: Callable[[str], bool] | None = None,
                 workers: int = PARALLEL_DATASETS) -> None:
        self.client = client
        self.readable = readable or readable_rses(client)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="dataset-proof")
        self._asked: dict[DID, Future] = {}

    def __enter__(self) -> DatasetProofs:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def ask(self, datasets: Iterable[DID]) -> None:
        for dataset in datasets:
            if dataset not in self._asked:
                self._asked[dataset] = self._pool.submit(_complete_rses, self.client, dataset, self.readable)

    def ask_for_lfns(self, lfns: Iterable[str], to_did: Callable[[str], DID],
                     min_files: int = MIN_FILES_PER_DATASET) -> None:
        """Ask for the datasets the LFNs' directories are, before the LFNs are checked: ``to_did`` maps a
        directory LFN (one it refuses is not asked)."""
        per_directory = Counter(lfn.rpartition("/")[0] for lfn in lfns if isinstance(lfn, str))
        datasets = []
        for directory, count in per_directory.items():
            if count < min_files:
                continue
            try:
                did = to_did(directory)
            except InvalidLFNError:  # not a directory LFN: the checks after tell the caller what is wrong
                continue
            dataset = _directory_dataset(*did)
            if dataset is not None:
                datasets.append(dataset)
        self.ask(datasets)

    def proof(self, dataset: DID) -> tuple[Members, list[str]] | None:
        self.ask([dataset])
        return self._asked[dataset].result()


def prove_placement(client: Any, dids: Iterable[DID] | Mapping[K, DID],
                    dataset_of: Callable[[DID], DID | None] = parent_dataset,
                    readable: Callable[[str], bool] | None = None,
                    min_files: int = MIN_FILES_PER_DATASET, workers: int = PARALLEL_DATASETS,
                    proofs: DatasetProofs | None = None) -> Placement:
    """Split ``dids`` (DIDs, or a mapping of keys to DIDs: the placement is then by key) into files whose
    AVAILABLE replicas are proven per dataset and the rest; ``workers`` datasets are asked at a time, or through
    ``proofs`` (which may have been asked for some already)."""
    if proofs is None:
        with DatasetProofs(client, readable, workers) as own:
            return prove_placement(client, dids, dataset_of, min_files=min_files, proofs=own)
    placement: Placement = Placement()
    keyed = dids.items() if isinstance(dids, Mapping) else ((did, did) for did in dict.fromkeys(dids))
    by_dataset = _group_by_dataset(keyed, dataset_of, placement.unproven)
    proofs.ask(dataset for dataset, wanted in by_dataset.items() if len(wanted) >= min_files)
    for dataset, wanted in by_dataset.items():
        proof = proofs.proof(dataset) if len(wanted) >= min_files else None
        if proof is None:
            placement.unproven.extend(key for key, _ in wanted)
            continue
        members, rses = proof
        proven, unproven, scope, names = placement.proven, placement.unproven, members.scope, members.names
        for key, did in wanted:
            if did.name in names if did.scope == scope else did in members:  # the first test inline (a million)
                proven[key] = rses
            else:
                unproven.append(key)
    log.debug("placement proven for %d files, %d left to the per-file path", len(placement.proven),
              len(placement.unproven))
    return placement


def _group_by_dataset(keyed: Iterable[tuple[K, DID]], dataset_of: Callable[[DID], DID | None],
                      ungrouped: list[K]) -> dict[DID, list[tuple[K, DID]]]:
    """``(key, DID)`` pairs by the dataset to try for the DID; keys of those without one appended to
    ``ungrouped``."""
    by_dataset: dict[DID, list[tuple[K, DID]]] = defaultdict(list)
    if dataset_of is not parent_dataset:
        for pair in keyed:
            dataset = dataset_of(pair[1])
            if dataset is None:
                ungrouped.append(pair[0])
            else:
                by_dataset[dataset].append(pair)
        return by_dataset
    datasets: dict[tuple[str, str], Any] = {}  # parent_dataset inline, once per directory (a million files)
    for pair in keyed:
        scope, name = pair[1]
        if name[:1] != "/":
            ungrouped.append(pair[0])
            continue
        directory = (scope, name.rpartition("/")[0])
        dataset = datasets.get(directory, _UNSEEN)
        if dataset is _UNSEEN:
            dataset = datasets[directory] = _directory_dataset(*directory)
        if dataset is None:
            ungrouped.append(pair[0])
        else:
            by_dataset[dataset].append(pair)
    return by_dataset


_UNSEEN = object()  # _group_by_dataset: a directory not looked at yet


def _complete_rses(client: Any, dataset: DID, readable: Callable[[str], bool]) -> tuple[Members, list[str]] | None:
    """(attached files, readable RSEs holding all of them) or None when the dataset proves nothing. A directory
    that also holds sub-directories keeps its files in the companion DATASET ``D/``
    (:mod:`KM3DIRAC.core.catalog_directories`): tried when ``D`` itself counts no file replica anywhere."""
    for holder in (dataset, DID(dataset.scope, dataset.name + "/")):
        counted = _rse_counts(client, holder)
        if counted is None:
            return None  # proves nothing (see the module's docstring)
        if counted[1]:
            break
    else:
        return None  # neither holds a replica of any file: the per-file path tells what they are
    count, complete = counted
    complete = sorted(rse for rse in complete if readable(rse))
    if not complete:
        return None  # only paid for the listing where it proves something
    members = _members(client, holder)
    if members is None or members.count != count:
        return None  # a file attached or detached between the two calls, or not a dataset
    return members, complete


def _rse_counts(client: Any, holder: DID) -> tuple[int, list[str]] | None:
    """(files attached, RSEs holding an AVAILABLE replica of each) from Rucio's replicas table; ``(n, [])`` when
    no RSE holds any of them (or the holder does not exist); None when some RSE holds some, unknown which."""
    from rucio.common.exception import DataIdentifierNotFound, ScopeNotFound

    try:
        rows = list(client.list_dataset_replicas(holder.scope, holder.name, deep=True))
    except (DataIdentifierNotFound, ScopeNotFound):
        return 0, []
    complete: list[str] = []
    seen: set[str] = set()
    lengths = {int(row.get("length") or 0) for row in rows}
    if len(lengths) > 1:
        return None
    count = lengths.pop() if lengths else 0
    for row in rows:
        rse, available = row["rse"], int(row.get("available_length") or 0)
        if rse in seen:
            return None  # archive constituents counted apart
        seen.add(rse)
        if available == count:
            complete.append(rse)
        elif available:
            return None  # some files there, unknown which
    return count, complete


def _members(client: Any, dataset: DID) -> Members | None:
    """The files attached to ``dataset``: Rucio's ``list_files``, which reads the contents rows 500 at a time on the
    server (``list_content`` loads them as ORM objects 5 at a time: 3-4x the server time a file). Only asked of a
    collection whose contents have file replicas, so a dataset (containers hold collections, which have none)."""
    from rucio.common.exception import DataIdentifierNotFound, ScopeNotFound

    try:
        return Members(list_attached_files(client, dataset.scope, dataset.name), dataset.scope)
    except (DataIdentifierNotFound, ScopeNotFound):
        return None
