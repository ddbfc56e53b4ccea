"""DIRAC side of the shore-station ingestion: its settings from the CS (read once), command-line values first.

Options (``KM3DIRAC/ConfigTemplate.cfg``): ``/Operations/<VO or Defaults>/KM3DIRAC/Ingestion/...``. The catalog is
KM3DIRAC's Rucio catalog (``/Resources/FileCatalogs/RucioFileCatalog``), as for job data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from KM3DIRAC.core.ingest import CLOSE_BY_MARKER, DEFAULT_LAYOUT, FILE_METADATA_COLUMNS, IngestError, IngestSettings
from KM3DIRAC.core.rucio_settings import is_yes

SECTION = "KM3DIRAC/Ingestion"
DEFAULT_RSE = "KM3-SHORE"
DEFAULT_SCOPE = "km3net"
#: command-line switch -> (CS option, default)
OPTIONS = {
    "rse": ("RSE", DEFAULT_RSE),
    "directory": ("Directory", ""),
    "scope": ("Scope", DEFAULT_SCOPE),
    "layout": ("DatasetLayout", DEFAULT_LAYOUT),
    "datatype": ("DataType", "raw"),
    "settle": ("SettleSeconds", "60"),
    "close-by": ("CloseRunsBy", CLOSE_BY_MARKER),
    "run-list": ("RunList", ""),
    "quiet": ("QuietSeconds", "3600"),
    "marker-suffix": ("EndOfRunSuffix", ".end"),
    "read-events": ("ReadEvents", "yes"),
    "dataset-rules": ("DatasetRules", ""),
    "chunk-files": ("ChunkFiles", "1000"),
    "streams": ("Streams", "2"),
    "file-metadata": ("FileMetadata", FILE_METADATA_COLUMNS),
}


def ingest_settings(given: dict[str, Any]) -> IngestSettings:
    """The settings of a pass: ``given`` (command-line switches by name) over the CS over the defaults."""
    from DIRAC import gConfig
    from DIRAC.ConfigurationSystem.Client.Helpers.Operations import Operations

    operations = Operations()
    values = {name: given.get(name) or operations.getValue(f"{SECTION}/{option}", default)
              for name, (option, default) in OPTIONS.items()}
    if not values["directory"]:
        raise IngestError("no DAQ directory: give --directory or set the CS option "
                          f"/Operations/Defaults/{SECTION}/Directory")
    try:
        settle, quiet, chunk = float(values["settle"]), float(values["quiet"]), int(values["chunk-files"])
        streams = int(values["streams"])
    except ValueError:
        raise IngestError(f"SettleSeconds {values['settle']!r}, QuietSeconds {values['quiet']!r}, ChunkFiles "
                          f"{values['chunk-files']!r}, Streams {values['streams']!r}: numbers are needed") from None
    rules = values["dataset-rules"]
    rules = tuple(r.strip() for r in (rules.split(",") if isinstance(rules, str) else rules) if r.strip())
    return IngestSettings(
        rse=values["rse"], directory=Path(values["directory"]), scope=values["scope"],
        vo=gConfig.getValue("/DIRAC/VirtualOrganization", "km3net"), layout=values["layout"],
        datatype=values["datatype"], settle_seconds=settle, close_by=values["close-by"],
        run_list=Path(values["run-list"]) if values["run-list"] else None, quiet_seconds=quiet,
        marker_suffix=values["marker-suffix"],
        read_events=is_yes(values["read-events"]), dataset_rules=rules,
        chunk_files=chunk, streams=streams, file_metadata=values["file-metadata"])
