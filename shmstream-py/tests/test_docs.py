"""``help(shmstream.StreamBuffer)`` is useful: every public class, method
and property has a docstring, and the ``.pyi`` stub names what the native
module has, no more and no less."""

import ast
import inspect
from pathlib import Path

import pytest
import shmstream
from shmstream import _shmstream

STUB = Path(shmstream.__file__).with_name("_shmstream.pyi")

# Public names allowed without a docstring (none).
KNOWN_UNDOCUMENTED: set[str] = set()


def public_members(cls):
    for name, value in vars(cls).items():
        if name.startswith("_") and name != "__init__":
            continue
        if name == "__init__":
            continue  # the class docstring documents the constructor
        yield name, value


def doc_of(cls, name, value):
    if isinstance(value, (classmethod, staticmethod)):
        value = value.__func__
    slots = getattr(cls, "__slots__", None)
    if isinstance(slots, dict) and name in slots:
        return (slots[name] or "").strip()  # where help() finds a slot's doc
    return (getattr(value, "__doc__", None) or "").strip()


@pytest.mark.parametrize("name", sorted(shmstream.__all__))
def test_every_public_name_has_a_docstring(name):
    obj = getattr(shmstream, name)
    assert (obj.__doc__ or "").strip(), f"shmstream.{name} has no docstring"
    if not inspect.isclass(obj) or issubclass(obj, BaseException):
        return
    missing = [
        f"{name}.{attr}"
        for attr, value in public_members(obj)
        if not doc_of(obj, attr, value) and f"{name}.{attr}" not in KNOWN_UNDOCUMENTED
    ]
    assert not missing, f"no docstring: {missing}"


def test_help_of_stream_buffer_names_its_methods():
    text = inspect.getdoc(shmstream.StreamBuffer) or ""
    assert "StreamBuffer.open" in text
    import pydoc

    page = pydoc.render_doc(shmstream.StreamBuffer, renderer=pydoc.plaintext)
    for method in ("pre_read_register", "put", "pop_chunk", "next_chunk", "signal_done"):
        assert method in page
    assert "cuts the stream into chunks" in page  # the policy slot's doc


def stub_tree():
    return ast.parse(STUB.read_text())


def test_the_stub_names_what_the_native_module_has():
    tree = stub_tree()
    stub = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    runtime = {n for n in dir(_shmstream) if not (n.startswith("__") and n.endswith("__"))}
    assert stub == runtime, (
        f"in the stub only: {sorted(stub - runtime)}; at run time only: {sorted(runtime - stub)}"
    )


def test_the_stubs_classes_match_the_runtime_classes():
    for cls in (n for n in stub_tree().body if isinstance(n, ast.ClassDef)):
        members = set()
        for node in cls.body:
            if isinstance(node, ast.FunctionDef):
                members.add(node.name)
            elif isinstance(node, ast.AnnAssign):
                members.add(node.target.id)
        runtime_cls = getattr(_shmstream, cls.name)
        absent = sorted(m for m in members if not hasattr(runtime_cls, m))
        assert not absent, f"the stub's {cls.name} has {absent}, the module's has not"
        if not members:
            continue  # an opaque class (`class _Buffer: ...`): used through the package
        unstubbed = sorted(
            n for n in vars(runtime_cls) if not n.startswith("_") and n not in members
        )
        assert not unstubbed, f"{cls.name} has {unstubbed}, the stub does not"
        assert ast.get_docstring(cls), f"the stub's {cls.name} has no docstring"
