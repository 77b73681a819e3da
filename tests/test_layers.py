"""Layers that point one way: what each layer may import, checked on the source and on fresh
interpreters.

- config modules load no torch (so that configs can be read, checked and printed cheaply);
- `sniper.modeling` / `sniper.data` do not load each other, the engine or inference;
  `sniper.inference` and the AutoFocus inference do not load `sniper.engine`;
- no library module imports a command-line module (`sniper.demo`, `autofocus.visualize_cli`,
  the scripts of `projects/`, `tools/`, `benchmarks/`);
- first-party imports sit at the top of the module, not inside functions;
- the optional extras (sahi, supervision) load only with their `sniper.integrations` module.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {  # package name -> folder holding it
    "chipping": ROOT,
    "sniper": ROOT / "projects" / "sniper",
    "autofocus": ROOT / "projects" / "autofocus",
}
# Modules run as `python -m ...`: nothing in the packages may import them.
CLI_MODULES = {
    "sniper.demo",
    "sniper.tools.suggest_scales",
    "sniper.integrations.sahi_cli",
    "autofocus.visualize_cli",
    "autofocus.calibrate",
    "autofocus.predict",
    "sniper.tools.bn_to_sn",
}
# Library modules that also have a small `__main__` (importing them is fine).
LIBRARY_WITH_MAIN = {"sniper.data.visdrone"}
# Imports inside functions kept on purpose (path relative to ROOT -> why).
LOCAL_IMPORTS_ALLOWED = {
    "chipping/_backend.py": "the compiled backend is imported only when selected",
}


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the three packages."""
    found = {}
    for package, parent in PACKAGES.items():
        for path in sorted((parent / package).rglob("*.py")):
            parts = list(path.relative_to(parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _script_names() -> set[str]:
    """Module names under which the stand-alone scripts could be imported."""
    folders = [ROOT / "projects" / name for name in ("sniper", "autofocus")]
    folders += [ROOT / "tools", ROOT / "benchmarks"]
    return {p.stem for folder in folders for p in folder.glob("*.py")}


def _imports(name: str, path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, inside a function) of every import statement of a module;
    `from a import b` gives both `a` and `a.b` (b may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                found.append((module, child.lineno, in_function))
                found.extend(
                    (f"{module}.{alias.name}", child.lineno, in_function) for alias in child.names
                )
            visit(child, inner)

    visit(tree, False)
    return found


def _has_main_guard(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body
    )


def test_cli_modules_are_known() -> None:
    """Every package module with a `__main__` block is a listed CLI or library module."""
    with_main = {name for name, path in _modules().items() if _has_main_guard(path)}
    assert with_main == CLI_MODULES | LIBRARY_WITH_MAIN


def test_no_library_module_imports_a_cli_module() -> None:
    scripts = _script_names()
    bad = []
    for name, path in _modules().items():
        if name in CLI_MODULES:
            continue
        for module, line, _ in _imports(name, path):
            if module in CLI_MODULES or module.split(".")[0] in scripts:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not bad, "\n".join(bad)


def test_inference_never_imports_the_engine() -> None:
    """Also inside functions, which the fresh-interpreter checks below cannot see."""
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for name, path in _modules().items()
        if name.startswith(("sniper.inference", "sniper.modeling", "sniper.data"))
        for module, line, _ in _imports(name, path)
        if module.startswith("sniper.engine")
    ]
    assert not bad, "\n".join(bad)


def test_inference_never_imports_the_training_data() -> None:
    """Inference (SNIPER's and the AutoFocus cascade) reads images through the leaf module
    `sniper.image_ops`, never through the training data package."""
    inference = (
        "sniper.inference",
        "autofocus.cascade",
        "autofocus.chips",
        "autofocus.params",
        "autofocus.structures",
        "autofocus.predictor",
        "autofocus.focus_stats",
        "autofocus.calibration",
    )
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for name, path in _modules().items()
        if name.startswith(inference)
        for module, line, _ in _imports(name, path)
        if module.startswith("sniper.data")
    ]
    assert not bad, "\n".join(bad)


def test_first_party_imports_are_at_the_top() -> None:
    bad = []
    for name, path in _modules().items():
        rel = path.relative_to(ROOT).as_posix()
        if rel in LOCAL_IMPORTS_ALLOWED:
            continue
        for module, line, in_function in _imports(name, path):
            if in_function and module.split(".")[0] in PACKAGES:
                bad.append(f"{rel}:{line} imports {module} inside a function")
    assert not bad, "\n".join(sorted(set(bad)))


def _loaded_by(imports: str) -> set[str]:
    """Modules in `sys.modules` of a fresh interpreter after `import <imports>`."""
    path = [str(p) for p in PACKAGES.values()]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(path + [env.get("PYTHONPATH", "")])
    code = f"import sys, {imports}; print('\\n'.join(sys.modules))"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return set(proc.stdout.split())


def test_config_modules_import_no_torch() -> None:
    loaded = _loaded_by("sniper.config, autofocus.config")
    assert "torch" not in loaded
    assert not {m for m in loaded if m.startswith(("sniper.", "autofocus."))} - {
        "sniper.cli_errors",
        "sniper.config",
        "sniper.config_defaults",
        "sniper.config_detectron",
        "sniper.config_files",
        "sniper.config_ranges",
        "sniper.config_types",
        "sniper.config_validation",
        "autofocus.config",
        "autofocus.config_defaults",
    }


@pytest.mark.parametrize(
    ("imports", "forbidden"),
    [
        ("sniper.modeling", ("sniper.data", "sniper.engine", "sniper.inference")),
        ("sniper.data.build", ("sniper.modeling", "sniper.engine", "sniper.inference")),
        ("sniper.inference", ("sniper.engine", "sniper.data")),
        ("autofocus.cascade", ("sniper.engine", "sniper.data", "autofocus.engine")),
        (
            "sniper.image_ops",
            ("sniper.data", "sniper.modeling", "sniper.inference", "autofocus", "torch"),
        ),
        ("sniper.progress", ("sniper.data", "sniper.engine", "sniper.inference", "torch")),
        (
            "sniper.patch_rle",
            ("sniper.data", "sniper.modeling", "sniper.inference", "autofocus", "torch"),
        ),
        ("autofocus.modeling", ("sniper.data", "sniper.engine", "sniper.inference")),
        ("autofocus.predictor", ("sniper.engine", "autofocus.engine")),
        ("autofocus.focus_stats", ("torch", "sniper", "autofocus.cascade")),  # numpy only
        ("autofocus.calibration", ("sniper.engine", "sniper.data", "autofocus.engine")),
        # the optional extras load only when their adapter module is imported
        (
            "sniper, sniper.inference, sniper.engine.evaluation, autofocus.predictor",
            ("sahi", "supervision", "sniper.integrations"),
        ),
    ],
)
def test_layer_loads_nothing_above_it(imports: str, forbidden: tuple[str, ...]) -> None:
    loaded = _loaded_by(imports)
    assert not sorted(m for m in loaded if m.startswith(forbidden))
