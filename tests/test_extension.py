"""DIRAC sees KM3DIRAC as its primary extension, and every console script KM3DIRAC declares can be loaded."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def test_extensions_by_priority_lists_km3dirac_first():
    from DIRAC.Core.Utilities.Extensions import extensionsByPriority

    extensions = extensionsByPriority()
    assert extensions[0] == "KM3DIRAC"
    # the web portal's packages (WebAppDIRAC, DIRACWebAppResources) are extensions too, below KM3DIRAC
    assert "DIRAC" in extensions and set(extensions) <= {"KM3DIRAC", "WebAppDIRAC", "DIRACWebAppResources", "DIRAC"}


def test_cs_extensions_strip_the_dirac_suffix():
    from DIRAC.ConfigurationSystem.Client.Helpers.CSGlobals import getCSExtensions

    extensions = getCSExtensions()
    assert extensions[0] == "KM3" and set(extensions) <= {"KM3", "WebApp", "DIRACWebAppResources"}, extensions


def test_dirac_reads_the_extension_version_as_a_string():
    """The JobWrapper reports getCurrentVersion() as a job parameter: it must serialise (it did not when
    ``KM3DIRAC.version`` was importlib's function)."""
    from DIRAC.Core.Utilities.Version import getCurrentVersion

    import KM3DIRAC

    result = getCurrentVersion()
    assert result["OK"], result
    assert result["Value"] == KM3DIRAC.__version__
    assert isinstance(result["Value"], str)


def test_extension_metadata_entry_point():
    (entry_point,) = [ep for ep in metadata.entry_points(group="dirac") if ep.value.startswith("KM3DIRAC")]
    info = entry_point.load()()
    assert info["primary_extension"] is True
    assert info["priority"] == 100


def test_every_console_script_entry_point_loads():
    """DIRAC's Test_entrypoints pattern, for KM3DIRAC's commands."""
    scripts = [ep for ep in metadata.entry_points(group="console_scripts") if ep.module.startswith("KM3DIRAC")]
    assert scripts, "KM3DIRAC declares no console script"
    errors = []
    for entry_point in scripts:
        assert entry_point.name.startswith(("dirac-km3-", "km3dirac-demo-")), entry_point.name
        if entry_point.name.startswith("dirac-"):
            # DIRAC commands: @Script() takes the command name from the module file name
            assert entry_point.module.rsplit(".", 1)[-1] == entry_point.name.replace("-", "_"), entry_point
        try:
            entry_point.load()
        except ImportError as error:
            errors.append(f"{entry_point.name}: {error}")
    assert not errors, errors


def test_dirac_km3_info_runs_as_a_command(tmp_path):
    """The installed command runs under DIRAC's @Script machinery and reports the extension order."""
    cfg = tmp_path / "dirac.cfg"
    cfg.write_text("DIRAC\n{\n  VirtualOrganization = km3net\n}\n")
    command = [str(Path(sys.executable).parent / "dirac-km3-info"), "--cfg", str(cfg)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr + result.stdout
    assert re.search(r"Extensions\s*: KM3DIRAC, ", result.stdout), result.stdout
    assert "9.1.22" in result.stdout


def test_object_loader_keeps_the_extension_first_after_a_reload():
    """DIRAC 9.1.22 reorders ObjectLoader's roots to DIRAC-first on reloadRootModules (run by every command after
    the CS is enabled); KM3DIRAC.dirac_compat repairs it, so same-path overrides keep working."""
    from DIRAC.Core.Utilities.ObjectLoader import ObjectLoader

    loader = ObjectLoader()
    loader.reloadRootModules()
    loader.reloadRootModules()
    loaded = loader.loadObject("Resources.Catalog.RucioFileCatalogClient", "RucioFileCatalogClient")
    assert loaded["OK"], loaded
    assert loaded["Value"].__module__ == "KM3DIRAC.Resources.Catalog.RucioFileCatalogClient"


def test_diracx_sees_km3diracx_as_its_extension_and_keeps_its_own_client():
    """KM3DIRAC's DiracX extension (setup.cfg's DiracX entry points): its routes are a DiracX service, ``dirac km3`` a
    diracx-cli command; with no ``km3diracx.client``, DiracX's client importer keeps DiracX's generated client (what
    DIRAC's DiracXClient and diracx-cli use)."""
    code = """
import json
from diracx.core.extensions import extensions_by_priority, select_from_extension
import diracx.client._generated as generated
from diracx.cli import app
from fastapi import FastAPI
import km3diracx.routers
router = select_from_extension(group="diracx.services", name="km3dirac")[0].load()
mounted = FastAPI()
mounted.include_router(router, prefix="/api/km3dirac")  # as DiracX's factory mounts /api/<service name>
print(json.dumps({
    "extensions": extensions_by_priority(),
    "router_is_km3diracx": router is km3diracx.routers.router,
    "routes": sorted([method.upper(), path] for path, methods in mounted.openapi()["paths"].items()
                     for method in methods),
    "cli": sorted(group.name for group in app.registered_groups),
    "client": generated.__name__ + ":" + generated.__file__,
}))
"""
    import json

    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    found = json.loads(ran.stdout.strip().splitlines()[-1])
    assert found["extensions"] == ["km3diracx", "diracx"]
    assert found["router_is_km3diracx"]
    assert found["routes"] == [["GET", "/api/km3dirac/jobs/{job_id}/parameters"],
                               ["POST", "/api/km3dirac/jobs/parameters"]]
    assert "km3" in found["cli"] and "jobs" in found["cli"]
    name, _, path = found["client"].partition(":")
    assert name == "diracx.client._generated" and "/diracx/client/_generated/" in path, found["client"]
