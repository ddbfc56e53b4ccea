"""The Rucio ``lfn2pfn`` algorithm that keeps Rucio's and DIRAC's physical paths identical.

A DIRAC StorageElement places an LFN at ``<SE base path><LFN>``. KM3DIRAC's DIDs carry the full LFN as their name
(``/km3net/data/raw/...`` in scope ``data``), so an RSE whose ``lfn2pfn_algorithm`` attribute is
:data:`ALGORITHM_NAME` and whose prefix is the SE's base path stores every file exactly where DIRAC expects it:
files written by ``rucio upload`` are readable through ``DataManager`` and the other way round.

Deploy by naming this module in the ``[policy]`` section of rucio.cfg, on the server and on clients that upload::

    [policy]
    lfn2pfn_module = KM3DIRAC.core.rucio_policy

and, on the server, its inverse (a replica named by PFN, as in ``declare_suspicious_file_replicas``)::

    [policy]
    pfn2lfn = km3dirac

Importing the module registers both algorithms. Names that are not LFNs (no leading ``/``) fall back to Rucio's
``identity`` layout, ``<scope>/<name>``, so plain Rucio users of other scopes are unaffected.
"""

from __future__ import annotations

from typing import Any

ALGORITHM_NAME = "km3dirac"
#: the first LFN segment of KM3DIRAC paths (KM3DIRAC.VO; not imported: the Rucio server loads this module alone)
LFN_ROOT = "km3net"


def lfn_path(scope: str, name: str, rse: str, rse_attrs: dict[str, Any], protocol_attrs: dict[str, Any]) -> str:
    """Path of a DID below the RSE prefix: the LFN itself for LFN-named DIDs, ``scope/name`` otherwise."""
    del rse, rse_attrs, protocol_attrs
    if name.startswith("/"):
        return name.lstrip("/")
    return f"{scope}/{name}"


def did_of_path(parsed_pfn: dict[str, str]) -> tuple[str, str]:
    """(name, scope) of the file at a parsed PFN (``path`` below the RSE prefix, ``name``): the inverse of
    :func:`lfn_path` for ``/km3net/<scope>/...`` LFNs; other paths as Rucio's default parser reads them."""
    path = parsed_pfn["path"].strip("/")
    segments = path.split("/") if path else []
    if len(segments) >= 2 and segments[0] == LFN_ROOT:
        return f"/{path}/{parsed_pfn['name']}", segments[1]
    return parsed_pfn["name"], segments[0] if segments else ""


def register() -> None:
    """Make :data:`ALGORITHM_NAME` known to Rucio's deterministic translations (path of a DID, DID of a path) in
    this process (idempotent)."""
    from rucio.rse.translation import RSEDeterministicScopeTranslation, RSEDeterministicTranslation

    if not RSEDeterministicTranslation.supports(ALGORITHM_NAME):
        RSEDeterministicTranslation.register(lfn_path, ALGORITHM_NAME)
    if ALGORITHM_NAME not in RSEDeterministicScopeTranslation._ALGORITHMS.get("pfn2lfn", {}):  # no public test
        RSEDeterministicScopeTranslation.register(did_of_path, ALGORITHM_NAME)


register()
