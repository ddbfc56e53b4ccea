"""The fault suite's payload: says it is ready (``<ledger dir>/ready-<tag>``), waits for the go file (the test applies
its fault meanwhile), then writes ``--files`` outputs ``out_<tag>_<i>.dat`` of random bytes and records each (name,
size, adler32) in the ledger: the suite's count of files produced, independent of what the job wrapper says."""

import argparse
import json
import os
import time
import zlib
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--ledger", required=True)
parser.add_argument("--tag", required=True)
parser.add_argument("--files", type=int, default=2)
parser.add_argument("--bytes", type=int, default=20_000)
parser.add_argument("--wait-for")
args = parser.parse_args()
ledger = Path(args.ledger)
(ledger.parent / f"ready-{args.tag}").write_text(str(os.getpid()))
if args.wait_for:
    deadline = time.monotonic() + 300
    while not Path(args.wait_for).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
for index in range(args.files):
    data = os.urandom(args.bytes)
    name = f"out_{args.tag}_{index}.dat"
    Path(name).write_bytes(data)
    entry = {"tag": args.tag, "name": name, "bytes": len(data), "adler32": f"{zlib.adler32(data) & 0xFFFFFFFF:08x}"}
    with open(ledger, "a") as out:
        out.write(json.dumps(entry) + "\n")
