"""The package's layout (issue 22): ``shmstream/__init__.py`` only imports
and re-exports; its classes and functions live in private modules
(``_buffer.py``, ``_producer.py``, ...), which import each other without a
circle and never through the package itself. Read from the source tree."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "shmstream"


def private_modules():
    return {p.stem: ast.parse(p.read_text()) for p in sorted(PACKAGE.glob("_*.py"))}


def test_init_only_imports_and_reexports():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    body = tree.body
    assert ast.get_docstring(tree), "the package has no docstring"
    others = []
    for node in body[1:]:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["__all__"]:
            continue
        others.append(f"line {node.lineno}: {ast.unparse(node).splitlines()[0]}")
    assert not others, f"__init__.py holds more than imports and __all__: {others}"


def test_private_modules_do_not_import_the_package():
    # `from . import StreamBuffer` inside a private module imports the
    # package, whose `__init__` imports that module: a circle.
    found = []
    for name, tree in private_modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
                public = [a.name for a in node.names if not a.name.startswith("_")]
                if public:
                    found.append(f"{name}: from . import {', '.join(public)}")
            elif isinstance(node, ast.Import):
                found += [f"{name}: import {a.name}" for a in node.names if a.name == "shmstream"]
    assert not found, found


def test_private_modules_form_no_circle():
    modules = private_modules()
    graph = {}
    for name, tree in modules.items():
        uses = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    uses.add(node.module.split(".")[0])
                else:
                    uses.update(a.name for a in node.names)
        graph[name] = sorted(u for u in uses if u in modules and u != name)

    def circle_from(at, path, done):
        if at in path:
            return path[path.index(at) :] + [at]
        if at in done:
            return None
        done.add(at)
        for nxt in graph[at]:
            found = circle_from(nxt, path + [at], done)
            if found:
                return found
        return None

    done = set()
    for name in graph:
        found = circle_from(name, [], done)
        assert found is None, f"private modules in a circle: {' -> '.join(found)}; {graph}"
    assert {"_buffer", "_producer"} <= set(graph["_stream_set"]), graph
