"""`idgate blocklist …`: the people the `blocklist` policy denies, managed by the operator.

CIs come from a file or standard input, one a line, never from the command line (where shell
history and the process list would keep them). Each change is recorded in the access log as
`cli:<user>`, with how many CIs it named and never a CI; nothing printed names one either.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Sequence
from pathlib import Path

import click
import msgspec
from rich.console import Console
from rich.table import Table

from idgate.domain import Principal, Role
from idgate.domain.blocklist import BarredEntry, BlocklistChange, bar, unbar

from .bootstrap import operations
from .cli_common import run, settings_of


def _operator() -> Principal:
    return Principal(name=f"cli:{getpass.getuser()}", role=Role.ADMIN)


def _lines(path: Path | None) -> list[str]:
    """The lines of the file, or of standard input when there is no file (or it is `-`)."""
    if path is None or str(path) == "-":
        if sys.stdin.isatty():
            click.echo("reading CIs from standard input, one a line; end with Ctrl-D", err=True)
        return sys.stdin.read().splitlines()
    try:
        return path.read_text("utf-8").splitlines()
    except UnicodeDecodeError:
        raise click.BadParameter(
            f"{path} is not UTF-8 text; give one CI a line.", param_hint="--file"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise click.BadParameter(f"cannot read {path}: {reason}.", param_hint="--file") from None


_FILE = click.option(
    "--file",
    "path",
    type=click.Path(path_type=Path),
    help="A file of CIs, one a line (blank lines are skipped); without it, or with -, standard input.",
)


@click.group()
def blocklist() -> None:
    """The people the `blocklist` policy denies, kept by CI as keyed digests (never the CI)."""


# Extra arguments are caught, not left to click, whose message would repeat them: a CI typed there.
_TAKES_NO_CIS = {"allow_extra_args": True}


def _no_cis_on_the_command_line(ctx: click.Context) -> None:
    if ctx.args:
        raise click.UsageError(
            "CIs are never taken from the command line (shell history and the process list would keep "
            "them); give them in a file (--file) or on standard input, one a line."
        )


@blocklist.command("add", context_settings=_TAKES_NO_CIS)
@_FILE
@click.pass_context
def add(ctx: click.Context, path: Path | None) -> None:
    """Bar the people whose CIs are given (one a line); adding one already barred changes nothing."""
    _no_cis_on_the_command_line(ctx)
    settings = settings_of(ctx)
    lines = _lines(path)

    async def change() -> BlocklistChange:
        async with operations(settings) as ops:
            return await bar(lines, blocklist=ops.blocklist, log=ops.log, operator=_operator())

    done = run(change)
    click.echo(
        f"barred {_people(done.changed)}" + (f"; {done.unchanged} already barred" if done.unchanged else "")
    )


@blocklist.command("remove", context_settings=_TAKES_NO_CIS)
@_FILE
@click.pass_context
def remove(ctx: click.Context, path: Path | None) -> None:
    """Take the people whose CIs are given (one a line) off the blocklist."""
    _no_cis_on_the_command_line(ctx)
    settings = settings_of(ctx)
    lines = _lines(path)

    async def change() -> BlocklistChange:
        async with operations(settings) as ops:
            return await unbar(lines, blocklist=ops.blocklist, log=ops.log, operator=_operator())

    done = run(change)
    click.echo(
        f"removed {_people(done.changed)}" + (f"; {done.unchanged} were not barred" if done.unchanged else "")
    )


@blocklist.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_barred(ctx: click.Context, as_json: bool) -> None:
    """Every barred person, oldest first: when and by whom, and the index keys and digest prefix they
    are kept under (never a CI)."""
    settings = settings_of(ctx)

    async def listed() -> Sequence[BarredEntry]:
        async with operations(settings) as ops:
            return await ops.blocklist.entries()

    found = run(listed)
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(list(found)), indent=2).decode())
        return
    table = Table("added (UTC)", "by", "index keys", "digest", "matches")
    for entry in found:
        table.add_row(
            f"{entry.added_at:%Y-%m-%d %H:%M:%S}",
            entry.added_by,
            ", ".join(str(k) for k in entry.index_keys),
            entry.digest_prefix,
            "yes" if entry.matches else "no: its index keys are retired",
        )
    Console().print(table)
    click.echo(f"{_people(len(found))} barred", err=True)


def _people(count: int) -> str:
    return f"{count} {'person' if count == 1 else 'people'}"
