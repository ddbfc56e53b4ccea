"""JDL templates: render ``${Name}`` (value as is) and ``@{Name}`` (comma-separated value as a JDL list of
strings), and the checks that need no DIRAC: unfilled parameters, input sandbox size."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from KM3DIRAC.core.errors import KM3DiracError

PLACEHOLDER = re.compile(r"([$@])\{(\w+)\}")
SANDBOX_LIMIT_MIB = 10


class JDLTemplateError(KM3DiracError, ValueError):
    """A template that cannot be rendered or a rendered JDL that would be refused; names template and item."""


def placeholders(template: str) -> list[str]:
    return sorted({name for _, name in PLACEHOLDER.findall(template)})


def _list_value(value: Any) -> str:
    items = value if isinstance(value, (list, tuple)) else [v.strip() for v in str(value).split(",")]
    return ", ".join(json.dumps(str(item)) for item in items if str(item).strip())


def render(template: str, parameters: Mapping[str, Any], template_name: str = "template") -> str:
    missing = sorted({name for _, name in PLACEHOLDER.findall(template)
                      if name not in parameters or parameters[name] is None})
    if missing:
        raise JDLTemplateError(f"{template_name}: parameters without a value: {', '.join(missing)} "
                               "(give them with -p Name=value)")
    empty_scalars = sorted({name for kind, name in PLACEHOLDER.findall(template)
                            if kind == "$" and str(parameters[name]).strip() == ""})
    if empty_scalars:
        raise JDLTemplateError(f"{template_name}: parameters with an empty value: {', '.join(empty_scalars)}")

    def substitute(match: re.Match) -> str:
        kind, name = match.groups()
        value = parameters[name]
        if kind == "@":
            return _list_value(value)
        text = str(value)
        if '"' in text:
            raise JDLTemplateError(f"{template_name}: parameter {name} contains a double quote: {text!r}")
        return text

    return PLACEHOLDER.sub(substitute, template)


def check_input_sandbox(paths: list[str], base_dir: Path, limit_mib: int = SANDBOX_LIMIT_MIB,
                        template_name: str = "JDL") -> int:
    """Total bytes of the local input sandbox files; over the limit is an error that says what to do instead."""
    total = 0
    for entry in paths:
        if entry.upper().startswith("LFN:"):
            continue
        path = (base_dir / entry) if not Path(entry).is_absolute() else Path(entry)
        if not path.exists():
            raise JDLTemplateError(f"{template_name}: input sandbox file {entry} does not exist")
        total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    if total > limit_mib * 1024 * 1024:
        raise JDLTemplateError(
            f"{template_name}: input sandbox is {total / 1024 / 1024:.1f} MiB, "
            f"DIRAC refuses more than {limit_mib} MiB. "
            "Upload the big files to Rucio (rucio upload --rse <RSE> --scope <scope> --name /km3net/<scope>/... "
            "FILE) and list their DIDs in KM3InputData: the job downloads them itself.")
    return total
