"""`idgate policies list|test`: what is installed and how it is configured, and table-driven tests
of a policy set (entrypoints/policy_cases.py) without a database or PortOne."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import msgspec
from rich.console import Console
from rich.table import Table

from idgate.domain import IdgateError
from idgate.policies.engine import configure, load_catalog, new_plugin_manager

from .cli_common import fail, run, settings_of

if TYPE_CHECKING:
    from .policy_cases import CaseRun

EXIT_CASES_FAILED = 1


@click.group()
def policies() -> None:
    """Inspect and test the policy plugins."""


@policies.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the policies as JSON.")
@click.pass_context
def list_policies(ctx: click.Context, as_json: bool) -> None:
    """Show every installed policy: version, distribution, whether enabled, mode and options."""
    settings = settings_of(ctx)
    enabled = settings.policies.enabled
    try:
        catalog = load_catalog(new_plugin_manager(), block=frozenset(settings.policies.block))
        configured = {p.name: p for p in configure(catalog, enabled, settings.policies.options)}
    except IdgateError as error:
        fail(error)
    rows: list[dict[str, Any]] = []
    for name, definition in sorted(catalog.definitions.items()):
        plugin = catalog.offered_by.get(name)
        policy = configured.get(name)
        row: dict[str, Any] = {
            "name": name,
            "version": definition.version,
            "distribution": plugin.distribution if plugin else "?",
            "distribution_version": plugin.version if plugin else "?",
            "plugin": plugin.name if plugin else "?",
            "enabled": policy is not None,
            "mode": None,
            "summary": definition.summary,
        }
        if policy is None:  # not built: its options' defaults, which may not make a valid set alone
            row |= {"timeout_seconds": None, "on_error": None, "options": _defaults(definition.options)}
        else:
            row |= {
                "mode": "enforced" if policy.enforced else "shadow",
                "timeout_seconds": policy.mode.timeout_seconds,
                "on_error": policy.mode.on_error.value,
                "options": policy.described()["options"],
            }
        rows.append(row)
    blocked = sorted(catalog.blocked)
    if as_json:
        click.echo(json.dumps({"policies": rows, "blocked_plugins": blocked}, ensure_ascii=False, indent=2))
        return
    table = Table("name", "version", "distribution", "enabled", "mode", "options")
    for row in rows:
        options = json.dumps(row["options"], ensure_ascii=False, sort_keys=True)
        table.add_row(
            row["name"],
            row["version"],
            f"{row['distribution']} {row['distribution_version']}",
            "yes" if row["enabled"] else "no",
            row["mode"] or "-",
            options,
        )
    console = Console()
    console.print(table)
    if blocked:
        console.print(f"blocked plugins (not loaded): {', '.join(blocked)}")


def _defaults(options: type) -> dict[str, Any]:
    return {
        f.name: msgspec.to_builtins(f.default) if f.default is not dataclasses.MISSING else "(required)"
        for f in dataclasses.fields(options)
    }


@policies.command("test")
@click.argument("cases", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print every case's result as JSON.")
@click.pass_context
def test_policies(ctx: click.Context, cases: Path, as_json: bool) -> None:
    """Run the table-driven CASES (TOML) against the configured policy set, or the file's own
    [policies]. Exit 0 when every case passes, 1 when any fails, 2 for a bad case file."""
    # Imported here: the case runner reads the sandbox's persons, and the sandbox package brings
    # the web stack, which the other commands start without.
    from .policy_cases import run_case_file  # noqa: PLC0415

    configured = settings_of(ctx).policies

    async def run_cases() -> CaseRun:
        return await run_case_file(cases, configured)

    result = run(run_cases)
    if as_json:
        click.echo(json.dumps(_as_json(result), ensure_ascii=False, indent=2))
    else:
        _print(result)
    sys.exit(EXIT_CASES_FAILED if result.failed else 0)


def _print(result: CaseRun) -> None:
    console = Console(highlight=False, soft_wrap=True)
    console.print(f"policy set {result.policy_set}: {', '.join(result.enabled) or 'no policies'}")
    for outcome in result.outcomes:
        if outcome.passed:
            console.print(f"[green]PASS[/green]  {outcome.case.name}", markup=True)
            continue
        console.print(f"[red]FAIL[/red]  {outcome.case.name}", markup=True)
        for line in outcome.mismatches():
            console.print(f"        {line}", markup=False)
        for r in outcome.results:
            shadow = "" if r.enforced else " (shadow)"
            console.print(
                f"        - {r.policy} {r.version}: {r.outcome.value} {r.code}{shadow}", markup=False
            )
    failed = len(result.failed)
    console.print(f"{len(result.outcomes) - failed} passed, {failed} failed")


def _as_json(result: CaseRun) -> dict[str, Any]:
    return {
        "policy_set": result.policy_set,
        "enabled": list(result.enabled),
        "passed": not result.failed,
        "cases": [
            {
                "name": o.case.name,
                "passed": o.passed,
                "expected": {"verdict": o.case.expect.verdict, "codes": o.case.expect.codes},
                "actual": {"verdict": o.verdict.value, "codes": o.codes},
                "results": [
                    {
                        "policy": r.policy,
                        "version": r.version,
                        "outcome": r.outcome.value,
                        "code": r.code,
                        "enforced": r.enforced,
                    }
                    for r in o.results
                ],
            }
            for o in result.outcomes
        ],
    }
