"""KM3DIRAC's TransformationSystem: run-aware TransformationAgent plugins (Agent/TransformationPlugin.py)."""

#: Where the TransformationAgent finds KM3DIRAC's plugins (agent option ``PluginLocation``).
PLUGIN_LOCATION = "KM3DIRAC.TransformationSystem.Agent.TransformationPlugin"
#: DIRAC's own plugins, which stay allowed.
DIRAC_PLUGINS = ("Standard", "BySize", "Broadcast", "ByShare")
#: KM3DIRAC's run-aware plugins.
KM3DIRAC_PLUGINS = ("ByRun", "ByRunFiles", "ByRunSize", "ByRunEvents", "ByRunCPU")
#: ``/Operations/<Defaults|VO>/Transformations/AllowedPlugins``: DIRAC's and KM3DIRAC's.
ALLOWED_PLUGINS = DIRAC_PLUGINS + KM3DIRAC_PLUGINS


def allowed_plugins_option() -> str:
    """The CS value of ``Transformations/AllowedPlugins`` (comma separated)."""
    return ", ".join(ALLOWED_PLUGINS)
