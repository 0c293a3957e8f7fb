"""The example plugin package (examples/policy-plugin), installed beside idgate as a product team's
would be, deciding real verifications through `idgate serve`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

from tests.conftest import Sandbox, only_sqlite

# `env` is test_cli's fixture: the keyring, signing key and sandbox settings of a test of its own.
from tests.e2e.test_cli import env, idgate, idgate_serve  # noqa: F401

CONFIG = """
[policies]
enabled = ["age_limit", "partners_only"]

[policies.partners_only]
partners = ["acme"]
"""


def test_the_example_is_installed_next_to_idgate() -> None:
    try:
        distribution("idgate-partners")
    except PackageNotFoundError:
        pytest.fail("examples/policy-plugin is not installed; `make install` installs it")


@only_sqlite
async def test_the_example_policy_decides_verifications_through_idgate_serve(
    sandbox: Sandbox,
    env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    config = tmp_path / "idgate.toml"
    config.write_text(CONFIG, encoding="utf-8")
    listed = await idgate("--config", str(config), "policies", "list", "--json", env=env)
    assert '"distribution": "idgate-partners"' in listed.out, listed
    async with idgate_serve({**env, "IDGATE_CONFIG": str(config)}) as (api, _):
        verdicts = {}
        for subject in ("acme:1042", "initech:7"):
            prepared = (await api.post("/certifications/prepare", json={"subject": subject})).json()
            imp_uid = await sandbox.certify("adult", prepared["merchant_uid"])
            answer = await api.post(
                "/certifications", json={"imp_uid": imp_uid, "merchant_uid": prepared["merchant_uid"]}
            )
            assert answer.status_code == 200, answer.text
            decision = answer.json()
            reason = next(r for r in decision["reasons"] if r["policy"] == "partners_only")
            verdicts[subject] = (decision["verdict"], reason["code"], reason["version"])
    assert verdicts == {
        "acme:1042": ("allow", "partner_member", "0.1.0"),
        "initech:7": ("deny", "not_a_partner", "0.1.0"),
    }
