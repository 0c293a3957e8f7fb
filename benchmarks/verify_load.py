"""What one verification costs through idgate, next to the handler it replaces, measured in one run.

    make bench                                         # the full table (about ten minutes)
    .venv/bin/python -m benchmarks.verify_load --requests 500 --rounds 1 --concurrency 16   # a quick look

Starts the sandbox, idgate (SQLite, warning log level, one process), the naive Python handler, when
Node is installed PortOne's own Node example, and floor-python (idgate's server and client stack making
the one PortOne call and nothing else: idgate's ceiling) on free ports, each in its own process. For
every cell it prepares fresh imp_uids (a distinct minted person each, so the allow path binds a new
identity every time), drives the load with wrk from its own process, reads each server's CPU time from /proc, and the
sandbox's request counters. Cells run in interleaved rounds so drift shows as spread, not as bias.

Figures are printed, never asserted: the two cores are shared by wrk, the sandbox and the server under
test, so compare ratios and CPU per request within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TICKS = os.sysconf("SC_CLK_TCK")
ADULT, MINOR = "1990-01-01", "2012-05-05"


def process_cpu(pid: int) -> float:
    """utime + stime of one process, in seconds (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (the workers of `idgate serve --workers N`)."""
    found = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return found
    for child in children:
        found += descendants(int(child))
    return found


def postgres_cpu() -> dict[int, float]:
    """CPU of every PostgreSQL server process on this machine, by pid (its backends come and go)."""
    cpu = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    cpu[int(entry.name)] = process_cpu(int(entry.name))
            except OSError:
                continue
    return cpu


@dataclass
class Server:
    name: str
    url: str
    process: asyncio.subprocess.Process
    database: str = "sqlite"  # "postgresql": its database's CPU is PostgreSQL's, counted apart

    def cpu_seconds(self) -> float:
        return sum(process_cpu(pid) for pid in descendants(self.process.pid))


@dataclass
class Cell:
    target: str
    concurrency: int
    round: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    server_cpu_ms: float  # per request
    sandbox_cpu_ms: float
    database_cpu_ms: float
    get_token_per_1000: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def started(
    name: str, command: list[str], url: str, ready: str, env: dict[str, str] | None = None
) -> AsyncIterator[Server]:
    """Start a server process and wait until `url + ready` answers at all."""
    process = await asyncio.create_subprocess_exec(
        *command, env={**os.environ, **(env or {})}, stdout=asyncio.subprocess.DEVNULL
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(1200):  # a minute: under py-spy start-up is slow
                with contextlib.suppress(httpx.TransportError):
                    await client.get(url + ready)
                    break
                if process.returncode is not None:
                    raise SystemExit(f"{name} exited at start with code {process.returncode}")
                await asyncio.sleep(0.05)
            else:
                raise SystemExit(f"{name} did not come up")
        yield Server(name, url, process)
    finally:
        process.send_signal(signal.SIGINT)  # py-spy writes its profile on SIGINT; servers stop cleanly
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()


async def gather_limited(jobs: list[Callable[[], Awaitable[str]]], limit: int = 32) -> list[str]:
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[str]]) -> str:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


class Workload:
    """Fresh requests for one cell: every line names a person and an imp_uid never used before."""

    def __init__(self, sandbox: str) -> None:
        self.sandbox = sandbox
        self.client = httpx.AsyncClient(timeout=30)

    async def persons(self, birthday: str, count: int) -> list[str]:
        minted = await self.client.post(
            f"{self.sandbox}/sandbox/persons", json={"birthday": birthday, "count": count}
        )
        minted.raise_for_status()
        persons: list[str] = minted.json()["persons"]
        return persons

    async def certify(self, person: str, merchant_uid: str | None = None) -> str:
        made = await self.client.post(
            f"{self.sandbox}/sandbox/certifications", json={"person": person, "merchant_uid": merchant_uid}
        )
        imp_uid: str = made.json()["imp_uid"]
        return imp_uid

    async def idgate_lines(self, idgate: str, birthday: str, count: int) -> list[str]:
        async def line(person: str) -> str:
            prepared = await self.client.post(
                f"{idgate}/certifications/prepare", json={"subject": f"bench-{person}"}
            )
            merchant_uid = prepared.json()["merchant_uid"]
            body = {"imp_uid": await self.certify(person, merchant_uid), "merchant_uid": merchant_uid}
            return f"POST\t/certifications\t\t{json.dumps(body)}"

        persons = await self.persons(birthday, count)
        return await gather_limited([lambda p=p: line(p) for p in persons])  # type: ignore[misc]

    async def naive_lines(self, count: int) -> list[str]:
        async def line(person: str) -> str:
            return f"POST\t/certifications\t\t{json.dumps({'imp_uid': await self.certify(person)})}"

        persons = await self.persons(ADULT, count)
        return await gather_limited([lambda p=p: line(p) for p in persons])  # type: ignore[misc]

    async def bare_lines(self, count: int) -> list[str]:
        token = await self.client.post(
            f"{self.sandbox}/users/getToken",
            json={"imp_key": "sandbox_imp_key", "imp_secret": "sandbox_imp_secret"},
        )
        access_token = token.json()["response"]["access_token"]
        persons = await self.persons(ADULT, count)
        imp_uids = await gather_limited([lambda p=p: self.certify(p) for p in persons])  # type: ignore[misc]
        return [f"GET\t/certifications/{imp_uid}\t{access_token}\t" for imp_uid in imp_uids]

    async def get_token_calls(self) -> int:
        stats = (await self.client.get(f"{self.sandbox}/sandbox/stats")).json()["requests"]
        return int(stats.get("POST /users/getToken", 0))


async def run_cell(
    target: str,
    server: Server,
    *,
    sandbox: Server,
    lines: list[str],
    count: int,
    concurrency: int,
    round_: int,
    workload: Workload,
    folder: Path,
) -> Cell:
    threads = min(2, concurrency)
    requests_file = folder / f"{target}-{concurrency}-{round_}.tsv"
    requests_file.write_text("\n".join(lines) + "\n")
    env = {
        **os.environ,
        "WRK_REQUESTS": str(requests_file),
        "WRK_THREADS": str(threads),
        "WRK_COUNT": str(count),
    }
    tokens_before = await workload.get_token_calls()
    cpu_before, sandbox_before = server.cpu_seconds(), sandbox.cpu_seconds()
    database_before = postgres_cpu() if server.database == "postgresql" else {}
    command = [
        "wrk", f"-t{threads}", f"-c{concurrency}", "-d600s", "--timeout", "10s",
        "-s", str(HERE / "wrk_requests.lua"), server.url,
    ]  # fmt: skip
    started_at = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*command, env=env, stdout=asyncio.subprocess.PIPE)
    if process.stdout is None:
        raise SystemExit("wrk's output is not readable")
    finished = 0
    while finished < threads:
        line = await process.stdout.readline()
        if not line:
            raise SystemExit(f"wrk ended early on {target}")
        finished += line.strip() == b"done"
    seconds = time.perf_counter() - started_at
    cpu = server.cpu_seconds() - cpu_before
    sandbox_cpu = sandbox.cpu_seconds() - sandbox_before
    database_after = postgres_cpu() if server.database == "postgresql" else {}
    database_cpu = sum(v - database_before.get(pid, 0.0) for pid, v in database_after.items())
    tokens = await workload.get_token_calls() - tokens_before
    process.send_signal(signal.SIGINT)
    out, _ = await process.communicate()
    summary = json.loads(out.decode().strip().splitlines()[-1])
    done = summary["requests"]
    return Cell(
        target=target,
        concurrency=concurrency,
        round=round_,
        requests=done,
        seconds=seconds,
        p50_ms=summary["p50_us"] / 1000,
        p99_ms=summary["p99_us"] / 1000,
        max_ms=summary["max_us"] / 1000,
        errors=summary["status_errors"] + summary["socket_errors"],
        server_cpu_ms=(cpu if server is not sandbox else sandbox_cpu) / done * 1000,
        sandbox_cpu_ms=sandbox_cpu / done * 1000,
        database_cpu_ms=database_cpu / done * 1000,
        get_token_per_1000=tokens / done * 1000,
    )


def spread(values: list[float], digits: int = 1) -> str:
    low, high = min(values), max(values)
    return (
        f"{low:,.{digits}f}" if len(values) == 1 or low == high else f"{low:,.{digits}f}–{high:,.{digits}f}"
    )


def print_table(cells: list[Cell]) -> None:
    by_key: dict[tuple[str, int], list[Cell]] = defaultdict(list)
    for cell in cells:
        by_key[cell.target, cell.concurrency].append(cell)
    print(
        f"\n{'target':<22}{'c':>4}{'verif/s':>16}{'p50 ms':>14}{'p99 ms':>14}{'max ms':>10}"
        f"{'CPU ms/req':>14}{'sandbox CPU':>13}{'db CPU':>12}{'getToken/1k':>13}{'non-2xx':>9}"
    )
    for (target, concurrency), group in sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(
            f"{target:<22}{concurrency:>4}{spread([c.rate for c in group], 0):>16}"
            f"{spread([c.p50_ms for c in group]):>14}{spread([c.p99_ms for c in group]):>14}"
            f"{max(c.max_ms for c in group):>10,.0f}{spread([c.server_cpu_ms for c in group], 2):>14}"
            f"{spread([c.sandbox_cpu_ms for c in group], 2):>13}"
            f"{spread([c.database_cpu_ms for c in group], 2):>12}"
            f"{statistics.mean(c.get_token_per_1000 for c in group):>13,.1f}{sum(c.errors for c in group):>9}"
        )
    print(
        "\nThroughput and CPU as multiples of the naive handlers' and of floor-python's, the least a Python"
        "\nhandler on idgate's stack costs (same round, same concurrency):"
    )
    for cell in cells:
        if not cell.target.startswith(("idgate", "floor")):
            continue
        for naive in ("naive-python", "naive-node", "floor-python"):
            if naive == cell.target:
                continue
            match = next(
                (
                    c
                    for c in cells
                    if (c.target, c.concurrency, c.round) == (naive, cell.concurrency, cell.round)
                ),
                None,
            )
            if match:
                print(
                    f"  {cell.target:<14} c={cell.concurrency:<3} round {cell.round}: "
                    f"{cell.rate / match.rate:4.2f}× {naive}   CPU {cell.server_cpu_ms / match.server_cpu_ms:4.2f}×"
                )


@dataclass(frozen=True)
class Deployment:
    """One idgate under test: its targets are f"{prefix}-allow" and f"{prefix}-deny"."""

    prefix: str
    database: str  # "sqlite" or "postgresql"
    workers: int = 1


def deployments(args: argparse.Namespace) -> list[Deployment]:
    found = []
    if "sqlite" in args.databases:
        found.append(Deployment("idgate", "sqlite"))
    if "postgresql" in args.databases:
        found += [Deployment(f"idgate-pg{'' if n == 1 else n}", "postgresql", n) for n in args.workers]
    return found


async def run_idgate(*command: str, env: dict[str, str]) -> None:
    process = await asyncio.create_subprocess_exec(
        str(BIN / "idgate"), *command, env={**os.environ, **env}, stdout=asyncio.subprocess.DEVNULL
    )
    if await process.wait() != 0:
        raise SystemExit(f"`idgate {' '.join(command)}` failed for the benchmark")


@contextlib.asynccontextmanager
async def postgres_database(admin_url: str) -> AsyncIterator[str]:
    """A new database on the PostgreSQL at `admin_url`, dropped afterwards; yields its URL for idgate."""
    import asyncpg  # noqa: PLC0415 - only the PostgreSQL runs need it
    import sqlalchemy as sa  # noqa: PLC0415

    name = f"idgate_bench_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    admin = await asyncpg.connect(sa.make_url(admin_url).set(drivername="postgresql").render_as_string(False))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield (
            sa.make_url(admin_url).set(drivername="postgresql+asyncpg", database=name).render_as_string(False)
        )
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def start_idgate(
    stack: contextlib.AsyncExitStack,
    deployment: Deployment,
    args: argparse.Namespace,
    sandbox_url: str,
    folder: Path,
) -> Server:
    """A keyring, a database at the newest schema, and `idgate serve` on a free port."""
    home = folder / deployment.prefix
    home.mkdir()
    url = (
        f"sqlite+aiosqlite:///{home}/idgate.db"
        if deployment.database == "sqlite"
        else await stack.enter_async_context(postgres_database(args.postgres_url))
    )
    env = {
        "IDGATE_PORTONE_URL": sandbox_url,
        "IDGATE_PORTONE_IMP_KEY": "sandbox_imp_key",
        "IDGATE_PORTONE_IMP_SECRET": "sandbox_imp_secret",
        "IDGATE_DATABASE_URL": url,
        "IDGATE_KEYRING_PATH": str(home / "keyring.json"),
        "IDGATE_DATABASE_SQLITE_SYNCHRONOUS": args.sqlite_synchronous,
        "IDGATE_DATABASE_POOL_SIZE": str(args.pool_size),
        "IDGATE_HTTP_PREPARE_RATE_LIMIT": "0",  # the benchmark prepares everything from one address
        "IDGATE_RETENTION_PURGE_INTERVAL_SECONDS": "0",
    }
    await run_idgate("keys", "generate", env=env)
    await run_idgate("db", "upgrade", env=env)
    port = free_port()
    command = [str(BIN / "idgate"), "--log-level", "warning", "serve", "--port", str(port)]
    command += ["--workers", str(deployment.workers)]
    if args.profile and deployment.prefix == "idgate":
        # --gil: only the thread holding the GIL is sampled, so the profile shows where Python spends
        # CPU, not where threads wait (a commit's fsync, an idle pool thread).
        command = [str(BIN / "py-spy"), "record", "--gil", "--format", "raw", "-r", "250", "-o", args.profile, "--", *command]  # fmt: skip
    server = await stack.enter_async_context(
        started(deployment.prefix, command, f"http://127.0.0.1:{port}", "/healthz", env)
    )
    server.database = deployment.database
    return server


async def run_rounds(
    args: argparse.Namespace, targets: dict[str, Server], sandbox: Server, workload: Workload, folder: Path
) -> list[Cell]:
    cells = []
    for round_ in range(1, args.rounds + 1):
        for concurrency in args.concurrency:
            for target, server in targets.items():
                wanted_lines = args.requests + concurrency + 2
                if target == "bare-sandbox-get":
                    lines = await workload.bare_lines(wanted_lines)
                elif target.startswith("idgate"):
                    lines = await workload.idgate_lines(
                        server.url, ADULT if target.endswith("-allow") else MINOR, wanted_lines
                    )
                else:
                    lines = await workload.naive_lines(wanted_lines)
                cell = await run_cell(
                    target,
                    server,
                    sandbox=sandbox,
                    lines=lines,
                    count=args.requests,
                    concurrency=concurrency,
                    round_=round_,
                    workload=workload,
                    folder=folder,
                )
                cells.append(cell)
                print(
                    f"round {round_} c={concurrency:<3} {target:<18} {cell.rate:8,.0f}/s  "
                    f"p50 {cell.p50_ms:6.1f} ms  p99 {cell.p99_ms:7.1f} ms  "
                    f"CPU {cell.server_cpu_ms:5.2f} ms/req  db {cell.database_cpu_ms:5.2f}  "
                    f"non-2xx {cell.errors}",
                    flush=True,
                )
    return cells


async def main(args: argparse.Namespace) -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: `apt-get install wrk` (make bench installs it)")
    folder = Path(tempfile.mkdtemp(prefix="idgate-bench-"))
    sandbox_port, naive_port, node_port, floor_port = (free_port() for _ in range(4))
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    sandbox_command = [str(BIN / "idgate"), "--log-level", "warning", "sandbox", "--port", str(sandbox_port)]
    naive_command = [sys.executable, "-m", "benchmarks.naive_handler", "--port", str(naive_port), "--portone", sandbox_url]  # fmt: skip
    floor_command = [sys.executable, "-m", "benchmarks.floor_handler", "--port", str(floor_port), "--portone", sandbox_url]  # fmt: skip
    node_command = ["node", str(HERE / "naive-node" / "server.js"), str(node_port), sandbox_url]
    with_node = bool(shutil.which("node")) and (HERE / "naive-node" / "node_modules").exists()

    async with contextlib.AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(
            started("sandbox", sandbox_command, sandbox_url, "/sandbox/stats")
        )
        targets: dict[str, Server] = {"bare-sandbox-get": sandbox}
        targets["naive-python"] = await stack.enter_async_context(
            started("naive-python", naive_command, f"http://127.0.0.1:{naive_port}", "/")
        )
        if with_node:
            targets["naive-node"] = await stack.enter_async_context(
                started("naive-node", node_command, f"http://127.0.0.1:{node_port}", "/")
            )
        else:
            print("(naive-node skipped: no node, or `npm install --prefix benchmarks/naive-node` not run)")
        targets["floor-python"] = await stack.enter_async_context(
            started("floor-python", floor_command, f"http://127.0.0.1:{floor_port}", "/")
        )
        for deployment in deployments(args):
            wanted = [f"{deployment.prefix}-allow", f"{deployment.prefix}-deny"]
            if not args.targets or set(wanted) & set(args.targets):
                server = await start_idgate(stack, deployment, args, sandbox_url, folder)
                targets.update(dict.fromkeys(wanted, server))
        targets = {
            name: server for name, server in targets.items() if not args.targets or name in args.targets
        }

        workload = Workload(sandbox_url)
        cells = await run_rounds(args, targets, sandbox, workload, folder)
        await workload.client.aclose()
    print(
        f"\nSQLite with synchronous={args.sqlite_synchronous}; PostgreSQL with asyncpg, a pool of "
        f"{args.pool_size} connections a worker; {args.requests} requests a cell. CPU ms/req is idgate's "
        "(every worker's), db CPU PostgreSQL's server processes'."
    )
    print_table(cells)
    shutil.rmtree(folder, ignore_errors=True)


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="measured requests per cell")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--targets", nargs="+", help="only these (e.g. idgate-allow naive-python)")
    parser.add_argument("--profile", help="run idgate under py-spy and write its raw profile here")
    parser.add_argument("--sqlite-synchronous", choices=["full", "normal"], default="full")
    parser.add_argument(
        "--databases", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    parser.add_argument(
        "--workers", type=int, nargs="+", default=[1, 2], help="PostgreSQL: workers of each run"
    )
    parser.add_argument("--pool-size", type=int, default=10, help="PostgreSQL: connections a worker")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("IDGATE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL where a database may be created for each run",
    )
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
