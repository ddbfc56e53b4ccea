"""The exception tree of KM3DIRAC's core. Adapters translate these to ``S_ERROR`` at the DIRAC boundary."""


class KM3DiracError(Exception):
    """Base of every error KM3DIRAC's core raises."""


class InvalidLFNError(KM3DiracError, ValueError):
    """An LFN (or DID) that cannot be mapped; the message names the offending item and why."""


class ConfigurationError(KM3DiracError):
    """A required option is missing or malformed; the message names the option."""
