"""Check an export of idgate's decision log against its signed checkpoints, without idgate.

    python verify_decision_log.py EXPORT.jsonl --checkpoint NOTE --public-key KEY.pem
        [--log-name NAME] [--inclusion PROOF.json ...] [--consistency PROOF.json ...]

Standard library and `cryptography` (Ed25519) only; it knows nothing but what docs/audit-log.md
specifies. Exit 0 and "OK ..." when everything holds; otherwise exit 1 and "FAIL ..." naming the first
bad seq, or the first run of seqs that the checkpoints and proofs pin a change down to.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

Span = tuple[int, int]  # the leaves [start, end), from 0: seq s is leaf s - 1


def fail(where: str, message: str) -> NoReturn:
    sys.exit(f"FAIL {where}: {message}")


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def nfc(value: Any) -> Any:
    if isinstance(value, float):
        raise TypeError("format 1 holds no floats")
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [nfc(item) for item in value]
    return {key: nfc(item) for key, item in value.items()} if isinstance(value, dict) else value


def leaf_of(record: dict[str, Any]) -> bytes:
    text = json.dumps(nfc(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return sha256(b"\x00" + text.encode("utf-8"))


def node(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


def split(size: int) -> int:
    return 1 << ((size - 1).bit_length() - 1)  # the largest power of two below size


def compose(start: int, end: int, known: Callable[[int, int], bytes | None]) -> bytes:
    """The RFC 6962 hash of [start, end) from known hashes of spans inside it (KeyError: one is missing)."""
    if (found := known(start, end)) is not None:
        return found
    if end - start < 2:
        raise KeyError((start, end))
    k = split(end - start)
    return node(compose(start, start + k, known), compose(start + k, end, known))


def perfect_subtrees(leaves: list[bytes]) -> Callable[[int, int], bytes | None]:
    """The export's hash of every aligned power-of-two span, which is all `compose` needs for any span."""
    levels = [leaves]
    while len(levels[-1]) > 1:
        below = levels[-1]
        levels.append([node(below[i], below[i + 1]) for i in range(0, len(below) - 1, 2)])

    def lookup(start: int, end: int) -> bytes | None:
        size = end - start
        aligned = size > 0 and size & (size - 1) == 0 and start % size == 0
        return levels[size.bit_length() - 1][start // size] if aligned else None

    return lookup


def inclusion_spans(index: int, size: int) -> list[Span]:
    """What an inclusion proof's hashes stand for, from the leaf upwards (RFC 6962 PATH)."""
    spans, start, end = [], 0, size
    while end - start > 1:
        k = split(end - start)
        left = index < start + k
        spans.append((start + k, end) if left else (start, start + k))
        start, end = (start, start + k) if left else (start + k, end)
    return spans[::-1]


def consistency_spans(old: int, new: int) -> list[Span]:
    """What a consistency proof's hashes stand for, in order (RFC 6962 SUBPROOF)."""
    spans: list[Span] = []
    start, end, whole = 0, new, True
    while end != old:  # RFC 6962's m == n, with m = old - start and n = end - start
        k = split(end - start)
        spans.append((start + k, end) if old - start <= k else (start, start + k))
        start, end, whole = (start, start + k, whole) if old - start <= k else (start + k, end, False)
    return ([] if whole else [(start, end)]) + spans[::-1]


def read_export(path: str) -> list[bytes]:
    leaves = []
    with open(path, "rb") as lines:
        for seq, line in enumerate(lines, start=1):
            try:
                entry = json.loads(line)
                if entry["seq"] != seq:
                    fail(f"seq {seq}", f"line {seq} holds seq {entry['seq']}: an entry is missing or moved")
                if entry["record"]["format"] != 1:
                    fail(f"seq {seq}", "not a format-1 record")
                leaves.append(leaf_of(entry["record"]))
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                fail(f"seq {seq}", f"line {seq} is not a format-1 export entry ({error!r})")
    return leaves


class Evidence:
    """What the log's key vouches for: roots by tree size, and the hashes of the spans they fix."""

    def __init__(self, key: Ed25519PublicKey, name: str | None) -> None:
        self.key, self.name, self.signed, self.known = key, name, dict[int, bytes](), dict[Span, bytes]()
        self.raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def key_id(self, name: str) -> bytes:
        return sha256(name.encode() + b"\n\x01" + self.raw)[:4]  # signed notes' Ed25519 key id

    def note(self, note: str) -> None:
        """A checkpoint: a C2SP signed note that this key signed."""
        text, blank, signatures = note.partition("\n\n")
        lines = text.split("\n")
        try:
            origin, size, root = lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True)
        except (IndexError, ValueError):
            fail("checkpoint", "not a C2SP signed note of a checkpoint")
        if (
            not blank
            or not lines[1].isdigit()
            or size < 1
            or self.name not in (None, origin)
            or len(root) != 32
        ):
            fail(f"checkpoint {size}", f"not a checkpoint of log {self.name or origin}")
        for line in signatures.splitlines():
            dash, signer, blob = [*line.split(" "), "", ""][:3]
            try:
                signature = base64.b64decode(blob, validate=True)
                if dash == "\u2014" and signer == origin and signature[:4] == self.key_id(origin):
                    self.key.verify(signature[4:], (text + "\n").encode())
                    break
            except (ValueError, InvalidSignature):
                continue
        else:
            fail(f"checkpoint {size}", f"not signed as {origin} by key {self.key_id(origin).hex()}")
        if self.signed.setdefault(size, root) != root:
            fail(f"checkpoint {size}", "two signed checkpoints of this size differ: the log was forked")
        self.name, self.known[(0, size)] = origin, root

    def proof(self, where: str, size: int, root: bytes, given: dict[Span, bytes]) -> None:
        try:
            composed = compose(0, size, lambda start, end: given.get((start, end)))
        except KeyError:
            composed = None
        if composed != root:
            fail(where, f"the proof's hashes do not lead to its root of tree size {size}")
        if self.signed.get(size) != root:
            fail(where, f"the proof's root of tree size {size} is not one the key signed")
        self.known.update(given)

    def inclusion(self, shown: dict[str, Any]) -> None:
        """GET /decisions/{decision_id}: the record's leaf, in a tree the key signed."""
        seq, proof, leaf = shown["seq"], shown["proof"], leaf_of(shown["record"])
        if proof["leaf_index"] != seq - 1 or proof["leaf_hash"] != leaf.hex():
            fail(f"seq {seq}", "the inclusion proof is not about the record it came with")
        if shown["checkpoint"] is not None:
            self.note(shown["checkpoint"])
        spans = inclusion_spans(seq - 1, proof["tree_size"])
        hashes = [bytes.fromhex(h) for h in proof["hashes"]]
        if len(hashes) != len(spans):
            fail(
                f"seq {seq}", f"an inclusion proof in a tree of {proof['tree_size']} has {len(spans)} hashes"
            )
        given = {(seq - 1, seq): leaf, **dict(zip(spans, hashes, strict=True))}
        self.proof(f"seq {seq}", proof["tree_size"], bytes.fromhex(proof["root"]), given)

    def consistency(self, proof: dict[str, Any]) -> None:
        """GET /decisions/consistency: the tree of new_size only appended to the tree of old_size."""
        old, new, old_root = proof["old_size"], proof["new_size"], bytes.fromhex(proof["old_root"])
        hashes = [bytes.fromhex(h) for h in proof["hashes"]]
        if not 0 < old <= new or len(hashes) != len(spans := consistency_spans(old, new)):
            fail(f"seq {old + 1}..{new}", f"not a consistency proof from tree size {old} to {new}")
        given = dict(zip(spans, hashes, strict=True))
        if old & (old - 1) == 0 or old == new:  # then the proof leaves the old root out: it is a node
            given[(0, old)] = old_root
        self.proof(f"seq 1..{old}", old, old_root, given)
        self.proof(f"seq {old + 1}..{new}", new, bytes.fromhex(proof["new_root"]), given)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("export", help="GET /decisions/export?format=jsonl, unfiltered")
    parser.add_argument(
        "--checkpoint", action="append", required=True, help="a note or GET /decisions/checkpoints"
    )
    parser.add_argument("--public-key", required=True, help="the log's Ed25519 public key, PEM")
    parser.add_argument("--log-name", help="the name every checkpoint must carry")
    parser.add_argument("--inclusion", action="append", default=[], help="GET /decisions/{decision_id}")
    parser.add_argument("--consistency", action="append", default=[], help="GET /decisions/consistency")
    args = parser.parse_args()
    key = serialization.load_pem_public_key(Path(args.public_key).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        fail("public key", "not an Ed25519 key")
    evidence = Evidence(key, args.log_name)
    for path in args.checkpoint:
        text = Path(path).read_text("utf-8")
        for note in (
            [c["note"] for c in json.loads(text)["checkpoints"]] if text.lstrip()[:1] == "{" else [text]
        ):
            evidence.note(note)
    leaves = read_export(args.export)
    for path in args.inclusion:
        evidence.inclusion(json.loads(Path(path).read_text("utf-8")))
    for path in args.consistency:
        evidence.consistency(json.loads(Path(path).read_text("utf-8")))
    if (size := max(evidence.signed)) > len(leaves):
        fail(f"seq {len(leaves) + 1}", f"the export ends before it, yet the key signed {size} entries")

    # Every span the key vouches for must hash alike from the export. Of those that do not, the one
    # that ends first holds the first changed record; spans that do hash alike trim it from both sides.
    exported = perfect_subtrees(leaves)
    wrong = {span for span, h in evidence.known.items() if compose(*span, exported) != h}
    if wrong:
        start, end = min(wrong, key=lambda span: (span[1], span[1] - span[0]))
        for a, b in sorted(evidence.known.keys() - wrong):
            start = b if a <= start < b < end else start
        for a, b in sorted(evidence.known.keys() - wrong, key=lambda span: -span[1]):
            end = a if start < a < end <= b else end
        fail(f"seq {end}" if end - start == 1 else f"seq {start + 1}..{end}", "not the record the log signed")
    print(
        f"OK: {len(leaves)} records, seq 1..{len(leaves)}; the first {size} hash to root "
        f"{evidence.signed[size].hex()}, signed for {evidence.name}; "
        f"{len(args.inclusion)} inclusion and {len(args.consistency)} consistency proofs hold"
    )


if __name__ == "__main__":
    main()
