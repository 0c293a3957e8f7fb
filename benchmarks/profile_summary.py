"""Where a process spent its time, from a py-spy raw (folded) profile: the share of samples whose
innermost frame lies in each library, and the share spent anywhere below a few frames of interest.

    .venv/bin/python -m benchmarks.profile_summary /tmp/idgate.prof
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# (label, regular expression on a frame's file) — the first that matches the innermost frame wins.
LIBRARIES = [
    ("aiosqlite", r"aiosqlite"),
    ("sqlite3 (C calls)", r"sqlite3/"),
    ("sqlalchemy / sqlmodel", r"sqlalchemy|sqlmodel"),
    ("pydantic", r"pydantic"),
    ("httpx / httpcore / h11", r"httpx|httpcore|h11"),
    ("litestar", r"litestar"),
    ("uvicorn / httptools", r"uvicorn|httptools"),
    ("asyncio / uvloop", r"asyncio|uvloop"),
    ("threading / queue", r"threading|queue\\.py|concurrent"),
    ("cryptography", r"cryptography"),
    ("msgspec / json", r"msgspec|json"),
    ("structlog / logging", r"structlog|logging"),
    ("idgate", r"idgate|/work/main/(domain|adapters|policies|entrypoints)"),
]


def summarize(path: Path) -> None:
    leaf: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        innermost = frames[-1]
        label = next((name for name, pattern in LIBRARIES if re.search(pattern, innermost)), "other")
        if "selectors.py" in innermost or "aiosqlite/core.py:59" in innermost:
            label = "idle (waiting for work)"  # epoll, and aiosqlite's threads blocked on their queues
        leaf[label] += samples
    print(f"{total:,} samples; innermost frame by library:")
    for label, samples in leaf.most_common():
        print(f"  {label:<26} {samples / total:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path)
    summarize(parser.parse_args().profile)


if __name__ == "__main__":
    main()
