"""The built-in foreigner policy: foreigners allowed, denied or reviewed; `when_unknown` where the
provider does not say."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import ConfigurationError, Outcome
from tests.fakes import a_certification
from tests.plugins.test_builtin_policies import builtin, rule


@pytest.mark.parametrize(
    ("options", "is_foreigner", "outcome", "code"),
    [
        ({}, False, Outcome.ALLOW, "domestic"),
        ({}, True, Outcome.DENY, "foreigner"),  # the default: foreigners are not accepted
        ({}, None, Outcome.DENY, "foreigner_unknown"),  # and unknowns fail closed
        ({"foreigners": "allow"}, True, Outcome.ALLOW, "foreigner_allowed"),
        ({"foreigners": "review"}, True, Outcome.REVIEW, "foreigner"),
        ({"foreigners": "deny"}, True, Outcome.DENY, "foreigner"),
        ({"foreigners": "allow"}, False, Outcome.ALLOW, "domestic"),
        ({"when_unknown": "allow"}, None, Outcome.ALLOW, "foreigner_unknown"),
        ({"when_unknown": "review"}, None, Outcome.REVIEW, "foreigner_unknown"),
        ({"when_unknown": "abstain"}, None, Outcome.ABSTAIN, "foreigner_unknown"),
        ({"when_unknown": "deny"}, None, Outcome.DENY, "foreigner_unknown"),
    ],
)
def test_foreigner(options: dict[str, Any], is_foreigner: bool | None, outcome: Outcome, code: str) -> None:
    ruling = rule(builtin("foreigner", **options), a_certification(is_foreigner=is_foreigner))
    assert (ruling.outcome, ruling.code) == (outcome, code)


@pytest.mark.parametrize(
    ("options", "is_foreigner", "message"),
    [
        ({}, True, "foreigners (외국인) are not accepted"),
        ({"foreigners": "review"}, True, "foreigners (외국인) are reviewed before acceptance"),
        ({}, False, "certified as a Korean national (내국인)"),
        (
            {"when_unknown": "abstain"},
            None,
            "the provider did not say whether the person is a foreigner: no opinion (when_unknown)",
        ),
    ],
)
def test_messages_say_why(options: dict[str, Any], is_foreigner: bool | None, message: str) -> None:
    assert (
        rule(builtin("foreigner", **options), a_certification(is_foreigner=is_foreigner)).message == message
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"foreigners": "abstain"}, r"Invalid enum value 'abstain' - at `\$.foreigners`"),
        ({"foreigners": True}, r"Expected `str`, got `bool` - at `\$.foreigners`"),
        ({"when_unknown": "ignore"}, r"Invalid enum value 'ignore' - at `\$.when_unknown`"),
        ({"foreigner": "deny"}, "unknown option.*foreigner.*known options: .*foreigners"),
    ],
)
def test_bad_options_are_a_configuration_error_naming_the_policy_and_option(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"\[policies\.foreigner\]") as raised:
        builtin("foreigner", **options)
    assert raised.match(message)


@given(
    foreigners=st.sampled_from(["allow", "deny", "review"]),
    when_unknown=st.sampled_from(["allow", "deny", "review", "abstain"]),
    is_foreigner=st.none() | st.booleans(),
)
def test_nationals_always_pass_and_each_case_follows_its_own_option(
    foreigners: str, when_unknown: str, is_foreigner: bool | None
) -> None:
    ruling = rule(
        builtin("foreigner", foreigners=foreigners, when_unknown=when_unknown),
        a_certification(is_foreigner=is_foreigner),
    )
    if is_foreigner is None:
        assert (ruling.outcome.value, ruling.code) == (when_unknown, "foreigner_unknown")
    elif is_foreigner:
        assert ruling.outcome.value == foreigners
        assert ruling.code == ("foreigner_allowed" if foreigners == "allow" else "foreigner")
    else:  # whatever is configured for the others
        assert (ruling.outcome, ruling.code) == (Outcome.ALLOW, "domestic")
