#!/usr/bin/env python
"""Show the KM3DIRAC installation: versions of KM3DIRAC, DIRAC and rucio-clients, the DIRAC extensions in priority
order, and the file catalogs the configuration makes DIRAC use.

Example:
  $ dirac-km3-info
"""

from DIRAC.Core.Base.Script import Script


@Script()
def main():
    Script.parseCommandLine(ignoreErrors=False)

    from importlib.metadata import version

    from DIRAC import gConfig, gLogger
    from DIRAC.ConfigurationSystem.Client.Helpers.CSGlobals import getCSExtensions
    from DIRAC.Core.Utilities.Extensions import extensionsByPriority

    rows = [
        ("KM3DIRAC", version("KM3DIRAC")),
        ("DIRAC", version("DIRAC")),
        ("rucio-clients", version("rucio-clients")),
        ("diracx-client", version("diracx-client")),
        ("Extensions", ", ".join(extensionsByPriority())),
        ("CS extensions", ", ".join(getCSExtensions())),
    ]
    catalogs = gConfig.getValue("/Operations/Defaults/Services/Catalogs/CatalogList", [])
    rows.append(("File catalogs", ", ".join(catalogs) or "(none configured)"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        gLogger.notice(f"{name:<{width}} : {value}")


if __name__ == "__main__":
    main()
