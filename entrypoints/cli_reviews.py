"""`idgate reviews …`: the review cases at a terminal, resolved as the reviewer `cli:<user>`.

Each command is a use case of `domain/reviews.py`, printed as a rich table, or with `--json` in
exactly the shape the HTTP API answers with (`review_schemas.py`).
"""

from __future__ import annotations

import getpass

import click
import msgspec
from rich.console import Console
from rich.table import Table

from idgate.domain import Principal, Role, Verdict, reviews
from idgate.domain.cases import CaseResolution

from .bootstrap import operations
from .cli_common import run, settings_of
from .review_schemas import case_list_out, resolution_out


def _reviewer() -> Principal:
    return Principal(name=f"cli:{getpass.getuser()}", role=Role.REVIEWER)


def _print_json(value: object) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


@click.group("reviews")
def reviews_group() -> None:
    """The cases review verdicts open: list them, and resolve them allow or deny."""


@reviews_group.command("list")
@click.option("--before", help="The `next_before` the previous page printed (a decision_id).")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, reviews.MAX_PAGE))
@click.option("--json", "as_json", is_flag=True, help="GET /reviews' answer.")
@click.pass_context
def list_reviews(ctx: click.Context, before: str | None, limit: int, as_json: bool) -> None:
    """Open cases, newest first, with when each expires and why it waits."""
    settings = settings_of(ctx)

    async def listed() -> reviews.OpenCases:
        async with operations(settings) as ops:
            return await reviews.list_open_cases(
                cases=ops.reviews, clock=ops.clock, rules=ops.review_rules, before=before, limit=limit
            )

    found = run(listed)
    if as_json:
        _print_json(case_list_out(found))
        return
    table = Table("decision_id", "subject", "opened (UTC)", "expires (UTC)", "reasons")
    for case in found.cases:
        table.add_row(
            case.decision_id, case.subject, f"{case.opened_at:%Y-%m-%d %H:%M:%S}",
            f"{case.expires_at:%Y-%m-%d %H:%M:%S}", ", ".join(f"{r.policy}:{r.code}" for r in case.reasons),
        )  # fmt: skip
    Console().print(table)
    if found.next_before is not None:
        click.echo(f"older cases: --before {found.next_before}", err=True)


@reviews_group.command("resolve")
@click.argument("decision_id")
@click.option("--verdict", required=True, type=click.Choice(["allow", "deny"]))
@click.option("--note", required=True, help="Why; kept with the case, never in the decision log.")
@click.option("--json", "as_json", is_flag=True, help="POST /reviews/{decision_id}/resolve's answer.")
@click.pass_context
def resolve_review(ctx: click.Context, decision_id: str, verdict: str, note: str, as_json: bool) -> None:
    """Allow binds the identity the case keeps to its subject; deny discards it."""
    settings = settings_of(ctx)

    async def resolve() -> CaseResolution:
        async with operations(settings) as ops:
            return await reviews.resolve_case(
                decision_id,
                Verdict(verdict),
                note,
                reviewer=_reviewer(),
                cases=ops.reviews,
                clock=ops.clock,
                rules=ops.review_rules,
            )

    resolved = run(resolve)
    if as_json:
        _print_json(resolution_out(resolved))
        return
    bound = "bound to" if resolved.binds else "discarded; nothing bound to"
    click.echo(
        f"{verdict}  {decision_id}: the identity is {bound} {resolved.case.subject} "
        f"(logged as {resolved.entry.decision_id})"
    )
