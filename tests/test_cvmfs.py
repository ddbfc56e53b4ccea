"""The worker-node environment scripts against a fake CVMFS tree: native setenv.sh, apptainer images, clear
failures when CVMFS is not mounted or a version is missing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

RUN = Path(__file__).resolve().parent.parent / "cvmfs" / "km3-cvmfs-run"


@pytest.fixture
def fake_cvmfs(tmp_path):
    repo = tmp_path / "cvmfs" / "km3net.in2p3.fr"
    setenv = repo / "sw" / "Jpp" / "v19.3.0" / "setenv.sh"
    setenv.parent.mkdir(parents=True)
    setenv.write_text('export JPP_DIR="$(dirname "${BASH_SOURCE[0]}")"\nexport JPP_VERSION=v19.3.0\n')
    (repo / "singularity").mkdir()
    (repo / "singularity" / "jpp_v20.0.0.sif").write_bytes(b"fake image")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apptainer = bin_dir / "apptainer"  # records how it is called, as the real one would be
    apptainer.write_text('#!/bin/sh\necho "apptainer $*" > "$APPTAINER_LOG"\n')
    apptainer.chmod(0o755)
    env = {**os.environ, "KM3NET_CVMFS_REPO": str(repo), "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "APPTAINER_LOG": str(tmp_path / "apptainer.log")}
    return repo, env, tmp_path


def _run(env, *args, cwd=None):
    return subprocess.run([str(RUN), *args], env=env, capture_output=True, text=True, timeout=60, cwd=cwd,
                          check=False)


def test_native_version_runs_the_command_in_its_environment(fake_cvmfs):
    repo, env, _ = fake_cvmfs
    result = _run(env, "v19.3.0", "bash", "-c", 'echo "$JPP_VERSION $KM3NET_RUN_MODE $JPP_DIR"')
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["v19.3.0", "native", str(repo / "sw" / "Jpp" / "v19.3.0")]


def test_a_version_with_an_image_runs_in_apptainer(fake_cvmfs):
    repo, env, tmp_path = fake_cvmfs
    result = _run(env, "v20.0.0", "JPrintDetector", "-a", "x.detx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    logged = (tmp_path / "apptainer.log").read_text().split()
    assert logged == ["apptainer", "exec", "--bind", str(tmp_path), "--pwd", str(tmp_path),
                      str(repo / "singularity" / "jpp_v20.0.0.sif"), "JPrintDetector", "-a", "x.detx"]


def test_cvmfs_not_mounted_is_said_clearly(fake_cvmfs, tmp_path):
    _, env, _ = fake_cvmfs
    env = {**env, "KM3NET_CVMFS_REPO": str(tmp_path / "not-mounted")}
    result = _run(env, "v19.3.0", "true")
    assert result.returncode == 69
    assert "is not mounted" in result.stderr and "not-mounted" in result.stderr


def test_missing_version_and_usage(fake_cvmfs):
    _, env, _ = fake_cvmfs
    missing = _run({**env, "KM3NET_USE_CONTAINER": "0"}, "v0.0.1", "true")
    assert missing.returncode == 69 and "v0.0.1 not found" in missing.stderr
    usage = _run(env, "v19.3.0")
    assert usage.returncode == 64 and "usage" in usage.stderr
