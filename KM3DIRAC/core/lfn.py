"""LFN <-> Rucio DID mapping.

KM3DIRAC follows Rucio's own ``dirac`` scope algorithm: an LFN ``/<vo>/<scope>/<rest>`` is the DID
``<scope>:/<vo>/<scope>/<rest>`` (the full LFN is the name). Files registered by Rucio's DIRAC endpoint and by plain
``rucio upload`` into such names are therefore the same DIDs. ``scope:name`` input is accepted as well.

Users' home directories are the exception: DIRAC puts a user's files below ``/<vo>/user/<initial>/<name>``
(``getUserHome``, ``dirac-dms-user-lfns``), and KM3DIRAC maps that home to the user's own scope ``user.<name>``
(``/km3net/user/j/jdoe/ana/f.h5`` is ``user.jdoe:/km3net/user/j/jdoe/ana/f.h5``), so Rucio's scope ownership confines
each user to their home. ``/<vo>/user/<initial>/<name>`` is then that scope's top directory.

Directories: ``/<vo>`` lists scopes, ``/<vo>/<scope>`` is the scope itself, deeper directories are Rucio
collections (one or two per directory: :mod:`KM3DIRAC.core.catalog_directories`).

Flat names (a DID whose name does not start with ``/``, e.g. what plain ``rucio upload`` makes: ``CORSIKA_testing:
corsika_0001.root``) are the LFNs ``/<vo>/<scope>:<name>`` (``/km3net/CORSIKA_testing:corsika_0001.root``): an
absolute path, as DIRAC requires of a job's InputData (``LFN:/...``), and never a KM3DIRAC-convention LFN, whose
second segment is a scope and cannot hold ``:``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from KM3DIRAC.core.errors import InvalidLFNError

# Rucio 41 limits (rucio/common/schema/generic.py): scope 25 characters of [a-zA-Z_\-.0-9], name 250 characters.
SCOPE_PATTERN = re.compile(r"^[a-zA-Z_\-.0-9]{1,25}$")
NAME_MAX_LENGTH = 250
NAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f*%?]")
#: the directory below ``/<vo>`` that holds users' homes ``<initial>/<name>``, and the prefix of their scopes
USER_DIRECTORY = "user"
USER_SCOPE_PREFIX = "user."
#: base names whose every character is allowed everywhere (no wildcard, control character or ':')
PLAIN_BASE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_UNCHECKED = object()  # to_dids: a directory not looked at yet


def user_scope(user_name: str) -> str:
    """The Rucio scope of a DIRAC user's home directory."""
    return f"{USER_SCOPE_PREFIX}{user_name}"


def user_home(vo: str, user_name: str) -> str:
    """DIRAC's home directory of a user (``getUserHome``): ``/<vo>/user/<initial>/<name>``."""
    return f"/{vo}/{USER_DIRECTORY}/{user_name[0]}/{user_name}"


class DID(NamedTuple):
    """A Rucio data identifier. A tuple: hashed and compared at C speed (a million-file call hashes each a few
    times), and equal to the ``(scope, name)`` tuple it is."""

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
        scope = self._user_scope(lfn, parts) or parts[2]
        self._check_scope(lfn, scope)
        self._check_name(lfn, lfn)
        return DID(scope, lfn)

    def to_dids(self, lfns: Iterable[object]) -> Iterator[tuple[object, DID | InvalidLFNError]]:
        """``(lfn, DID or the InvalidLFNError)`` for each LFN, as :meth:`to_did` answers; the directory part of file
        LFNs is checked once per directory (a million files of one production: a few hundred directories)."""
        scope_of: dict[str, str | None] = {}  # directory -> the scope of the files in it, None: ask to_did
        plain_base = PLAIN_BASE_NAME.fullmatch
        for lfn in lfns:
            did: DID | InvalidLFNError | None = None
            if type(lfn) is str:
                # the common case inline (a million LFNs): a plain base name in a directory already checked
                directory, _, base = lfn.rpartition("/")
                scope: Any = scope_of.get(directory, _UNCHECKED)
                if (scope is not None and scope is not _UNCHECKED and len(lfn) <= NAME_MAX_LENGTH and plain_base(base)
                        and base != "." and base != ".."):
                    did = DID(scope, lfn)
                else:
                    did = self._did_in_checked_directory(lfn, scope_of)
            if did is None:
                try:
                    did = self.to_did(lfn)
                except InvalidLFNError as error:
                    did = error
            yield lfn, did

    def _did_in_checked_directory(self, lfn: str, scope_of: dict[str, str | None]) -> DID | None:
        """What :meth:`to_did` gives ``/<vo>/<scope>/<dir>/.../<base>`` when its directory maps files to DIDs named
        as their LFN, checking only what differs between files of the directory (the base name, the length)."""
        directory, _, base = lfn.rpartition("/")
        if (not base or base in (".", "..") or NAME_FORBIDDEN.search(base) or len(lfn) > NAME_MAX_LENGTH
                or directory.count("/") < 4):  # shallower: the user-home rule reads the base name
            return None
        if directory not in scope_of:
            probe = f"{directory}/x"
            try:
                did = self.to_did(probe)
            except InvalidLFNError:
                did = None
            scope_of[directory] = did.scope if did is not None and did.name == probe else None
        scope = scope_of[directory]
        return DID(scope, lfn) if scope is not None else None

    def scope_of_directory(self, lfn: str) -> str | None:
        """The scope when ``lfn`` is a scope-level directory (``/<vo>/<scope>`` or a user's home), else None."""
        parts = lfn.rstrip("/").split("/")
        if len(parts) < 3 or parts[1] != self.vo or ":" in parts[2]:
            return None
        if len(parts) == self._scope_depth(parts):
            return self._user_scope(lfn, parts) or parts[2]
        return None

    def _scope_depth(self, parts: list[str]) -> int:
        """How many ``/``-separated parts make the scope-level directory of a path split into ``parts``."""
        return 5 if len(parts) >= 5 and parts[2] == USER_DIRECTORY else 3

    def _user_scope(self, lfn: str, parts: list[str]) -> str | None:
        """``user.<name>`` for paths in or below ``/<vo>/user/<initial>/<name>``, else None."""
        if len(parts) < 5 or parts[2] != USER_DIRECTORY:
            return None
        initial, name = parts[3], parts[4]
        if not name or initial != name[0]:
            raise InvalidLFNError(f"{lfn}: user homes are {self.root}/{USER_DIRECTORY}/<initial>/<name> with "
                                  f"<initial> the first letter of <name> (DIRAC's getUserHome), e.g. "
                                  f"{user_home(self.vo, name or 'jdoe')}")
        return user_scope(name)

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
        return ["/".join(parts[:depth]) for depth in range(self._scope_depth(parts) + 1, len(parts))]

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
