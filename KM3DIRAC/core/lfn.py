"""LFN <-> Rucio DID mapping.

KM3DIRAC follows Rucio's own ``dirac`` scope algorithm: an LFN ``/<vo>/<scope>/<rest>`` is the DID
``<scope>:/<vo>/<scope>/<rest>`` (the full LFN is the name). Files registered by Rucio's DIRAC endpoint and by plain
``rucio upload`` into such names are therefore the same DIDs. ``scope:name`` input is accepted as well.

Directories: ``/<vo>`` lists scopes, ``/<vo>/<scope>`` is the scope itself, deeper directories are Rucio
collections (one or two per directory: :mod:`KM3DIRAC.core.catalog_directories`).

Flat names (a DID whose name does not start with ``/``, e.g. what plain ``rucio upload`` makes: ``CORSIKA_testing:
corsika_0001.root``) are the LFNs ``/<vo>/<scope>:<name>`` (``/km3net/CORSIKA_testing:corsika_0001.root``): an
absolute path, as DIRAC requires of a job's InputData (``LFN:/...``), and never a KM3DIRAC-convention LFN, whose
second segment is a scope and cannot hold ``:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from KM3DIRAC.core.errors import InvalidLFNError

# Rucio 41 limits (rucio/common/schema/generic.py): scope 25 characters of [a-zA-Z_\-.0-9], name 250 characters.
SCOPE_PATTERN = re.compile(r"^[a-zA-Z_\-.0-9]{1,25}$")
NAME_MAX_LENGTH = 250
NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f*%?]")


@dataclass(frozen=True)
class DID:
    scope: str
    name: str

    def as_dict(self) -> dict[str, str]:
        return {"scope": self.scope, "name": self.name}

    def __str__(self) -> str:
        return f"{self.scope}:{self.name}"


@dataclass(frozen=True)
class LFNMapper:
    """Maps LFNs of one VO namespace (``/<vo>/...``) to DIDs and back."""

    vo: str = "km3net"

    @property
    def root(self) -> str:
        return f"/{self.vo}"

    def to_did(self, lfn: object) -> DID:
        """The DID of a file or directory LFN (or ``scope:name``); :class:`InvalidLFNError` names what is wrong."""
        if not isinstance(lfn, str):
            raise InvalidLFNError(f"{lfn!r}: an LFN must be a string, not {type(lfn).__name__}")
        if not lfn.startswith("/") and ":" in lfn:
            scope, name = lfn.split(":", 1)
            self._check_scope(lfn, scope)
            self._check_name(lfn, name)
            return DID(scope, name)
        self._check_path(lfn)
        lfn = lfn.rstrip("/") or lfn  # a directory given as "D/" is D (the name "D/" is D's companion collection)
        parts = lfn.split("/")
        if len(parts) < 3 or parts[1] != self.vo:
            raise InvalidLFNError(f"{lfn}: LFNs must look like {self.root}/<scope>/... ")
        if ":" in parts[2]:  # /<vo>/<scope>:<flat name>
            scope, name = lfn[len(self.root) + 1:].split(":", 1)
            self._check_scope(lfn, scope)
            self._check_name(lfn, name)
            return DID(scope, name)
        scope = parts[2]
        self._check_scope(lfn, scope)
        self._check_name(lfn, lfn)
        return DID(scope, lfn)

    def scope_of_directory(self, lfn: str) -> str | None:
        """The scope when ``lfn`` is a scope-level directory ``/<vo>/<scope>``, else None."""
        parts = lfn.rstrip("/").split("/")
        if len(parts) == 3 and parts[1] == self.vo and ":" not in parts[2]:
            return parts[2]
        return None

    def is_root(self, lfn: str) -> bool:
        return lfn.rstrip("/") in (self.root, "")

    def to_lfn(self, did: DID) -> str:
        return did.name if did.name.startswith("/") else f"{self.root}/{did.scope}:{did.name}"

    @staticmethod
    def parent(lfn: str) -> str:
        return lfn.rstrip("/").rsplit("/", 1)[0] or "/"

    def ancestors(self, lfn: str) -> list[str]:
        """Directories between the scope level (excluded) and ``lfn`` (excluded), outermost first."""
        parts = lfn.rstrip("/").split("/")
        return ["/".join(parts[:depth]) for depth in range(4, len(parts))]

    @staticmethod
    def _check_path(lfn: str) -> None:
        if not lfn.startswith("/"):
            raise InvalidLFNError(f"{lfn!r}: an LFN must be an absolute path")
        if "//" in lfn:
            raise InvalidLFNError(f"{lfn}: empty path segment ('//')")
        segments = lfn.rstrip("/").split("/")[1:]
        if any(segment in (".", "..") for segment in segments):
            raise InvalidLFNError(f"{lfn}: '.' and '..' segments are not allowed in an LFN")
        if NAME_FORBIDDEN.search(lfn):
            raise InvalidLFNError(f"{lfn!r}: control characters and the wildcards * % ? are not allowed")

    @staticmethod
    def _check_scope(lfn: str, scope: str) -> None:
        if not SCOPE_PATTERN.match(scope):
            raise InvalidLFNError(f"{lfn}: {scope!r} is not a valid Rucio scope (1-25 of [a-zA-Z0-9_.-])")

    @staticmethod
    def _check_name(lfn: str, name: str) -> None:
        if not name:
            raise InvalidLFNError(f"{lfn}: empty DID name")
        if len(name) > NAME_MAX_LENGTH:
            raise InvalidLFNError(f"{lfn[:60]}...: {len(name)} characters, Rucio allows {NAME_MAX_LENGTH}")
