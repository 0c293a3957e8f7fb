"""What auditors ask of the decision log, and how a log is checked against itself and its checkpoints.

The values here cross the `DecisionLog` port; `LogCheck` is the pure part of `idgate decisions
verify`: fed the stored tree's leaves and the decision rows in order, it names the first position
where they disagree and what the disagreement looks like.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import merkle, records


@dataclass(frozen=True, slots=True)
class LogHead:
    size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: the log had `size` entries with this `root` at `signed_at`."""

    size: int
    root: bytes
    signed_at: datetime
    note: str  # the C2SP signed note, as published


@dataclass(frozen=True, slots=True)
class LoggedDecision:
    """One entry: its position (seq, from 1) and its format-1 record."""

    seq: int
    record: Mapping[str, Any]

    @property
    def decision_id(self) -> str:
        return str(self.record["decision_id"])


@dataclass(frozen=True, slots=True, kw_only=True)
class DecisionFilter:
    """Which decisions; every field left None matches all. Times are [since, until)."""

    verdict: str | None = None
    policy: str | None = None
    outcome: str | None = None
    code: str | None = None
    subject: str | None = None
    imp_uid: str | None = None
    provider: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def given(self) -> dict[str, str]:
        """The filters that were set, as text (what the access log keeps)."""
        return {
            name: value.isoformat() if isinstance(value, datetime) else str(value)
            for name in self.__dataclass_fields__
            if (value := getattr(self, name)) is not None
        }


@dataclass(frozen=True, slots=True)
class DecisionPage:
    decisions: Sequence[LoggedDecision]
    next_before: int | None  # pass as `before` for the next (older) page; None at the end


class Bucket(enum.StrEnum):
    HOUR = "hour"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts per time bucket (its start, UTC): by verdict, and denials by the code that denied."""

    bucket: Bucket
    verdicts: Sequence[tuple[datetime, str, int]]
    deny_codes: Sequence[tuple[datetime, str, str, int]]  # (bucket, policy, code, count)


@dataclass(frozen=True, slots=True)
class InclusionProof:
    seq: int
    tree_size: int
    leaf_hash: bytes
    path: Sequence[bytes]
    root: bytes

    def verifies(self) -> bool:
        return merkle.verify_inclusion(self.leaf_hash, self.seq - 1, self.tree_size, self.path, self.root)


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    path: Sequence[bytes]

    def verifies(self) -> bool:
        return merkle.verify_consistency(
            self.old_size, self.new_size, self.old_root, self.new_root, self.path
        )


@dataclass(frozen=True, slots=True)
class AuditAccess:
    at: datetime
    actor: str
    route: str
    query: Mapping[str, str]


class Tampering(enum.StrEnum):
    """What a disagreement between the decision rows and the tree looks like."""

    EDITED = "edited"  # a record's bytes changed in place, or a column copied from it
    DELETED = "deleted"  # a record is missing, or everything after it moved up
    INSERTED = "inserted"  # a record the tree never had, in place or beyond its end
    REORDERED = "reordered"  # records that are in the tree, at other positions
    TREE = "tree"  # the tree itself disagrees with its own nodes, its head or a checkpoint


@dataclass(frozen=True, slots=True)
class Finding:
    seq: int  # the first position affected (for TREE: the first entry the failing check covers)
    kind: Tampering
    detail: str


@dataclass(slots=True)
class LogCheck:
    """Compares the decision rows (their records, by seq) with the stored tree's leaves, in one pass.

    `tree_leaves` are the stored level-0 hashes, by position (seq - 1); rows are fed in seq order, one
    by one (`feed`) or a run of consecutive seqs at a time (`feed_run`, which compares a whole run with
    one `==` when nothing is wrong). The first disagreement found is kept; later ones follow from it
    more often than not.
    """

    tree_leaves: Sequence[bytes]
    finding: Finding | None = None
    checked: int = 0
    _expected_at: dict[bytes, int] | None = None  # leaf → position, made at the first misplaced row
    _leaf_data: bytes | None = None  # the tree's leaves end to end, for feed_run

    def feed(self, seq: int, leaf: bytes, next_leaf: bytes | None) -> None:
        """One row: its seq and its record's leaf hash, and the leaf of the row after it (None for the
        last), so that rows shifted by an insertion can be told from an edit."""
        self.checked += 1
        if self.finding is not None:
            return
        expected_seq = self.checked
        size = len(self.tree_leaves)
        if seq > size:
            self.finding = Finding(seq, Tampering.INSERTED, f"seq {seq} is beyond the tree's {size} entries")
        elif seq != expected_seq:
            self.finding = Finding(expected_seq, Tampering.DELETED, f"no row has seq {expected_seq}")
        elif leaf != self.tree_leaves[seq - 1]:
            self.finding = self._misplaced(seq, leaf, next_leaf)

    def feed_run(self, first_seq: int, leaves: merkle.Hashes, next_leaf: bytes | None) -> None:
        """Rows of seqs `first_seq`, `first_seq + 1` … with these leaf hashes, and the leaf of the row
        after the last (None when there is none): the same as `feed` for each, faster."""
        count = len(leaves)
        start = (first_seq - 1) * merkle.HASH_SIZE
        if (
            self.finding is None
            and first_seq == self.checked + 1
            and first_seq - 1 + count <= len(self.tree_leaves)
            and leaves.data == self._tree_data()[start : start + count * merkle.HASH_SIZE]
        ):
            self.checked += count
            return
        for n in range(count):
            self.feed(first_seq + n, leaves[n], leaves[n + 1] if n + 1 < count else next_leaf)

    def _tree_data(self) -> bytes:
        if self._leaf_data is None:
            leaves = self.tree_leaves
            self._leaf_data = leaves.data if isinstance(leaves, merkle.Hashes) else b"".join(leaves)
            if len(self._leaf_data) != len(leaves) * merkle.HASH_SIZE:  # a stored leaf of another size
                self._leaf_data = b""  # every run then goes row by row, where such a leaf is named
        return self._leaf_data

    def _misplaced(self, seq: int, leaf: bytes, next_leaf: bytes | None) -> Finding:
        if self._expected_at is None:
            self._expected_at = {leaf: index for index, leaf in enumerate(self.tree_leaves)}
        at = self._expected_at.get(leaf)
        expected_here = self.tree_leaves[seq - 1]
        if at is None:
            # Unknown bytes here. If the row after holds what belongs here, a row was slipped in.
            if next_leaf == expected_here:
                return Finding(seq, Tampering.INSERTED, f"seq {seq} holds a record the tree never had")
            return Finding(seq, Tampering.EDITED, f"the record at seq {seq} is not the one the tree holds")
        if at == seq and next_leaf == expected_here:  # two neighbours swapped places
            return Finding(seq, Tampering.REORDERED, f"seq {seq} and seq {seq + 1} swapped places")
        if at == seq:  # the record that belongs after this one: the one here was taken out
            return Finding(
                seq, Tampering.DELETED, f"the record at seq {seq} is gone; the rows after it moved up"
            )
        return Finding(seq, Tampering.REORDERED, f"seq {seq} holds the record of seq {at + 1}")

    def finish(self) -> None:
        if self.finding is None and self.checked < len(self.tree_leaves):
            seq = self.checked + 1
            self.finding = Finding(seq, Tampering.DELETED, f"the rows from seq {seq} on are gone")


# The decisions columns that are copies of a record's fields (filters read them), and the fields of
# each decision_results row that copy one of the record's results (its position is its index).
COPIED_COLUMNS = (
    "decision_id", "decided_at", "verdict", "policy_set", "subject", "imp_uid", "provider",
    "identity_ref", "channel", "caller",
)  # fmt: skip
COPIED_RESULT_FIELDS = ("policy", "version", "outcome", "code", "enforced")


def copy_disagreement(
    record: Mapping[str, Any], columns: Mapping[str, object], results: Sequence[Mapping[str, object]]
) -> str | None:
    """Which copy of the record's fields holds something else: the first column of COPIED_COLUMNS
    (`columns`, as the record writes them: decided_at as its UTC text), or `decision_results` when
    the result rows are not exactly the record's results, in order from position 0. None when every
    copy agrees. Values are compared with their types: 1 is not true, and b"allow" is not "allow"."""
    for name in COPIED_COLUMNS:
        if not _same(columns.get(name), record.get(name)):
            return name
    expected = record.get("results")
    if not isinstance(expected, list) or len(results) != len(expected):
        return "decision_results"
    for position, (row, result) in enumerate(zip(results, expected, strict=True)):
        if not _same(row.get("position"), position):
            return "decision_results"
        for name in COPIED_RESULT_FIELDS:
            if not isinstance(result, Mapping) or not _same(row.get(name), result.get(name)):
                return f"decision_results.{name}"
    return None


def _same(stored: object, recorded: object) -> bool:
    return type(stored) is type(recorded) and stored == recorded


def edited_copy(seq: int, column: str) -> Finding:
    """The finding for a copy that disagrees with its record (`copy_disagreement`). It names the
    column, never a value: values may be personal data, and the record says what is right."""
    if column == "decision_results":
        detail = f"the decision_results rows of seq {seq} are not its record's results"
    elif column.startswith("decision_results."):
        detail = f"the {column[17:]} of a decision_results row of seq {seq} does not agree with its record"
    else:
        detail = f"the {column} column of seq {seq} does not agree with its record"
    return Finding(seq, Tampering.EDITED, detail)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    size: int  # entries in the tree
    rows: int  # decision rows read
    checkpoints: int  # checkpoints whose signature and root were checked
    finding: Finding | None

    @property
    def ok(self) -> bool:
        return self.finding is None


def leaf_of(record: Mapping[str, Any]) -> bytes:
    return merkle.leaf_hash(records.canonical(record))


def tree_finding(
    leaves: Sequence[bytes],
    stored_levels: Mapping[int, Sequence[bytes]],
    head: LogHead,
    checkpoints: Sequence[Checkpoint],
    signed: Callable[[Checkpoint], bool],
) -> Finding | None:
    """The tree held against itself: every stored node against the hash of its leaves, the head
    against the tree, and every checkpoint (oldest first) against its signature and the tree's root
    at its size. A checkpoint that fails means the entries after the one before it were changed.

    Leaves and levels given as `merkle.Hashes` are hashed and compared without a Python object per
    node (what the SQL store passes: a million entries take about a million node hashes)."""
    computed = _computed_levels(leaves)

    def root_at(size: int) -> bytes:
        return merkle.range_hash(0, size, lambda level, index: computed[level][index])

    found = _node_finding(stored_levels, computed)
    if found is None and (head.size != len(leaves) or head.root != root_at(len(leaves))):
        found = Finding(
            min(head.size, len(leaves)) + 1, Tampering.TREE, "the log's head does not match its tree"
        )
    return found or _checkpoint_finding(len(leaves), root_at, checkpoints, signed)


def _computed_levels(leaves: Sequence[bytes]) -> dict[int, Sequence[bytes]]:
    hashes = leaves if isinstance(leaves, merkle.Hashes) else None
    if hashes is None and all(len(leaf) == merkle.HASH_SIZE for leaf in leaves):
        hashes = merkle.Hashes.of(leaves)
    if hashes is None:  # a stored leaf of another length: hashed one by one, as RFC 6962 defines
        return dict(merkle.perfect_levels(leaves))
    return dict(merkle.perfect_hashes(hashes))


def _node_finding(
    stored_levels: Mapping[int, Sequence[bytes]], computed: Mapping[int, Sequence[bytes]]
) -> Finding | None:
    for level in sorted(stored_levels):
        if level == 0:
            continue
        stored, expected = stored_levels[level], computed.get(level, [])
        index = _first_difference(stored, expected)
        if index is not None:
            return Finding(
                (index << level) + 1,
                Tampering.TREE,
                f"the stored node ({level}, {index}) does not hash its leaves",
            )
        if len(stored) != len(expected):
            first = (min(len(stored), len(expected)) << level) + 1
            return Finding(
                first,
                Tampering.TREE,
                f"level {level} of the stored tree has {len(stored)} nodes, not {len(expected)}",
            )
    return None


def _first_difference(stored: Sequence[bytes], expected: Sequence[bytes]) -> int | None:
    """The first index below both lengths where the two differ; None when one begins with the other."""
    common = min(len(stored), len(expected))
    if isinstance(stored, merkle.Hashes) and isinstance(expected, merkle.Hashes):
        return stored[:common].first_difference(expected[:common])
    for index, (have, want) in enumerate(zip(stored, expected, strict=False)):
        if have != want:
            return index
    return None


def _checkpoint_finding(
    size: int,
    root_at: Callable[[int], bytes],
    checkpoints: Sequence[Checkpoint],
    signed: Callable[[Checkpoint], bool],
) -> Finding | None:
    previous = 0
    for checkpoint in sorted(checkpoints, key=lambda c: c.size):
        if not signed(checkpoint):
            return Finding(
                previous + 1,
                Tampering.TREE,
                f"the checkpoint of size {checkpoint.size} is not signed by the log's key",
            )
        if checkpoint.size > size:
            return Finding(
                size + 1,
                Tampering.DELETED,
                f"checkpoint {checkpoint.size} covers entries the tree no longer has",
            )
        if root_at(checkpoint.size) != checkpoint.root:
            return Finding(
                previous + 1,
                Tampering.TREE,
                f"the tree's first {checkpoint.size} entries no longer hash to the root checkpoint {checkpoint.size} signed",
            )
        previous = checkpoint.size
    return None
