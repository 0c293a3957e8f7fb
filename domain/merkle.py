"""The decision log's Merkle tree, as RFC 6962 (and RFC 9162, section 2.1) define it.

    leaf hash  = SHA-256(0x00 || record bytes)
    node hash  = SHA-256(0x01 || left || right)
    MTH(D[n])  = the leaf hash for n = 1; otherwise, with k the largest power of two below n,
                 node hash(MTH(D[0:k]), MTH(D[k:n])); MTH of no leaves is SHA-256 of nothing.

The tree is kept as its perfect subtrees: the hash of every aligned block of 2**level leaves, at
(level, index) for leaves [index * 2**level, (index + 1) * 2**level). Every hash a proof needs is
built from those, and the right edge of the tree (the `Frontier`) is enough to append. Proof shapes
and checks follow the RFCs' algorithms, so any RFC 6962 verifier accepts them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import overload

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

NodeLookup = Callable[[int, int], bytes]
"""The hash of the perfect subtree at (level, index); level 0 is a leaf's hash."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Hashes(Sequence[bytes]):
    """Hashes of HASH_SIZE bytes, end to end in one bytes object: a level of the tree (or a run of leaf
    hashes) without a Python object per hash. A million leaves take 32 MB, and two levels compare with
    one `==` of their bytes."""

    __slots__ = ("data",)

    def __init__(self, data: bytes = b"") -> None:
        if len(data) % HASH_SIZE:
            raise ValueError(f"hashes are {HASH_SIZE} bytes each; {len(data)} bytes are not a number of them")
        self.data = data

    @classmethod
    def of(cls, hashes: Iterable[bytes]) -> Hashes:
        """From separate hashes; ValueError when one is not HASH_SIZE bytes long."""
        found = list(hashes)
        if any(len(h) != HASH_SIZE for h in found):
            raise ValueError(f"every hash is {HASH_SIZE} bytes")
        return cls(b"".join(found))

    def __len__(self) -> int:
        return len(self.data) // HASH_SIZE

    @overload
    def __getitem__(self, index: int) -> bytes: ...

    @overload
    def __getitem__(self, index: slice) -> Hashes: ...

    def __getitem__(self, index: int | slice) -> bytes | Hashes:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step == 1:
                return Hashes(self.data[start * HASH_SIZE : max(start, stop) * HASH_SIZE])
            return Hashes(b"".join(self[i] for i in range(start, stop, step)))
        size = len(self)
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError("hash index out of range")
        return self.data[index * HASH_SIZE : (index + 1) * HASH_SIZE]

    def __iter__(self) -> Iterator[bytes]:
        data = self.data
        return (data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Hashes):
            return self.data == other.data
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal by value, and not immutable by contract

    def __repr__(self) -> str:
        return f"Hashes({len(self)})"

    def first_difference(self, other: Hashes) -> int | None:
        """The first index at which the two differ (the length of the shorter one when it is a prefix
        of the other); None when they are equal."""
        if self.data == other.data:
            return None
        a, b = self.data, other.data
        low, high = 0, min(len(a), len(b)) // HASH_SIZE  # the first `low` hashes agree
        while low < high:  # bisect on equal prefixes: each step compares with one memcmp
            middle = (low + high + 1) // 2
            if a[: middle * HASH_SIZE] == b[: middle * HASH_SIZE]:
                low = middle
            else:
                high = middle - 1
        return low


def leaf_hashes(records: Iterable[bytes]) -> Hashes:
    """The leaf hash of each record, in order: `leaf_hash` in a tight loop."""
    prefix = hashlib.sha256(b"\x00")
    copy = prefix.copy
    hashes: list[bytes] = []
    add = hashes.append
    for record in records:
        h = copy()
        h.update(record)
        add(h.digest())
    return Hashes(b"".join(hashes))


def parents(level: Hashes) -> Hashes:
    """The level above: the node hash of each pair, left to right (an odd last hash has none yet)."""
    data, pair, sha256 = level.data, 2 * HASH_SIZE, hashlib.sha256
    end = len(data) // pair * pair
    return Hashes(b"".join([sha256(b"\x01" + data[i : i + pair]).digest() for i in range(0, end, pair)]))


def _split(size: int) -> int:
    """The largest power of two smaller than `size` (size > 1)."""
    return 1 << ((size - 1).bit_length() - 1)


def range_hash(start: int, end: int, node: NodeLookup) -> bytes:
    """MTH of leaves [start, end), from the stored perfect subtrees."""
    size = end - start
    if size <= 0:
        return EMPTY_ROOT
    if size & (size - 1) == 0 and start % size == 0:
        return node(size.bit_length() - 1, start // size)
    k = _split(size)
    return node_hash(range_hash(start, start + k, node), range_hash(start + k, end, node))


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs make up the audit path of leaf `index` in a tree of `size` (RFC 6962 PATH)."""
    if not 0 <= index < size:
        raise ValueError("the leaf is not in a tree of that size")
    path: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append((start + k, end))
            end = start + k
        else:
            path.append((start, start + k))
            start += k
    path.reverse()  # PATH lists the nodes from the leaf upwards
    return path


def consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs prove that the tree of `new_size` extends the one of `old_size`
    (RFC 6962 PROOF); empty when the sizes are equal or the old tree is empty."""
    if not 0 <= old_size <= new_size:
        raise ValueError("a consistency proof goes from a smaller tree to a larger one")
    if old_size in (0, new_size):
        return []
    proof: list[tuple[int, int]] = []

    def subproof(m: int, start: int, end: int, whole: bool) -> None:
        if m == end - start:
            if not whole:
                proof.append((start, end))
            return
        k = _split(end - start)
        if m <= k:
            subproof(m, start, start + k, whole)
            proof.append((start + k, end))
        else:
            subproof(m - k, start + k, end, False)
            proof.append((start, start + k))

    subproof(old_size, 0, new_size, True)
    return proof


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162, 2.1.3.2: does `path` lead from the leaf hash at `index` to `root` of a tree of `size`?"""
    if not 0 <= index < size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162, 2.1.4.2: does `proof` show the tree of `new_root` only appended to the one of `old_root`?"""
    if not 0 <= old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    if old_size == 0 or not proof:
        return old_size == 0 and not proof
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself a node of the new tree
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root


@dataclass(slots=True)
class Frontier:
    """The right edge of a tree: the root of each perfect subtree its size is made of, by level.

    It is all an append needs, and the root of the whole tree folds out of it; the log keeps it in
    its head row. As bytes: HASH_SIZE bytes per level up to the highest one, zeros where the size
    has no subtree of that level.
    """

    size: int = 0
    levels: list[bytes | None] = field(default_factory=list)

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add a leaf hash; returns the perfect subtrees it completes, as (level, index, hash)."""
        made = []
        carry, level, index = leaf, 0, self.size
        while level < len(self.levels) and self.levels[level] is not None:
            left = self.levels[level]
            assert left is not None  # noqa: S101 - checked in the loop's condition
            carry = node_hash(left, carry)
            self.levels[level] = None
            level += 1
            index >>= 1
            made.append((level, index, carry))
        if level == len(self.levels):
            self.levels.append(None)
        self.levels[level] = carry
        self.size += 1
        return made

    def root(self) -> bytes:
        found = [h for h in self.levels if h is not None]
        if not found:
            return EMPTY_ROOT
        root = found[0]
        for higher in found[1:]:
            root = node_hash(higher, root)
        return root

    def to_bytes(self) -> bytes:
        return b"".join(h if h is not None else bytes(HASH_SIZE) for h in self.levels)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> Frontier:
        levels: list[bytes | None] = []
        for level in range(len(data) // HASH_SIZE):
            levels.append(data[level * HASH_SIZE : (level + 1) * HASH_SIZE] if size >> level & 1 else None)
        return cls(size, levels)


def perfect_levels(leaves: Sequence[bytes]) -> Iterator[tuple[int, list[bytes]]]:
    """Every level of perfect subtrees over `leaves`, from the leaves up: (level, hashes by index)."""
    level, current = 0, list(leaves)
    yield level, current
    while len(current) > 1:
        current = [node_hash(current[i], current[i + 1]) for i in range(0, len(current) - 1, 2)]
        level += 1
        yield level, current


def perfect_hashes(leaves: Hashes) -> Iterator[tuple[int, Hashes]]:
    """`perfect_levels` over leaf hashes held as `Hashes`, each level as `Hashes`: a million leaves
    take a million node hashes and no Python object per node."""
    level, current = 0, leaves
    yield level, current
    while len(current) > 1:
        current = parents(current)
        level += 1
        yield level, current


def root_of(leaves: Iterable[bytes]) -> bytes:
    frontier = Frontier()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()
