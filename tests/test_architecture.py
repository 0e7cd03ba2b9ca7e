"""The import rules of ARCHITECTURE.md, read from the source: they hold or this fails."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nbbatch"
CORE = ("engine", "store", "manifest", "providers", "gallery")


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (imports inside functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def modules(*parts: str) -> list[Path]:
    return sorted(p for part in parts for p in (PACKAGE / part).rglob("*.py"))


def test_the_core_never_imports_the_simulator_or_the_cli():
    offenders = {str(p.relative_to(PACKAGE)): sorted(
        n for n in imports(p) if n.startswith(("nbbatch.sim", "nbbatch.cli")))
        for p in modules(*CORE)}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert len(offenders) > 20  # the walk saw the core


def test_only_the_cli_imports_typer_rich_or_click():
    outside = [p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts]
    offenders = {str(p.relative_to(PACKAGE)): sorted(
        n for n in imports(p) if n.split(".")[0] in ("typer", "rich", "click"))
        for p in outside}
    assert {k: v for k, v in offenders.items() if v} == {}
    assert "click" not in {n.split(".")[0] for p in modules("cli") for n in imports(p)}


def test_the_value_types_import_neither_pydantic_nor_yaml():
    found = {n.split(".")[0] for n in imports(PACKAGE / "model.py")}
    assert not found & {"pydantic", "yaml"}


def test_every_registered_provider_module_exists():
    from nbbatch.providers import registry

    for spec in registry.PROVIDERS.values():
        module = registry.implementation(spec.name)
        assert callable(module.create) and callable(module.check_options), spec.name


def test_every_folder_of_the_package_is_a_regular_package():
    """setuptools' find leaves folders without __init__.py out of the wheel."""
    folders = {p.parent for p in PACKAGE.rglob("*.py")}
    assert [str(f) for f in folders if not (f / "__init__.py").exists()] == []
