"""docs/verify_decision_log.py, the auditors' own verifier, against a real idgate on both databases, and
docs/audit-log.md held to idgate's code: the worked example, the answers' shapes, the tree algorithms.

The script runs as an auditor would run it: in its own interpreter (`-I`, so neither the environment
nor the current folder adds to its imports), from a folder outside the repository, on files
downloaded over HTTP.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from idgate.adapters.crypto import CheckpointSigner, SigningKeyFile
from idgate.domain import Role, auditing, merkle, records, services
from idgate.entrypoints.bootstrap import operations
from idgate.entrypoints.settings import Settings
from tests.conftest import Sandbox, SettingsFactory, prepared_certification, running_api

ROOT = Path(__file__).resolve().parents[2]
VERIFIER = ROOT / "docs" / "verify_decision_log.py"
GUIDE = (ROOT / "docs" / "audit-log.md").read_text("utf-8")
LOG_NAME = "idgate/decisions"

# Six decisions (allowed adults, denied minors, an adult denied as a duplicate), checkpoints after the
# third and the sixth; the inclusion proof is of seq 5, the consistency proof from 3 to 6.
PEOPLE = ["adult", "minor", "leap-day", "adult", "minor", "turns-19-today"]
CHECKPOINT_AFTER = {3, 6}
PROVEN_SEQ = 5


@dataclass(frozen=True)
class Auditor:
    """What an auditor downloaded, as files in a folder of their own, and what the API answered."""

    folder: Path
    answers: dict[str, Any]  # file name -> parsed JSON answer

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", str(VERIFIER), *args],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def verify(
        self, *more: str, export: str = "decisions.jsonl", checkpoint: str = "checkpoints.json"
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            export, "--checkpoint", checkpoint, "--public-key", "log-key.pem", "--log-name", LOG_NAME, *more
        )

    def write(self, name: str, content: str | dict[str, Any]) -> str:
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        (self.folder / name).write_text(text, "utf-8")
        return name


def proofs(inclusion: str = "proof.json", consistency: str = "consistency.json") -> list[str]:
    return ["--inclusion", inclusion, "--consistency", consistency]


async def sign_checkpoint(settings: Settings) -> None:
    """What `idgate decisions checkpoint` does."""
    async with operations(settings) as ops:
        assert await auditing.make_checkpoint(log=ops.log, signer=ops.signer(), clock=ops.clock) is not None


@pytest.fixture
async def auditor(tmp_path: Path, sandbox: Sandbox, settings_for: SettingsFactory) -> Auditor:
    # No checkpoint of the server's own while the test runs: the test decides where they fall.
    settings = settings_for(sandbox, audit={"checkpoint_interval_seconds": 3600})
    async with operations(settings) as ops:
        token = await services.create_token("auditor-kim", Role.AUDITOR, tokens=ops.tokens)
    headers = {"Authorization": f"Bearer {token}"}
    folder = tmp_path / "auditor"
    folder.mkdir()
    downloaded = Auditor(folder, {})
    async with running_api(settings) as api:
        for n, person in enumerate(PEOPLE, start=1):
            body = await prepared_certification(api, sandbox, person, subject=f"acct-{n}")
            assert (await api.post("/certifications", json=body)).status_code == 200
            if n in CHECKPOINT_AFTER:
                await sign_checkpoint(settings)

        async def download(name: str, path: str, **params: str | int) -> str:
            answer = await api.get(path, params=params, headers=headers)
            assert answer.status_code == 200, answer.text
            (folder / name).write_bytes(answer.content)
            if name.endswith(".json"):
                downloaded.answers[name] = answer.json()
            return answer.text

        await download("checkpoints.json", "/decisions/checkpoints")
        export = await download("decisions.jsonl", "/decisions/export", format="jsonl")
        proven = json.loads(export.splitlines()[PROVEN_SEQ - 1])["record"]["decision_id"]
        await download("proof.json", f"/decisions/{proven}")
        await download("consistency.json", "/decisions/consistency", old=3, new=6)
        verified = await api.post("/decisions/verify", headers=headers)
        downloaded.answers["verify.json"] = verified.json()
    served = downloaded.answers["checkpoints.json"]
    # The key the operator hands over out of band (`idgate decisions public-key`) is the one served.
    handed = SigningKeyFile(Path(settings.audit.signing_key_path)).load(LOG_NAME).public_key_pem()
    assert served["public_key"] == handed
    downloaded.write("log-key.pem", handed)
    downloaded.write("newest.note", served["checkpoints"][0]["note"])
    return downloaded


def changed(export: str, seq: int) -> str:
    """The export with one character of one record's subject changed."""
    lines = export.splitlines(keepends=True)
    at = lines[seq - 1].index(f'"acct-{seq}"') + 1
    lines[seq - 1] = lines[seq - 1][:at] + "A" + lines[seq - 1][at + 1 :]
    return "".join(lines)


async def test_the_log_idgate_serves_verifies_with_its_checkpoints_and_proofs(auditor: Auditor) -> None:
    exported = (auditor.folder / "decisions.jsonl").read_text("utf-8").splitlines()
    verdicts = [json.loads(line)["record"]["verdict"] for line in exported]
    assert verdicts == ["allow", "deny", "allow", "deny", "deny", "allow"]
    assert [c["size"] for c in auditor.answers["checkpoints.json"]["checkpoints"]] == [6, 3]
    done = auditor.verify(*proofs())
    assert done.returncode == 0, done.stderr
    root = auditor.answers["checkpoints.json"]["checkpoints"][0]["root"]
    assert done.stdout == (
        f"OK: 6 records, seq 1..6; the first 6 hash to root {root}, signed for {LOG_NAME}; "
        "1 inclusion and 1 consistency proofs hold\n"
    )
    # The newest note alone vouches for everything, the proof's own checkpoint included.
    alone = auditor.verify("--inclusion", "proof.json", checkpoint="newest.note")
    assert alone.returncode == 0, alone.stderr
    # A consistency proof needs both its roots signed; tree 3's is not among these checkpoints.
    unsigned = auditor.verify("--consistency", "consistency.json", checkpoint="newest.note")
    assert (unsigned.returncode, unsigned.stderr.split(":")[0]) == (1, "FAIL seq 1..3")

    # What docs/audit-log.md shows of each answer has the answer's fields.
    for heading, name in [
        ("## Inclusion proofs", "proof.json"),
        ("## Consistency proofs", "consistency.json"),
        ("`GET /decisions/checkpoints?limit=N`", "checkpoints.json"),
        ("## What `idgate decisions verify` checks", "verify.json"),
    ]:
        shown, served = json.loads(fenced(heading, "json")), auditor.answers[name]
        assert set(shown) == set(served), name
        if "proof" in served:
            assert set(shown["proof"]) == set(served["proof"])
        if isinstance(served.get("checkpoints"), list):  # POST /decisions/verify's is a count
            assert set(shown["checkpoints"][0]) == set(served["checkpoints"][0])


async def test_one_character_changed_in_one_record_is_named(auditor: Auditor) -> None:
    export = (auditor.folder / "decisions.jsonl").read_text("utf-8")
    for seq, named in [(4, "seq 4"), (5, "seq 5"), (2, "seq 1..2")]:
        done = auditor.verify(*proofs(), export=auditor.write(f"changed-{seq}.jsonl", changed(export, seq)))
        assert (done.returncode, done.stderr.split(":")[0]) == (1, f"FAIL {named}"), done.stderr
    # Without proofs, two consecutive checkpoints pin it down to the entries between them.
    done = auditor.verify(export="changed-5.jsonl")
    assert done.stderr == "FAIL seq 4..6: not the record the log signed\n"
    # A line taken out: the seqs no longer run without a gap.
    lines = export.splitlines(keepends=True)
    done = auditor.verify(export=auditor.write("gap.jsonl", "".join(lines[:2] + lines[3:])))
    assert (done.returncode, done.stderr.split(":")[0]) == (1, "FAIL seq 3")


async def test_a_checkpoint_signed_by_another_key_or_a_tampered_proof_is_refused(auditor: Auditor) -> None:
    newest = auditor.answers["checkpoints.json"]["checkpoints"][0]
    forger = CheckpointSigner(LOG_NAME, Ed25519PrivateKey.generate())
    forged = forger.sign(newest["size"], bytes.fromhex(newest["root"]), datetime.now(UTC)).note
    done = auditor.verify(checkpoint=auditor.write("forged.note", forged))
    assert done.returncode == 1
    assert done.stderr.startswith(f"FAIL checkpoint 6: not signed as {LOG_NAME} by key ")
    # The genuine note under a key that is not the log's fails alike.
    auditor.write("other-key.pem", forger.public_key_pem())
    other = auditor.run("decisions.jsonl", "--checkpoint", "newest.note", "--public-key", "other-key.pem")
    assert (other.returncode, other.stderr.split(":")[0]) == (1, "FAIL checkpoint 6")

    def flipped(hashes: list[str]) -> None:
        hashes[0] = f"{int(hashes[0][0], 16) ^ 1:x}{hashes[0][1:]}"

    inclusion = auditor.answers["proof.json"]
    flipped(inclusion["proof"]["hashes"])
    done = auditor.verify(*proofs(inclusion=auditor.write("tampered-proof.json", inclusion)))
    assert done.stderr == (
        f"FAIL seq {PROVEN_SEQ}: the proof's hashes do not lead to its root of tree size 6\n"
    )

    consistency = auditor.answers["consistency.json"]
    flipped(consistency["hashes"])  # the hash of leaf 2, which rebuilds the old root and the new one
    done = auditor.verify(*proofs(consistency=auditor.write("tampered-consistency.json", consistency)))
    assert done.stderr == "FAIL seq 1..3: the proof's hashes do not lead to its root of tree size 3\n"


# ---- the guide and the script against idgate's own code, without a server ------------------------
def fenced(after: str, language: str) -> str:
    """The first ```language block after `after` in docs/audit-log.md."""
    found = re.search(rf"```{language}\n(.*?)\n```", GUIDE[GUIDE.index(after) :], re.DOTALL)
    assert found is not None, f"no {language} block after {after!r} in docs/audit-log.md"
    return found.group(1)


def verifier_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_decision_log", VERIFIER)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_worked_example_is_what_idgate_hashes() -> None:
    record = json.loads(fenced("### A worked example", "json"))
    canonical = fenced("Its canonical bytes are", "text").encode()
    leaf = re.search(r"leaf hash: ([0-9a-f]{64})", GUIDE)
    root = re.search(r"root of 3: ([0-9a-f]{64})", GUIDE)
    size = re.search(r"this one line of (\d+) bytes", GUIDE)
    assert leaf is not None
    assert root is not None
    assert size is not None
    assert records.record_of(records.decision_of(record), record["identity_ref"]) == record  # all fields
    assert records.canonical(record) == canonical
    assert len(canonical) == int(size.group(1))
    assert merkle.leaf_hash(canonical).hex() == leaf.group(1)
    assert verifier_module().leaf_of(record).hex() == leaf.group(1)
    assert merkle.root_of([merkle.leaf_hash(canonical)] * 3).hex() == root.group(1)


def test_the_verifier_imports_only_the_standard_library_and_cryptography() -> None:
    tree = ast.parse(VERIFIER.read_text("utf-8"))
    imported = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    outside = {name for name in imported if name.split(".")[0] not in sys.stdlib_module_names}
    assert outside, "the verifier checks signatures with cryptography"
    assert {name.split(".")[0] for name in outside} == {"cryptography"}


def test_the_verifiers_tree_is_idgates_for_every_small_size() -> None:
    verifier = verifier_module()
    leaves = [os.urandom(32) for _ in range(33)]
    stored = dict(merkle.perfect_levels(leaves))

    def node(level: int, index: int) -> bytes:
        return stored[level][index]

    exported = verifier.perfect_subtrees(leaves)
    for new in range(1, len(leaves) + 1):
        root = merkle.range_hash(0, new, node)
        assert verifier.compose(0, new, exported) == root
        for index in range(new):
            assert verifier.inclusion_spans(index, new) == merkle.inclusion_ranges(index, new)
        for old in range(1, new + 1):
            assert verifier.consistency_spans(old, new) == merkle.consistency_ranges(old, new)
