"""Command-line switches of KM3DIRAC's ``@Script()`` commands (DIRAC's ``Script.registerSwitch`` wants one callback per
switch): one place that registers ``--name=VALUE`` switches and collects their values."""

from __future__ import annotations


def register_value_switches(switches: dict[str, str]) -> dict[str, str]:
    """Register ``--<name>=`` for each ``name: help text`` of ``switches``; the returned dict is filled with
    ``name: value`` for each switch given, once ``Script.parseCommandLine`` has run."""
    from DIRAC.Core.Base.Script import Script

    values: dict[str, str] = {}

    def setter(name: str):
        def set_value(value: str) -> dict:
            values[name] = value
            return {"OK": True, "Value": None}

        return set_value

    for name, help_text in switches.items():
        Script.registerSwitch("", f"{name}=", help_text, setter(name))
    return values
