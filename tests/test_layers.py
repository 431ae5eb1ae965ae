"""The apps' layering holds: the import contract covers every core module, and project imports
stay at the top of modules (one inside a function is usually a cycle being dodged)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_PACKAGES = ("incidents", "drills", "reports", "tmt_ir")
# Imports that stay inside a function, and why.
ALLOWED_LOCAL_IMPORTS = {
    # WeasyPrint takes seconds to import: only the processes that render a PDF pay for it.
    ("reports/services.py", "reports.pdf"),
    ("reports/regulatory.py", "reports.pdf"),
}


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [contract for contract in config["contracts"] if contract["type"] == "layers"]
    return contract["layers"]


def _sub_apps() -> set[str]:
    return {path.parent.name for path in (ROOT / "incidents").glob("*/apps.py")}


def test_the_contract_names_every_sub_app_and_every_core_module():
    layers = _layers()
    named = {module.strip() for layer in layers for module in layer.replace("|", ":").split(":")}
    core = {
        f"incidents.{path.stem if path.is_file() else path.name}"
        for path in (ROOT / "incidents").iterdir()
        if (path.suffix == ".py" and path.name != "__init__.py")
        or (path.is_dir() and (path / "__init__.py").exists() and path.name not in _sub_apps())
    }
    missing = (core | {f"incidents.{app}" for app in _sub_apps()}) - named
    assert not missing, f"add to the layers contract in pyproject.toml: {sorted(missing)}"
    # The core is the lowest layer, tmt_ir the highest.
    assert layers[0] == "tmt_ir"
    assert {module.strip() for module in layers[-1].split(":")} == core


def _local_project_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom):
                module = ("." * node.level) + (node.module or "")
                package = _package_of(path)
                absolute = _absolute(module, package) if node.level else module
                if absolute.split(".")[0] in PROJECT_PACKAGES:
                    found.append(absolute)
            elif isinstance(node, ast.Import):
                found.extend(a.name for a in node.names if a.name.split(".")[0] in PROJECT_PACKAGES)
    return found


def _package_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).parent.parts)


def _absolute(module: str, package: str) -> str:
    level = len(module) - len(module.lstrip("."))
    parts = package.split(".")
    base = parts[: len(parts) - (level - 1)]
    rest = module.lstrip(".")
    return ".".join(base + ([rest] if rest else []))


def test_project_imports_stay_at_module_level():
    # Parsed in an interpreter of its own: inside the test process, CPython 3.11's AST
    # constructor checks its recursion depth against counters that other threads and earlier
    # recursion limits of this process can skew ("AST constructor recursion depth mismatch",
    # seen once in three full runs, in a fresh thread too).
    script = "import json, tests.test_layers as t; print(json.dumps(sorted(t._module_level_violations())))"
    found = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    local = {tuple(pair) for pair in json.loads(found.stdout)}
    assert local == ALLOWED_LOCAL_IMPORTS


def _module_level_violations() -> set[tuple[str, str]]:
    local = set()
    for package in PROJECT_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            # AppConfig.ready() registers hooks once apps are loaded; commands and migrations run
            # on their own.
            if path.name in ("apps.py", "settings.py") or "/migrations/" in relative or "/management/" in relative:
                continue
            local.update((relative, module) for module in _local_project_imports(path))
    return local
