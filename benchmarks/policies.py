"""Benchmark of policy evaluation: every built-in policy enabled, through idgate's engine against the
same policy functions called directly.

    .venv/bin/python -m benchmarks.policies                   # 20,000 decisions each way
    .venv/bin/python -m benchmarks.policies --decisions 50000

"Through the engine" is `PluginPolicyEvaluator.evaluate`, as a verification calls it: each policy
isolated, timed and under its timeout, the async ones concurrently, the ports watched for failures,
a PolicyResult built for each. "Directly" calls each built policy function in turn (awaiting the
async ones) and combines the rulings' outcomes: what a hand-written `if` chain would cost. The ports
are idgate.testing's in-memory ones, so the figures are the policies and the machinery, not a
database. Figures are CPU time per decision (`time.process_time`), printed, never asserted: compare
the ratio within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

import uvloop

from idgate.domain import (
    Certification,
    Claims,
    Outcome,
    PolicyContext,
    PolicyResult,
    Ruling,
    Verdict,
    combine,
)
from idgate.policies.engine import PluginPolicyEvaluator, configure, load_catalog, new_plugin_manager
from idgate.testing import (
    NOW,
    InMemoryBlocklist,
    InMemoryIdentityDirectory,
    InMemoryVerificationHistory,
    certification,
    policy_context,
)

# Every built-in, with options a product would set.
EVERY_BUILT_IN: dict[str, dict[str, Any]] = {
    "age_limit": {"min_age": 19},
    "duplicate_identity": {},
    "require_ci": {},
    "foreigner": {"foreigners": "review"},
    "provider_allowlist": {"providers": ["danal", "inicis_unified", "kcp_v2"]},
    "carrier": {"deny": ["SKT_MVNO"]},
    "identity_match": {},
    "blocklist": {},
    "velocity": {"max_per_person": 5, "window_seconds": 3600},
}


def inputs() -> tuple[Certification, PolicyContext]:
    person = certification()
    directory = InMemoryIdentityDirectory()
    directory.bind("user-1", ci=person.ci, di=person.di)  # the same account again: allowed
    history = InMemoryVerificationHistory()
    for minutes in range(3):
        history.add(ci=person.ci, subject="user-1", at=NOW - timedelta(minutes=10 + minutes))
    blocklist = InMemoryBlocklist()
    blocklist.bar("someone-else")
    context = policy_context(
        identities=directory,
        history=history,
        barred=blocklist,
        claims=Claims(name=person.name, birth_date=person.birth_date, phone="010-1234-5678"),
    )
    return person, context


def recorded_path(
    evaluator: PluginPolicyEvaluator,
) -> Callable[[Certification, PolicyContext], Coroutine[Any, Any, Verdict]]:
    """The functions called directly, each result recorded as the decision log needs it (policy,
    version, outcome, code, message, enforced, duration): the same output as the engine's, by hand."""
    policies = [(p.policy, p.name, p.definition.version, p.enforced) for p in evaluator.policies]

    async def decide(person: Certification, context: PolicyContext) -> Verdict:
        results = []
        for function, name, version, enforced in policies:
            started = time.perf_counter_ns()
            ruling = function(person, context)
            if inspect.isawaitable(ruling):
                ruling = await ruling
            assert isinstance(ruling, Ruling)  # noqa: S101 - the benchmark's own sanity
            results.append(
                PolicyResult(
                    policy=name,
                    version=version,
                    outcome=ruling.outcome,
                    code=ruling.code,
                    message=ruling.message,
                    enforced=enforced,
                    duration_us=(time.perf_counter_ns() - started) // 1000,
                )
            )
        return combine(results)

    return decide


def direct_path(
    evaluator: PluginPolicyEvaluator,
) -> Callable[[Certification, PolicyContext], Coroutine[Any, Any, Verdict]]:
    """The functions called directly, nothing recorded: only the verdict."""
    functions = [p.policy for p in evaluator.policies]

    async def decide(person: Certification, context: PolicyContext) -> Verdict:
        outcomes: list[Outcome] = []
        for function in functions:
            ruling = function(person, context)
            if inspect.isawaitable(ruling):
                ruling = await ruling
            assert isinstance(ruling, Ruling)  # noqa: S101 - the benchmark's own sanity
            outcomes.append(ruling.outcome)
        if Outcome.DENY in outcomes or Outcome.ERROR in outcomes:
            return Verdict.DENY
        return Verdict.REVIEW if Outcome.REVIEW in outcomes else Verdict.ALLOW

    return decide


async def cpu_per_call(call: Callable[[], Coroutine[Any, Any, object]], count: int) -> float:
    for _ in range(min(count // 10, 2000)):  # warm up
        await call()
    started = time.process_time()
    for _ in range(count):
        await call()
    return (time.process_time() - started) / count


async def main(args: argparse.Namespace) -> None:
    catalog = load_catalog(new_plugin_manager())
    evaluator = PluginPolicyEvaluator(configure(catalog, list(EVERY_BUILT_IN), EVERY_BUILT_IN))
    person, context = inputs()
    results = await evaluator.evaluate(person, context)
    direct = direct_path(evaluator)
    verdict = combine(results)
    if await direct(person, context) is not verdict:
        raise SystemExit("the direct path and the engine disagree: the benchmark compares different work")
    print(f"{len(results)} policies: {', '.join(f'{r.policy}={r.code}' for r in results)} -> {verdict.value}")

    recorded = recorded_path(evaluator)
    engine, plain, by_hand = [], [], []
    for _ in range(args.rounds):  # alternated, so drift on the shared machine hits all alike
        engine.append(await cpu_per_call(lambda: evaluator.evaluate(person, context), args.decisions))
        plain.append(await cpu_per_call(lambda: direct(person, context), args.decisions))
        by_hand.append(await cpu_per_call(lambda: recorded(person, context), args.decisions))
    best_engine, best_plain, best_by_hand = min(engine), min(plain), min(by_hand)
    print(f"\nCPU per decision, best of {args.rounds} rounds of {args.decisions:,}")
    print(f"  through the engine (PluginPolicyEvaluator)      {best_engine * 1e6:8.1f} µs")
    print(f"  the functions called directly, verdict only     {best_plain * 1e6:8.1f} µs")
    print(f"  the functions called directly, results recorded {best_by_hand * 1e6:8.1f} µs")
    print(f"  engine / direct (verdict only)                  {best_engine / best_plain:8.2f}x")
    print(f"  engine / direct (results recorded)              {best_engine / best_by_hand:8.2f}x")
    print(f"  the engine's own overhead over the latter       {(best_engine - best_by_hand) * 1e6:8.1f} µs")


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--decisions", type=int, default=20_000, help="decisions timed each way, a round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main(args))


if __name__ == "__main__":
    cli()
