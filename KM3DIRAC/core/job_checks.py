"""What a job checks before its payload starts, so that a bad parameter costs no CPU: the output RSE and the
failover RSEs (known to Rucio, writable, with quota left for the account), the output path (a valid LFN whose
``<key>`` fields have values) and the lifetime of the job's proxy against the CPU time it asked for.

Each check returns the problems it found, each naming the item and what to do; :class:`PreflightError` carries
them all at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from KM3DIRAC.core.errors import ConfigurationError

log = logging.getLogger(__name__)

#: seconds a credential must outlive the payload's CPU time: downloads before, uploads and registration after
DATA_MARGIN_SECONDS = 900


class PreflightError(ConfigurationError):
    """The job cannot succeed as parameterised; ``problems`` names each reason."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class CredentialLifetime:
    """The job's credential (proxy) and how long it still lives; ``seconds_left`` None: no expiry known."""

    what: str
    seconds_left: float | None


def output_rse_problems(client: Any, rses: dict[str, str], account: str | None) -> list[str]:
    """``rses`` maps each RSE to the parameter that names it (KM3OutputSE, KM3FailoverSEs). Problems: unknown to
    Rucio, write availability off, no quota or no quota left for ``account``."""
    from rucio.common.exception import RSENotFound

    problems = []
    for rse, parameter in rses.items():
        try:
            settings = client.get_rse(rse)
        except RSENotFound:
            problems.append(f"{parameter} {rse}: no such RSE in Rucio")
            continue
        if not settings.get("availability_write", True):
            problems.append(f"{parameter} {rse}: the RSE is not writable now (Rucio availability_write is off)")
            continue
        if account:
            problem = _quota_problem(client, rse, account)
            if problem:
                problems.append(f"{parameter} {rse}: {problem}")
    return problems


def _quota_problem(client: Any, rse: str, account: str) -> str | None:
    from rucio.common.exception import AccessDenied

    try:
        limit = client.get_local_account_limit(account, rse).get(rse)
    except AccessDenied:
        log.info("account %s may not read its limit at %s: not checked", account, rse)
        return None
    if limit is None:
        return f"account {account} has no quota there (rucio-admin account set-limits {account} {rse} ...)"
    limit = float(limit)
    if limit < 0 or limit == float("inf"):
        return None  # unlimited
    used = sum(float(row.get("bytes") or 0) for row in client.get_local_account_usage(account, rse))
    if used >= limit:
        return f"the quota of account {account} is used up ({used:.0f} of {limit:.0f} bytes)"
    return None


def required_credential_seconds(cpu_time: Any, cpu_normalisation: Any = None,
                                margin: float = DATA_MARGIN_SECONDS) -> float | None:
    """Seconds the job's credential must still live: the JDL CPUTime (DIRAC's normalised seconds) divided by the
    worker node's CPU normalisation factor, plus ``margin`` for the data; None when the job gave no CPUTime."""
    try:
        seconds = float(cpu_time)
    except (TypeError, ValueError):
        return None
    if seconds <= 0:
        return None
    try:
        factor = float(cpu_normalisation or 1.0)
    except (TypeError, ValueError):
        factor = 1.0
    return seconds / (factor if factor > 0 else 1.0) + margin


def credential_problems(credential: CredentialLifetime | None, needed_seconds: float | None) -> list[str]:
    if credential is None or credential.seconds_left is None or needed_seconds is None:
        return []
    if credential.seconds_left < needed_seconds:
        return [f"{credential.what} lives {credential.seconds_left / 3600:.1f} h more, the job needs "
                f"{needed_seconds / 3600:.1f} h (CPUTime plus {DATA_MARGIN_SECONDS // 60} min for the data): "
                "renew it (dirac-proxy-init) or ask for less CPUTime"]
    return []
