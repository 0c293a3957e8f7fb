"""Korean age, computed the way Korean law counts it, in Asia/Seoul whatever the server's timezone.

- International age (만 나이, the Civil Act's age since 2023): the birth day itself counts (Art. 158), so
  a person turns N at 00:00 KST on the N-th anniversary of their birth date. For a 29 February birth
  in a common year there is no such day, and the period ends at the end of February (Art. 160(3)):
  the person turns N at 00:00 KST on 1 March.
- Year age (연 나이, used by the Youth Protection Act): the current year minus the birth year, also
  changing at 00:00 KST on 1 January.
"""

from __future__ import annotations

import enum
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

SEOUL = ZoneInfo("Asia/Seoul")


class AgeMethod(enum.StrEnum):
    INTERNATIONAL = "international"
    YEAR = "year"


def seoul_date(at: datetime) -> date:
    if at.tzinfo is None:
        raise ValueError("an aware datetime is required to know the date in Seoul")
    return at.astimezone(SEOUL).date()


def international_age(birth_date: date, at: datetime) -> int:
    today = seoul_date(at)
    # Tuple comparison makes a 29 Feb birthday count from 1 March in common years, as the Civil Act does.
    not_yet = (today.month, today.day) < (birth_date.month, birth_date.day)
    return today.year - birth_date.year - int(not_yet)


def year_age(birth_date: date, at: datetime) -> int:
    return seoul_date(at).year - birth_date.year


def age(birth_date: date, at: datetime, method: AgeMethod) -> int:
    if method is AgeMethod.YEAR:
        return year_age(birth_date, at)
    return international_age(birth_date, at)


def anniversary(birth_date: date, years: int) -> date:
    """The date on which someone born on `birth_date` completes `years` years (Civil Act Art. 160(3))."""
    year = birth_date.year + years
    try:
        return birth_date.replace(year=year)
    except ValueError:  # 29 February in a common year
        return date(year, 3, 1)


def comes_of_age_at(birth_date: date, years: int, method: AgeMethod = AgeMethod.INTERNATIONAL) -> datetime:
    """The instant (in KST) at which `age(...)` becomes `years`."""
    day = date(birth_date.year + years, 1, 1) if method is AgeMethod.YEAR else anniversary(birth_date, years)
    return datetime.combine(day, time.min, tzinfo=SEOUL)
