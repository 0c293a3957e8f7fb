"""docs/plugins.md is the plugin author's contract: every public name of the kit is in it, and its
"policy in 15 lines" is 15 lines that work (as datasette checks its plugin hooks are documented)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

import idgate.policies
import idgate.testing
from idgate.domain import Claims, Outcome, PolicyContext
from idgate.policies import Certification, PolicyDefinition, Ruling, hookspecs
from idgate.policies.engine import _RUN_KEYS
from idgate.testing import evaluate_policy, policy_context, pytest_plugin, strategies

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "plugins.md").read_text("utf-8")
# A name counts as documented when it is written as code: in `backticks` or in a code block.
DOCUMENTED = {
    word
    for code in [*re.findall(r"`([^`\n]+)`", DOC), *re.findall(r"```\w*\n(.*?)```", DOC, re.DOTALL)]
    for word in re.findall(r"\w+", code)
}


def public_names() -> list[str]:
    hooks = [name for name in dir(hookspecs) if name.startswith("idgate_")]
    fixtures = [
        name
        for name, value in vars(pytest_plugin).items()
        if hasattr(value, "_fixture_function_marker") or type(value).__name__ == "FixtureFunctionDefinition"
    ]
    fields = [
        f.name
        for cls in (Certification, PolicyContext, Claims, Ruling, PolicyDefinition)
        for f in dataclasses.fields(cls)
    ]
    return sorted(
        {
            *hooks,
            *fixtures,
            *fields,
            *idgate.policies.__all__,
            *idgate.testing.__all__,
            *strategies.__all__,
            *(o.value for o in Outcome),
            *_RUN_KEYS,
        }
        - {"ENTRY_POINT_GROUP", "PROJECT", "hookspec"}  # for idgate's own use
    )


def test_the_fixtures_were_found() -> None:
    assert {"run_policy", "run_policy_async", "frozen_clock"} <= set(public_names())


@pytest.mark.parametrize("name", public_names())
def test_every_public_name_is_documented(name: str) -> None:
    assert name in DOCUMENTED, f"{name} is public but docs/plugins.md does not mention it"


def test_the_policy_in_15_lines_is_15_lines_and_works(run_policy: Any) -> None:
    policy_code, _toml, test_code, *_ = re.findall(r"```(?:python|toml)\n(.*?)```", DOC, re.DOTALL)
    lines = [line for line in policy_code.splitlines() if line.strip()]
    assert len(lines) <= 15
    module: dict[str, Any] = {}
    exec(compile(policy_code, "docs/plugins.md", "exec"), module)  # noqa: S102 - our own docs
    [definition] = module["idgate_policy_definitions"]()
    assert evaluate_policy(definition, context=policy_context(subject="members:1")).outcome is Outcome.ALLOW

    def run_documented(name: str, **keywords: Any) -> Any:
        assert name == "members_only"
        return run_policy(definition, **keywords)

    tests: dict[str, Any] = {}
    exec(compile(test_code, "docs/plugins.md", "exec"), tests)  # noqa: S102
    tests["test_members_only"](run_documented)
