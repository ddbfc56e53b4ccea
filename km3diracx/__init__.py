"""KM3DIRAC's DiracX extension (``km3diracx``), the way DiracX is extended (DiracX's example extension "gubbins",
LHCb's lhcbdiracx): entry points of KM3DIRAC's distribution (setup.cfg) in DiracX's groups.

- ``diracx`` ``extension = km3diracx``: DiracX then looks for KM3DIRAC's entry points before its own. There is no
  ``km3diracx.client`` (no generated client of its own): DiracX's client importer then keeps DiracX's client.
- ``diracx.services`` ``km3dirac``: :mod:`km3diracx.routers`, mounted at ``/api/km3dirac`` (job parameters, which
  DiracX 0.7 stores but has no route to read).
- ``diracx.cli`` ``km3``: :mod:`km3diracx.cli`, ``dirac km3 ...``.

Nothing here imports DIRAC: the routers run in DiracX's server, the CLI in diracx-cli.
"""
