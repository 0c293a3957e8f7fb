"""The `idgate` command. Each command parses options, calls a use case through the composition root,
and prints. Exit codes: 0 allow, 1 deny or review; errors exit with their category's code from
`idgate.entrypoints.errors` (2 fix the request, 3 retry later, 4 integrity, 5 configuration).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import click
import httpx
import msgspec
import structlog
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from idgate.adapters.crypto import Keyring, SigningKeyFile
from idgate.adapters.store import KeyFinding, mismatch_message
from idgate.domain import (
    Channel,
    Conflict,
    IdgateError,
    KeyringExists,
    KeyringMismatch,
    PolicyDecision,
    Principal,
    Purged,
    Role,
    TokenInfo,
    Verdict,
    services,
)

from .bootstrap import (
    bootstrap,
    check_schema,
    keyring_source,
    operations,
    require_shared_database,
    schema_revisions,
    upgrade_schema,
)
from .claims import claims_from_file
from .cli_audit import access_log, decisions
from .cli_blocklist import blocklist
from .cli_common import fail as _fail
from .cli_common import run as _run
from .cli_common import settings_of as _settings
from .cli_policies import policies
from .cli_reviews import reviews_group
from .errors import EXIT_ALLOW, EXIT_DENY_OR_REVIEW
from .logs import configure_logging
from .schemas import decision_out
from .settings import DEFAULT_DATA_DIR, INIT_TEMPLATE, Settings, load_settings, with_overrides

log = structlog.get_logger("idgate.cli")

# _web_stack: `serve`, `sandbox` and `demo` import the HTTP apps and servers (Litestar, uvicorn, the
# sandbox) when they run, not when the module loads: that is half a second every other command,
# from `idgate --help` to `idgate decisions list`, would otherwise spend before doing anything.


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(path_type=Path),
    help="Config file (default: $IDGATE_CONFIG or ./idgate.toml).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Default: info (demo: warning, so its own output stays readable).",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None, log_level: str | None) -> None:
    """idgate: server-side Korean identity verification (본인인증) through PortOne."""
    level = log_level or ("warning" if ctx.invoked_subcommand == "demo" else "info")
    configure_logging(level)
    ctx.obj = {"config": config, "log_level": level}


@main.command()
@click.option("--path", type=click.Path(path_type=Path), default=Path("idgate.toml"), show_default=True)
@click.pass_context
def init(ctx: click.Context, path: Path) -> None:
    """Write a commented configuration file and a keyring (never overwrites either)."""
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(INIT_TEMPLATE)
    except FileExistsError:
        _fail(Conflict(f"{path} already exists; edit it, or remove it first to start over."))
    source = keyring_source(_settings_from(path))
    if source.from_environment:
        made = "the keyring comes from IDGATE_KEYRING"
    else:
        try:
            source.save(Keyring.generate(), create=True)
            made = f"wrote a new keyring to {source.path} (mode 0600; back it up)"
        except KeyringExists:
            made = f"kept the keyring already at {source.path}"
    click.echo(f"wrote {path}; {made}.")
    settings = _settings_from(path)
    signing = SigningKeyFile(Path(settings.audit.signing_key_path))
    if not signing.path.exists():
        signing.create()
        click.echo(
            f"wrote the decision log's signing key to {signing.path} (mode 0600; keep it apart from backups)."
        )
    before, now = _run(lambda: upgrade_schema(settings))
    click.echo(_schema_change(before, now))
    click.echo("next: set IDGATE_PORTONE_IMP_KEY and IDGATE_PORTONE_IMP_SECRET, then run `idgate serve`.")


def _schema_change(before: str | None, now: str) -> str:
    if before is None:
        return f"created the database schema (revision {now})."
    if before == now:
        return f"the database schema is at the newest revision ({now})."
    return f"migrated the database schema from revision {before} to {now}."


def _settings_from(path: Path) -> Settings:
    try:
        return load_settings(path)
    except IdgateError as error:
        _fail(error)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker processes on one port (PostgreSQL only); a worker that dies is replaced.",
)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int) -> None:
    """Run the HTTP API."""
    settings = _settings(ctx)
    if workers > 1:
        try:
            require_shared_database(settings, workers)
        except IdgateError as error:
            _fail(error)

    async def check() -> None:
        # Everything the first request needs is built once before listening, so that a wrong option,
        # a missing keyring, an unreachable database or an old schema stops here with a clear message.
        async with bootstrap(settings) as container:
            policies = container.policies
        log.info("policies", enabled=",".join(policies.enabled), policy_set=policies.policy_set)

    _run(check)
    from . import worker  # noqa: PLC0415 - see _web_stack
    from .http import create_app  # noqa: PLC0415
    from .servers import Listener, serve_forever, serve_workers  # noqa: PLC0415

    listening = f"idgate listening on http://{host}:{port} (OpenAPI at /schema)"
    trusted = settings.http.forwarded_allow_ips
    if workers == 1:
        click.echo(listening, err=True)
        _run(
            lambda: serve_forever(
                [Listener(create_app(settings), host, port, "API")],
                log_level=ctx.obj["log_level"],
                forwarded_allow_ips=trusted,
            )
        )
        return
    # Each worker is a new interpreter that reads its configuration as this one did.
    if ctx.obj["config"] is not None:
        os.environ["IDGATE_CONFIG"] = str(Path(ctx.obj["config"]).absolute())
    os.environ["IDGATE_LOG_LEVEL"] = ctx.obj["log_level"]
    # prometheus_client's multiprocess mode: each worker writes its metrics to files here, and
    # /metrics on any worker adds them all up.
    metrics = None
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics = tempfile.mkdtemp(prefix="idgate-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics
    click.echo(f"{listening}, {workers} workers", err=True)
    try:
        serve_workers(
            worker.APP,
            host=host,
            port=port,
            workers=workers,
            log_level=ctx.obj["log_level"],
            forwarded_allow_ips=trusted,
        )
    except IdgateError as error:
        _fail(error)
    finally:
        if metrics is not None:
            shutil.rmtree(metrics, ignore_errors=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=int)
@click.option("--imp-key", default="sandbox_imp_key", show_default=True)
@click.option("--imp-secret", default="sandbox_imp_secret", show_default=True)
@click.pass_context
def sandbox(ctx: click.Context, host: str, port: int, imp_key: str, imp_secret: str) -> None:
    """Run the PortOne V1 emulator (test data only)."""
    from idgate.sandbox import SandboxState, create_sandbox_app  # noqa: PLC0415 - see _web_stack

    from .servers import Listener, serve_forever  # noqa: PLC0415

    app = create_sandbox_app(SandboxState(imp_key=imp_key, imp_secret=imp_secret))
    click.echo(
        f"PortOne sandbox on http://{host}:{port}  imp_key={imp_key} imp_secret={imp_secret}", err=True
    )
    click.echo(f"test persons: http://{host}:{port}/sandbox/persons", err=True)
    _run(lambda: serve_forever([Listener(app, host, port, "sandbox")], log_level=ctx.obj["log_level"]))


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--sandbox-port", default=8700, show_default=True, type=int)
@click.option("--check", is_flag=True, help="Run the two sample verifications and exit.")
@click.pass_context
def demo(ctx: click.Context, host: str, port: int, sandbox_port: int, check: bool) -> None:
    """Run sandbox + API + SQLite under ./.idgate/ and the demo page."""
    base = _settings(ctx)
    sandbox_url = f"http://{host}:{sandbox_port}"
    settings = with_overrides(
        base,
        portone={"url": sandbox_url, "imp_key": "sandbox_imp_key", "imp_secret": "sandbox_imp_secret"},
        database={"url": f"sqlite+aiosqlite:///{DEFAULT_DATA_DIR}/demo.db"},
        keyring={"path": f"{DEFAULT_DATA_DIR}/demo-keyring.json"},
        audit={"signing_key_path": f"{DEFAULT_DATA_DIR}/demo-log-signing-key.pem"},
        http={"demo_page": True, "sandbox_url": sandbox_url},
    )
    demo_keys = keyring_source(settings)
    if not demo_keys.from_environment and not demo_keys.path.exists():
        demo_keys.save(Keyring.generate(), create=True)
    demo_signing = SigningKeyFile(Path(settings.audit.signing_key_path))
    if not demo_signing.path.exists():
        demo_signing.create()
    _run(lambda: upgrade_schema(settings))

    from idgate.sandbox import SandboxState, create_sandbox_app  # noqa: PLC0415 - see _web_stack

    from .http import create_app  # noqa: PLC0415
    from .servers import Listener, serving  # noqa: PLC0415

    async def start() -> None:
        listeners = [
            Listener(create_sandbox_app(SandboxState()), host, sandbox_port, "sandbox"),
            Listener(create_app(settings), host, port, "API"),
        ]
        async with serving(listeners) as (sandbox_base, api_base):
            await _demo_walkthrough(sandbox_base, api_base)
            if check:
                return
            click.echo("\nserving until Ctrl-C", err=True)
            await asyncio.Event().wait()

    _run(start)


async def _demo_walkthrough(sandbox: str, api: str) -> None:
    click.echo(f"sandbox (PortOne V1 emulator): {sandbox}   test persons: {sandbox}/sandbox/persons")
    click.echo(f"idgate API:                    {api}   OpenAPI: {api}/schema")
    click.echo(f"demo page:                     {api}/demo")
    async with httpx.AsyncClient(timeout=10) as client:
        for person in ("adult", "minor"):
            prepared = (
                await client.post(f"{api}/certifications/prepare", json={"subject": f"demo-{person}"})
            ).json()
            made = await client.post(
                f"{sandbox}/sandbox/certifications",
                json={"person": person, "merchant_uid": prepared["merchant_uid"]},
            )
            body = {"imp_uid": made.json()["imp_uid"], "merchant_uid": prepared["merchant_uid"]}
            result = (await client.post(f"{api}/certifications", json=body)).json()
            codes = ", ".join(f"{r['policy']}={r['code']}" for r in result.get("reasons", []))
            click.echo(
                f"sample verification of the sandbox's {person:<5} → {result.get('verdict')} ({codes})"
            )
        prepared = (await client.post(f"{api}/certifications/prepare", json={})).json()
    made_cmd = (
        f"curl -s -X POST {sandbox}/sandbox/certifications -H 'content-type: application/json' "
        f'-d \'{{"person": "adult", "merchant_uid": "{prepared["merchant_uid"]}"}}\''
    )
    click.echo("\ntry it: make a certification in the sandbox, then verify it with idgate:")
    click.echo(f"  {made_cmd}")
    click.echo(
        f"  curl -s -X POST {api}/certifications -H 'content-type: application/json' "
        f'-d \'{{"imp_uid": "<imp_uid from above>", "merchant_uid": "{prepared["merchant_uid"]}"}}\''
    )


@main.command()
@click.argument("imp_uid")
@click.option("--subject", help="The account id this verification is for.")
@click.option("--merchant-uid", help="Check that PortOne recorded this merchant_uid for the imp_uid.")
@click.option(
    "--claims",
    "claims_file",
    metavar="FILE",
    help="What the user typed into your form, as a JSON object (name, birth_date, phone); - reads "
    "standard input. Never on the command line: arguments are visible to every user of the machine.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the decision as JSON (the HTTP API's shape).")
@click.pass_context
def verify(
    ctx: click.Context,
    *,
    imp_uid: str,
    subject: str | None,
    merchant_uid: str | None,
    claims_file: str | None,
    as_json: bool,
) -> None:
    """Verify IMP_UID and record the decision (exit 0 allow, 1 deny/review)."""
    settings = with_overrides(_settings(ctx), verification={"require_prepare": False})
    try:
        claims = claims_from_file(claims_file) if claims_file else None
    except IdgateError as error:
        _fail(error)

    async def decide() -> PolicyDecision:
        async with bootstrap(settings, signing=False) as c:
            return await c.verify(
                imp_uid,
                merchant_uid,
                subject,
                channel=Channel.CLI,
                caller=f"cli:{getpass.getuser()}",
                claims=claims,
            )

    decision = _run(decide)
    if as_json:
        click.echo(json.dumps(msgspec.to_builtins(decision_out(decision)), ensure_ascii=False, indent=2))
    else:
        click.echo(f"{decision.verdict.value}  {decision.decision_id}  policy set {decision.policy_set}")
        for r in decision.results:
            shadow = "" if r.enforced else "  (shadow)"
            click.echo(f"  {r.policy} {r.version}: {r.outcome.value} {r.code} {r.message}{shadow}")
    sys.exit(EXIT_ALLOW if decision.verdict is Verdict.ALLOW else EXIT_DENY_OR_REVIEW)


# ---- the database ------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The database's schema and retention."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create the schema, or migrate it to the newest revision (back the database up first)."""
    settings = _settings(ctx)
    before, now = _run(lambda: upgrade_schema(settings))
    click.echo(_schema_change(before, now))


@db.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Show the schema's revision; exits 5 unless it is the newest."""
    settings = _settings(ctx)
    found, wanted = _run(lambda: schema_revisions(settings))
    click.echo(f"database schema revision: {found or 'none (no idgate tables)'}; this idgate needs {wanted}")
    if found != wanted:
        _run(lambda: check_schema(settings))


@db.command("purge")
@click.pass_context
def db_purge(ctx: click.Context) -> None:
    """Delete expired prepared requests, old consumed imp_uids and request counts ([retention])."""
    settings = _settings(ctx)

    async def purge() -> Purged:
        async with operations(settings) as ops:
            return await ops.purge()

    purged = _run(purge)
    click.echo(
        f"purged {purged.prepared_requests} prepared requests, {purged.consumed_certifications} consumed "
        f"imp_uids and {purged.request_counts} request counts; decisions are kept."
    )


# ---- keys --------------------------------------------------------------------------------------
@main.group()
def keys() -> None:
    """Manage the keyring that encrypts and indexes stored identities."""


def _ring_name(index: bool) -> str:
    return "index" if index else "encryption"


@keys.command("generate")
@click.pass_context
def keys_generate(ctx: click.Context) -> None:
    """Create a new keyring, and the decision log's signing key if there is none (never overwrites)."""
    settings = _settings(ctx)
    source = keyring_source(settings)
    try:
        source.save(Keyring.generate(), create=True)
    except IdgateError as error:
        _fail(error)
    click.echo(f"wrote a new keyring to {source.path} (mode 0600); back it up somewhere safe")
    signing = SigningKeyFile(Path(settings.audit.signing_key_path))
    if not signing.path.exists():
        signing.create()
        click.echo(f"wrote the decision log's signing key to {signing.path} (mode 0600)")


@keys.command("rotate")
@click.option("--index", is_flag=True, help="Rotate the blind-index key instead of the encryption key.")
@click.pass_context
def keys_rotate(ctx: click.Context, index: bool) -> None:
    """Add a new primary key; the old one stays readable until re-encrypted and retired."""
    settings = _settings(ctx)

    async def rotate() -> int:
        async with operations(settings) as ops:
            return await ops.keys.rotate(index=index)

    primary = _run(rotate)
    click.echo(
        f"new primary {_ring_name(index)} key {primary}; new writes use it now. "
        "Run `idgate keys reencrypt` to move the existing identities to it."
    )


@keys.command("reencrypt")
@click.option("--batch-size", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.pass_context
def keys_reencrypt(ctx: click.Context, batch_size: int) -> None:
    """Move every identity to the primary keys, in batches (safe to interrupt and run again)."""
    settings = _settings(ctx)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())

    async def reencrypt() -> tuple[int, float]:
        started = time.perf_counter()
        async with operations(settings) as ops:
            with Progress(*columns, console=Console(stderr=True)) as bar:
                task = bar.add_task("re-encrypting identities", total=None)
                rewritten = await ops.keys.reencrypt_all(
                    batch_size=batch_size,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
        return rewritten, time.perf_counter() - started

    rewritten, seconds = _run(reencrypt)
    rate = rewritten / seconds if seconds > 0 else 0.0
    click.echo(f"re-encrypted {rewritten} identities in {seconds:.1f} s ({rate:,.0f} rows/s)")


@keys.command("status")
@click.pass_context
def keys_status(ctx: click.Context) -> None:
    """Show each key's status, how many identities it covers, and whether it fits the database.

    Exits 4 when the keyring does not match what the database recorded.
    """
    settings = _settings(ctx)

    async def status() -> list[KeyFinding]:
        async with operations(settings) as ops:
            return await ops.keys.status()

    findings = _run(status)
    table = Table("ring", "key", "status", "identities", "check")
    for finding in findings:
        check = finding.verdict if finding.problem else "ok"
        table.add_row(finding.ring, str(finding.key_id), finding.status, str(finding.identities), check)
    Console().print(table)
    if any(finding.problem for finding in findings):
        _fail(KeyringMismatch(mismatch_message(findings)))


@keys.command("retire")
@click.argument("key_id", type=int)
@click.option("--index", is_flag=True, help="Retire a blind-index key instead of an encryption key.")
@click.pass_context
def keys_retire(ctx: click.Context, key_id: int, index: bool) -> None:
    """Retire a key no identity needs any more (refused while one does)."""
    settings = _settings(ctx)

    async def retire() -> None:
        async with operations(settings) as ops:
            await ops.keys.retire(key_id, index=index)

    _run(retire)
    click.echo(f"retired {_ring_name(index)} key {key_id}")


# ---- tokens ------------------------------------------------------------------------------------
@main.group()
def tokens() -> None:
    """Manage API tokens (service: read identities; admin: erase; auditor: the decision log)."""


@tokens.command("create")
@click.option("--role", required=True, type=click.Choice([r.value for r in Role]))
@click.option("--name", required=True, help="Who or what holds the token (shown in the access log).")
@click.pass_context
def tokens_create(ctx: click.Context, role: str, name: str) -> None:
    """Create a token and print it once."""
    settings = _settings(ctx)

    async def create() -> str:
        async with operations(settings) as ops:
            return await services.create_token(name, Role(role), tokens=ops.tokens)

    token = _run(create)
    click.echo(f"token for {name} (role {role}); it is shown only now:", err=True)
    click.echo(token)


@tokens.command("list")
@click.pass_context
def tokens_list(ctx: click.Context) -> None:
    """List tokens (never the tokens themselves)."""
    settings = _settings(ctx)

    async def listed() -> Sequence[TokenInfo]:
        async with operations(settings) as ops:
            return await ops.tokens.list_tokens()

    table = Table("name", "role", "created (UTC)", "revoked (UTC)")
    for info in _run(listed):
        revoked = f"{info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else ""
        table.add_row(info.name, info.role.value, f"{info.created_at:%Y-%m-%d %H:%M}", revoked)
    Console().print(table)


@tokens.command("revoke")
@click.argument("name")
@click.pass_context
def tokens_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a token by name."""
    settings = _settings(ctx)

    async def revoke() -> None:
        async with operations(settings) as ops:
            await services.revoke_token(name, tokens=ops.tokens)

    _run(revoke)
    click.echo(f"revoked {name}")


# ---- erasure -----------------------------------------------------------------------------------
@main.command()
@click.option("--subject", required=True, help="The account whose verified identity is erased.")
@click.pass_context
def erase(ctx: click.Context, subject: str) -> None:
    """Erase a subject's identity (decisions stay: they hold no personal data)."""
    settings = _settings(ctx)
    operator = Principal(name=f"cli:{getpass.getuser()}", role=Role.ADMIN)

    async def go() -> None:
        async with operations(settings) as ops:
            await services.erase_identity(subject, accessor=operator, vault=ops.vault)

    _run(go)
    click.echo(f"erased the identity of {subject}")


main.add_command(decisions)
main.add_command(policies)
main.add_command(access_log)
main.add_command(blocklist)
main.add_command(reviews_group)
