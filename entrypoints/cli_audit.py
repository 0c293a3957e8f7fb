"""`idgate decisions …` and `idgate access-log …`: the decision log for auditors at a terminal.

Each command is a use case of `domain/auditing.py`, asked as the auditor `cli:<user>` (so the access
log records it like an HTTP question), printed as a rich table, or with `--json` in exactly the shape
the HTTP API answers with (`audit_schemas.py`).
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import click
import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from idgate.adapters.crypto import PublicKeyChecker
from idgate.domain import CheckpointChecker, IdgateError, Principal, Role, auditing
from idgate.domain.audit import DecisionFilter, LoggedDecision

from .audit_schemas import (
    DecisionList,
    checkpoint_out,
    consistency_out,
    csv_chunks,
    entry_out,
    jsonl_lines,
    proven_entry_out,
    verify_out,
)
from .bootstrap import checkpoint_signer, operations
from .cli_common import fail, run, settings_of

EXIT_TAMPERED = 1


def _asker() -> Principal:
    return Principal(name=f"cli:{getpass.getuser()}", role=Role.AUDITOR)


def _print_json(value: object) -> None:
    click.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def _moment(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time, e.g. 2026-12-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. 2026-12-01T00:00:00Z or 2026-12-01T09:00:00+09:00")
    return moment


def _filters(command: Callable[..., None]) -> Callable[..., None]:
    """The filters of GET /decisions, as options; the command receives them as `where`."""
    options = [
        click.option("--verdict", type=click.Choice(["allow", "deny", "review"])),
        click.option("--policy", help="Decisions a result of this policy is part of."),
        click.option("--outcome", type=click.Choice(["allow", "deny", "review", "abstain", "error"])),
        click.option("--code", help="A reason code, e.g. under_age."),
        click.option("--subject"),
        click.option("--imp-uid"),
        click.option("--provider", help="e.g. danal, inicis_unified"),
        click.option("--since", callback=_moment, help="From this time (ISO 8601 with a zone)."),
        click.option("--until", callback=_moment, help="Before this time (ISO 8601 with a zone)."),
    ]

    @functools.wraps(command)
    def with_filter(**given: Any) -> None:
        names = DecisionFilter.__dataclass_fields__
        where = DecisionFilter(**{k: given.pop(k) for k in list(given) if k in names})
        command(where=where, **given)

    for option in reversed(options):
        with_filter = option(with_filter)
    return with_filter


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=not sys.stderr.isatty(),
    )


def _deciding_codes(entry: LoggedDecision) -> str:
    """What made the verdict: the enforced results that were not an allow (or every code on allow)."""
    results = entry.record["results"]
    deciding = [r for r in results if r["enforced"] and r["outcome"] != "allow"] or results
    return ", ".join(f"{r['policy']}:{r['code']}" for r in deciding)


@click.group()
def decisions() -> None:
    """Read, prove and verify the decision log (recorded in the access log as cli:<user>)."""


@decisions.command("list")
@_filters
@click.option("--before", type=click.IntRange(min=1), help="The `next_before` the previous page printed.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, auditing.MAX_PAGE))
@click.option("--json", "as_json", is_flag=True, help="GET /decisions' answer.")
@click.pass_context
def list_decisions(
    ctx: click.Context, where: DecisionFilter, before: int | None, limit: int, as_json: bool
) -> None:
    """Decisions, newest first, filtered like GET /decisions."""
    settings = settings_of(ctx)

    async def page() -> Any:
        async with operations(settings) as ops:
            return await auditing.list_decisions(
                log=ops.log, asker=_asker(), where=where, before=before, limit=limit
            )

    found = run(page)
    if as_json:
        _print_json(
            DecisionList(decisions=[entry_out(d) for d in found.decisions], next_before=found.next_before)
        )
        return
    table = Table("seq", "decided (UTC)", "verdict", "decision_id", "subject", "provider", "reasons")
    for entry in found.decisions:
        r = entry.record
        table.add_row(
            str(entry.seq), r["decided_at"][:19].replace("T", " "), r["verdict"], r["decision_id"],
            r["subject"] or "", r["provider"] or "", _deciding_codes(entry),
        )  # fmt: skip
    Console().print(table)
    if found.next_before is not None:
        click.echo(f"older decisions: --before {found.next_before}", err=True)


@decisions.command("show")
@click.argument("decision_id")
@click.option("--json", "as_json", is_flag=True, help="GET /decisions/{decision_id}'s answer.")
@click.pass_context
def show_decision(ctx: click.Context, decision_id: str, as_json: bool) -> None:
    """One decision's full record and its inclusion proof."""
    settings = settings_of(ctx)

    async def show() -> auditing.ProvenDecision:
        async with operations(settings) as ops:
            return await auditing.show_decision(log=ops.log, asker=_asker(), decision_id=decision_id)

    found = run(show)
    if as_json:
        _print_json(proven_entry_out(found))
        return
    r = found.decision.record
    console = Console()
    console.print(f"[bold]{r['verdict']}[/bold]  {r['decision_id']}  seq {found.decision.seq}")
    for name in (
        "decided_at",
        "subject",
        "imp_uid",
        "provider",
        "policy_set",
        "identity_ref",
        "channel",
        "caller",
    ):
        console.print(f"  {name:<13} {r[name] if r[name] is not None else '—'}")
    table = Table("policy", "version", "outcome", "code", "enforced", "µs", "message")
    for x in r["results"]:
        table.add_row(
            x["policy"], x["version"], x["outcome"], x["code"], "yes" if x["enforced"] else "shadow",
            str(x["duration_us"]), x["message"],
        )  # fmt: skip
    console.print(table)
    proof = found.proof
    state = "[green]verifies[/green]" if proof.verifies() else "[red]DOES NOT VERIFY[/red]"
    under = (
        f"the checkpoint of size {found.checkpoint.size} signed {found.checkpoint.signed_at:%Y-%m-%d %H:%M:%S} UTC"
        if found.checkpoint
        else f"the current tree of size {proof.tree_size} (no checkpoint covers it yet)"
    )
    console.print(f"inclusion proof ({len(proof.path)} hashes) {state} against {under}")


@contextlib.contextmanager
def _output(path: str) -> Iterator[IO[bytes]]:
    """stdout for '-'; otherwise a file that appears only once it is complete."""
    if path == "-":
        yield sys.stdout.buffer
        return
    target = Path(path)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            yield file
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


@decisions.command("export")
@_filters
@click.option("--format", "form", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--output", "-o", default="-", show_default=True, help="A file to write, or - for stdout.")
@click.pass_context
def export_decisions(ctx: click.Context, where: DecisionFilter, form: str, output: str) -> None:
    """Every matching decision, oldest first: JSON lines (what docs/verify_decision_log.py reads) or CSV."""
    settings = settings_of(ctx)
    if output != "-" and not Path(output).parent.is_dir():
        raise click.BadParameter(f"the folder of {output} does not exist", param_hint="--output")

    async def export() -> int:
        async with operations(settings) as ops:
            total = (await ops.log.head()).size if not where.given() else None
            entries = await auditing.export_decisions(log=ops.log, asker=_asker(), where=where, form=form)
            written = 0
            with _progress() as bar, _output(output) as sink:
                task = bar.add_task(f"exporting decisions ({form})", total=total)

                async def counted() -> AsyncIterator[LoggedDecision]:
                    nonlocal written
                    async for entry in entries:
                        written += 1
                        if written % 1000 == 0:
                            bar.update(task, completed=written)
                        yield entry

                chunks = csv_chunks(counted()) if form == "csv" else jsonl_lines(counted())
                async for chunk in chunks:
                    sink.write(chunk)
                bar.update(task, completed=written, total=written)
            return written

    written = run(export)
    if output != "-":
        click.echo(f"wrote {written} decisions to {output}", err=True)


@decisions.command("verify")
@click.option(
    "--public-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Check checkpoints with this PEM public key instead of the signing key's (an auditor's copy).",
)
@click.option("--json", "as_json", is_flag=True, help="POST /decisions/verify's answer.")
@click.pass_context
def verify_log(ctx: click.Context, public_key: Path | None, as_json: bool) -> None:
    """Recompute every record's hash, the tree and every checkpoint; exit 1 naming the first bad seq."""
    settings = settings_of(ctx)

    pem = public_key.read_bytes() if public_key else None

    async def verify() -> Any:
        async with operations(settings) as ops:
            checker: CheckpointChecker = (
                PublicKeyChecker(settings.audit.log_name, pem) if pem is not None else ops.signer()
            )
            with _progress() as bar:
                task = bar.add_task("verifying the decision log", total=None)
                return await auditing.verify_log(
                    log=ops.log,
                    asker=_asker(),
                    checker=checker,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )

    report = run(verify)
    if as_json:
        _print_json(verify_out(report))
    elif report.finding is None:
        click.echo(
            f"OK: {report.rows} records, the tree of {report.size} entries "
            f"and {report.checkpoints} signed checkpoints agree"
        )
    else:
        f = report.finding
        click.echo(f"TAMPERED: first bad seq {f.seq} ({f.kind.value}): {f.detail}")
    sys.exit(0 if report.ok else EXIT_TAMPERED)


@decisions.command("checkpoint")
@click.option("--json", "as_json", is_flag=True, help="One of GET /decisions/checkpoints' entries.")
@click.pass_context
def checkpoint(ctx: click.Context, as_json: bool) -> None:
    """Sign the log as it is now (unless the newest checkpoint already covers it) and print the note."""
    settings = settings_of(ctx)

    async def sign() -> Any:
        async with operations(settings) as ops:
            return await auditing.make_checkpoint(log=ops.log, signer=ops.signer(), clock=ops.clock)

    made = run(sign)
    if made is None:
        click.echo("the log is empty: there is nothing to sign yet", err=True)
    elif as_json:
        _print_json(checkpoint_out(made))
    else:
        click.echo(made.note, nl=False)


@decisions.command("prove")
@click.argument("decision_id", required=False)
@click.option(
    "--old", type=click.IntRange(min=1), help="With --new: prove the log of --new entries extends --old's."
)
@click.option("--new", type=click.IntRange(min=1))
@click.option(
    "--tree-size", type=click.IntRange(min=1), help="With DECISION_ID: prove it in the tree of this size."
)
@click.option("--json", "as_json", is_flag=True, help="The API's answer (what the docs' verifier reads).")
@click.pass_context
def prove(  # noqa: PLR0917 - click passes every option by name; the signature is its list
    ctx: click.Context,
    decision_id: str | None,
    old: int | None,
    new: int | None,
    tree_size: int | None,
    as_json: bool,
) -> None:
    """Inclusion proof of DECISION_ID, or consistency proof between tree sizes --old and --new."""
    if (decision_id is None) == (old is None or new is None):
        raise click.UsageError("give either a DECISION_ID or both --old and --new")
    settings = settings_of(ctx)
    sizes = (old or 0, new or 0)

    async def proven() -> Any:
        async with operations(settings) as ops:
            if decision_id is not None:
                return proven_entry_out(
                    await auditing.show_decision(
                        log=ops.log, asker=_asker(), decision_id=decision_id, tree_size=tree_size
                    )
                )
            return consistency_out(
                await auditing.prove_consistency(
                    log=ops.log, asker=_asker(), old_size=sizes[0], new_size=sizes[1]
                )
            )

    answer = run(proven)
    if as_json:
        _print_json(answer)
        return
    if hasattr(answer, "proof"):
        p = answer.proof
        what = f"seq {answer.seq} is entry {p.leaf_index} of the tree of {p.tree_size}"
        verifies, hashes, root = p.verifies, p.hashes, p.root
    else:
        what = f"the tree of {answer.new_size} entries extends the one of {answer.old_size}"
        verifies, hashes, root = answer.verifies, answer.hashes, answer.new_root
    click.echo(f"{what}: {'verifies' if verifies else 'DOES NOT VERIFY'} ({len(hashes)} hashes, root {root})")
    sys.exit(0 if verifies else EXIT_TAMPERED)


@decisions.command("public-key")
@click.pass_context
def public_key(ctx: click.Context) -> None:
    """The PEM public key that checks the log's checkpoints (give it to auditors)."""
    settings = settings_of(ctx)
    try:
        click.echo(checkpoint_signer(settings).public_key_pem(), nl=False)
    except IdgateError as error:
        fail(error)


@click.group("access-log")
def access_log() -> None:
    """Who asked the decision log what, and when."""


@access_log.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_accesses(ctx: click.Context, limit: int, as_json: bool) -> None:
    """Auditors' questions, newest first (the CI of a search is never kept)."""
    settings = settings_of(ctx)

    async def listed() -> Any:
        async with operations(settings) as ops:
            return await auditing.accesses(log=ops.log, limit=limit)

    found = run(listed)
    if as_json:
        _print_json(
            [{"at": a.at, "actor": a.actor, "route": a.route, "filters": dict(a.query)} for a in found]
        )
        return
    table = Table("at (UTC)", "who", "question", "filters")
    for a in found:
        filters = " ".join(f"{k}={v}" for k, v in sorted(a.query.items()))
        table.add_row(f"{a.at:%Y-%m-%d %H:%M:%S}", a.actor, a.route, filters)
    Console().print(table)
