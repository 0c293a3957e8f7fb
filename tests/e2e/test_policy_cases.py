"""`idgate policies test`, run as a product team would: the shipped case file, a failing one, bad ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_cli import idgate

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "policy-cases.toml"

FAILING = """
[policies]
enabled = ["age_limit"]

[[case]]
name = "passes"
expect = { verdict = "allow" }

[[case]]
name = "expects the wrong thing"
person = "minor"
expect = { verdict = "allow", codes = [] }
"""


async def test_the_shipped_case_file_passes() -> None:
    run = await idgate("policies", "test", str(EXAMPLE))
    assert run.code == 0, run
    assert " 0 failed" in run.out
    assert "FAIL" not in run.out


async def test_a_mismatch_exits_1_with_a_readable_diff(tmp_path: Path) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(FAILING, encoding="utf-8")
    run = await idgate("policies", "test", str(cases))
    assert run.code == 1, run
    assert "PASS  passes" in run.out
    assert "FAIL  expects the wrong thing" in run.out
    assert "verdict: expected allow, got deny" in run.out
    assert "codes:   expected [], got ['under_age']" in run.out
    assert "age_limit" in run.out
    assert "1 passed, 1 failed" in run.out

    as_json = await idgate("policies", "test", str(cases), "--json")
    assert as_json.code == 1
    body = json.loads(as_json.out)
    assert body["passed"] is False
    [ok, bad] = body["cases"]
    assert (ok["passed"], bad["passed"]) == (True, False)
    assert bad["actual"] == {"verdict": "deny", "codes": ["under_age"]}


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ("[[case]\nname = 1", "is not valid TOML"),
        ("title = 'no cases'", "does not have the cases' shape"),
        ('[[case]]\nname = "x"\nexpect = { verdict = "maybe" }', "does not have the cases' shape"),
        (
            '[[case]]\nname = "x"\nperson = "nobody"\nexpect = { verdict = "allow" }',
            "no sandbox person 'nobody'",
        ),
        (
            '[[case]]\nname = "x"\nmissing = ["name"]\nexpect = { verdict = "allow" }',
            "name cannot be missing",
        ),
        (
            '[[case]]\nname = "x"\ncertification = { shoe_size = 9 }\nexpect = { verdict = "allow" }',
            "shoe_size",
        ),
        (
            '[policies]\nenabled = ["nope"]\n[[case]]\nname = "x"\nexpect = { verdict = "allow" }',
            "unknown policy 'nope'",
        ),
    ],
)
async def test_a_bad_case_file_is_named_and_exits_2(tmp_path: Path, content: str, phrase: str) -> None:
    cases = tmp_path / "cases.toml"
    cases.write_text(content, encoding="utf-8")
    run = await idgate("policies", "test", str(cases))
    assert run.code in {2, 5}, run  # 2 a bad file, 5 a bad policy configuration
    assert phrase in run.err
    assert "Traceback" not in run.err + run.out


async def test_a_missing_case_file(tmp_path: Path) -> None:
    run = await idgate("policies", "test", str(tmp_path / "absent.toml"))
    assert run.code == 2
    assert "cannot read the case file" in run.err


async def test_policies_list_shows_distribution_mode_and_options(tmp_path: Path) -> None:
    config = tmp_path / "idgate.toml"
    config.write_text(
        '[policies]\nenabled = ["age_limit"]\nblock = ["duplicate_identity"]\n'
        "[policies.age_limit]\nmin_age = 20\nenforce = false\n",
        encoding="utf-8",
    )
    run = await idgate("--config", str(config), "policies", "list", "--json")
    assert run.code == 0, run
    body = json.loads(run.out)
    age = next(p for p in body["policies"] if p["name"] == "age_limit")
    assert (age["enabled"], age["mode"], age["distribution"]) == (True, "shadow", "idgate")
    assert age["options"]["min_age"] == 20
    assert all(p["name"] != "duplicate_identity" for p in body["policies"])
    assert body["blocked_plugins"] == ["duplicate_identity"]
    table = await idgate("--config", str(config), "policies", "list", env={"COLUMNS": "200"})
    assert table.code == 0
    assert "shadow" in table.out
    assert "duplicate_identity" in table.out  # as blocked
