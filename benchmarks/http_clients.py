"""What one GET to PortOne costs the client, in CPU: httpx against aiohttp.

    .venv/bin/python -m benchmarks.http_clients --calls 2000

The sandbox runs in a child process (so its CPU is not counted), each client sends the same
`GET /certifications/{imp_uid}` on one kept-alive connection, and the figure is this process's CPU
time (`time.process_time()`) per call, decoding the JSON included. Printed, never asserted; the
PortOne adapter uses aiohttp because of what this prints (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import httpx
import uvloop

KEYS = {"imp_key": "sandbox_imp_key", "imp_secret": "sandbox_imp_secret"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def sandbox() -> AsyncIterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    idgate = os.path.join(os.path.dirname(sys.executable), "idgate")
    process = await asyncio.create_subprocess_exec(
        idgate,
        "--log-level",
        "warning",
        "sandbox",
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(200):
                with contextlib.suppress(httpx.TransportError):
                    await client.get(f"{url}/sandbox/stats")
                    break
                await asyncio.sleep(0.05)
        yield url
    finally:
        process.terminate()
        await process.wait()


async def certification(url: str) -> tuple[str, dict[str, str]]:
    async with httpx.AsyncClient(base_url=url) as client:
        token = (await client.post("/users/getToken", json=KEYS)).json()["response"]["access_token"]
        person = (await client.post("/sandbox/persons", json={"birthday": "1990-01-01", "count": 1})).json()
        made = await client.post(
            "/sandbox/certifications", json={"person": person["persons"][0], "merchant_uid": "bench"}
        )
    return f"{url}/certifications/{made.json()['imp_uid']}", {"Authorization": f"Bearer {token}"}


async def cpu_per_call(call: Callable[[], Awaitable[object]], calls: int) -> float:
    for _ in range(100):  # warm up: connection open, code paths hot
        await call()
    start = time.process_time()
    for _ in range(calls):
        await call()
    return (time.process_time() - start) / calls * 1000


async def main(calls: int) -> None:
    async with sandbox() as url:
        target, headers = await certification(url)
        results: dict[str, float] = {}
        async with httpx.AsyncClient() as client:

            async def with_httpx() -> object:
                return (await client.get(target, headers=headers)).json()

            results["httpx"] = await cpu_per_call(with_httpx, calls)
        async with aiohttp.ClientSession() as session:

            async def with_aiohttp() -> object:
                async with session.get(target, headers=headers) as response:
                    return await response.json()

            results["aiohttp"] = await cpu_per_call(with_aiohttp, calls)
    print(
        f"client CPU per GET /certifications/{{imp_uid}} ({calls:,} calls each, one kept-alive connection):"
    )
    for name, ms in results.items():
        print(f"  {name:<10}{ms:6.2f} ms   {ms / results['aiohttp']:4.1f}× aiohttp")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    uvloop.run(main(parser.parse_args().calls))
