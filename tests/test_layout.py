"""The layout's rules (README, "Architecture"), checked on the source: what may import what, no
import loops, and every page of one shape."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# fer_core's layers, bottom up: a module imports its own subpackage and lower layers only.
LAYERS = {"": 0, "data": 1, "models": 2, "evaluation": 3, "training": 4, "explain": 4, "cli": 5}


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def module_of(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """Every module the file at `path` imports, anywhere in it (lazy imports too), made
    absolute; `source` stands in for the file's text."""
    package = module_of(path) if path.name == "__init__.py" else module_of(path).rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text() if source is None else source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found |= {module} | {f"{module}.{alias.name}" for alias in node.names}
    return found


def project_imports(path: Path, source: str | None = None) -> set[str]:
    """The project modules `path` imports, packages' `__init__` left out (importing a module
    runs its package's too: that says nothing about the layout)."""
    known = {module_of(p) for top in ("fer_core", "dashboard") for p in python_files(top)
             if p.name != "__init__.py"}
    return {m for m in imported_modules(path, source) if m in known} - {module_of(path)}


def layer(module: str) -> tuple[str, int]:
    """(subpackage, layer) of a fer_core module; top-level modules are layer 0."""
    parts = module.split(".")
    sub = parts[1] if len(parts) > 2 else ""
    return sub, LAYERS[sub]


@pytest.mark.parametrize("path", python_files("fer_core"), ids=lambda p: module_of(p))
def test_the_core_imports_neither_the_dashboard_nor_streamlit(path):
    tops = {m.split(".")[0] for m in imported_modules(path)}
    assert not tops & {"dashboard", "streamlit"}


# The package's face, and the install check that looks at every layer: they may import any.
FRONT_DOOR = {"fer_core", "fer_core.__main__", "fer_core.environment"}


@pytest.mark.parametrize("path", [p for p in python_files("fer_core")
                                  if module_of(p) not in FRONT_DOOR], ids=lambda p: module_of(p))
def test_core_modules_import_their_own_subpackage_and_lower_layers_only(path):
    sub, rank = layer(module_of(path))
    for module in project_imports(path):
        other, other_rank = layer(module)
        assert other == sub or other_rank < rank, f"{module_of(path)} imports {module}"


def page_of(module: str) -> str | None:
    """The page a dashboard module belongs to ('training', 'home', ...), or None."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "views" else None


def allowed_in_dashboard(importer: str, module: str) -> bool:
    """A page imports the sidebar, common/, its own folder and fer_core; common/ and the sidebar
    import common/ and fer_core; the entry script imports the sidebar."""
    if module.startswith(("fer_core.", "dashboard.common.")):
        return True
    if page_of(importer) is not None:
        return module == "dashboard.sidebar" or page_of(module) == page_of(importer)
    return importer == "dashboard.app" and module == "dashboard.sidebar"


@pytest.mark.parametrize("path", python_files("dashboard"), ids=lambda p: module_of(p))
def test_a_page_imports_the_sidebar_common_and_the_core_never_another_page(path):
    for module in project_imports(path):
        assert allowed_in_dashboard(module_of(path), module), f"{module_of(path)} imports {module}"


def test_there_is_no_import_loop():
    graph = {module_of(p): project_imports(p) for top in ("fer_core", "dashboard")
             for p in python_files(top)}
    done, path = set(), []

    def visit(module):
        assert module not in path, "import loop: " + " -> ".join([*path[path.index(module):],
                                                                   module])
        if module in done:
            return
        path.append(module)
        for imported in graph.get(module, ()):
            visit(imported)
        path.pop()
        done.add(module)

    for module in graph:
        visit(module)


PAGES = sorted((ROOT / "dashboard" / "views").glob("*/page.py")) + \
    sorted((ROOT / "dashboard" / "views").glob("*.py"))


@pytest.mark.parametrize("path", [p for p in PAGES if p.name != "__init__.py"],
                         ids=lambda p: str(p.relative_to(ROOT / "dashboard" / "views")))
def test_every_page_defines_page_and_calls_it_last(path):
    body = ast.parse(path.read_text()).body
    calls = [node for node in body if isinstance(node, ast.Expr)
             and not isinstance(node.value, ast.Constant)]
    assert [ast.unparse(node) for node in calls] == ["page()"]
    assert body[-1] is calls[0]
    assert any(isinstance(node, ast.FunctionDef) and node.name == "page" for node in body)


def test_the_checks_see_lazy_relative_and_cross_page_imports():
    """The ways a rule gets broken are seen: a lazy import, a relative one, another page."""
    core = ROOT / "fer_core" / "data" / "readers.py"
    lazy = "def f():\n    from ..cli import main\n    import streamlit\n"
    assert "fer_core.cli.main" in project_imports(core, lazy)
    assert layer("fer_core.cli.main")[1] > layer(module_of(core))[1]
    assert "streamlit" in imported_modules(core, lazy)
    assert not allowed_in_dashboard("dashboard.views.saliency.page",
                                    "dashboard.views.confusions.charts")
    assert not allowed_in_dashboard("dashboard.common.gallery", "dashboard.views.confusions.charts")
    assert allowed_in_dashboard("dashboard.views.saliency.page", "dashboard.views.saliency.maps")
