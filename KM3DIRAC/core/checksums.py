"""Checksums as Rucio and DIRAC write them: adler32 as 8 lower-case hex digits."""

from __future__ import annotations

import zlib
from pathlib import Path

CHUNK_BYTES = 4 * 1024 * 1024


def adler32_of_file(path: Path) -> str:
    value = 1
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            value = zlib.adler32(chunk, value)
    return f"{value & 0xFFFFFFFF:08x}"


def normalise_adler32(checksum: str) -> str:
    """DIRAC sometimes strips leading zeros; Rucio always keeps 8 digits."""
    return checksum.strip().lower().zfill(8)
