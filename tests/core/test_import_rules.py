"""The import rules of docs/architecture.md hold: `lint-imports` checks the contracts in the
root pyproject.toml (layers, core standing alone, no circles) against the real source tree.

A second test runs the same contracts over a small package that breaks each of them, so the
check is known to fail when a rule is broken (and not just to pass)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"


def test_import_linter_is_installed() -> None:
    # Not skipped when missing: requirements/dev.txt installs it, and without it the rules go unchecked.
    assert importlib.util.find_spec("importlinter") is not None, "pip install -r requirements/dev.txt"


def _contracts() -> list[dict[str, object]]:
    config = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    return list(config["tool"]["importlinter"]["contracts"])


def _lint_imports(config: Path, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", code, "--config", str(config), "--no-cache", "--no-logo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_core_keeps_its_import_rules() -> None:
    contracts = _contracts()
    assert {c["id"] for c in contracts} >= {"layers", "core-stands-alone", "no-circles"}
    run = _lint_imports(PYPROJECT, ROOT, ROOT / "core" / "src")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in run.stdout, run.stdout


def test_the_rules_catch_an_upward_import_a_plugin_import_and_a_circle(tmp_path: Path) -> None:
    """A fake ``mmembed`` with every layer, where ``types`` imports ``cli`` (upward),
    ``scoring`` imports ``mmembed_qdrant`` (a package) and two index modules import each other."""
    layers = [
        "cli",
        "finetune",
        "serve",
        "evaluate",
        "pipeline",
        "retrieve",
        "encoders",
        "loaders",
        "scoring",
        "explain",
    ]
    layers += ["pixels", "fingerprint"]
    package = tmp_path / "src" / "mmembed"
    (package / "index").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for name in layers:
        (package / f"{name}.py").write_text("")
    (package / "types.py").write_text("from mmembed import cli\n")
    (package / "scoring.py").write_text("import mmembed_qdrant\n")
    (package / "index" / "__init__.py").write_text("")
    (package / "index" / "local.py").write_text("from mmembed.index import shared\n")
    (package / "index" / "shared.py").write_text("from mmembed.index import local\n")
    config = tmp_path / "pyproject.toml"
    section = PYPROJECT.read_text(encoding="utf-8").split("[tool.importlinter]", 1)[1]
    config.write_text("[tool.importlinter]" + section, encoding="utf-8")

    run = _lint_imports(config, tmp_path, tmp_path / "src")
    assert run.returncode != 0
    assert re.search(r"Contracts: 0 kept, 3 broken\.", run.stdout), run.stdout
    assert "mmembed.types -> mmembed.cli" in run.stdout
    assert "mmembed.scoring -> mmembed_qdrant" in run.stdout
