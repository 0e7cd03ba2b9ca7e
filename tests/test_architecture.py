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


def test_modules_and_classes_stay_small_enough_to_read():
    """One concept per module: under 400 lines a module, under 200 a class."""
    too_long = {}
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        name = str(path.relative_to(PACKAGE))
        if len(text.splitlines()) >= 400:
            too_long[name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size >= 200:
                    too_long[f"{name}:{node.name}"] = size
    assert too_long == {}


def test_the_map_names_every_module():
    """ARCHITECTURE.md is the map: a module it does not name is a room nobody can find."""
    text = (PACKAGE.parent / "ARCHITECTURE.md").read_text()
    missing = [str(p.relative_to(PACKAGE)) for p in sorted(PACKAGE.rglob("*.py"))
               if p.name != "__init__.py" and f"{p.stem}.py" not in text]
    assert missing == []


def test_the_base_modules_import_only_each_other():
    base = ("errors", "model", "text", "redaction", "images", "catalog")
    offenders = {name: sorted(n for n in imports(PACKAGE / f"{name}.py")
                              if n.startswith("nbbatch") and n.split(".")[1] not in base)
                 for name in base}
    assert {k: v for k, v in offenders.items() if v} == {}
