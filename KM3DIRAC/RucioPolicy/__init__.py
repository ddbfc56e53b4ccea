"""KM3NeT's Rucio policy package: who may do what on the Rucio server KM3DIRAC uses.

Deploy on the Rucio server (``rucio.cfg``)::

    [policy]
    package = KM3DIRAC.RucioPolicy

Only :mod:`KM3DIRAC.RucioPolicy.permission` is customised; Rucio falls back to its ``generic`` modules for the rest.
The package imports no DIRAC and nothing of KM3DIRAC beyond itself, so the server needs only this source tree on
its ``PYTHONPATH``.
"""

SUPPORTED_VERSION = [">=41.0", "<42.0"]
