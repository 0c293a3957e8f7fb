"""One contract for the CertificationProvider port: the fake, and the real adapter against the sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date

import pytest

from idgate.adapters.portone import PortOneHttp, PortOneV1Credentials, PortOneV1Provider
from idgate.domain import CertificationNotFound, CertificationProvider, InvalidCertificationId
from idgate.sandbox import SandboxState
from tests.conftest import Sandbox
from tests.fakes import FakeCertificationProvider, a_certification


@dataclass
class Subject:
    provider: CertificationProvider
    # Makes a finished certification of the sandbox's "adult" and returns its imp_uid.
    certify_adult: Callable[[str], Awaitable[str]]


@pytest.fixture(params=["fake", "portone-v1"])
async def subject(request: pytest.FixtureRequest, sandbox: Sandbox) -> AsyncIterator[Subject]:
    adult = SandboxState().persons["adult"].record
    if request.param == "fake":
        fake = FakeCertificationProvider()
        counter = iter(range(10**6))

        async def certify(merchant_uid: str) -> str:
            c = a_certification(
                imp_uid=f"imp_{next(counter)}",
                merchant_uid=merchant_uid,
                name=adult["name"],
                birth_date=date.fromisoformat(adult["birthday"]),
            )
            return fake.add(c).imp_uid

        yield Subject(fake, certify)
        return
    async with PortOneHttp.open(sandbox.url) as http:
        real = PortOneV1Provider(http, PortOneV1Credentials("sandbox_imp_key", "sandbox_imp_secret"))
        yield Subject(real, lambda merchant_uid: sandbox.certify("adult", merchant_uid))


async def test_fetches_what_was_certified(subject: Subject) -> None:
    imp_uid = await subject.certify_adult("order-9")
    c = await subject.provider.fetch_certification(imp_uid)
    assert (c.imp_uid, c.merchant_uid, c.name, c.birth_date) == (
        imp_uid,
        "order-9",
        "홍길동",
        date(1990, 1, 1),
    )
    assert c.certified
    assert c.certified_at.tzinfo is not None


async def test_unknown_ids_are_not_found(subject: Subject) -> None:
    with pytest.raises(CertificationNotFound):
        await subject.provider.fetch_certification("imp_999999999999")


@pytest.mark.parametrize("bad", ["../users/getToken", "imp_x", ""])
async def test_malformed_ids_are_refused(subject: Subject, bad: str) -> None:
    with pytest.raises(InvalidCertificationId):
        await subject.provider.fetch_certification(bad)
