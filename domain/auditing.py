"""Use cases of the decision log: what auditors ask, and the checkpoints that make answers provable.

Every question an auditor asks is recorded first (who, which question, the filters; never a CI that
was searched for), so the trail of who looked at what is as complete as the log itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from .audit import (
    AuditAccess,
    Bucket,
    Checkpoint,
    ConsistencyProof,
    DecisionFilter,
    DecisionPage,
    InclusionProof,
    LoggedDecision,
    LogHead,
    Stats,
    VerifyReport,
)
from .errors import DecisionNotFound, InvalidRequest
from .model import Principal
from .ports import CheckpointChecker, CheckpointSigner, Clock, DecisionLog, Progress

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class ProvenDecision:
    """An entry, and the proof that it is in the log a checkpoint signed (or the current tree when no
    checkpoint covers it yet: `checkpoint` is then None)."""

    decision: LoggedDecision
    proof: InclusionProof
    checkpoint: Checkpoint | None


async def list_decisions(
    *, log: DecisionLog, asker: Principal, where: DecisionFilter, before: int | None, limit: int
) -> DecisionPage:
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be 1 to {MAX_PAGE}.")
    await log.record_access(
        asker.name, "list", {**where.given(), **({"before": str(before)} if before else {})}
    )
    return await log.page(where, before=before, limit=limit)


async def show_decision(
    *, log: DecisionLog, asker: Principal, decision_id: str, tree_size: int | None = None
) -> ProvenDecision:
    """The entry and its inclusion proof: in the tree of `tree_size` entries when given (a checkpoint
    the auditor holds), else in the newest checkpoint's tree, else in the current tree."""
    await log.record_access(
        asker.name,
        "show",
        {"decision_id": decision_id, **({"tree_size": str(tree_size)} if tree_size else {})},
    )
    found = await log.find(decision_id)
    if found is None:
        raise DecisionNotFound("no decision in the log has this decision_id.")
    head = await log.head()
    if tree_size is not None:
        if not found.seq <= tree_size <= head.size:
            raise InvalidRequest(
                f"tree_size must be from {found.seq} (this decision's seq) to {head.size} (the log's size now)."
            )
        covering = await log.checkpoint_at(tree_size)
        return ProvenDecision(found, await log.inclusion_proof(found.seq, tree_size), covering)
    latest = await log.checkpoints(limit=1)
    covering = latest[0] if latest and latest[0].size >= found.seq else None
    size = covering.size if covering is not None else head.size
    return ProvenDecision(found, await log.inclusion_proof(found.seq, size), covering)


async def decisions_of_person(
    *, log: DecisionLog, asker: Principal, ci: str, limit: int
) -> Sequence[LoggedDecision]:
    """Through the person's keyed pseudonym; the access log says a search was made, not for whom."""
    if not ci.strip():
        raise InvalidRequest("send the person's CI as `ci` in the JSON body.")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be 1 to {MAX_PAGE}.")
    await log.record_access(asker.name, "search", {})
    return await log.of_person(ci, limit=limit)


async def decision_stats(
    *, log: DecisionLog, asker: Principal, where: DecisionFilter, bucket: Bucket
) -> Stats:
    await log.record_access(asker.name, "stats", {**where.given(), "bucket": bucket.value})
    return await log.stats(where, bucket)


async def export_decisions(
    *, log: DecisionLog, asker: Principal, where: DecisionFilter, form: str
) -> AsyncIterator[LoggedDecision]:
    await log.record_access(asker.name, "export", {**where.given(), "format": form})
    return log.export(where)


async def list_checkpoints(*, log: DecisionLog, asker: Principal, limit: int) -> Sequence[Checkpoint]:
    await log.record_access(asker.name, "checkpoints", {})
    return await log.checkpoints(limit=limit)


async def prove_consistency(
    *, log: DecisionLog, asker: Principal, old_size: int, new_size: int
) -> ConsistencyProof:
    head = await log.head()
    if not 0 < old_size <= new_size <= head.size:
        raise InvalidRequest(f"sizes must satisfy 0 < old ≤ new ≤ {head.size} (the log's size now).")
    await log.record_access(asker.name, "consistency", {"old": str(old_size), "new": str(new_size)})
    return await log.consistency_proof(old_size, new_size)


async def log_status(*, log: DecisionLog, asker: Principal) -> tuple[LogHead, Checkpoint | None]:
    """The log's size and root now, and its newest checkpoint."""
    await log.record_access(asker.name, "log", {})
    latest = await log.checkpoints(limit=1)
    return await log.head(), (latest[0] if latest else None)


async def accesses(*, log: DecisionLog, limit: int) -> Sequence[AuditAccess]:
    if not 1 <= limit <= 10_000:
        raise InvalidRequest("limit must be 1 to 10000.")
    return await log.accesses(limit=limit)


async def make_checkpoint(*, log: DecisionLog, signer: CheckpointSigner, clock: Clock) -> Checkpoint | None:
    """Sign the log as it is now, unless the newest checkpoint already covers it; None for an empty log."""
    head = await log.head()
    if head.size == 0:
        return None
    latest = await log.checkpoints(limit=1)
    if latest and latest[0].size == head.size:
        return latest[0]
    checkpoint = signer.sign(head.size, head.root, clock.now())
    await log.save_checkpoint(checkpoint)
    return checkpoint


async def verify_log(
    *, log: DecisionLog, asker: Principal, checker: CheckpointChecker, progress: Progress | None = None
) -> VerifyReport:
    """Recompute the whole log; `checker` holds the public key (the signing key is not needed)."""
    await log.record_access(asker.name, "verify", {})
    return await log.verify(lambda checkpoint: checker.verifies(checkpoint.note), progress)
