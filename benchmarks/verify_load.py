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


@dataclass
class Server:
    name: str
    url: str
    process: asyncio.subprocess.Process

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


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

    def __init__(self, sandbox: str, idgate: str) -> None:
        self.sandbox = sandbox
        self.idgate = idgate
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

    async def idgate_lines(self, birthday: str, count: int) -> list[str]:
        async def line(person: str) -> str:
            prepared = await self.client.post(
                f"{self.idgate}/certifications/prepare", json={"subject": f"bench-{person}"}
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
        f"{'CPU ms/req':>14}{'sandbox CPU':>13}{'getToken/1k':>13}{'non-2xx':>9}"
    )
    for (target, concurrency), group in sorted(by_key.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(
            f"{target:<22}{concurrency:>4}{spread([c.rate for c in group], 0):>16}"
            f"{spread([c.p50_ms for c in group]):>14}{spread([c.p99_ms for c in group]):>14}"
            f"{max(c.max_ms for c in group):>10,.0f}{spread([c.server_cpu_ms for c in group], 2):>14}"
            f"{spread([c.sandbox_cpu_ms for c in group], 2):>13}"
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


async def main(args: argparse.Namespace) -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: `apt-get install wrk` (make bench installs it)")
    folder = Path(tempfile.mkdtemp(prefix="idgate-bench-"))
    sandbox_port, idgate_port, naive_port, node_port, floor_port = (free_port() for _ in range(5))
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    idgate_env = {
        "IDGATE_PORTONE_URL": sandbox_url,
        "IDGATE_PORTONE_IMP_KEY": "sandbox_imp_key",
        "IDGATE_PORTONE_IMP_SECRET": "sandbox_imp_secret",
        "IDGATE_DATABASE_URL": f"sqlite+aiosqlite:///{folder}/idgate.db",
        "IDGATE_KEYRING_PATH": str(folder / "keyring.json"),
        "IDGATE_DATABASE_SQLITE_SYNCHRONOUS": args.sqlite_synchronous,
    }
    keys = await asyncio.create_subprocess_exec(
        BIN / "idgate",
        "keys",
        "generate",
        env={**os.environ, **idgate_env},
        stdout=asyncio.subprocess.DEVNULL,
    )
    if await keys.wait() != 0:
        raise SystemExit("could not make a keyring for idgate")
    idgate_command = [str(BIN / "idgate"), "--log-level", "warning", "serve", "--port", str(idgate_port)]
    if args.profile:  # sample idgate while it works; py-spy writes the profile when idgate stops
        # --gil: only the thread holding the GIL is sampled, so the profile shows where Python spends
        # CPU, not where threads wait (a commit's fsync, an idle pool thread).
        idgate_command = [str(BIN / "py-spy"), "record", "--gil", "--format", "raw", "-r", "250", "-o", args.profile, "--", *idgate_command]  # fmt: skip
    sandbox_command = [str(BIN / "idgate"), "--log-level", "warning", "sandbox", "--port", str(sandbox_port)]
    naive_command = [sys.executable, "-m", "benchmarks.naive_handler", "--port", str(naive_port), "--portone", sandbox_url]  # fmt: skip
    floor_command = [sys.executable, "-m", "benchmarks.floor_handler", "--port", str(floor_port), "--portone", sandbox_url]  # fmt: skip
    node_command = ["node", str(HERE / "naive-node" / "server.js"), str(node_port), sandbox_url]
    with_node = bool(shutil.which("node")) and (HERE / "naive-node" / "node_modules").exists()

    async with contextlib.AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(
            started("sandbox", sandbox_command, sandbox_url, "/sandbox/stats")
        )
        idgate = await stack.enter_async_context(
            started("idgate", idgate_command, f"http://127.0.0.1:{idgate_port}", "/healthz", idgate_env)
        )
        naive = await stack.enter_async_context(
            started("naive-python", naive_command, f"http://127.0.0.1:{naive_port}", "/")
        )
        targets: dict[str, Server] = {"bare-sandbox-get": sandbox, "naive-python": naive}
        if with_node:
            targets["naive-node"] = await stack.enter_async_context(
                started("naive-node", node_command, f"http://127.0.0.1:{node_port}", "/")
            )
        else:
            print("(naive-node skipped: no node, or `npm install --prefix benchmarks/naive-node` not run)")
        targets["floor-python"] = await stack.enter_async_context(
            started("floor-python", floor_command, f"http://127.0.0.1:{floor_port}", "/")
        )
        targets["idgate-allow"] = idgate
        targets["idgate-deny"] = idgate
        targets = {
            name: server for name, server in targets.items() if not args.targets or name in args.targets
        }

        workload = Workload(sandbox_url, idgate.url)
        cells = []
        for round_ in range(1, args.rounds + 1):
            for concurrency in args.concurrency:
                for target, server in targets.items():
                    wanted = args.requests + concurrency + 2
                    if target == "bare-sandbox-get":
                        lines = await workload.bare_lines(wanted)
                    elif target.startswith("idgate"):
                        lines = await workload.idgate_lines(
                            ADULT if target == "idgate-allow" else MINOR, wanted
                        )
                    else:
                        lines = await workload.naive_lines(wanted)
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
                        f"CPU {cell.server_cpu_ms:5.2f} ms/req  non-2xx {cell.errors}",
                        flush=True,
                    )
        await workload.client.aclose()
    print(f"\nidgate on SQLite with synchronous={args.sqlite_synchronous}; {args.requests} requests a cell")
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
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
