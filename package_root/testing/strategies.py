"""Hypothesis strategies for realistic certifications, for property tests of policies.

    from hypothesis import given
    from idgate.testing import policy_context, strategies

    @given(strategies.certifications())
    def test_never_crashes(certification): ...

Fields are missing the way providers leave them out (see docs/plugins.md): phone and carrier only
when the carrier approved the merchant, no DI from KG이니시스 통합인증 (`inicis_unified`), Kakao's
certificates sometimes without CI and without gender, Danal's foreigner flag only under its option.
"""

from __future__ import annotations

import base64
from datetime import date, datetime, timedelta

from hypothesis import strategies as st

from idgate.domain import AgeMethod, Carrier, Certification, Gender
from idgate.domain.age import SEOUL

from . import NOW, certification

__all__ = [
    "PROVIDERS",
    "birth_dates_around",
    "certifications",
    "cis",
    "dis",
    "korean_names",
    "phones",
]

PROVIDERS = ("danal", "kcp_v2", "inicis_unified", "kakao")
_SURNAMES = "김이박최정강조윤장임한오서신권황안송전홍"
_TWO_SYLLABLE_SURNAMES = ("남궁", "제갈", "선우", "독고")
_HANGUL = st.integers(0xAC00, 0xD7A3).map(chr)  # every precomposed syllable


def korean_names() -> st.SearchStrategy[str]:
    """Names as certificates spell them: a surname (rarely two syllables) and one to three syllables."""
    surname = st.one_of(st.sampled_from(_SURNAMES), st.sampled_from(_TWO_SYLLABLE_SURNAMES))
    given = st.lists(_HANGUL, min_size=1, max_size=3).map("".join)
    return st.tuples(surname, given).map("".join)


def phones() -> st.SearchStrategy[str]:
    """Korean mobile numbers, digits only, as PortOne returns them: 010 and eight digits, or an old
    01X prefix with seven or eight."""
    new = st.integers(0, 99_999_999).map(lambda n: f"010{n:08d}")
    old = st.tuples(st.sampled_from("16789"), st.integers(0, 9_999_999), st.booleans()).map(
        lambda t: f"01{t[0]}{t[1]:07d}" if t[2] else f"01{t[0]}{t[1]:08d}"
    )
    return st.one_of(new, old)


def cis() -> st.SearchStrategy[str]:
    """CIs: 88 characters of base64 (66 bytes)."""
    return st.binary(min_size=66, max_size=66).map(lambda b: base64.b64encode(b).decode())


def dis() -> st.SearchStrategy[str]:
    """DIs: 64 characters of base64 (48 bytes)."""
    return st.binary(min_size=48, max_size=48).map(lambda b: base64.b64encode(b).decode())


def birth_dates_around(
    years: int, *, at: datetime = NOW, method: AgeMethod = AgeMethod.INTERNATIONAL, days: int = 3
) -> st.SearchStrategy[date]:
    """Birth dates within `days` of the boundary of being `years` old at `at` (Asia/Seoul), on both
    sides of it: the people an age rule is most likely to get wrong."""
    today = at.astimezone(SEOUL).date()
    if method is AgeMethod.YEAR:
        boundary = date(today.year - years, 12, 31)  # 연 나이 changes with the birth year
    else:
        boundary = date(today.year - years, today.month, min(today.day, 28 if today.month == 2 else 31))
    return st.sampled_from([boundary + timedelta(days=d) for d in range(-days, days + 1)])


@st.composite
def certifications(
    draw: st.DrawFn,
    *,
    providers: tuple[str, ...] = PROVIDERS,
    birth_dates: st.SearchStrategy[date] | None = None,
) -> Certification:
    """A certification as one of `providers` would return it, with its fields missing as that
    provider leaves them out."""
    provider = draw(st.sampled_from(providers))
    approved = draw(st.booleans())  # phone and carrier only for merchants the carriers approved
    ci: str | None = draw(cis())
    if provider == "kakao" and draw(st.booleans()):
        ci = None
    foreigner: bool | None = draw(st.booleans())
    if provider == "danal" and draw(st.booleans()):
        foreigner = None  # the foreigner option not contracted
    return certification(
        provider=provider,
        name=draw(korean_names()),
        birth_date=draw(birth_dates or st.dates(date(1920, 1, 1), NOW.date() - timedelta(days=1))),
        gender=None if provider == "kakao" and draw(st.booleans()) else draw(st.sampled_from(Gender)),
        phone=draw(phones()) if approved else None,
        carrier=draw(st.sampled_from(Carrier)) if approved else None,
        is_foreigner=foreigner,
        ci=ci,
        di=None if provider == "inicis_unified" else draw(dis()),
    )
