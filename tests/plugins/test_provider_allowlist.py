"""The built-in provider_allowlist policy: only the listed providers (PortOne's pg_provider names)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import ConfigurationError, Outcome
from idgate.policies.engine import PluginPolicyEvaluator, load_catalog, new_plugin_manager
from tests.fakes import a_certification
from tests.plugins.test_builtin_policies import builtin, rule
from tests.plugins.test_policy_engine import configure_enabled

PROVIDERS = ["danal", "inicis_unified", "inicis", "kcp_v2"]


@pytest.mark.parametrize(
    ("providers", "provider", "outcome", "code"),
    [
        (["danal", "inicis_unified"], "danal", Outcome.ALLOW, "provider_allowed"),
        (["danal", "inicis_unified"], "inicis_unified", Outcome.ALLOW, "provider_allowed"),
        (["danal", "inicis_unified"], "kcp_v2", Outcome.DENY, "provider_not_allowed"),
        (["danal", "inicis_unified"], "inicis", Outcome.DENY, "provider_not_allowed"),  # no prefix match
        (["danal"], "DANAL", Outcome.ALLOW, "provider_allowed"),  # PortOne V2 spells them in capitals
        ([" Danal "], "danal", Outcome.ALLOW, "provider_allowed"),
        (["danal"], " danal\t", Outcome.ALLOW, "provider_allowed"),
        (["danal"], "unknown", Outcome.DENY, "provider_not_allowed"),  # PortOne named none
        (["danal"], "", Outcome.DENY, "provider_not_allowed"),
    ],
)
def test_provider_allowlist(providers: list[str], provider: str, outcome: Outcome, code: str) -> None:
    ruling = rule(builtin("provider_allowlist", providers=providers), a_certification(provider=provider))
    assert (ruling.outcome, ruling.code) == (outcome, code)


def test_the_denial_names_the_allowlist() -> None:
    ruling = rule(
        builtin("provider_allowlist", providers=["kcp_v2", "Danal", "danal"]),
        a_certification(provider="inicis"),
    )
    assert ruling.message == "the provider is not on the allowlist (danal, kcp_v2)"


def test_spellings_of_one_list_are_one_policy() -> None:
    catalog = load_catalog(new_plugin_manager())

    def digest(providers: list[str]) -> str:
        config = {"provider_allowlist": {"providers": providers}}
        return PluginPolicyEvaluator(configure_enabled(catalog, config)).policy_set

    assert digest(["danal", "kcp_v2"]) == digest([" KCP_V2", "Danal", "danal"])
    assert digest(["danal", "kcp_v2"]) != digest(["danal"])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, r"Object missing required field `providers`"),
        ({"providers": []}, "providers must list at least one provider"),
        ({"providers": "danal"}, r"Expected `array`, got `str` - at `\$.providers`"),
        ({"providers": ["danal", 3]}, r"Expected `str`, got `int` - at `\$.providers\[1\]`"),
        ({"providers": ["danal", "  "]}, r"providers\[1\] \('  '\) is not a provider name"),
        ({"providers": ["danal, kcp_v2"]}, r"providers\[0\] \('danal, kcp_v2'\) is not a provider name"),
        ({"provider": ["danal"]}, "unknown option.*provider.*known options: .*providers"),
    ],
)
def test_bad_options_are_a_configuration_error_naming_the_policy_and_option(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"\[policies\.provider_allowlist\]") as raised:
        builtin("provider_allowlist", **options)
    assert raised.match(message)


def respelled(name: str) -> st.SearchStrategy[str]:
    """`name` in any mixture of cases, with whitespace around it."""
    spaces = st.text(alphabet=" \t\n", max_size=3)
    cases = st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda upper: "".join(c.upper() if u else c for c, u in zip(name, upper, strict=True))
    )
    return st.tuples(spaces, cases, spaces).map("".join)


@given(
    allowed=st.lists(st.sampled_from(PROVIDERS), min_size=1, unique=True),
    data=st.data(),
)
def test_allowed_exactly_when_listed_however_either_side_is_spelled(
    allowed: list[str], data: st.DataObject
) -> None:
    provider = data.draw(st.sampled_from(PROVIDERS))
    providers = [data.draw(respelled(name)) for name in allowed]
    ruling = rule(
        builtin("provider_allowlist", providers=providers),
        a_certification(provider=data.draw(respelled(provider))),
    )
    assert (ruling.outcome is Outcome.ALLOW) == (provider in allowed)
    assert ruling.code == ("provider_allowed" if provider in allowed else "provider_not_allowed")
