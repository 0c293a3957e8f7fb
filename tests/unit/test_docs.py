"""The docs are part of the contract: every error code, exit code, CLI command and configuration key
that the code has must be written down where users look for it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
import pytest

from idgate.domain import Category, IdgateError, error_classes
from idgate.entrypoints import audit_api, reviews_api
from idgate.entrypoints.cli import main
from idgate.entrypoints.errors import ANSWERS, HTTP_ONLY_CODES
from idgate.entrypoints.settings import env_overrides

ROOT = Path(__file__).resolve().parents[2]
ERRORS = (ROOT / "docs" / "errors.md").read_text("utf-8")
CATEGORY_TABLE, CODE_TABLE = ERRORS.split("## Categories")[1].split("## Codes")
README = (ROOT / "README.md").read_text("utf-8")


def table_rows(markdown: str) -> list[list[str]]:
    return [
        [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]
        for line in markdown.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]


@pytest.mark.parametrize("error", error_classes(), ids=lambda cls: cls.code)
def test_every_error_code_is_documented_with_its_category(error: type[IdgateError]) -> None:
    rows = {row[0]: row for row in table_rows(CODE_TABLE)}
    assert error.code in rows, f"{error.code} is missing from docs/errors.md"
    if error.code != "idgate_error":
        assert rows[error.code][1] == error.category.value


@pytest.mark.parametrize("code", sorted(HTTP_ONLY_CODES))
def test_codes_only_the_http_layer_sends_are_documented(code: str) -> None:
    rows = {row[0]: row for row in table_rows(CODE_TABLE)}
    assert code in rows, f"{code} is missing from docs/errors.md"


@pytest.mark.parametrize("category", list(Category), ids=lambda c: c.value)
def test_every_category_is_documented_with_its_status_and_exit_code(category: Category) -> None:
    rows = {row[0]: row for row in table_rows(CATEGORY_TABLE)}
    answer = ANSWERS[category]
    assert rows[category.value][1:3] == [str(answer.status), str(answer.exit_code)]


def commands(group: click.Group, prefix: str = "idgate") -> list[str]:
    found = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += commands(command, f"{prefix} {name}")
        else:
            found.append(f"{prefix} {name}")
    return found


@pytest.mark.parametrize("command", commands(main))
def test_every_cli_command_is_in_the_readme(command: str) -> None:
    documented = " ".join(re.findall(r"^\| `([^`]+)`", README, re.MULTILINE))
    last = command.rsplit(" ", 1)[1]
    group = command.rsplit(" ", 1)[0]
    assert command in documented or (f"{group} " in documented and f"/ `{last}" in README), command


@pytest.mark.parametrize("variable", sorted(env_overrides()))
def test_every_configuration_key_is_in_the_readme(variable: str) -> None:
    section, key = env_overrides()[variable]
    assert re.search(rf"`{section}\.[^`]*\b{key}\b|`{section}\.\w+` / `{key}`", README), f"{section}.{key}"


def auditor_routes(handlers: Sequence[Any] = audit_api.ROUTES) -> list[str]:
    return sorted(
        f"{method} {path.replace('{decision_id:str}', '{decision_id}')}"
        for handler in handlers
        if handler.include_in_schema
        for path in handler.paths
        for method in handler.http_methods
    )


@pytest.mark.parametrize("route", auditor_routes())
def test_every_auditor_route_is_in_the_readme(route: str) -> None:
    documented = re.findall(r"^\| `([A-Z]+ /[^`?\s]+)", README, re.MULTILINE)
    assert route in documented, route


@pytest.mark.parametrize("route", auditor_routes(reviews_api.ROUTES))
def test_every_reviewer_route_is_in_the_readme(route: str) -> None:
    documented = re.findall(r"^\| `([A-Z]+ /[^`?\s]+)", README, re.MULTILINE)
    assert route in documented, route
