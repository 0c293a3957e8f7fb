"""The built-in identity_match policy: what the user typed (claims) against what was certified."""

from __future__ import annotations

import unicodedata
from datetime import date, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from idgate.domain import Certification, Claims, ConfigurationError, Outcome, PolicyContext
from idgate.policies.engine import PluginPolicyEvaluator, load_catalog, new_plugin_manager
from tests.fakes import T0, a_certification
from tests.plugins.test_builtin_policies import builtin, rule
from tests.plugins.test_policy_engine import configure_enabled

HONG = a_certification(name="홍길동", birth_date=date(1990, 1, 1), phone="01012345678")
SMITH = a_certification(name="JOHN SMITH", birth_date=date(1985, 6, 30), phone="01098765432")
BIRTH = date(1990, 1, 1)


def match(claims: Claims | None, certification: Certification = HONG, **options: Any) -> tuple[Outcome, str]:
    ruling = rule(builtin("identity_match", **options), certification, claims=claims)
    return ruling.outcome, ruling.code


MATCH = (Outcome.ALLOW, "claims_match")
MISMATCH = (Outcome.DENY, "claims_mismatch")


@pytest.mark.parametrize(
    ("claims", "options", "expected"),
    [
        (None, {}, (Outcome.ABSTAIN, "no_claims")),
        (Claims(), {}, (Outcome.ABSTAIN, "no_claims")),  # an empty form says nothing either
        (None, {"without_claims": "deny"}, (Outcome.DENY, "no_claims")),
        (Claims(), {"without_claims": "deny"}, (Outcome.DENY, "no_claims")),
        (Claims(name="홍길동", birth_date=BIRTH, phone="01012345678"), {}, MATCH),
        (Claims(name="홍 길동"), {}, MATCH),  # written with a space: the same name
        (Claims(name="홍 길동"), {"ignore_spaces": False}, MISMATCH),
        (Claims(name="  홍길동\u3000"), {"ignore_spaces": False}, MATCH),  # surrounding (ideographic) space
        (Claims(name=unicodedata.normalize("NFD", "홍길동")), {}, MATCH),  # jamo, as some keyboards send
        (Claims(name="홍길순"), {}, MISMATCH),
        (Claims(name="홍길"), {}, MISMATCH),
        (Claims(name="   "), {}, MISMATCH),
        (Claims(birth_date=date(1990, 1, 2)), {}, MISMATCH),
        (Claims(birth_date=BIRTH), {}, MATCH),
        (Claims(phone="010-1234-5678"), {}, MATCH),
        (Claims(phone="+82 10-1234-5678"), {}, MATCH),
        (Claims(phone="82-010-1234-5678"), {}, MATCH),  # +82 and the 0 kept
        (Claims(phone="(010) 1234 5678"), {}, MATCH),
        (Claims(phone="０１０-１２３４-５６７８"), {}, MATCH),  # full-width digits from a Korean IME
        (Claims(phone="010-1234-5679"), {}, MISMATCH),
        (Claims(phone="+82 10-1234-567"), {}, MISMATCH),
        (Claims(phone="+1 010-1234-5678"), {}, MISMATCH),
        (Claims(phone="no phone"), {}, MISMATCH),
        (Claims(name="홍길동", phone="010-0000-0000"), {}, MISMATCH),  # one field differing is enough
    ],
)
def test_identity_match_against_a_hangul_name(
    claims: Claims | None, options: dict[str, Any], expected: tuple[Outcome, str]
) -> None:
    assert match(claims, **options) == expected


@pytest.mark.parametrize(
    ("claims", "options", "expected"),
    [
        (Claims(name="john smith"), {}, MATCH),  # Latin names: any case
        (Claims(name="John   Smith"), {"ignore_spaces": False}, MATCH),  # inner runs collapse
        (Claims(name="JOHNSMITH"), {}, MATCH),
        (Claims(name="JOHNSMITH"), {"ignore_spaces": False}, MISMATCH),
        (Claims(name="JOHN SMYTH"), {}, MISMATCH),
        (
            Claims(name="ＪＯＨＮ ＳＭＩＴＨ"),
            {},
            MISMATCH,
        ),  # full-width letters are other characters (NFC, not NFKC)
    ],
)
def test_identity_match_against_a_latin_name(
    claims: Claims, options: dict[str, Any], expected: tuple[Outcome, str]
) -> None:
    assert match(claims, SMITH, **options) == expected


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (Claims(name="김철수"), "name differs from the certified one"),
        (Claims(name="김철수", phone="01000000000"), "name and phone differ from the certified ones"),
        (
            Claims(name="김철수", birth_date=date(2000, 1, 1), phone="01000000000"),
            "name, birth date and phone differ from the certified ones",
        ),
        (Claims(name="홍길동", birth_date=date(2000, 1, 1)), "birth date differs from the certified one"),
        (Claims(name="홍길동", phone="01012345678"), "name and phone match the certified ones"),
        (Claims(birth_date=BIRTH), "birth date matches the certified one"),
    ],
)
def test_messages_name_the_fields_never_the_values(claims: Claims, message: str) -> None:
    assert rule(builtin("identity_match"), HONG, claims=claims).message == message


NO_PHONE = a_certification(
    name="홍길동", birth_date=BIRTH, phone=None
)  # Danal without the carrier's approval


@pytest.mark.parametrize(
    ("certification", "claims", "options", "expected", "message"),
    [
        (
            NO_PHONE,
            Claims(name="홍길동", phone="01012345678"),
            {},
            (Outcome.DENY, "claims_not_certified"),
            "the certification has no phone to compare the claimed one with (when_missing)",
        ),
        (
            NO_PHONE,
            Claims(name="홍길동", phone="01012345678"),
            {"when_missing": "abstain"},
            MATCH,
            "name matches the certified one; the certification has no phone to compare (when_missing)",
        ),
        (
            NO_PHONE,
            Claims(phone="01012345678"),
            {"when_missing": "abstain"},
            (Outcome.ABSTAIN, "claims_not_certified"),  # nothing was left to compare
            "the certification has no phone to compare the claimed one with (when_missing)",
        ),
        (
            NO_PHONE,
            Claims(name="김철수", phone="01012345678"),
            {},
            MISMATCH,  # a difference outweighs what could not be compared
            "name differs from the certified one",
        ),
        (
            a_certification(name=" ", phone=None),
            Claims(name="홍길동", phone="01012345678"),
            {},
            (Outcome.DENY, "claims_not_certified"),
            "the certification has no name and phone to compare the claimed ones with (when_missing)",
        ),
        (
            NO_PHONE,
            Claims(birth_date=BIRTH),
            {},
            MATCH,  # a field not claimed is never missing
            "birth date matches the certified one",
        ),
    ],
)
def test_a_claimed_field_the_certification_lacks_follows_when_missing(
    certification: Certification,
    claims: Claims,
    options: dict[str, Any],
    expected: tuple[Outcome, str],
    message: str,
) -> None:
    ruling = rule(builtin("identity_match", **options), certification, claims=claims)
    assert ((ruling.outcome, ruling.code), ruling.message) == (expected, message)


async def test_through_the_evaluator_the_result_carries_no_claimed_value() -> None:
    catalog = load_catalog(new_plugin_manager())
    evaluator = PluginPolicyEvaluator(configure_enabled(catalog, {"identity_match": {}}))
    claims = Claims(name="김철수", birth_date=date(2001, 2, 3), phone="010-5555-0000")
    [result] = await evaluator.evaluate(HONG, PolicyContext(subject="u", now=T0, claims=claims))
    assert (result.policy, result.outcome, result.code) == ("identity_match", Outcome.DENY, "claims_mismatch")
    for value in ("김철수", "홍길동", "2001", "1990", "5555", "0000", "1234"):
        assert value not in result.message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"when_missing": "allow"}, r"Invalid enum value 'allow' - at `\$.when_missing`"),
        ({"without_claims": "allow"}, r"Invalid enum value 'allow' - at `\$.without_claims`"),
        ({"ignore_spaces": "yes"}, r"Expected `bool`, got `str` - at `\$.ignore_spaces`"),
        ({"fields": ["name"]}, "unknown option.*fields.*known options: .*ignore_spaces"),
    ],
)
def test_bad_options_are_a_configuration_error_naming_the_policy_and_option(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=r"\[policies\.identity_match\]") as raised:
        builtin("identity_match", **options)
    assert raised.match(message)


# ---- properties -----------------------------------------------------------------------------------
# Letters whose upper and lower case fold to one another one for one (not ß, ı or the like), some
# with accents that NFD takes apart, and Hangul syllables, which NFD takes apart into jamo.
LATIN = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyzÉéÈèÜüÖöÑñÇçÅåØø"
letters = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3) | st.sampled_from(LATIN)
words = st.lists(st.text(letters, min_size=1, max_size=5), min_size=1, max_size=3)
spaces = st.text(" \t\u3000", max_size=2)  # any whitespace, the ideographic space included
LABELS = {"name": "name", "birth_date": "birth date", "phone": "phone"}
FIELDS = tuple(LABELS)


@st.composite
def written_like(draw: st.DrawFn, certified: list[str], *, ignore_spaces: bool) -> str:
    """The certified name (its words) as a person might type it: other case, spacing, normalisation."""
    typed = draw(spaces)
    for n, word in enumerate(certified):
        if n:  # between words: any whitespace, none at all only when spaces are ignored
            typed += draw(spaces) if ignore_spaces else draw(spaces.filter(bool))
        for char in word:
            typed += char.upper() if draw(st.booleans()) else char.lower()
            if ignore_spaces:
                typed += draw(spaces)
    typed += draw(spaces)
    return unicodedata.normalize(draw(st.sampled_from(["NFC", "NFD"])), typed)


@st.composite
def dialled_like(draw: st.DrawFn, phone: str) -> str:
    """A phone number as a person might type it: separators, +82 for the 0, full-width digits."""
    national = phone[1:] if phone.startswith("0") else None
    prefix, digits = "", phone
    if national is not None:
        prefix = draw(st.sampled_from(["", "+82", "+82 ", "82-", "+82 0", "82"]))
        if prefix:  # "+82 0" keeps the 0, the others stand for it
            digits = national
    typed = prefix
    for digit in digits:
        typed += draw(st.sampled_from(["", "", "-", " ", ".", "(", ")"]))
        typed += chr(ord(digit) - ord("0") + 0xFF10) if draw(st.booleans()) else digit
    return typed


certified_phones = st.text("0123456789", min_size=8, max_size=9).map(lambda rest: f"01{rest}")
birth_dates = st.dates(min_value=date(1920, 1, 1), max_value=date(2020, 12, 31))


def changed_once(draw: st.DrawFn, text: str, alphabet: st.SearchStrategy[str]) -> str:
    """`text` with one character replaced by another that no case folding makes equal to it."""
    at = draw(st.integers(0, len(text) - 1))
    old = text[at].casefold()
    return text[:at] + draw(alphabet.filter(lambda c: c.casefold() != old)) + text[at + 1 :]


@st.composite
def cases(draw: st.DrawFn, *, change: bool) -> tuple[Certification, Claims, bool, list[str]]:
    """A certification, claims for some of its fields (changed for real in the fields returned when
    `change`, written differently but equal in the others) and ignore_spaces."""
    ignore_spaces = draw(st.booleans())
    name_words, phone, birth = draw(words), draw(certified_phones), draw(birth_dates)
    certification = a_certification(name=" ".join(name_words), phone=phone, birth_date=birth)
    claimed = draw(st.lists(st.sampled_from(FIELDS), min_size=1, unique=True))
    changed = draw(st.lists(st.sampled_from(claimed), min_size=1, unique=True)) if change else []
    claims: dict[str, Any] = {}
    for field in claimed:
        if field == "birth_date":
            claims[field] = draw(birth_dates.filter(lambda d: d != birth)) if field in changed else birth
        elif field == "phone":
            dialled = phone
            if field in changed:
                dialled = changed_once(draw, phone, st.sampled_from("0123456789"))
            claims[field] = draw(dialled_like(dialled))
        else:
            typed_words = list(name_words)
            if field in changed:
                n = draw(st.integers(0, len(typed_words) - 1))
                typed_words[n] = changed_once(draw, typed_words[n], letters)
            claims[field] = draw(written_like(typed_words, ignore_spaces=ignore_spaces))
    return certification, Claims(**claims), ignore_spaces, [f for f in FIELDS if f in changed]


def listed(fields: list[str]) -> str:
    labels = [LABELS[f] for f in fields]
    return labels[0] if len(labels) == 1 else f"{', '.join(labels[:-1])} and {labels[-1]}"


def assert_no_value_in(message: str, certification: Certification, claims: Claims) -> None:
    assert not any(c.isdigit() for c in message)  # no phone, no birth date, in any script
    assert not any(unicodedata.name(c, "").startswith("HANGUL") for c in message)
    for name in (certification.name, claims.name):
        for word in (name or "").split():
            if len(word) > 5 or any(c.isupper() for c in word):  # short lower-case words occur in English
                assert word not in message


@given(cases(change=False))
def test_the_certified_values_written_differently_still_match(
    case: tuple[Certification, Claims, bool, list[str]],
) -> None:
    certification, claims, ignore_spaces, _ = case
    ruling = rule(builtin("identity_match", ignore_spaces=ignore_spaces), certification, claims=claims)
    assert (ruling.outcome, ruling.code) == MATCH
    given_fields = [f for f in FIELDS if getattr(claims, f) is not None]
    verb = "matches the certified one" if len(given_fields) == 1 else "match the certified ones"
    assert ruling.message == f"{listed(given_fields)} {verb}"
    assert_no_value_in(ruling.message, certification, claims)


@given(cases(change=True))
def test_any_real_change_mismatches_and_the_message_names_only_the_changed_fields(
    case: tuple[Certification, Claims, bool, list[str]],
) -> None:
    certification, claims, ignore_spaces, changed = case
    ruling = rule(builtin("identity_match", ignore_spaces=ignore_spaces), certification, claims=claims)
    assert (ruling.outcome, ruling.code) == MISMATCH
    verb = "differs from the certified one" if len(changed) == 1 else "differ from the certified ones"
    assert ruling.message == f"{listed(changed)} {verb}"
    assert_no_value_in(ruling.message, certification, claims)


@given(name=st.text(max_size=12), phone=st.text(max_size=20), birth=birth_dates)
def test_whatever_is_claimed_the_message_carries_none_of_it(name: str, phone: str, birth: date) -> None:
    claims = Claims(name=name, phone=phone, birth_date=birth + timedelta(days=1))
    ruling = rule(builtin("identity_match"), HONG, claims=claims)
    assert ruling.code == "claims_mismatch"  # the birth date differs, whatever the rest
    # The message is a sentence made of field names, whatever the values were.
    assert ruling.message in {
        f"{listed(fields)} differ from the certified ones"
        for fields in (["name", "birth_date", "phone"], ["name", "birth_date"], ["birth_date", "phone"])
    } | {"birth date differs from the certified one"}
    assert_no_value_in(ruling.message, HONG, claims)
