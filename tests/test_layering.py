"""The core never imports a feature: db/, security/, crypto/, kit/ and the top-level core
modules (errors, config, clock, log, metrics, emails, openapi, http_methods) sit at the bottom,
and features register what the core calls (before-commit hooks, token resolvers). An import
inside a function counts too: dodging a cycle that way is the arrow pointing the wrong way."""

from __future__ import annotations

import ast
from pathlib import Path

import crm_service

PACKAGE = Path(crm_service.__file__).parent
CORE_PACKAGES = {"db", "security", "crypto", "kit"}
CORE_MODULES = {
    "errors", "config", "clock", "log", "metrics", "emails", "openapi", "http_methods",
}  # fmt: skip
FEATURES = {
    path.name
    for path in PACKAGE.iterdir()
    if path.is_dir() and (path / "__init__.py").exists() and path.name not in CORE_PACKAGES
}


def _core_files() -> list[Path]:
    files = [PACKAGE / f"{name}.py" for name in CORE_MODULES]
    for package in CORE_PACKAGES:
        files += sorted((PACKAGE / package).rglob("*.py"))
    return files


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_the_features_are_what_the_core_may_not_import() -> None:
    # A guard on the guard: the walk below must know the feature packages.
    assert {"auth", "access", "audit", "records", "orgs", "jobs", "health"} <= FEATURES


def test_no_core_module_imports_a_feature() -> None:
    violations = []
    for path in _core_files():
        assert path.exists(), path
        for line, name in _imports(path):
            parts = name.split(".")
            if parts[0] == "crm_service" and len(parts) > 1 and parts[1] in FEATURES:
                violations.append(f"{path.relative_to(PACKAGE)}:{line} imports {name}")
    assert violations == []
