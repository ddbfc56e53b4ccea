"""Lint is part of the test suite: ruff (line length 120, pyproject.toml) on the code, mypy on the typed core
(KM3DIRAC/core, pyproject.toml's [tool.mypy]), shellcheck on shell scripts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON_TREES = ["KM3DIRAC", "snakemake_executor_plugin_dirac", "snakemake_storage_plugin_km3dirac", "tests", "tools",
                "bench"]


def _tool(name: str) -> str:
    tool = Path(sys.executable).parent / name
    assert tool.exists(), f"{name} is not installed in the test environment (extra 'testing' of setup.cfg)"
    return str(tool)


def test_ruff_check_is_clean():
    result = subprocess.run([_tool("ruff"), "check", *PYTHON_TREES], cwd=ROOT, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_typed_core_type_checks():
    result = subprocess.run([_tool("mypy")], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_shell_scripts_are_shellcheck_clean():
    shellcheck = shutil.which("shellcheck")
    assert shellcheck, "shellcheck missing: tools/bootstrap.sh installs it"
    scripts = [str(path) for path in [*ROOT.glob("tools/*.sh"), *ROOT.glob("cvmfs/*.sh"), ROOT / "cvmfs/km3-cvmfs-run",
                                      ROOT / ".ci/run"]
               if path.exists()]
    assert scripts
    result = subprocess.run([shellcheck, "-x", *scripts], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
