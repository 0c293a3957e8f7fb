"""The distribution: one import package `idgate`, and nothing installed under the layers' bare names."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("domain", "adapters", "policies", "entrypoints", "sandbox")


def test_the_wheel_installs_idgate_and_nothing_else(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(ROOT)],
        check=True,
        capture_output=True,
    )
    [wheel] = dist.glob("idgate-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"idgate", wheel.name.split("-py")[0] + ".dist-info"}
    for expected in (
        "idgate/py.typed",
        "idgate/domain/age.py",
        "idgate/sandbox/persons.json",
        "idgate/sandbox/certify.html",
        "idgate/entrypoints/demo.html",
        "idgate/policies/builtin/age_limit.py",
    ):
        assert expected in names
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    assert "[idgate.policies]\nage_limit = idgate.policies.builtin.age_limit" in entry_points

    # The domain needs only the standard library, so the wheel alone (no dependencies) can import it.
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True, capture_output=True
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = (
        "import importlib.util, idgate.domain, sys\n"
        "print(idgate.domain.__file__)\n"
        f"print([m for m in {LAYERS!r} if importlib.util.find_spec(m)])\n"
    )
    run = subprocess.run([python, "-c", probe], cwd=elsewhere, check=True, capture_output=True, text=True)
    location, stray = run.stdout.splitlines()
    assert "site-packages/idgate/domain/__init__.py" in location
    assert stray == "[]"
