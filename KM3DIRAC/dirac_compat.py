"""Work-arounds for DIRAC 9.1.22 bugs that break KM3DIRAC's contracts, each applied once and guarded.

ObjectLoader root order (breaks every same-path override of an extension):
``ObjectLoader.__generateRootModules`` binds ``rootModules = baseModules`` and then appends to and reverses that
list in place, so the singleton's base list becomes ``["", "KM3DIRAC", "DIRAC"]``. When the configuration is
enabled (``LocalConfiguration.enableCS``, run by every command, agent and service after parsing its command line)
``reloadRootModules()`` regenerates from that mutated list and yields ``["", "DIRAC", "KM3DIRAC", ""]``: DIRAC's
modules now shadow the extension's, e.g. ``dirac-dms-find-lfns`` gets DIRAC's RucioFileCatalogClient instead of
KM3DIRAC's. The repair makes ``reloadRootModules`` rebuild the order from ``extensionsByPriority()`` alone.
"""

from __future__ import annotations

_REPAIRED = False


def repair_object_loader_root_order() -> None:
    global _REPAIRED
    if _REPAIRED:
        return
    from DIRAC.Core.Utilities import ObjectLoader as object_loader_module
    from DIRAC.Core.Utilities.Extensions import extensionsByPriority

    def reload_root_modules(self) -> None:
        # "" first (absolute imports), then extensions by priority, DIRAC last: the order DIRAC intends
        self._ObjectLoader__rootModules = ["", *extensionsByPriority()]

    object_loader_module.ObjectLoader.reloadRootModules = reload_root_modules
    _REPAIRED = True
