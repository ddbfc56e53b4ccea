"""A real KM3NeT payload for the tests: reads every offline file in the job directory with km3io and writes
``summary_<name>.json`` with its event and track counts. With --wait-for FILE it first waits for FILE to appear
(the test stops the Rucio server meanwhile)."""

import argparse
import json
import time
from pathlib import Path

import km3io

parser = argparse.ArgumentParser()
parser.add_argument("--wait-for")
args = parser.parse_args()
if args.wait_for:
    deadline = time.monotonic() + 120
    while not Path(args.wait_for).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
inputs = sorted(Path.cwd().glob("*.root"))
if not inputs:
    raise SystemExit("no input file in the job directory")
for path in inputs:
    reader = km3io.OfflineReader(str(path))
    summary = {"input": path.name, "events": len(reader.events), "tracks": int(sum(reader.events.n_tracks))}
    Path(f"summary_{path.stem}.json").write_text(json.dumps(summary))
