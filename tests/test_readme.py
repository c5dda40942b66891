"""The README's CLI table lists every command the CLI has, so a newcomer finds each one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from typer.main import get_command

from crm_service.cli import app

README = Path(__file__).resolve().parents[1] / "README.md"


def command_paths(group: Any, prefix: str = "crm-service") -> Iterator[str]:
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from command_paths(command, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}"


def test_every_command_is_in_the_readme_cli_table() -> None:
    table = README.read_text().split("## CLI", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| `crm-service")]

    paths = sorted(command_paths(get_command(app)))

    assert len(paths) >= 10
    for path in [*paths, "crm-service --version"]:
        assert any(f"| `{path}" in row for row in rows), f"{path} is missing from the README"
