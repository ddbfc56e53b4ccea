"""One bridge from the core's ``logging`` loggers (``KM3DIRAC.*``) to DIRAC's gLogger, so that what the core logs
(a bad replica declared suspicious, a Rucio call tried again) appears in job logs and component logs like DIRAC's
own messages. DIRAC's gLogger only sees its ``dirac`` logger tree."""

from __future__ import annotations

import logging

_LEVELS = ((logging.ERROR, "error"), (logging.WARNING, "warn"), (logging.INFO, "info"))


class GLoggerHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        from DIRAC import gLogger

        method = next((name for level, name in _LEVELS if record.levelno >= level), "debug")
        try:
            getattr(gLogger.getSubLogger(record.name.removeprefix("KM3DIRAC.")), method)(record.getMessage())
        except Exception:  # a log line must never break the caller
            self.handleError(record)


def bridge_core_logging(level: int = logging.INFO) -> None:
    """Forward ``KM3DIRAC.*`` records at ``level`` and above to gLogger (idempotent)."""
    core = logging.getLogger("KM3DIRAC")
    if not any(isinstance(handler, GLoggerHandler) for handler in core.handlers):
        core.addHandler(GLoggerHandler())
        core.setLevel(level)
        core.propagate = False
