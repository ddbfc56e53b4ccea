# The two commands of README.md. Each does all the set-up it needs (tools/bootstrap.sh) first.
.PHONY: install test lint demo clean bench-catalog bench-wrapper bench-plugins bench-calib bench-ingest bench-snakemake

PYTEST_ARGS ?=
BENCH_ARGS ?=

install:
	bash tools/bootstrap.sh

# The main job: real KM3NeT files through a two-step train on the local sandbox (DEMO_ARGS="--runs 2" ...)
DEMO_ARGS ?=
demo: install
	.venv/bin/python -m KM3DIRAC.demo.run_demo $(DEMO_ARGS)

test: install
	.venv/bin/python -m pytest $(PYTEST_ARGS)

lint: install
	.venv/bin/ruff check KM3DIRAC snakemake_executor_plugin_dirac snakemake_storage_plugin_km3dirac tests tools bench
	.venv/bin/mypy
	shellcheck -x tools/*.sh cvmfs/*.sh cvmfs/km3-cvmfs-run .ci/run

clean:
	rm -rf .venv .venv-rucio-server .venv-snakemake .work

# Catalog benchmark (issue "A Rucio FileCatalog plugin"): BENCH_ARGS="--files 1000 --find-dids 10000" for a quick run
bench-catalog: install
	.venv/bin/python -m bench.catalog_bench $(BENCH_ARGS)

# Job wrapper benchmark (issue "Job wrappers ..."): BENCH_ARGS="--files 10 --file-mib 4" for a quick run
bench-wrapper: install
	.venv/bin/python -m bench.wrapper_bench $(BENCH_ARGS)

# Plugin benchmark (issue "Run-aware chunking plugins"): BENCH_ARGS="--sizes 10000,100000" for a quick run
bench-plugins: install
	.venv/bin/python -m bench.plugins_bench $(BENCH_ARGS)

# Calibration resolution benchmark (issue 14): BENCH_ARGS="--runs 1000 --calibrations 100" for a quick run
bench-calib: install
	.venv/bin/python -m bench.calib_bench $(BENCH_ARGS)

# Shore-station ingestion benchmark (issue 13): BENCH_ARGS="--sizes 1000,10000" for a quick run
bench-ingest: install
	.venv/bin/python -m bench.ingest_bench $(BENCH_ARGS)

# snakemake executor benchmark (issue 15): the same jobs via snakemake and via dirac-wms-job-submit on the sandbox;
# BENCH_ARGS="--jobs 10 --sandbox DIR" for a quick run on a sandbox that is up
bench-snakemake: install
	.venv/bin/python -m bench.snakemake_bench $(BENCH_ARGS)
