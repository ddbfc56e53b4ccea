"""The demo train's payloads, real KM3NeT processing in miniature (km3io reads the files, no ROOT needed).

``km3dirac-demo-process``: for every KM3NeT offline file in the job directory, count events, tracks and hits and
write ``<file>.summary.json``. ``km3dirac-demo-merge``: merge the ``*.summary.json`` of one run into
``run<N>.merged.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def process(directory: Path = Path(".")) -> list[Path]:
    import km3io

    inputs = sorted(directory.glob("*.root"))
    if not inputs:
        raise SystemExit(f"km3dirac-demo-process: no .root input in {directory.resolve()}")
    written = []
    for path in inputs:
        reader = km3io.OfflineReader(str(path))
        events = reader.events
        summary = {"input": path.name, "events": len(events), "tracks": int(sum(events.n_tracks)),
                   "hits": int(sum(events.n_hits))}
        target = directory / f"{path.stem}.summary.json"
        target.write_text(json.dumps(summary))
        written.append(target)
    return written


def merge(directory: Path = Path(".")) -> Path:
    parts = sorted(directory.glob("*.summary.json"))
    if not parts:
        raise SystemExit(f"km3dirac-demo-merge: no .summary.json input in {directory.resolve()}")
    summaries = [json.loads(p.read_text()) for p in parts]
    run = next((s["input"].split("_")[2].split(".")[0] for s in summaries if s["input"].count("_") >= 2), "unknown")
    merged = {"run": run, "files": len(summaries), "events": sum(s["events"] for s in summaries),
              "tracks": sum(s["tracks"] for s in summaries), "hits": sum(s["hits"] for s in summaries),
              "inputs": [s["input"] for s in summaries]}
    target = directory / f"run{run}.merged.json"
    target.write_text(json.dumps(merged))
    return target


def process_main() -> None:
    for path in process():
        print(f"wrote {path}")
    sys.exit(0)


def merge_main() -> None:
    print(f"wrote {merge()}")
    sys.exit(0)
