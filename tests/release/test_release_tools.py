"""tools/release.py: one version everywhere, and the built-artefact checks fail on what they must."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_release(root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("mmembed_release_tools", ROOT / "tools" / "release.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.ROOT = root
    module.VERSION_FILE = root / "VERSION"
    module.CORE_INIT = root / "core" / "src" / "mmembed" / "__init__.py"
    return module


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A copy of what the release tooling reads: VERSION, LICENSEs, pyprojects, mmembed/__init__.py."""
    copy = tmp_path / "ws"
    for name in ("VERSION", "LICENSE"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, copy / name)
    for pyproject in [
        ROOT / "core" / "pyproject.toml",
        *ROOT.glob("packages/*/pyproject.toml"),
        *ROOT.glob("integrations/*/pyproject.toml"),
    ]:
        target = copy / pyproject.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(pyproject, target)
        shutil.copy(pyproject.parent / "LICENSE", target.parent / "LICENSE")
    init = copy / "core" / "src" / "mmembed" / "__init__.py"
    init.parent.mkdir(parents=True)
    shutil.copy(ROOT / "core" / "src" / "mmembed" / "__init__.py", init)
    return copy


def test_the_repository_agrees_with_its_version_file() -> None:
    assert load_release(ROOT).check_versions() == []


def test_a_distribution_out_of_step_is_named(workspace: Path) -> None:
    release = load_release(workspace)
    pyproject = workspace / "integrations" / "haystack" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"mmembed-core>=0.1,<0.2"', '"mmembed-core"'))
    (workspace / "core" / "LICENSE").write_text("not the licence")
    problems = release.check_versions()
    assert any("integrations/haystack/pyproject.toml" in p and "mmembed-core" in p for p in problems)
    assert any("core/LICENSE" in p for p in problems)


def test_set_version_moves_every_distribution_and_pin_together(workspace: Path) -> None:
    release = load_release(workspace)
    release.set_version("0.2.0")
    assert release.check_versions() == []
    assert (
        '"mmembed-core>=0.2,<0.3"'
        in (workspace / "integrations" / "langchain" / "pyproject.toml").read_text()
    )
    assert '__version__ = "0.2.0"' in (workspace / "core" / "src" / "mmembed" / "__init__.py").read_text()
    with pytest.raises(SystemExit, match=r"not a MAJOR\.MINOR\.PATCH"):
        release.set_version("1.0")


def _wheel(path: Path, files: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)


def test_check_dists_names_a_wheel_without_py_typed_with_tests_and_relative_links(workspace: Path) -> None:
    release = load_release(workspace)
    dist = workspace / "dist"
    metadata = (
        "Metadata-Version: 2.4\nName: mmembed-core\nRequires-Python: >=3.11\nAuthor: x\n"
        "Project-URL: Source, https://example.org\nClassifier: Typing :: Typed\n\n"
        "See [the guide](../docs/guide.md). " + "text " * 200
    )
    files = {
        "mmembed/__init__.py": "",
        "mmembed/tests/test_x.py": "",
        "mmembed_core-0.1.0.dist-info/METADATA": metadata,
        "mmembed_core-0.1.0.dist-info/licenses/LICENSE": "licence",
    }
    _wheel(dist / "mmembed-core" / "mmembed_core-0.1.0-py3-none-any.whl", files)
    _wheel(
        dist / "mmembed-core" / "direct" / "mmembed_core-0.1.0-py3-none-any.whl", {**files, "extra.txt": ""}
    )
    with tarfile.open(dist / "mmembed-core" / "mmembed_core-0.1.0.tar.gz", "w:gz") as sdist:
        info = tarfile.TarInfo("mmembed_core-0.1.0/LICENSE")
        sdist.addfile(info)
    problems = [p for p in release.check_dists(dist) if p.startswith("mmembed-core:")]
    assert any("differs from the direct wheel" in p and "extra.txt" in p for p in problems)
    assert any("mmembed/py.typed is missing" in p for p in problems)
    assert any("test files in the wheel" in p for p in problems)
    assert any("relative links" in p for p in problems)
