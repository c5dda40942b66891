"""Reproducible installs: every dependency pinned with hashes in the locks, the locks in step
with pyproject.toml, this environment installed from them, the image's base pinned."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
PIN = re.compile(
    r"^([A-Za-z0-9_.-]+)==([^ ;\\]+)[^\n]*\\\n((?:\s+--hash=sha256:[0-9a-f]{64}[ \\]*\n)+)",
    re.MULTILINE,
)
# A major release of these would break us, so pyproject.toml must bound them.
BOUNDED = {"fastapi", "starlette", "pydantic", "pydantic-settings", "sqlalchemy", "alembic"}


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    found = {canonicalize_name(name): pinned for name, pinned, _hashes in PIN.findall(text)}
    assert len(found) == text.count("=="), f"{lock}: a pin without hashes"
    return found


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("requirements.lock", PROJECT["dependencies"]),
        (
            "requirements-test.lock",
            PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"],
        ),
    ],
)
def test_the_lock_pins_every_dependency_within_its_range(
    lock: str, requirements: list[str]
) -> None:
    pinned = pins(lock)
    for line in requirements:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{name} is not in {lock}: run `make lock`"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"{lock} pins {name}=={pinned[name]}, outside {requirement.specifier}: run `make lock`"
        )


def test_both_locks_agree_and_this_environment_was_installed_from_them() -> None:
    runtime, test = pins("requirements.lock"), pins("requirements-test.lock")

    assert {name: test[name] for name in runtime} == runtime
    for name, pinned in test.items():
        assert version(name) == pinned, f"{name} {version(name)} installed, {pinned} locked"


def test_majors_that_would_break_us_are_bounded() -> None:
    bounded = set()
    for line in PROJECT["dependencies"]:
        requirement = Requirement(line)
        if any(spec.operator in ("<", "<=", "~=", "==") for spec in requirement.specifier):
            bounded.add(canonicalize_name(requirement.name))
    assert BOUNDED <= bounded


def test_the_image_base_is_an_exact_release() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", dockerfile, re.MULTILINE)
    assert "--require-hashes -r requirements.lock" in dockerfile
    assert "--no-deps ." in dockerfile
