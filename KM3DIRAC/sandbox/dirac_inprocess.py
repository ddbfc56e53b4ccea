"""DIRAC in-process, with no DIRAC service running: what the tests need beyond a configuration.

DIRAC 9.1 asks the ResourceStatus service for every StorageElement's access status (the CS fallback is gone).
In-process there is no such service, so :func:`answer_resource_status_in_process` makes DIRAC's own
``ResourceStatus`` helper read the statuses from a list given here, through its real cache. The local sandbox
(real DISET services) runs the real ResourceStatus service instead.
"""

from __future__ import annotations

from collections.abc import Iterable

STORAGE_STATUS_TYPES = ("ReadAccess", "WriteAccess", "CheckAccess", "RemoveAccess")


class InProcessResourceStatusClient:
    """Answers ``selectStatusElement`` like the ResourceStatus service would, from fixed rows."""

    def __init__(self, rows: list[tuple[str, str, str, str, str]]) -> None:
        self.rows = rows

    def selectStatusElement(self, element, tableType, meta=None, **kwargs):
        from DIRAC import S_OK

        return S_OK([list(row) for row in self.rows])


#: every StorageElement answered so far in this process, with its status: a later call adds to them (a test that
#: declares one more SE must not make the session's others unknown to DIRAC)
_answered: dict[str, str] = {}


def answer_resource_status_in_process(storage_elements: Iterable[str], status: str = "Active") -> None:
    """Make every StorageElement in ``storage_elements`` report ``status`` for all its access types (the ones
    answered by earlier calls keep theirs)."""
    from DIRAC.ResourceStatusSystem.Client.ResourceStatus import ResourceStatus

    _answered.update(dict.fromkeys(storage_elements, status))
    rows = [(name, "StorageElement", status_type, se_status, "all") for name, se_status in _answered.items()
            for status_type in STORAGE_STATUS_TYPES]
    resource_status = ResourceStatus()
    resource_status.rssClient = InProcessResourceStatusClient(rows)
    refreshed = resource_status.rssCache.refreshCache()
    if not refreshed["OK"]:
        raise RuntimeError(f"could not load the in-process resource status: {refreshed['Message']}")
