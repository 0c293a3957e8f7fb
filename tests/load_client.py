"""A load client in a process of its own: posts verifications and writes down what each one answered.

    python tests/load_client.py BODIES.json RESULTS.json --url http://127.0.0.1:8000 --concurrency 8

Tests start several of these at once, so the load on idgate's workers comes from several processes,
as it does in production; what the clients were told is then checked against the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import httpx


async def post_all(url: str, bodies: list[dict[str, str]], concurrency: int) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def one(body: dict[str, str]) -> dict[str, Any]:
            async with gate:
                try:
                    answer = await client.post("/certifications", json=body)
                except httpx.TransportError as exc:  # a worker died under this request
                    return {"imp_uid": body["imp_uid"], "status": 0, "error": type(exc).__name__}
            found = answer.json()
            return {
                "imp_uid": body["imp_uid"],
                "status": answer.status_code,
                "decision_id": found.get("decision_id"),
                "verdict": found.get("verdict"),
                "code": found.get("code"),
            }

        return await asyncio.gather(*(one(body) for body in bodies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("bodies", type=Path)
    parser.add_argument("results", type=Path)
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    bodies = json.loads(args.bodies.read_text())
    results = asyncio.run(post_all(args.url, bodies, args.concurrency))
    args.results.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
