"""The built-in require_ci policy: a certification without the person's CI is denied."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import ConfigurationError, Outcome
from tests.fakes import a_certification
from tests.plugins.test_builtin_policies import builtin, rule

CI = "Q0ktdGhlLXBlcnNvbnMtY3Jvc3Mtc2l0ZS1rZXk="
DI = "REktdGhlLXBlcnNvbnMta2V5LWF0LXRoaXMtbWVyY2hhbnQ="


@pytest.mark.parametrize(
    ("options", "ci", "di", "outcome", "code"),
    [
        ({}, CI, DI, Outcome.ALLOW, "ci_present"),
        ({}, CI, None, Outcome.ALLOW, "ci_present"),  # KG이니시스 통합인증: never a DI
        ({}, None, DI, Outcome.DENY, "no_ci"),  # Kakao certificates, Danal without the CI contract
        ({}, None, None, Outcome.DENY, "no_ci"),
        ({}, "", DI, Outcome.DENY, "no_ci"),
        ({}, "  ", DI, Outcome.DENY, "no_ci"),
        ({"accept_di": True}, CI, None, Outcome.ALLOW, "ci_present"),
        ({"accept_di": True}, None, DI, Outcome.ALLOW, "di_present"),
        ({"accept_di": True}, None, None, Outcome.DENY, "no_ci"),
        ({"accept_di": True}, None, " ", Outcome.DENY, "no_ci"),
        ({"accept_di": False}, None, DI, Outcome.DENY, "no_ci"),
    ],
)
def test_require_ci(
    options: dict[str, Any], ci: str | None, di: str | None, outcome: Outcome, code: str
) -> None:
    ruling = rule(builtin("require_ci", **options), a_certification(ci=ci, di=di))
    assert (ruling.outcome, ruling.code) == (outcome, code)
    assert CI not in ruling.message
    assert DI not in ruling.message


def test_the_denial_says_what_was_missing() -> None:
    assert rule(builtin("require_ci"), a_certification(ci=None)).message == "the provider gave no CI"
    assert (
        rule(builtin("require_ci", accept_di=True), a_certification(ci=None, di=None)).message
        == "the provider gave neither CI nor DI"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"accept_di": "yes"}, r"Expected `bool`, got `str` - at `\$.accept_di`"),
        ({"accept_di": 1}, r"Expected `bool`, got `int`"),
        ({"accept_ci": True}, "unknown option.*accept_ci.*known options: accept_di"),
    ],
)
def test_bad_options_are_a_configuration_error_naming_the_policy_and_option(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"\[policies\.require_ci\]") as raised:
        builtin("require_ci", **options)
    assert raised.match(message)


keys = st.none() | st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ+/= \t", max_size=24)


@given(ci=keys, di=keys, accept_di=st.booleans())
def test_allowed_exactly_when_a_usable_key_is_there_and_never_quoted(
    ci: str | None, di: str | None, accept_di: bool
) -> None:
    ruling = rule(builtin("require_ci", accept_di=accept_di), a_certification(ci=ci, di=di))
    has_ci, has_di = bool(ci and ci.strip()), bool(di and di.strip())
    assert (ruling.outcome is Outcome.ALLOW) == (has_ci or (accept_di and has_di))
    assert ruling.code == ("ci_present" if has_ci else "di_present" if accept_di and has_di else "no_ci")
    for key in (ci, di):
        if key and len(key.strip()) >= 4:  # shorter strings occur in any sentence
            assert key.strip() not in ruling.message
