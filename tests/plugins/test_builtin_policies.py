"""The built-in policies load through idgate's own entry points, like any product team's plugin.

`builtin` and `rule` are the helpers the tests of each built-in policy use: the policy configured
by the real engine (option validation included) from its entry point alone, so that a policy being
written elsewhere in the tree never fails another's tests.
"""

from __future__ import annotations

import dataclasses
import re
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

import pytest

from idgate.domain import Certification, Claims, PolicyContext, Ruling
from idgate.policies import ENTRY_POINT_GROUP
from idgate.policies.engine import LoadedPlugin, configure, load_catalog, new_plugin_manager
from idgate.policies.sdk import Policy
from tests.fakes import T0, a_certification

SIX = ("age_limit", "require_ci", "foreigner", "provider_allowlist", "carrier", "identity_match")
# Options each policy needs to be configured at all (the others run on their defaults).
REQUIRED: dict[str, dict[str, Any]] = {
    "provider_allowlist": {"providers": ["danal"]},
    "carrier": {"deny": ["SKT_MVNO"]},
}


def builtin(name: str, **options: Any) -> Policy:
    """The built-in policy `name`, loaded from its entry point and configured with `options`."""
    [ep] = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    [configured] = configure(load_catalog(new_plugin_manager(), [ep]), [name], {name: options})
    return configured.policy


def rule(
    policy: Policy,
    certification: Certification | None = None,
    *,
    claims: Claims | None = None,
    context: PolicyContext | None = None,
) -> Ruling:
    """What a synchronous policy rules on `certification` (a certified adult by default)."""
    ruling = policy(
        certification or a_certification(), context or PolicyContext(subject="u", now=T0, claims=claims)
    )
    assert isinstance(ruling, Ruling)
    return ruling


def test_the_six_load_through_the_real_entry_points_like_third_party_plugins() -> None:
    catalog = load_catalog(new_plugin_manager())  # no explicit plugins: what `idgate serve` does
    idgate = version("idgate")
    for name in SIX:
        definition = catalog.definitions[name]
        assert catalog.offered_by[name] == LoadedPlugin(name, "idgate", idgate)
        assert re.fullmatch(r"\d+\.\d+\.\d+", definition.version)
        assert definition.summary
        assert dataclasses.is_dataclass(definition.options)
        params = definition.options.__dataclass_params__  # type: ignore[attr-defined]
        assert params.frozen, name
    configured = configure(catalog, list(SIX), REQUIRED)
    assert [c.name for c in configured] == list(SIX)
    assert all(c.plugin is not None and c.plugin.distribution == "idgate" for c in configured)


@pytest.mark.parametrize("name", SIX)
def test_each_can_be_blocked_by_its_plugin_name(name: str) -> None:
    catalog = load_catalog(new_plugin_manager(), block=frozenset({name}))
    assert name not in catalog.definitions
    assert set(SIX) - {name} <= set(catalog.definitions)


@pytest.mark.parametrize("name", SIX)
def test_options_are_keyword_only(name: str) -> None:
    definition = load_catalog(new_plugin_manager()).definitions[name]
    assert all(f.kw_only for f in dataclasses.fields(definition.options)), name


# Every code each policy can rule with.
CODES = {
    "age_limit": {"age_ok", "under_age", "over_age"},
    "duplicate_identity": {"identity_unique", "identity_bound_elsewhere", "no_ci", "no_identity_directory"},
    "require_ci": {"ci_present", "di_present", "no_ci"},
    "foreigner": {"domestic", "foreigner_allowed", "foreigner", "foreigner_unknown"},
    "provider_allowlist": {"provider_allowed", "provider_not_allowed"},
    "carrier": {"carrier_ok", "carrier_not_allowed", "carrier_unknown"},
    "identity_match": {"claims_match", "claims_mismatch", "claims_not_certified", "no_claims"},
}


def section(name: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "docs" / "policies.md").read_text()
    return text.split(f"\n## {name}\n", 1)[1].split("\n## ", 1)[0]


@pytest.mark.parametrize("name", sorted(CODES))
def test_docs_policies_md_gives_every_option_and_code(name: str) -> None:
    documented = section(name)
    definition = load_catalog(new_plugin_manager()).definitions[name]
    for option in dataclasses.fields(definition.options):
        assert f"| `{option.name}` |" in documented, f"{name}: option {option.name}"
    for code in CODES[name]:
        assert f"| `{code}` |" in documented, f"{name}: code {code}"
