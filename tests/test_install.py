"""The install itself: every module imports, and the venv holds exactly the locked versions.

A broken binary wheel (torchaudio 2.11.1 beside torch 2.11.0 failed with "Could not load this
library: libtorchaudio.so") then fails one test named after the module, not a stage halfway
through a run. The lock is ``constraints.txt`` (``make lock`` writes it; the Makefile installs
through it).
"""

from __future__ import annotations

import importlib
import importlib.metadata as metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"


def _modules() -> list[str]:
    names = []
    for package in ("dvcli", "stages"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _locked() -> dict[str, str]:
    """``{canonical name: version}`` for the lock's lines whose markers hold on this interpreter."""
    pins = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate():
            continue
        (spec,) = req.specifier
        assert spec.operator == "==", f"{LOCK.name}: {line!r} is not an exact pin"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def test_the_walk_finds_every_package() -> None:
    modules = _modules()
    assert {"dvcli", "dvcli.cli", "dvcli.models", "stages", "stages.demo"} <= set(modules)
    assert len(modules) >= 90


@pytest.mark.parametrize("module", _modules())
def test_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_lock_pins_the_gpu_images_torch() -> None:
    pins = _locked()
    assert pins["torch"] == "2.11.0" and pins["torchaudio"] == "2.11.0"


def test_installed_versions_are_the_locked_ones() -> None:
    """Every installed distribution the lock names has the locked version (``make install`` drifted otherwise)."""
    pins = _locked()
    drift = []
    for dist in metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        if name in pins and dist.version != pins[name]:
            drift.append(f"{name} {dist.version} (locked {pins[name]})")
    assert not drift, f"installed versions differ from {LOCK.name}: {drift}; rm -rf .venv && make test"


def test_the_lock_covers_every_declared_dependency() -> None:
    """Each of dv's own requirements (every extra included) has a pin, so no install resolves freely."""
    pins = _locked()
    declared = [Requirement(r) for r in metadata.requires("dino-vits") or []]
    assert declared, "dino-vits is not installed: pip install -e ."
    missing = [str(r) for r in declared if canonicalize_name(r.name) not in pins]
    assert not missing, f"{LOCK.name} lacks {missing}: run make lock"
    # ... and the pins satisfy what pyproject.toml asks for.
    unmet = [
        f"{r} (locked {pins[canonicalize_name(r.name)]})"
        for r in declared
        if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)
    ]
    assert not unmet, f"{LOCK.name} contradicts pyproject.toml: {unmet}; run make lock"


def test_dv_reports_a_broken_install_in_one_line(tmp_path: Path) -> None:
    """A compiled dependency that fails to load gives one line and exit 2 from ``dv``, no traceback."""
    import subprocess
    import sys

    # A stand-in for a wheel whose shared library does not load, found before the real torchaudio.
    fake = tmp_path / "site" / "torchaudio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise OSError("Could not load this library: /x/libtorchaudio.so")\n')
    env = {"PYTHONPATH": f"{tmp_path / 'site'}:{ROOT}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "dvcli", "--help"], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "libtorchaudio.so" in proc.stderr and "make install" in proc.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "dvcli", "--version"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=tmp_path,
        timeout=120,
    )
    assert ok.returncode == 0 and ok.stdout.strip(), ok.stderr
