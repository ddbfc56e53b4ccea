"""KM3DIRAC: the DIRAC extension that makes KM3NeT productions and user jobs live on Rucio.

Importing this package must stay cheap and must not import DIRAC: DIRAC's extension discovery imports it, and
the Rucio server imports :mod:`KM3DIRAC.core.rucio_policy` from it.
"""

from importlib import metadata

try:
    __version__ = metadata.version("KM3DIRAC")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

#: DIRAC reads ``<extension>.version`` (``Core/Utilities/Version.getCurrentVersion``): the JobWrapper sends it as the
#: job parameter ``PilotAgent``, so it must be the version string (a function here breaks the job's JSON report).
version = __version__

#: The virtual organisation KM3DIRAC serves.
VO = "km3net"


def extension_metadata() -> dict:
    """Entry point of the ``dirac`` group: how DIRAC finds and ranks this extension.

    DIRAC calls it (through ``extensionsByPriority``) in every process before it loads any module by relative
    path, which makes it the place to repair DIRAC's module search order (see :mod:`KM3DIRAC.dirac_compat`).
    """
    from KM3DIRAC.dirac_compat import repair_object_loader_root_order

    repair_object_loader_root_order()
    return {
        "primary_extension": True,
        "priority": 100,
        "setups": {},
        "default_setup": "",
    }
