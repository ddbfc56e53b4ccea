"""KM3DIRAC's TransformationAgent plugins: run-aware chunking on top of DIRAC's own plugins.

Deploy with the TransformationAgent option ``PluginLocation = KM3DIRAC.TransformationSystem.Agent.
TransformationPlugin`` and list the plugin names in ``/Operations/<Defaults|VO>/Transformations/AllowedPlugins``
(:data:`KM3DIRAC.TransformationSystem.ALLOWED_PLUGINS`). DIRAC's plugins (Standard, BySize, Broadcast, ByShare)
stay available: this class extends DIRAC's.

Every plugin here is thin: read its parameters with DIRAC's ``getPluginParam`` (transformation parameter, else
``/Operations/.../TransformationPlugins/<Plugin>/<Name>``, else ``.../TransformationPlugins/<Name>``, else the
default; all documented in ConfigTemplate.cfg), fetch run metadata in bulk through the catalog, let
:mod:`KM3DIRAC.core.run_chunking` plan, return ``S_OK([(seString, [lfns]), ...])``. While some runs wait for
their datasets to be closed the result carries ``Timeout = True``: the TransformationAgent then calls the plugin
again at its next cycle instead of waiting ``NoUnusedDelay`` hours for new files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from DIRAC import S_ERROR, S_OK
from DIRAC.TransformationSystem.Agent.TransformationPlugin import TransformationPlugin as DIRACTransformationPlugin

from KM3DIRAC.core.errors import KM3DiracError
from KM3DIRAC.core.run_chunking import PLUGIN_LIMITS, plan_chunks
from KM3DIRAC.core.run_metadata import RunMetadata, fetch_run_metadata
from KM3DIRAC.core.runs import EVENTS_KEY, RUN_KEY, SIZE_KEY, build_file_records, complete_runs

FLUSH = "Flush"
MAX_PROBLEMS_LOGGED = 20


def rucio_catalog_of(fc: Any):
    """KM3DIRAC's core catalog behind a DIRAC FileCatalog (or catalog client), or None when it has none."""
    from KM3DIRAC.Resources.Catalog.RucioFileCatalogClient import RucioFileCatalogClient

    if isinstance(fc, RucioFileCatalogClient):
        return fc.catalog
    for _name, catalog, _master in getattr(fc, "readCatalogs", []):
        if isinstance(catalog, RucioFileCatalogClient):
            return catalog.catalog
    return None


def _value(result: dict) -> Any:
    if not result["OK"]:
        raise KM3DiracError(result["Message"])
    return result["Value"]


def run_metadata_through_dirac(fc: Any, lfns: list[str]) -> RunMetadata:
    """Any DIRAC catalog: sizes in bulk, user metadata per file; datasets' state unknown (complete on Flush only)."""
    metadata = RunMetadata()
    sizes = _value(fc.getFileSize(lfns))
    metadata.failed.update({lfn: f"{lfn}: {reason}" for lfn, reason in sizes["Failed"].items()})
    for lfn, size in sizes["Successful"].items():
        user = fc.getFileUserMetadata(lfn)
        user = user["Value"] if user["OK"] else {}
        metadata.files[lfn] = {SIZE_KEY: size, RUN_KEY: user.get(RUN_KEY), EVENTS_KEY: user.get(EVENTS_KEY)}
    return metadata


class TransformationPlugin(DIRACTransformationPlugin):
    """DIRAC's TransformationPlugin plus ``ByRun``, ``ByRunFiles``, ``ByRunSize``, ``ByRunEvents``, ``ByRunCPU``."""

    def _ByRun(self):
        return self._by_run_chunks("ByRun")

    def _ByRunFiles(self):
        return self._by_run_chunks("ByRunFiles")

    def _ByRunSize(self):
        return self._by_run_chunks("ByRunSize")

    def _ByRunEvents(self):
        return self._by_run_chunks("ByRunEvents")

    def _ByRunCPU(self):
        return self._by_run_chunks("ByRunCPU")

    # ----------------------------------------------------------------------------------------------- helpers
    def _param(self, name: str, default: Any) -> Any:
        return self.util.getPluginParam(name, default)

    def _by_run_chunks(self, plugin: str):
        try:
            limits = PLUGIN_LIMITS[plugin](self._param)
            flush = self.params.get("Status") == FLUSH
            metadata = self._run_metadata(list(self.data))
            records, problems = build_file_records(self.data, metadata.files, need_events=limits.needs_events)
            problems.update(metadata.failed)
            plan = plan_chunks(records, limits, complete_runs(records, metadata.closed_datasets), flush=flush)
        except (KM3DiracError, ValueError) as error:
            self.util.logError(f"{self.plugin}: no tasks", str(error))
            return S_ERROR(f"{self.plugin}: {error}")
        self._log_problems({**problems, **plan.unplannable})
        result = S_OK(plan.tasks())
        if plan.waiting_runs:
            self.util.logInfo(f"{len(plan.waiting_runs)} runs wait for their datasets to be closed (or Flush)",
                              ", ".join(str(run) for run in list(plan.waiting_runs)[:10]))
            result["Timeout"] = True
        self.util.logInfo(f"{self.plugin}: {len(plan.chunks)} tasks from {len(self.data)} files")
        return result

    def _run_metadata(self, lfns: list[str]) -> RunMetadata:
        if not lfns:
            return RunMetadata()
        catalog = rucio_catalog_of(self.util.fc)
        if catalog is None:
            self.util.logWarn("No KM3DIRAC Rucio catalog: metadata read per file, runs complete only on Flush")
            return run_metadata_through_dirac(self.util.fc, lfns)
        return fetch_run_metadata(catalog, lfns)

    def _log_problems(self, problems: dict[str, str]) -> None:
        for reason in _first(problems.values(), MAX_PROBLEMS_LOGGED):
            self.util.logWarn("File left out of tasks:", reason)
        if len(problems) > MAX_PROBLEMS_LOGGED:
            self.util.logWarn(f"... and {len(problems) - MAX_PROBLEMS_LOGGED} more files left out of tasks")


def _first(items: Iterable[str], count: int) -> list[str]:
    return [item for _, item in zip(range(count), items, strict=False)]
