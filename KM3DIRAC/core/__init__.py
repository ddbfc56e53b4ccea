"""KM3DIRAC's typed core: plain functions and records that import neither DIRAC nor any global configuration.

DIRAC-facing adapters elsewhere in the package read configuration once and call into here; the core raises
exceptions from :mod:`KM3DIRAC.core.errors` and never returns ``S_OK``/``S_ERROR`` dictionaries.
"""
