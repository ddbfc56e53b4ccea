"""Bounded Rucio calls: every HTTP request has a time-out, and a call that meets an unreachable or hung server is
tried again a bounded number of times with exponential back-off, then fails.

rucio-clients' ``BaseClient`` waits ``timeout`` seconds (600 by default) per request and retries a refused
connection three times at once, with no pause; a server that accepts connections but does not answer (a stopped
process, a full backlog) is not retried at all. :class:`RetryingClient` wraps a rucio ``Client`` so that every
method call follows one :class:`RucioCallPolicy`; the worst case of one call is about
``attempts * timeout + first_delay * (2**(attempts - 1) - 1)`` seconds (capped back-offs aside).

Only errors that say "the server was not reached or did not answer" are retried: a refusal (``AccessDenied``,
``DataIdentifierNotFound`` ...) is an answer and is raised at once.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from KM3DIRAC.core.errors import ConfigurationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RucioCallPolicy:
    """Time-out and retries of every Rucio call (CS: ``Timeout``, ``Attempts``, ``RetryDelay``, ``MaxRetryDelay``
    of ``/Resources/FileCatalogs/RucioFileCatalog``)."""

    timeout: float = 60.0  # seconds one HTTP request may take (rucio-clients' default is 600)
    attempts: int = 3  # tries of one call, the first included
    first_delay: float = 2.0  # seconds before the second try; doubled before each further one
    max_delay: float = 30.0

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.attempts < 1 or self.first_delay < 0 or self.max_delay < 0:
            raise ConfigurationError(f"Rucio call policy out of range: {self} (Timeout > 0, Attempts >= 1, "
                                     "RetryDelay >= 0, MaxRetryDelay >= 0)")

    @classmethod
    def from_options(cls, options: dict[str, Any], where: str = "") -> RucioCallPolicy:
        """The policy from CS options (strings); an unset option keeps its default, a malformed one is named."""
        values: dict[str, Any] = {}
        for option, argument, kind in (("Timeout", "timeout", float), ("Attempts", "attempts", int),
                                       ("RetryDelay", "first_delay", float), ("MaxRetryDelay", "max_delay", float)):
            text = options.get(option)
            if text in (None, ""):
                continue
            try:
                values[argument] = kind(text)
            except (TypeError, ValueError) as error:
                raise ConfigurationError(f"{where}/{option} = {text!r}: not a number ({error})") from error
        return cls(**values)

    def delays(self) -> list[float]:
        """The pauses between tries."""
        return [min(self.max_delay, self.first_delay * 2 ** n) for n in range(self.attempts - 1)]

    def worst_case_seconds(self) -> float:
        return self.attempts * self.timeout + sum(self.delays())


def is_unreachable(error: BaseException) -> bool:
    """True when ``error`` means the Rucio server was not reached or did not answer in time."""
    import requests
    from rucio.common.exception import ServerConnectionException

    return isinstance(error, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                              ServerConnectionException, ConnectionError, TimeoutError))


def call_with_retries(policy: RucioCallPolicy, function: Callable[..., Any], *args: Any,
                      what: str = "", sleep: Callable[[float], None] = time.sleep, **kwargs: Any) -> Any:
    """``function(*args, **kwargs)``, tried again after the policy's back-off while the server is unreachable."""
    delays = policy.delays()
    for attempt in range(policy.attempts):
        try:
            return function(*args, **kwargs)
        except Exception as error:
            if not is_unreachable(error) or attempt == policy.attempts - 1:
                raise
            log.warning("Rucio %s: %s: %s; try %d of %d in %.1f s", what or getattr(function, "__name__", "call"),
                        type(error).__name__, error, attempt + 2, policy.attempts, delays[attempt])
            sleep(delays[attempt])
    raise AssertionError("unreachable")  # pragma: no cover


class RetryingClient:
    """A rucio ``Client`` whose every method call follows ``policy``; attributes pass through unchanged.

    Build the client with ``timeout=policy.timeout`` (:func:`client_arguments`) so that each try is bounded too.
    """

    def __init__(self, client: Any, policy: RucioCallPolicy) -> None:
        self._client = client
        self.policy = policy

    @property
    def wrapped(self) -> Any:
        """The rucio Client itself (for rucio's UploadClient/DownloadClient, which want the real class)."""
        return self._client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name.startswith("_") or not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            return call_with_retries(self.policy, attribute, *args, what=name, **kwargs)

        return bounded


def build_client(settings: dict[str, Any], policy: RucioCallPolicy, client_class: Any = None) -> RetryingClient:
    """A rucio Client (authenticating now, itself bounded by the policy) wrapped in :class:`RetryingClient`."""
    if client_class is None:
        from rucio.client import Client

        client_class = Client
    client = call_with_retries(policy, client_class, what="authentication", **client_arguments(settings, policy))
    return RetryingClient(client, policy)


def client_arguments(settings: dict[str, Any], policy: RucioCallPolicy) -> dict[str, Any]:
    """rucio Client keyword arguments with the policy's per-request time-out."""
    return {**settings, "timeout": policy.timeout}


def list_attached_files(client: Any, scope: str, name: str) -> list[tuple[str, str]]:
    """``(scope, name)`` of the files attached to a collection: Rucio's ``list_files`` (``GET /dids/<scope>/<name>/
    files``), its streamed answer parsed as one JSON document.

    rucio-clients parses each streamed line apart, with a datetime hook (about 5 us a file: in a million-file
    listing the client's largest cost, paid under one interpreter lock). This sends the same request through the
    client's own request method (its token, re-authentication, the retry policy of a :class:`RetryingClient`) and
    raises the same exceptions; where that method is missing (another rucio-clients version), plain ``list_files``.
    """
    rucio = getattr(client, "wrapped", client)
    send = getattr(rucio, "_send_request", None)
    if send is None or not hasattr(rucio, "DIDS_BASEURL") or not hasattr(rucio, "list_hosts"):
        return [(row["scope"], row["name"]) for row in client.list_files(scope, name)]

    def listing() -> list[tuple[str, str]]:
        from urllib.parse import quote_plus

        from rucio.client.baseclient import choice
        from rucio.common.constants import HTTPMethod
        from rucio.common.utils import build_url

        path = "/".join([rucio.DIDS_BASEURL, quote_plus(scope), quote_plus(name), "files"])
        response = send(build_url(choice(rucio.list_hosts), path=path), method=HTTPMethod.GET)
        if response.status_code != 200:
            error, message = rucio._get_exception(headers=response.headers, status_code=response.status_code,
                                                  data=response.content)
            raise error(message)
        lines = [line for line in response.text.split("\n") if line]  # one JSON object a line, no raw newline inside
        return [(row["scope"], row["name"]) for row in json.loads(f"[{','.join(lines)}]")]

    policy = getattr(client, "policy", None)
    return call_with_retries(policy, listing, what="list_files") if isinstance(policy, RucioCallPolicy) else listing()
