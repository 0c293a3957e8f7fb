"""The built-in carrier policy: allow and deny lists of carriers (MVNOs apart), `when_unknown`."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import Carrier, ConfigurationError, Outcome
from idgate.policies.engine import PluginPolicyEvaluator, load_catalog, new_plugin_manager
from tests.fakes import a_certification
from tests.plugins.test_builtin_policies import builtin, rule
from tests.plugins.test_policy_engine import configure_enabled

MVNO = ["SKT_MVNO", "KT_MVNO", "LGU_MVNO"]
VALID = "SKT, KT, LGU, SKT_MVNO, KT_MVNO, LGU_MVNO"


@pytest.mark.parametrize(
    ("options", "carrier", "outcome", "code"),
    [
        ({"deny": MVNO}, Carrier.SKT, Outcome.ALLOW, "carrier_ok"),
        ({"deny": MVNO}, Carrier.KT_MVNO, Outcome.DENY, "carrier_not_allowed"),  # 알뜰폰
        ({"allow": ["SKT", "KT"]}, Carrier.KT, Outcome.ALLOW, "carrier_ok"),
        ({"allow": ["SKT", "KT"]}, Carrier.LGU, Outcome.DENY, "carrier_not_allowed"),
        ({"allow": ["SKT", "KT"]}, Carrier.SKT_MVNO, Outcome.DENY, "carrier_not_allowed"),  # not SKT itself
        ({"allow": ["SKT", "SKT_MVNO"], "deny": ["KT"]}, Carrier.SKT_MVNO, Outcome.ALLOW, "carrier_ok"),
        ({"allow": ["SKT", "SKT_MVNO"], "deny": ["KT"]}, Carrier.LGU, Outcome.DENY, "carrier_not_allowed"),
        ({"allow": ["SKT", "SKT_MVNO"], "deny": ["KT"]}, Carrier.KT, Outcome.DENY, "carrier_not_allowed"),
        ({"deny": MVNO}, None, Outcome.DENY, "carrier_unknown"),  # the default fails closed
        ({"deny": MVNO, "when_unknown": "allow"}, None, Outcome.ALLOW, "carrier_unknown"),
        ({"deny": MVNO, "when_unknown": "review"}, None, Outcome.REVIEW, "carrier_unknown"),
        ({"allow": ["SKT"], "when_unknown": "abstain"}, None, Outcome.ABSTAIN, "carrier_unknown"),
        ({"deny": MVNO, "when_unknown": "deny"}, None, Outcome.DENY, "carrier_unknown"),
    ],
)
def test_carrier(options: dict[str, Any], carrier: Carrier | None, outcome: Outcome, code: str) -> None:
    ruling = rule(builtin("carrier", **options), a_certification(carrier=carrier))
    assert (ruling.outcome, ruling.code) == (outcome, code)


def test_messages_name_the_configured_lists_never_the_persons_carrier() -> None:
    refused = rule(builtin("carrier", deny=MVNO), a_certification(carrier=Carrier.LGU_MVNO))
    assert refused.message == "the carrier is among those refused (SKT_MVNO, KT_MVNO, LGU_MVNO)"
    not_listed = rule(builtin("carrier", allow=["kt", "skt"]), a_certification(carrier=Carrier.LGU))
    assert not_listed.message == "the carrier is not among those accepted (SKT, KT)"
    unknown = rule(builtin("carrier", deny=MVNO, when_unknown="review"), a_certification(carrier=None))
    assert unknown.message == "the provider did not report the carrier: reviewed (when_unknown)"


def test_spellings_of_one_list_are_one_policy() -> None:
    catalog = load_catalog(new_plugin_manager())

    def digest(options: dict[str, Any]) -> str:
        return PluginPolicyEvaluator(configure_enabled(catalog, {"carrier": options})).policy_set

    assert digest({"deny": MVNO}) == digest({"deny": [" lgu_mvno", "Kt_Mvno", "SKT_MVNO", "skt_mvno"]})
    assert digest({"deny": MVNO}) != digest({"deny": MVNO[:2]})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, f"allow or deny \\(or both\\) must list carriers; valid: {VALID}"),
        ({"when_unknown": "allow"}, "allow or deny"),
        ({"allow": []}, "allow must list at least one carrier"),
        ({"deny": []}, "deny must list at least one carrier"),
        ({"deny": ["SKT_MVNO", "TELCO"]}, rf"deny\[1\] \('TELCO'\) is not a carrier; valid: {VALID}"),
        ({"allow": ["LGT"]}, r"allow\[0\] is 'LGT', PortOne V1's spelling; idgate names that carrier 'LGU'"),
        ({"deny": ["lgt_mvno"]}, r"deny\[0\] is 'lgt_mvno'.*'LGU_MVNO'"),
        ({"allow": ["SKT", "KT"], "deny": ["kt"]}, "KT is in both allow and deny"),
        ({"allow": "SKT"}, r"Expected `array \| null`, got `str` - at `\$.allow`"),
        ({"deny": MVNO, "when_unknown": "skip"}, r"Invalid enum value 'skip' - at `\$.when_unknown`"),
        ({"deny": MVNO, "mvno": False}, "unknown option.*mvno"),
    ],
)
def test_bad_options_are_a_configuration_error_naming_the_policy_and_option(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"\[policies\.carrier\]") as raised:
        builtin("carrier", **options)
    assert raised.match(message)


carrier_sets = st.none() | st.sets(st.sampled_from(Carrier), min_size=1)


@given(allow=carrier_sets, deny=carrier_sets, carrier=st.sampled_from(Carrier), lower=st.booleans())
def test_a_carrier_is_ok_exactly_when_allowed_and_not_denied(
    allow: set[Carrier] | None, deny: set[Carrier] | None, carrier: Carrier, lower: bool
) -> None:
    if deny is not None and allow is not None:
        deny -= allow
    options = {
        key: [c.value.lower() if lower else c.value for c in chosen]
        for key, chosen in (("allow", allow), ("deny", deny))
        if chosen
    }
    if not options:
        with pytest.raises(ConfigurationError, match="allow or deny"):
            builtin("carrier", **options)
        return
    ruling = rule(builtin("carrier", **options), a_certification(carrier=carrier))
    ok = (not allow or carrier in allow) and (not deny or carrier not in deny)
    assert (ruling.outcome, ruling.code) == (
        (Outcome.ALLOW, "carrier_ok") if ok else (Outcome.DENY, "carrier_not_allowed")
    )
