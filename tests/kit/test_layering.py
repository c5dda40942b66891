"""kit/ sits below every feature: it imports none, so any feature can import it."""

from __future__ import annotations

import ast
from pathlib import Path

import crm_service

PACKAGE = Path(crm_service.__file__).parent
# What kit/ may build on: the core modules beside it, never a feature package.
CORE = {"crm_service.kit", "crm_service.emails", "crm_service.errors"}


def test_kit_imports_no_feature() -> None:
    for module in sorted((PACKAGE / "kit").glob("*.py")):
        tree = ast.parse(module.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("crm_service"):
                    assert any(name == core or name.startswith(core + ".") for core in CORE), (
                        f"{module.name} imports {name}"
                    )
