"""Benchmark: the job wrapper's download and upload+register against `rucio download` / `rucio upload`, on the same
freshly started Rucio server and the same files, in the same run; and the wrapper's own overhead.

Run with ``make bench-wrapper`` (or ``.venv/bin/python -m bench.wrapper_bench --help``). Defaults: 50 files of
40 MiB (about 2 GB) in and 50 out. Targets (issue "Job wrappers ..."): at least as fast as the rucio commands,
overhead under 2 s per job.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from KM3DIRAC.sandbox.rucio_server import client_config_text, rucio_cli, start_rucio_server

SCOPE = "bench"
RSE = "BENCH-DISK"


def make_files(directory: Path, count: int, size_mib: int, prefix: str) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1024 * 1024)
    paths = []
    for index in range(count):
        path = directory / f"{prefix}{index:03d}.root"
        with open(path, "wb") as stream:
            for chunk in range(size_mib):
                stream.write(block[chunk % 7:] + block[:chunk % 7] if chunk else block)
            stream.write(index.to_bytes(4, "big"))
        paths.append(path)
    return paths


def make_tiny_files(directory: Path, count: int) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"tiny{index:03d}.root" for index in range(count)]
    for index, path in enumerate(paths):
        path.write_bytes(index.to_bytes(4, "big") * 256)
    return paths


def timed(action) -> tuple[float, object]:
    start = time.perf_counter()
    outcome = action()
    return time.perf_counter() - start, outcome


def drop_page_cache_hint(paths: list[Path]) -> None:
    """Best effort: ask the kernel to forget the files' pages, so each side reads from disk alike."""
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        except OSError:
            pass


def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="km3dirac-wbench-", dir=args.dir))
    os.environ["TMPDIR"] = str(work)
    print(f"starting a Rucio server in {work} ...", flush=True)
    server = start_rucio_server(work / "rucio")
    try:
        client_cfg = work / "rucio-client.cfg"
        client_cfg.write_text(client_config_text(server.url))
        os.environ["RUCIO_CONFIG"] = str(client_cfg)
        _run_against(work, args)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def _run_against(work: Path, args: argparse.Namespace) -> None:
    from rucio.client import Client

    from KM3DIRAC.core.catalog import RucioCatalog
    from KM3DIRAC.core.job_inputs import attach_replicas, download_inputs, resolve_inputs
    from KM3DIRAC.core.job_outputs import OutputSpec, register_outputs, registration_entries, store_outputs
    from KM3DIRAC.sandbox.rucio_setup import add_directory_rse, ensure_scope

    client = Client()
    add_directory_rse(client, RSE, work / "storage")
    ensure_scope(client, SCOPE)
    catalog = RucioCatalog(client)
    print(f"making {args.files} files of {args.file_mib} MiB twice ...", flush=True)
    cli_files = make_files(work / "cli-src", args.files, args.file_mib, "cli")
    wrapper_files = make_files(work / "wrapper-src", args.files, args.file_mib, "wrp")
    total_mib = args.files * args.file_mib
    results = {}

    drop_page_cache_hint(cli_files)
    results["upload: rucio upload"], cli_up = timed(lambda: subprocess.run(
        [rucio_cli(), "upload", "--rse", RSE, "--scope", SCOPE, *map(str, cli_files)],
        capture_output=True, text=True, check=False))
    assert cli_up.returncode == 0, cli_up.stderr[-2000:]

    drop_page_cache_hint(wrapper_files)
    spec = OutputSpec(directory=f"/km3net/{SCOPE}/wrapper/run1", rse=RSE, metadata={"Step": "bench"})

    def wrapper_upload():
        stored = store_outputs(client, wrapper_files, spec)
        return register_outputs(catalog, registration_entries(stored, spec))

    results["upload: wrapper (upload+register)"], registered = timed(wrapper_upload)
    assert len(registered) == args.files

    cli_dir = work / "cli-dl"
    results["download: rucio download"], cli_down = timed(lambda: subprocess.run(
        [rucio_cli(), "download", "--dir", str(cli_dir), "--ndownloader", str(args.workers),
         *[f"{SCOPE}:{p.name}" for p in cli_files]], capture_output=True, text=True, check=False))
    assert cli_down.returncode == 0, cli_down.stderr[-2000:]

    def wrapper_download():
        files = resolve_inputs(client, [spec.directory])
        attach_replicas(client, files, [RSE])
        return download_inputs(client, files, work / "wrapper-dl", workers=args.workers)

    results["download: wrapper"], downloaded = timed(wrapper_download)
    assert len(downloaded) == args.files

    # the wrapper's own overhead: the same number of files in and out, but 1 KiB each, so moving and
    # checksumming bytes costs nothing and what remains is Rucio calls, registration and bookkeeping
    tiny = make_tiny_files(work / "tiny-src", args.files)
    tiny_spec = OutputSpec(directory=f"/km3net/{SCOPE}/tiny/run1", rse=RSE, metadata={"Step": "bench"})

    def tiny_round_trip():
        stored = store_outputs(client, tiny, tiny_spec)
        register_outputs(catalog, registration_entries(stored, tiny_spec))
        files = resolve_inputs(client, [tiny_spec.directory])
        attach_replicas(client, files, [RSE])
        download_inputs(client, files, work / "tiny-dl", workers=args.workers)

    overhead, _ = timed(tiny_round_trip)
    command_start, _ = timed(lambda: subprocess.run(
        [str(Path(sys.executable).parent / "dirac-km3-job-run"), "--", "true"],
        capture_output=True, check=False, cwd=work))
    copy_dir = work / "copy"
    copy_dir.mkdir()
    copy_time, _ = timed(lambda: [shutil.copyfile(p, copy_dir / p.name) for p in wrapper_files])

    print()
    print(f"{args.files} files, {total_mib} MiB each way, {args.workers} parallel downloads")
    for name, seconds in results.items():
        print(f"{name:<36} {seconds:8.2f} s  {total_mib / seconds:8.1f} MiB/s")
    print(f"{'plain copy of the same bytes':<36} {copy_time:8.2f} s")
    print()
    up = results["upload: wrapper (upload+register)"] / results["upload: rucio upload"]
    down = results["download: wrapper"] / results["download: rucio download"]
    print(f"wrapper / rucio upload:   {up:.2f}   (target <= 1.0)")
    print(f"wrapper / rucio download: {down:.2f}   (target <= 1.0)")
    print(f"wrapper overhead, transfers excluded ({args.files} x 1 KiB in and out): {overhead:.2f} s")
    print(f"dirac-km3-job-run start-up with nothing to move (DIRAC import, CS): {command_start:.2f} s")
    print(f"overhead per job: {overhead + command_start:.2f} s (target < 2 s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--file-mib", type=int, default=40)
    parser.add_argument("--workers", type=int, default=4, help="parallel downloads, both sides (default 4)")
    parser.add_argument("--dir", default=None, help="working directory parent (default $TMPDIR)")
    run(parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
