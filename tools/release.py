"""Release tooling: one version for every distribution, and checks of the built artefacts.

    python tools/release.py versions              # every distribution agrees with VERSION
    python tools/release.py set-version 0.2.0     # write VERSION into every distribution
    python tools/release.py build dist/           # sdist + wheel from it + wheel from the tree, each
    python tools/release.py check-dists dist/     # check what `build` wrote (`make release-check`)

``VERSION`` (repository root) is the one place the version lives: each distribution's
``pyproject.toml``, ``mmembed.__version__`` and the ``mmembed-core`` / ``mmembed-testing``
pins of the other distributions (``>=MAJOR.MINOR,<MAJOR.MINOR+1``) follow it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VERSION_FILE = ROOT / "VERSION"
CORE_INIT = ROOT / "core" / "src" / "mmembed" / "__init__.py"
INTERNAL = ("mmembed-core", "mmembed-testing")
VERSION_RE = re.compile(r"^\d+\.\d+\.\d+$")


def distributions() -> list[Path]:
    """Folders of every published distribution (each has a pyproject.toml)."""
    folders = [
        ROOT / "core",
        *sorted((ROOT / "packages").glob("*")),
        *sorted((ROOT / "integrations").glob("*")),
    ]
    return [f for f in folders if (f / "pyproject.toml").is_file()]


def read_version() -> str:
    version = VERSION_FILE.read_text().strip()
    if not VERSION_RE.match(version):
        raise SystemExit(f"{VERSION_FILE}: {version!r} is not a MAJOR.MINOR.PATCH version")
    return version


def internal_range(version: str) -> str:
    major, minor, _ = (int(part) for part in version.split("."))
    return f">={major}.{minor},<{major}.{minor + 1}"


def check_versions() -> list[str]:
    """Every disagreement with VERSION, as readable lines (empty when all agree)."""
    version = read_version()
    wanted = internal_range(version)
    problems = []
    for folder in distributions():
        project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
        where = folder.relative_to(ROOT) / "pyproject.toml"
        if project["version"] != version:
            problems.append(f"{where}: version {project['version']} != VERSION {version}")
        for requirement in project.get("dependencies", []):
            name = re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0]
            if name in INTERNAL and requirement != f"{name}{wanted}":
                problems.append(f"{where}: {requirement!r} should be '{name}{wanted}'")
        if (
            not (folder / "LICENSE").is_file()
            or (folder / "LICENSE").read_bytes() != (ROOT / "LICENSE").read_bytes()
        ):
            problems.append(f"{folder.relative_to(ROOT)}/LICENSE is missing or differs from the root LICENSE")
    init_version = re.search(r'^__version__ = "([^"]+)"', CORE_INIT.read_text(), re.M)
    if init_version is None or init_version.group(1) != version:
        problems.append(f"{CORE_INIT.relative_to(ROOT)}: __version__ does not match VERSION {version}")
    return problems


def set_version(version: str) -> None:
    if not VERSION_RE.match(version):
        raise SystemExit(f"{version!r} is not a MAJOR.MINOR.PATCH version")
    wanted = internal_range(version)
    VERSION_FILE.write_text(version + "\n")
    for folder in distributions():
        path = folder / "pyproject.toml"
        text = re.sub(r'(?m)^version = "[^"]+"', f'version = "{version}"', path.read_text(), count=1)
        for name in INTERNAL:
            text = re.sub(rf'"{name}[^"]*"', f'"{name}{wanted}"', text)
        path.write_text(text)
    CORE_INIT.write_text(
        re.sub(r'(?m)^__version__ = "[^"]+"', f'__version__ = "{version}"', CORE_INIT.read_text())
    )


def project_name(folder: Path) -> str:
    return str(tomllib.loads((folder / "pyproject.toml").read_text())["project"]["name"])


def build(dist: Path) -> None:
    """``dist/<name>/``: the sdist and the wheel built from it; ``dist/<name>/direct/``: the wheel
    built straight from the source tree (hatchling from this environment, no downloads)."""
    shutil.rmtree(dist, ignore_errors=True)
    for folder in distributions():
        out = dist / project_name(folder)
        for extra, target in (([], out), (["--wheel"], out / "direct")):
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "build",
                    "--no-isolation",
                    *extra,
                    "--outdir",
                    str(target),
                    str(folder),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )


def _wheel_names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as wheel:
        return sorted(wheel.namelist())


def check_dists(dist: Path) -> list[str]:
    """Check what ``make release-check`` built under ``dist``: ``dist/<name>/`` holds the sdist
    and the wheel built from it, ``dist/<name>/direct/`` the wheel built from the source tree."""
    problems = []
    version = read_version()
    for folder in distributions():
        name = project_name(folder)
        stem = name.replace("-", "_")
        out = dist / name
        sdists = list(out.glob(f"{stem}-{version}.tar.gz"))
        wheels = list(out.glob(f"{stem}-{version}-*.whl"))
        direct = list((out / "direct").glob(f"{stem}-{version}-*.whl"))
        if len(sdists) != 1 or len(wheels) != 1 or len(direct) != 1:
            problems.append(f"{name}: expected one sdist, one wheel from it and one direct wheel in {out}")
            continue
        from_sdist, from_tree = _wheel_names(wheels[0]), _wheel_names(direct[0])
        if from_sdist != from_tree:
            only = sorted(set(from_sdist) ^ set(from_tree))
            problems.append(f"{name}: the wheel built from the sdist differs from the direct wheel: {only}")
        packages = {Path(n).parent for n in from_tree if n.endswith(".py") and ".dist-info" not in n}
        top_packages = {p for p in packages if p.parent not in packages and p != Path(".")}
        for package in sorted(top_packages):
            if f"{package.as_posix()}/py.typed" not in from_tree:
                problems.append(f"{name}: {package}/py.typed is missing from the wheel")
        tests = [n for n in from_tree if re.search(r"(^|/)(tests?|conftest\.py|test_[^/]*\.py$)", n)]
        if tests:
            problems.append(f"{name}: test files in the wheel: {tests[:5]}")
        if not any(n.endswith(".dist-info/licenses/LICENSE") for n in from_tree):
            problems.append(f"{name}: LICENSE is missing from the wheel's dist-info")
        with zipfile.ZipFile(direct[0]) as wheel:
            metadata = wheel.read(next(n for n in from_tree if n.endswith(".dist-info/METADATA"))).decode()
        body = metadata.split("\n\n", 1)[1] if "\n\n" in metadata else ""
        if len(body) < 500:
            problems.append(f"{name}: the long description is missing or too short ({len(body)} characters)")
        relative = re.findall(r"\]\((?!https?://|#)[^)]+\)", body)
        if relative:
            problems.append(f"{name}: relative links break on PyPI: {relative[:5]}")
        for field in ("Project-URL: ", "Classifier: Typing :: Typed", "Requires-Python: ", "Author"):
            if field not in metadata:
                problems.append(f"{name}: METADATA has no {field.strip()!r}")
        with tarfile.open(sdists[0]) as sdist:
            members = sdist.getnames()
        if not any(m.endswith("/LICENSE") for m in members):
            problems.append(f"{name}: LICENSE is missing from the sdist")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("versions", help="check that every distribution agrees with VERSION")
    setter = sub.add_parser("set-version", help="write a new version everywhere")
    setter.add_argument("version")
    builder = sub.add_parser("build", help="build every sdist and wheel")
    builder.add_argument("dist", type=Path)
    checker = sub.add_parser("check-dists", help="check built wheels and sdists")
    checker.add_argument("dist", type=Path)
    args = parser.parse_args(argv)
    if args.command == "set-version":
        set_version(args.version)
        problems = check_versions()
    elif args.command == "versions":
        problems = check_versions()
    elif args.command == "build":
        build(args.dist)
        return 0
    else:
        problems = check_versions() + check_dists(args.dist)
    for line in problems:
        print(f"release check: {line}", file=sys.stderr)
    if not problems:
        print(f"release check: {len(distributions())} distributions at {read_version()}: ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
