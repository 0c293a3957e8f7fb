"""The example plugin's own tests, with idgate's kit: its fixtures come from idgate's pytest plugin."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import ConfigurationError, Outcome
from idgate.testing import evaluate_policy, policy_context, strategies

PARTNERS = {"partners": ["acme", "Globex"]}


@pytest.mark.parametrize(
    ("subject", "outcome", "code"),
    [
        ("acme:1042", Outcome.ALLOW, "partner_member"),
        ("globex:7", Outcome.ALLOW, "partner_member"),  # partner names ignore case
        ("initech:7", Outcome.DENY, "not_a_partner"),
        ("acme", Outcome.DENY, "not_a_member"),
        ("acme:", Outcome.DENY, "not_a_member"),
        (None, Outcome.DENY, "not_a_member"),
    ],
)
def test_members_of_listed_partners_only(
    run_policy: Any, subject: str | None, outcome: Outcome, code: str
) -> None:
    result = run_policy("partners_only", options=PARTNERS, subject=subject)
    assert (result.outcome, result.code) == (outcome, code)


def test_it_is_installed_as_a_plugin_like_any_other() -> None:
    # By name: idgate found it through the entry point in this package's pyproject.toml.
    assert (
        evaluate_policy("partners_only", options=PARTNERS, context=policy_context(subject="acme:1")).outcome
        is Outcome.ALLOW
    )


def test_an_empty_partner_list_is_refused_at_startup() -> None:
    with pytest.raises(ConfigurationError, match="partners must name at least one partner"):
        evaluate_policy("partners_only", options={"partners": []})


@given(strategies.certifications(), st.text(min_size=1).filter(lambda m: ":" not in m))
def test_the_person_does_not_matter_only_the_account(certification: Any, member: str) -> None:
    context = policy_context(subject=f"acme:{member}")
    result = evaluate_policy("partners_only", options=PARTNERS, certification=certification, context=context)
    assert result.outcome is Outcome.ALLOW
