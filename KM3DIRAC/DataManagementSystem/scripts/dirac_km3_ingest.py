#!/usr/bin/env python
"""Register the shore station's new raw data files in Rucio where they lie (README.md "Nightly ingestion").

One pass: new KM3NeT raw files of the DAQ directory are registered at the shore-station RSE (adler32, size, metadata
from the name, events and run times read by km3io), attached to one dataset per run, and complete runs' datasets are
closed. Files still being written are left for the next pass. Safe to run from cron every few minutes and to run
again after a crash: Rucio is compared with the disk, nothing is registered twice.

Example:
  $ dirac-km3-ingest --directory /data/daq --rse KM3-SHORE --scope km3net --close-by marker
"""

import sys

from DIRAC.Core.Base.Script import Script

from KM3DIRAC.dirac_switches import register_value_switches

SWITCHES = {
    "directory": "the directory the DAQ writes into (CS Ingestion/Directory)",
    "rse": "the shore station's non-deterministic RSE holding that directory (CS Ingestion/RSE, KM3-SHORE)",
    "scope": "Rucio scope of the raw data (CS Ingestion/Scope, km3net)",
    "layout": "run dataset LFN template of vo, scope, detector, run (CS Ingestion/DatasetLayout)",
    "datatype": "datatype metadata of the run datasets (CS Ingestion/DataType, raw)",
    "settle": "seconds a file must be unchanged before it is ingested (CS Ingestion/SettleSeconds, 60)",
    "close-by": "when a run is complete: marker, runlist, quiet or never (CS Ingestion/CloseRunsBy, marker)",
    "run-list": "file of '<detector> <run>' lines: the complete runs, for --close-by runlist (CS Ingestion/RunList)",
    "quiet": "seconds without a new file that complete a run, for --close-by quiet (CS Ingestion/QuietSeconds)",
    "marker-suffix": "end-of-run marker KM3NeT_<det>_<run><suffix> (CS Ingestion/EndOfRunSuffix, .end)",
    "read-events": "yes/no: read events and run times with km3io (CS Ingestion/ReadEvents, yes)",
    "dataset-rules": "comma-separated RSE expressions given a rule per run dataset (CS Ingestion/DatasetRules)",
    "chunk-files": "files per registration call (CS Ingestion/ChunkFiles, 1000)",
    "streams": "registration, rule and closing calls in flight at a time (CS Ingestion/Streams, 2)",
    "file-metadata": "the run's metadata each file carries too (all is on the run dataset): columns (run_number, "
                     "datatype), all (also DetectorID, Stream) or none (CS Ingestion/FileMetadata, columns)",
}


@Script()
def main():
    options = register_value_switches(SWITCHES)
    Script.parseCommandLine(ignoreErrors=False)

    from DIRAC import gLogger

    from KM3DIRAC.core.errors import KM3DiracError
    from KM3DIRAC.core.ingest import Ingestion, summary_lines
    from KM3DIRAC.DataManagementSystem.Client.Ingestion import ingest_settings
    from KM3DIRAC.Resources.Catalog.RucioSettings import catalog_from_cs

    def progress(message):
        print(message, flush=True)

    from rucio.common.exception import RucioException

    try:
        settings = ingest_settings(options)
        result = Ingestion(catalog_from_cs(), settings, progress).run_pass()
    except (KM3DiracError, ValueError) as error:
        gLogger.error(str(error))
        sys.exit(1)
    except RucioException as error:
        gLogger.error(f"Rucio refused or did not answer ({type(error).__name__}: {error}); nothing is lost: the "
                      "next pass starts again from what Rucio has")
        sys.exit(2)
    for line in summary_lines(result):
        print(line, flush=True)
    for path, reason in sorted(result.refused.items()):
        print(f"refused {path}: {reason}", file=sys.stderr)
    sys.exit(1 if result.refused else 0)


if __name__ == "__main__":
    main()
