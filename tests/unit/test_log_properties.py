"""Properties of the decision log's two definitions, for all inputs: the canonical encoding of a record
(domain/records.py) and the RFC 6962 tree and its proofs (domain/merkle.py)."""

from __future__ import annotations

import hashlib
import json
import random
import unicodedata
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from idgate.domain import Channel, Outcome, PolicyDecision, PolicyResult, Verdict, merkle, records
from idgate.domain.audit import LogCheck, Tampering

text = st.text(st.characters(codec="utf-8"), max_size=24)
names = st.text(st.characters(codec="utf-8", categories=["L", "N", "M", "Zs"]), min_size=1, max_size=12)

results = st.builds(
    PolicyResult,
    policy=names,
    version=st.from_regex(r"[0-9]\.[0-9]\.[0-9]", fullmatch=True),
    outcome=st.sampled_from(Outcome),
    code=names,
    message=text,
    enforced=st.booleans(),
    duration_us=st.integers(min_value=0, max_value=10**12),
)
decisions = st.builds(
    PolicyDecision,
    decision_id=st.from_regex(r"dec_[0-9a-z]{26}", fullmatch=True),
    imp_uid=st.from_regex(r"imp_[0-9]{12}", fullmatch=True),
    subject=st.none() | text,
    verdict=st.sampled_from(Verdict),
    results=st.lists(results, max_size=4).map(tuple),
    decided_at=st.datetimes(min_value=datetime(2000, 1, 1), timezones=st.just(UTC)),  # noqa: DTZ001 - hypothesis bounds are naive
    policy_set=text,
    provider=names,
    channel=st.none() | st.sampled_from(Channel),
    caller=st.none() | text,
)
identity_refs = st.none() | st.from_regex(r"ci:[1-9]:[0-9a-f]{64}", fullmatch=True)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


def decomposed(value: Any) -> Any:
    """Every string in NFD: how another system may have typed the same text."""
    if isinstance(value, str):
        return unicodedata.normalize("NFD", value)
    if isinstance(value, dict):
        return {k: decomposed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decomposed(v) for v in value]
    return value


# ---- the canonical encoding -------------------------------------------------------------------
@given(decisions, identity_refs, st.randoms(use_true_random=False))
def test_key_order_never_changes_the_bytes(
    decision: PolicyDecision, ref: str | None, rng: random.Random
) -> None:
    record = records.record_of(decision, ref)
    assert records.canonical(shuffled(record, rng)) == records.canonical(record)


@given(decisions, identity_refs)
def test_the_bytes_are_the_documented_json_and_read_back_to_the_same_record(
    decision: PolicyDecision, ref: str | None
) -> None:
    record = records.record_of(decision, ref)
    encoded = records.canonical(record)
    # docs/audit-log.md promises exactly this, so an auditor's script needs nothing of idgate's
    assert encoded == json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    parsed = records.parse(encoded)
    assert parsed == record
    assert records.canonical(parsed) == encoded  # a fixpoint: re-encoding an export changes nothing
    assert records.decision_of(parsed) == records.decision_of(record)


@given(decisions, identity_refs)
def test_unicode_is_normalised_so_the_same_text_hashes_alike(
    decision: PolicyDecision, ref: str | None
) -> None:
    record = records.record_of(decision, ref)
    assert records.canonical(decomposed(record)) == records.canonical(record)
    assert unicodedata.is_normalized("NFC", records.canonical(record).decode())


@given(decisions, identity_refs)
def test_nulls_stay_as_keys_and_numbers_stay_integers(decision: PolicyDecision, ref: str | None) -> None:
    record = records.parse(records.canonical(records.record_of(decision, ref)))
    assert set(record) == {
        "format", "decision_id", "decided_at", "verdict", "policy_set", "subject", "imp_uid",
        "provider", "identity_ref", "channel", "caller", "results",
    }  # fmt: skip
    assert record["subject"] == decision.subject  # None is written as null, never left out
    assert record["identity_ref"] == ref
    for written, result in zip(record["results"], decision.results, strict=True):
        assert type(written["duration_us"]) is int
        assert written["duration_us"] == result.duration_us
        assert type(written["enforced"]) is bool  # true/false, never 1/0


@given(st.floats(allow_nan=False) | st.floats(allow_nan=True) | st.sets(st.integers(), min_size=1))
def test_values_format_1_has_no_room_for_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        records.canonical({"format": 1, "x": value})


# ---- the tree and its proofs -------------------------------------------------------------------
def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1's MTH, straight from its recursive definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + reference_root(leaves[:k]) + reference_root(leaves[k:])).digest()


leaf_lists = st.lists(st.binary(min_size=1, max_size=8), min_size=1, max_size=70).map(
    lambda data: [merkle.leaf_hash(d) for d in data]
)


def proof_hashes(leaves: list[bytes], ranges: list[tuple[int, int]]) -> list[bytes]:
    levels = dict(merkle.perfect_levels(leaves))
    return [merkle.range_hash(a, b, lambda level, index: levels[level][index]) for a, b in ranges]


def flip(data: bytes, bit: int) -> bytes:
    bit %= len(data) * 8
    return data[: bit // 8] + bytes([data[bit // 8] ^ (1 << bit % 8)]) + data[bit // 8 + 1 :]


@given(leaf_lists)
def test_the_frontier_agrees_with_the_rfc_definition_at_every_size(leaves: list[bytes]) -> None:
    frontier = merkle.Frontier()
    for n, leaf in enumerate(leaves, 1):
        frontier.append(leaf)
        assert frontier.root() == reference_root(leaves[:n])
        restored = merkle.Frontier.from_bytes(frontier.size, frontier.to_bytes())
        assert restored.root() == frontier.root()
    assert merkle.root_of(leaves) == reference_root(leaves)


@given(leaf_lists, st.data())
def test_every_inclusion_proof_verifies_and_a_flipped_bit_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    size = data.draw(st.integers(1, len(leaves)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    tree = leaves[:size]
    path = proof_hashes(tree, merkle.inclusion_ranges(index, size))
    root = reference_root(tree)
    assert merkle.verify_inclusion(tree[index], index, size, path, root)

    bit = data.draw(st.integers(0, 255), label="bit")
    assert not merkle.verify_inclusion(flip(tree[index], bit), index, size, path, root)
    assert not merkle.verify_inclusion(tree[index], index, size, path, flip(root, bit))
    if path:
        at = data.draw(st.integers(0, len(path) - 1), label="at")
        bent = [*path[:at], flip(path[at], bit), *path[at + 1 :]]
        assert not merkle.verify_inclusion(tree[index], index, size, bent, root)
    if size > 1:  # the same leaf claimed at another position
        other = (index + 1) % size
        assume(tree[other] != tree[index])
        assert not merkle.verify_inclusion(tree[index], other, size, path, root)


@given(leaf_lists, st.data())
def test_every_consistency_proof_verifies_and_a_flipped_bit_fails(
    leaves: list[bytes], data: st.DataObject
) -> None:
    new = data.draw(st.integers(1, len(leaves)), label="new")
    old = data.draw(st.integers(1, new), label="old")
    path = proof_hashes(leaves[:new], merkle.consistency_ranges(old, new))
    old_root, new_root = reference_root(leaves[:old]), reference_root(leaves[:new])
    assert merkle.verify_consistency(old, new, old_root, new_root, path)

    bit = data.draw(st.integers(0, 255), label="bit")
    assert not merkle.verify_consistency(old, new, flip(old_root, bit), new_root, path)
    assert not merkle.verify_consistency(old, new, old_root, flip(new_root, bit), path)
    if path:
        at = data.draw(st.integers(0, len(path) - 1), label="at")
        bent = [*path[:at], flip(path[at], bit), *path[at + 1 :]]
        assert not merkle.verify_consistency(old, new, old_root, new_root, bent)


@given(leaf_lists, st.data())
def test_a_history_that_was_rewritten_has_no_consistency_proof(
    leaves: list[bytes], data: st.DataObject
) -> None:
    """Change one entry before `old`: the new tree no longer extends the old one, whatever the proof."""
    assume(len(leaves) >= 2)
    new = data.draw(st.integers(2, len(leaves)), label="new")
    old = data.draw(st.integers(1, new - 1), label="old")
    changed = data.draw(st.integers(0, old - 1), label="changed")
    rewritten = [*leaves[:changed], merkle.leaf_hash(b"forged"), *leaves[changed + 1 :]]
    assume(rewritten[changed] != leaves[changed])
    path = proof_hashes(rewritten[:new], merkle.consistency_ranges(old, new))
    assert not merkle.verify_consistency(
        old, new, reference_root(leaves[:old]), reference_root(rewritten[:new]), path
    )


# ---- LogCheck: what a tampered sequence of rows looks like ------------------------------------------
def check(tree: list[bytes], rows: list[tuple[int, bytes]]) -> LogCheck:
    found = LogCheck(tree)
    for n, (seq, leaf) in enumerate(rows):
        found.feed(seq, leaf, rows[n + 1][1] if n + 1 < len(rows) else None)
    found.finish()
    return found


distinct_leaves = st.lists(st.binary(min_size=4, max_size=4), min_size=3, max_size=40, unique=True).map(
    lambda data: [merkle.leaf_hash(d) for d in data]
)


@given(distinct_leaves, st.data())
def test_each_kind_of_tampering_is_named_at_its_first_seq(leaves: list[bytes], data: st.DataObject) -> None:
    rows = list(enumerate(leaves, 1))
    assert check(leaves, rows).finding is None
    at = data.draw(st.integers(1, len(leaves) - 1), label="at")  # a position with one after it

    edited = [*rows[: at - 1], (at, merkle.leaf_hash(b"edited")), *rows[at:]]
    gap = [r for r in rows if r[0] != at]
    moved_up = [(s if s < at else s - 1, leaf) for s, leaf in gap]
    slipped_in = [
        *rows[: at - 1],
        (at, merkle.leaf_hash(b"new")),
        *[(s + 1, leaf) for s, leaf in rows[at - 1 :]],
    ]
    other = data.draw(st.integers(at + 1, len(leaves)), label="other")
    swapped = [
        (s, leaves[other - 1] if s == at else leaves[at - 1] if s == other else leaf) for s, leaf in rows
    ]

    for tampered, kind in [
        (edited, Tampering.EDITED),
        (gap, Tampering.DELETED),
        (moved_up, Tampering.DELETED),
        (slipped_in, Tampering.INSERTED),
        (swapped, Tampering.REORDERED),
    ]:
        finding = check(leaves, tampered).finding
        assert finding is not None
        assert (finding.seq, finding.kind) == (at, kind), (kind, finding)
