"""The built-in duplicate_identity policy, through the catalog, against the fake identity directory."""

from __future__ import annotations

from typing import Any

import pytest

from idgate.domain import Outcome, PolicyContext, Ruling
from idgate.policies.engine import load_catalog, new_plugin_manager
from tests.fakes import T0, InMemoryVerificationStore, a_certification
from tests.plugins.test_policy_engine import configure_enabled


def policy(**options: Any) -> Any:
    [configured] = configure_enabled(load_catalog(new_plugin_manager()), {"duplicate_identity": options})
    return configured.policy


@pytest.fixture
def directory() -> InMemoryVerificationStore:
    store = InMemoryVerificationStore()
    store.identities["acct-1"] = a_certification(ci="CI-A", di="DI-A")
    return store


async def rule(
    directory: InMemoryVerificationStore, subject: str | None, options: dict[str, Any], **cert: Any
) -> Ruling:
    ruling: Ruling = await policy(**options)(
        a_certification(**cert), PolicyContext(subject=subject, now=T0, identities=directory)
    )
    return ruling


Case = tuple[str | None, dict[str, Any], dict[str, Any], Outcome, str]


@pytest.mark.parametrize(
    "case",
    [
        ("acct-1", {}, {"ci": "CI-A"}, Outcome.ALLOW, "identity_unique"),  # the same account again
        ("acct-2", {}, {"ci": "CI-A"}, Outcome.DENY, "identity_bound_elsewhere"),
        ("acct-2", {"on_bound": "review"}, {"ci": "CI-A"}, Outcome.REVIEW, "identity_bound_elsewhere"),
        ("acct-2", {}, {"ci": "CI-B"}, Outcome.ALLOW, "identity_unique"),
        ("acct-2", {}, {"ci": None, "di": "DI-A"}, Outcome.DENY, "identity_bound_elsewhere"),  # DI fallback
        ("acct-2", {}, {"ci": None, "di": None}, Outcome.ABSTAIN, "no_ci"),
        ("acct-2", {"without_ci": "abstain"}, {"ci": None, "di": "DI-A"}, Outcome.ABSTAIN, "no_ci"),
        ("acct-2", {"without_ci": "deny"}, {"ci": None, "di": "DI-A"}, Outcome.DENY, "no_ci"),
        (
            None,
            {},
            {"ci": " CI-A "},
            Outcome.DENY,
            "identity_bound_elsewhere",
        ),  # no subject: any binding counts
    ],
)
async def test_duplicate_identity(directory: InMemoryVerificationStore, case: Case) -> None:
    subject, options, cert, outcome, code = case
    ruling = await rule(directory, subject, options, **cert)
    assert (ruling.outcome, ruling.code) == (outcome, code)
    assert "CI-A" not in ruling.message


async def test_without_an_identity_directory_it_fails_closed() -> None:
    ruling = await policy()(a_certification(), PolicyContext(subject="a", now=T0))
    assert ruling.outcome is Outcome.ERROR
