"""The sandbox's memory: test persons, tokens, certifications, OTPs, faults and request counts.

It follows PortOne V1's documented token rules: a token lives 30 minutes; asking again while it is
valid returns the same token; asking within its last minute extends it by 5 minutes.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from importlib import resources
from typing import Any

KST = timezone(timedelta(hours=9))
FAULT_KINDS = ("latency", "status", "malformed", "drop", "expired_token")
CARRIERS = ("SKT", "KT", "LGT", "SKT_MVNO", "KT_MVNO", "LGT_MVNO")
_FAMILY_NAMES = "김이박최정강조윤장임"
_GIVEN_NAMES = ("민준", "서연", "도윤", "지우", "하준", "서윤", "시우", "하은", "주원", "지민")


@dataclass(frozen=True, slots=True)
class Person:
    id: str
    label: str
    record: dict[str, Any]  # the PortOne fields this person's certifications carry

    @property
    def birthday(self) -> str:
        return str(self.record["birthday"])


@dataclass(slots=True)
class Fault:
    kind: str
    remaining: int
    path_prefix: str = "/"
    method: str | None = None
    latency_ms: int = 0
    status: int = 503

    def matches(self, method: str, path: str) -> bool:
        return (
            self.remaining > 0
            and path.startswith(self.path_prefix)
            and (self.method is None or self.method == method)
        )


@dataclass(slots=True)
class _Token:
    value: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class TokenRules:
    ttl: int = 1800
    grace_window: int = 60
    grace_extension: int = 300


def load_persons(today: date) -> list[Person]:
    raw = json.loads(resources.files("idgate.sandbox").joinpath("persons.json").read_text("utf-8"))
    persons = []
    for entry in raw["persons"]:
        record = {k: v for k, v in entry.items() if k not in {"id", "label", "ci", "di", "certificate"}}
        birthday = entry["birthday"]
        if isinstance(birthday, dict):  # someone whose birthday is today, N years ago
            years = int(birthday["turns_today"])
            try:
                birthday = today.replace(year=today.year - years).isoformat()
            except ValueError:  # today is 29 Feb and N years ago had none: 28 Feb, who turned N yesterday
                birthday = date(today.year - years, 2, 28).isoformat()
        record["birthday"] = birthday
        if "ci" in entry:
            record["unique_key"] = entry["ci"]
        if "di" in entry:
            record["unique_in_site"] = entry["di"]
        persons.append(Person(entry["id"], entry["label"], record))
    return persons


@dataclass
class SandboxState:
    imp_key: str = "sandbox_imp_key"
    imp_secret: str = field(default="sandbox_imp_secret", repr=False)
    token_rules: TokenRules = field(default_factory=TokenRules)
    clock: Callable[[], float] = time.time
    persons: dict[str, Person] = field(default_factory=dict)
    certifications: dict[str, dict[str, Any]] = field(default_factory=dict)
    otps: dict[str, str] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    minted: int = 0
    _token: _Token | None = None

    def __post_init__(self) -> None:
        if not self.persons:
            today = datetime.fromtimestamp(self.clock(), KST).date()
            self.persons = {p.id: p for p in load_persons(today)}

    def now(self) -> int:
        return int(self.clock())

    # ---- tokens ---------------------------------------------------------------------------------
    def issue_token(self, imp_key: str, imp_secret: str) -> dict[str, int | str] | None:
        """The AuthAnnotation for these credentials, or None when they are wrong."""
        if not (
            secrets.compare_digest(imp_key, self.imp_key)
            and secrets.compare_digest(imp_secret, self.imp_secret)
        ):
            return None
        now = self.now()
        token = self._token
        if token is None or token.expires_at <= now:
            token = self._token = _Token(secrets.token_hex(20), now + self.token_rules.ttl)
        elif token.expires_at - now <= self.token_rules.grace_window:
            token.expires_at += self.token_rules.grace_extension
        return {"access_token": token.value, "now": now, "expired_at": token.expires_at}

    def token_is_valid(self, authorization: str | None) -> bool:
        if not authorization or self._token is None:
            return False
        value = authorization.removeprefix("Bearer ").strip()
        return secrets.compare_digest(value, self._token.value) and self._token.expires_at > self.now()

    def expire_token(self) -> None:
        if self._token is not None:
            self._token.expires_at = self.now()

    # ---- synthetic persons ------------------------------------------------------------------------
    def mint_person(
        self,
        birthday: date,
        *,
        gender: str = "male",
        carrier: str = "SKT",
        foreigner: bool = False,
        provider: str = "danal",
    ) -> Person:
        """A new person nobody has seen: their own CI, DI and phone number, born on `birthday`.

        For load tests and benchmarks, which need thousands of distinct people where the twelve
        fixed persons would all be bound after the first pass.
        """
        if carrier not in CARRIERS:
            raise ValueError(f"carrier must be one of {', '.join(CARRIERS)}")
        self.minted += 1
        number = self.minted
        record: dict[str, Any] = {
            "name": _FAMILY_NAMES[number % 10] + _GIVEN_NAMES[number // 10 % 10],
            "gender": gender,
            "birthday": birthday.isoformat(),
            "pg_provider": provider,
            "phone": f"019{number % 10**8:08d}",  # 019: a prefix no one is issued any more
            "carrier": carrier,
            "foreigner": foreigner,
            "foreigner_v2": foreigner,
            # Real CIs are 88 base64 characters (64 bytes), DIs 64 (48 bytes).
            "unique_key": base64.b64encode(secrets.token_bytes(64)).decode(),
            "unique_in_site": base64.b64encode(secrets.token_bytes(48)).decode(),
        }
        person = Person(f"synthetic-{number}", f"synthetic person {number}", record)
        self.persons[person.id] = person
        return person

    # ---- certifications -------------------------------------------------------------------------
    def new_imp_uid(self) -> str:
        while True:
            imp_uid = f"imp_{secrets.randbelow(10**12):012d}"
            if imp_uid not in self.certifications:
                return imp_uid

    def certify(self, person_id: str, merchant_uid: str | None, origin: str | None = None) -> str:
        """A finished certification of a test person, as PortOne would store it."""
        person = self.persons[person_id]
        imp_uid = self.new_imp_uid()
        record: dict[str, Any] = {
            "imp_uid": imp_uid,
            "merchant_uid": merchant_uid or f"sandbox_{imp_uid}",
            "pg_tid": f"{self.now()}{secrets.randbelow(10**8):08d}",
            **person.record,
            "certified": True,
            "certified_at": self.now(),
            "birth": _kst_midnight(person.birthday),
            "origin": origin or "http://127.0.0.1/sandbox",
        }
        self.certifications[imp_uid] = record
        return imp_uid

    def request_otp(self, fields: dict[str, str]) -> str:
        """Start an API-driven (OTP) verification; the record exists unfinished until confirmed."""
        birth = re.sub(r"\D", "", fields["birth"])
        digit = fields["gender_digit"]
        century = 2000 if digit in "3478" else 1900
        birthday = date(century + int(birth[:2]), int(birth[2:4]), int(birth[4:6])).isoformat()
        phone = re.sub(r"\D", "", fields["phone"])
        known = next(
            (
                p
                for p in self.persons.values()
                if p.record.get("phone") == phone and p.record["name"] == fields["name"]
            ),
            None,
        )
        carrier = fields["carrier"] + ("_MVNO" if str(fields.get("is_mvno", "")).lower() == "true" else "")
        imp_uid = self.new_imp_uid()
        record: dict[str, Any] = {
            "imp_uid": imp_uid,
            "merchant_uid": fields.get("merchant_uid") or f"sandbox_{imp_uid}",
            "pg_provider": "danal",
            "name": fields["name"],
            "gender": "male" if int(digit) % 2 else "female",
            "birthday": birthday,
            "birth": _kst_midnight(birthday),
            "foreigner": digit in "5678",
            "foreigner_v2": digit in "5678",
            "phone": phone,
            "carrier": carrier,
            "certified": False,
            "certified_at": 0,
        }
        if known is not None:
            for key in ("unique_key", "unique_in_site"):
                if key in known.record:
                    record[key] = known.record[key]
        self.certifications[imp_uid] = record
        self.otps[imp_uid] = f"{secrets.randbelow(10**6):06d}"
        return imp_uid

    def confirm_otp(self, imp_uid: str, otp: str) -> str | None:
        """None on success, else why it failed (PortOne answers 400 for both cases)."""
        expected = self.otps.get(imp_uid)
        if expected is None:
            return "이미 인증이 완료되었거나 인증요청 내역이 없습니다."
        if not secrets.compare_digest(expected, otp):
            return "인증번호가 일치하지 않습니다."
        del self.otps[imp_uid]
        record = self.certifications[imp_uid]
        record["certified"] = True
        record["certified_at"] = self.now()
        return None

    # ---- faults and accounting ------------------------------------------------------------------
    def take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                return fault
        return None

    def count(self, method: str, path: str) -> None:
        self.requests[f"{method} {re.sub(r'/imp_[^/]*', '/{imp_uid}', path)}"] += 1


def _kst_midnight(birthday: str) -> int:
    day = date.fromisoformat(birthday)
    return int(datetime(day.year, day.month, day.day, tzinfo=KST).timestamp())
