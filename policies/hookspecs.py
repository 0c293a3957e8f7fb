"""The hooks idgate calls on policy plugins. Every hook name carries the `idgate_` prefix."""

from __future__ import annotations

import pluggy

from .sdk import AnyPolicyDefinition

PROJECT = "idgate"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def idgate_policy_definitions() -> list[AnyPolicyDefinition]:  # type: ignore[empty-body]
    """Declare the policies this plugin offers.

    Called once at startup. Which of them run, with which options and whether enforced or in shadow
    mode, is decided by the operator's configuration (`[policies.<name>]`), not by the plugin.

    :returns: one PolicyDefinition per policy; names must be unique across all installed plugins.
    """
