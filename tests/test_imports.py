"""The package's imports form no cycle, and every module imports on its own.

An import counts wherever it is written, at the top of a module or inside a
function (a deferred import is still a dependency); only those under
``if TYPE_CHECKING:`` are exempt, since they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import rhosocial_ar

PACKAGE = "rhosocial_ar"

# an import edge: (importing module, imported module) -> where, as "file:line"
Edges = dict[tuple[str, str], str]


def package_modules(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Module name -> (its file, whether it is a package), for every module under ``root``.

    Directories without an ``__init__.py`` (e.g. templates) are data, not modules.
    """
    modules = {}
    for path in sorted(root.rglob("*.py")):
        if not all((d / "__init__.py").exists() for d in [path.parent, *path.parent.parents]
                   if d.is_relative_to(root)):
            continue
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, at any depth, except under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        elif isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)      # an else branch does run
            continue
        pending.extend(ast.iter_child_nodes(node))
    return sorted(found, key=lambda node: node.lineno)


def import_graph(root: Path, package: str = PACKAGE) -> Edges:
    """The package's module-to-module import edges, read from the source with ``ast``."""
    modules = package_modules(root, package)
    edges: Edges = {}

    def add(source: str, target: str, path: Path, line: int) -> None:
        if target in modules:
            edges.setdefault((source, target), f"{path.relative_to(root.parent)}:{line}")

    for name, (path, is_package) in modules.items():
        for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(name, alias.name, path, node.lineno)
                continue
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            for alias in node.names:
                # `from pkg import mod` imports the module; `from mod import name`, the module
                submodule = f"{target}.{alias.name}"
                add(name, submodule if submodule in modules else target, path, node.lineno)
    return edges


def import_cycles(edges: Edges) -> list[list[str]]:
    """The groups of modules that import one another (directly or round a longer loop), sorted."""
    graph: dict[str, set[str]] = {}
    for source, target in edges:
        graph.setdefault(source, set()).add(target)

    def reachable(start: str) -> set[str]:
        found: set[str] = set()
        frontier = [start]
        while frontier:
            for target in graph.get(frontier.pop(), ()):
                if target not in found:
                    found.add(target)
                    frontier.append(target)
        return found

    reach = {module: reachable(module) for module in graph}
    groups = {frozenset(m for m in reach[module] if module in reach.get(m, ()))
              for module in graph if module in reach[module]}
    return sorted(sorted(group) for group in groups)


def describe(cycles: list[list[str]], edges: Edges) -> str:
    """Each group with the imports that tie it together, and where they are."""
    return "\n".join(
        "import cycle among " + ", ".join(group) + ":\n" + "\n".join(
            f"  {a} -> {b}  ({where})" for (a, b), where in sorted(edges.items())
            if a in group and b in group)
        for group in cycles
    )


def package_root() -> Path:
    return Path(rhosocial_ar.__file__).parent


def test_the_package_has_no_import_cycle():
    edges = import_graph(package_root())
    assert ("rhosocial_ar.model", "rhosocial_ar.meta") in edges   # the graph is really read
    cycles = import_cycles(edges)
    assert cycles == [], describe(cycles, edges)


def test_every_module_imports_on_its_own():
    """Each module in a fresh import of the package (one interpreter, the package forgotten between)."""
    names = sorted(package_modules(package_root(), PACKAGE))
    script = textwrap.dedent("""
        import importlib, sys, traceback
        failed = []
        for name in sys.argv[1:]:
            for loaded in [m for m in sys.modules if m == %(p)r or m.startswith(%(p)r + ".")]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except BaseException:
                failed.append(name + ":\\n" + traceback.format_exc())
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
    """) % {"p": PACKAGE}
    run = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


# -- the checker itself -----------------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for name, source in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return package


def test_a_deferred_import_closes_a_cycle(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "b.py": "def thing():\n    from . import a\n    return a\n",
    })
    edges = import_graph(package, "pkg")
    assert import_cycles(edges) == [["pkg.a", "pkg.b"]]
    assert "pkg.b -> pkg.a  (pkg/b.py:2)" in describe(import_cycles(edges), edges)


def test_type_checking_imports_do_not_count(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "",
        "a.py": "from .b import thing\n",
        "b.py": """\
            import typing
            from typing import TYPE_CHECKING
            if TYPE_CHECKING:
                from .a import x
            if typing.TYPE_CHECKING:
                import pkg.a
            def thing(): ...
        """,
    })
    assert import_cycles(import_graph(package, "pkg")) == []


def test_imports_in_subpackages_and_absolute_imports_count(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "from .sub import run\n",
        "sub/__init__.py": "from .inner import run\n",
        "sub/inner.py": "def run():\n    import pkg.core\n",
        "core.py": "from pkg.sub import inner\n",
        "data/unrelated.py": "import pkg.core\n",      # not a package: not a module
    })
    edges = import_graph(package, "pkg")
    assert set(edges) == {("pkg", "pkg.sub"), ("pkg.sub", "pkg.sub.inner"),
                          ("pkg.sub.inner", "pkg.core"), ("pkg.core", "pkg.sub.inner")}
    assert import_cycles(edges) == [["pkg.core", "pkg.sub.inner"]]
