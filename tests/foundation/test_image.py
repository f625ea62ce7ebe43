"""The container image, read as an operations team would review it (no container engine runs here):
pinned, hash-checked dependencies in step with pyproject.toml, no index address, no dev tools, a
build context without the data dir or the virtual environment, a non-root user, one service per
container listening on every interface."""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from services.cli import build_parser
from tests.conftest import REPO_ROOT

LOCK = REPO_ROOT / "requirements.lock.txt"
BUILD_LOCK = REPO_ROOT / "requirements.build.txt"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def pinned(path: Path) -> dict[str, tuple[Version, int, list[str]]]:
    """name -> (version, number of hashes, the packages it is there for) from an exported file."""
    found: dict[str, tuple[Version, int, list[str]]] = {}
    name = ""
    for line in path.read_text().splitlines():
        head = re.match(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)", line)
        if head:
            name = canonicalize_name(head[1])
            found[name] = (Version(head[2]), 0, [])
        elif "--hash=sha256:" in line and name:
            version, hashes, via = found[name]
            found[name] = (version, hashes + 1, via)
        elif re.match(r"^\s+#\s+(via\s+)?([A-Za-z0-9._-]+)\s*$", line) and name:
            parent = line.split()[-1]
            if parent != "via":
                found[name][2].append(canonicalize_name(parent))
    return found


@pytest.mark.parametrize("path", [LOCK, BUILD_LOCK], ids=lambda p: p.name)
def test_requirement_files_hold_no_index_address_and_a_hash_for_every_pin(path: Path) -> None:
    text = path.read_text()
    for line in text.splitlines():
        assert not re.search(r"--(index-url|extra-index-url|find-links|trusted-host)|-i\s|://", line), line
    lines_with_a_pin = [line for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]
    assert lines_with_a_pin
    assert all("==" in line for line in lines_with_a_pin)
    assert all(hashes >= 1 for _, hashes, _ in pinned(path).values())


def test_every_runtime_dependency_is_pinned_within_its_range() -> None:
    pins = pinned(LOCK)
    for spec in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(spec)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is missing from requirements.lock.txt: run scripts/lock-requirements.sh"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (
            f"{name}=={pins[name][0]} is outside {requirement.specifier}: run scripts/lock-requirements.sh"
        )


def test_no_dev_tool_is_in_the_runtime_file() -> None:
    pins = pinned(LOCK)
    runtime = {canonicalize_name(Requirement(s).name) for s in PYPROJECT["project"]["dependencies"]}
    for spec in PYPROJECT["dependency-groups"]["dev"]:
        name = canonicalize_name(Requirement(spec).name)
        if name in pins:
            # Only as something a runtime package needs (litestar[standard] brings polyfactory).
            assert name in runtime or pins[name][2], f"{name} is a dev tool in the runtime file"
    for tool in ("pytest", "pytest-asyncio", "hypothesis", "schemathesis", "ruff", "mypy", "hatchling"):
        assert tool not in pins


def test_the_build_file_pins_the_build_backend() -> None:
    backend = Requirement(PYPROJECT["build-system"]["requires"][0])
    pins = pinned(BUILD_LOCK)
    assert backend.specifier.contains(pins[canonicalize_name(backend.name)][0])


# -- Dockerfile ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (REPO_ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for instruction in dockerfile():
        if instruction[0] == "FROM":
            found.append([])
        found[-1].append(instruction)
    return found


def test_the_build_is_multi_stage_and_installs_only_pinned_hashes_and_the_project_without_deps() -> None:
    build, runtime = stages()[0], stages()[-1]
    assert len(stages()) >= 2
    runs = " ".join(args for word, args in build if word == "RUN")
    assert "--require-hashes" in runs
    assert "-r /tmp/requirements.lock.txt" in runs
    assert "--no-deps" in runs.split("requirements.lock.txt")[1], "the project must not pull anything"
    assert "uv sync" not in runs
    assert "--group" not in runs
    assert "dev" not in runs
    copies = [args for word, args in build if word == "COPY"]
    assert not any(args.split()[0] == "." for args in copies), "COPY . copies the whole folder"
    # The runtime stage takes the environment only, not the sources or the build tools.
    assert [args for word, args in runtime if word == "COPY"] == ["--from=build /opt/clinic /opt/clinic"]


def test_the_image_runs_one_service_as_a_non_root_user_on_every_interface() -> None:
    runtime = stages()[-1]
    users = [args for word, args in runtime if word == "USER"]
    assert users
    assert users[-1] not in ("root", "0")
    assert runtime.index(("USER", users[-1])) > max(i for i, (w, _) in enumerate(runtime) if w == "RUN")
    env = " ".join(args for word, args in runtime if word == "ENV")
    assert re.search(r"\bCLINIC_HOST=0\.0\.0\.0\b", env)
    cmd = [args for word, args in runtime if word == "CMD"][-1]
    command = json.loads(cmd)
    assert command[:2] == ["clinic", "serve"]
    assert "up" not in command
    build_parser().parse_args(command[1:])


# -- .dockerignore ---------------------------------------------------------------------------


def ignored(path: str) -> bool:
    """The Docker rule: patterns in order, the last one matching the path (or a parent) wins."""
    rules = []
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for negated, pattern in rules:
        patterns = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes for pat in patterns) or (
            pattern.startswith("**/") and any(fnmatch.fnmatchcase(part, pattern[3:]) for part in parts)
        ):
            result = not negated
    return result


@pytest.mark.parametrize(
    "path",
    [
        ".venv/bin/python",
        ".git/HEAD",
        ".clinic/pgdata/base/1",
        "services/.clinic/pgdata",
        "pgdata/PG_VERSION",
        ".env",
        "services/intake/__pycache__/app.cpython-311.pyc",
        ".pytest_cache/v",
        ".mypy_cache/x",
        ".hypothesis/examples",
        "tests/conftest.py",
        "uv.lock",
    ],
)
def test_the_build_context_leaves_out(path: str) -> None:
    assert ignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "requirements.lock.txt",
        "requirements.build.txt",
        "services/cli/__init__.py",
        "migrations/env_common.py",
    ],
)
def test_the_build_context_keeps(path: str) -> None:
    assert not ignored(path)
    copied = " ".join(args for word, args in dockerfile() if word == "COPY")
    assert path.split("/")[0] in copied
