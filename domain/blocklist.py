"""The operator's blocklist: people barred by CI, which the store keeps only as keyed digests.

The `blocklist` policy asks the `BarredPeople` port; operators change the list through the use cases
here. Each change is recorded in the access log before it is made: who, which change and how many
CIs, never a CI.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .errors import InvalidRequest
from .model import Principal
from .ports import BarredPeople, DecisionLog

MAX_CI_LENGTH = 200  # real CIs are 88 characters of base64; anything much longer is not a CI


@dataclass(frozen=True, slots=True)
class BarredEntry:
    """One barred person as the store sees them: never the CI, only where its digests are kept."""

    index_keys: tuple[int, ...]  # the blind-index keys the person's digests exist under
    digest_prefix: str  # the first hex digits of the digest under the newest of those keys
    added_at: datetime
    added_by: str
    matches: bool  # False once every one of those keys is retired: the entry then bars no one


@dataclass(frozen=True, slots=True)
class BlocklistChange:
    changed: int  # people barred (add) or no longer barred (remove) by this change
    unchanged: int  # people already barred (add), or not barred to begin with (remove)


class Blocklist(BarredPeople, Protocol):
    """The blocklist as operators manage it. CIs are given distinct and stripped (`read_cis`)."""

    async def add(self, cis: Sequence[str], *, added_by: str) -> BlocklistChange:
        """Bar each person, under every readable index key. A person already barred stays as they were,
        except that digests under index keys added since are filled in."""
        ...

    async def remove(self, cis: Sequence[str]) -> BlocklistChange: ...

    async def entries(self) -> Sequence[BarredEntry]:
        """Every barred person, oldest first."""
        ...


def read_cis(lines: Iterable[str]) -> list[str]:
    """The CIs of a file or standard input, one a line: blank lines skipped, surrounding whitespace
    dropped, each CI once. Errors name the line, never its text (it may be someone's CI)."""
    found: dict[str, None] = {}
    for number, line in enumerate(lines, 1):
        ci = line.strip()
        if not ci:
            continue
        if any(character.isspace() for character in ci):
            raise InvalidRequest(f"line {number} holds more than one word; put one CI on each line.")
        if len(ci) > MAX_CI_LENGTH:
            raise InvalidRequest(
                f"line {number} is {len(ci)} characters long, too long for a CI (at most {MAX_CI_LENGTH})."
            )
        found[ci] = None
    if not found:
        raise InvalidRequest("no CI was given; give one CI a line, in a file (--file) or on standard input.")
    return list(found)


async def bar(
    lines: Iterable[str], *, blocklist: Blocklist, log: DecisionLog, operator: Principal
) -> BlocklistChange:
    """Bar the people whose CIs are `lines` (as `read_cis` reads them)."""
    cis = read_cis(lines)
    await log.record_access(operator.name, "blocklist.add", {"count": str(len(cis))})
    return await blocklist.add(cis, added_by=operator.name)


async def unbar(
    lines: Iterable[str], *, blocklist: Blocklist, log: DecisionLog, operator: Principal
) -> BlocklistChange:
    """Take the people whose CIs are `lines` off the blocklist."""
    cis = read_cis(lines)
    await log.record_access(operator.name, "blocklist.remove", {"count": str(len(cis))})
    return await blocklist.remove(cis)
