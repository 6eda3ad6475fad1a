"""The .pyi stubs of the C modules name what the modules have, no more and no less.

mypy reads memtracker_web/_tracker.pyi and _passthrough.pyi instead of the
extensions; a function added to a C method table and not to its stub, or a stub
entry whose C function was removed, would go unnoticed by the type check. Here
each stub is parsed and compared with the module built for this interpreter:
top-level functions, classes and constants, each class's methods and attributes,
each function's parameters against its C docstring (``track(type, callback=False)``)
and the argument count its C calling convention enforces.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

import memtracker_web

PACKAGE = Path(memtracker_web.__file__).parent


def _is_type_only(node: ast.stmt) -> bool:
    """A TypedDict or a type alias: stub-only names for the shapes of returned values."""
    if isinstance(node, ast.ClassDef):
        return any(isinstance(b, ast.Name) and b.id == "TypedDict" for b in node.bases)
    if isinstance(node, ast.Assign):
        return isinstance(node.value, ast.Subscript)  # e.g. TreeNode = tuple[...]
    return False


def _names(body: list[ast.stmt]) -> dict[str, ast.stmt]:
    names: dict[str, ast.stmt] = {}
    for node in body:
        if _is_type_only(node):
            continue
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
    return names


def _stub(module: str) -> dict[str, ast.stmt]:
    tree = ast.parse((PACKAGE / f"{module}.pyi").read_text(encoding="utf-8"))
    return _names(tree.body)


def _public(obj: object) -> set[str]:
    """Names an extension module or type defines itself (not object's or the module machinery's)."""
    own = set(vars(obj))
    return {n for n in own if not (n.startswith("__") and n.endswith("__"))}


def _load(module: str):
    try:
        return importlib.import_module(f"memtracker_web.{module}")
    except ImportError as exc:
        pytest.skip(f"memtracker_web.{module} is not built here: {exc}")


def _stub_parameters(node: ast.FunctionDef) -> list[tuple[str, object]]:
    """(name, default) of each parameter but self; default is NO_DEFAULT or the literal's value."""
    args = node.args
    positional = args.posonlyargs + args.args
    defaults: list[object] = [NO_DEFAULT] * (len(positional) - len(args.defaults))
    defaults += [_literal(d) for d in args.defaults]
    params = list(zip([a.arg for a in positional], defaults, strict=True))
    params += [
        (a.arg, NO_DEFAULT if d is None else _literal(d))
        for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
    ]
    return [(n, d) for n, d in params if n not in ("self", "cls")]


NO_DEFAULT = object()
UNKNOWN = object()  # a stub default written `...`


def _literal(node: ast.expr) -> object:
    value = ast.literal_eval(node)
    return UNKNOWN if value is Ellipsis else value


def _documented_parameters(name: str, func: object) -> list[tuple[str, object]] | None:
    """The parameters the C docstring's first line names, ``name(a, b=1) -> ...``, or None
    when it does not start with a call (``"Stop watch-all and free its table."``)."""
    match = re.match(rf"{re.escape(name)}\((.*?)\)", func.__doc__ or "")
    if match is None:
        return None
    params: list[tuple[str, object]] = []
    for part in filter(None, (p.strip() for p in match.group(1).split(","))):
        param, _, default = part.partition("=")
        params.append((param, ast.literal_eval(default) if default else NO_DEFAULT))
    return params


def _check_function(where: str, name: str, func: object, node: ast.FunctionDef) -> None:
    """The stub's parameters against what the C function says of itself: the names and
    defaults its docstring gives, and the arity METH_NOARGS and METH_O functions enforce
    before they run (so calling them with the wrong count has no effect)."""
    stub = _stub_parameters(node)
    documented = _documented_parameters(name, func)
    if documented is not None:
        assert [n for n, _ in stub] == [n for n, _ in documented], where
        for (param, ours), (_, theirs) in zip(stub, documented, strict=True):
            if ours is not UNKNOWN:
                assert ours == theirs, f"{where}: default of {param}"
    if not stub:
        with pytest.raises(TypeError, match="takes no arguments"):
            func(None)  # type: ignore[operator]
    elif len(stub) == 1 and node.args.posonlyargs and stub[0][1] is NO_DEFAULT:
        with pytest.raises(TypeError, match="exactly one argument"):
            func()  # type: ignore[operator]


@pytest.mark.parametrize("module", ["_tracker", "_passthrough"])
def test_stub_names_match_the_module(module: str) -> None:
    mod = _load(module)
    stub = _stub(module)
    assert set(stub) == _public(mod), f"{module}.pyi vs the module"
    for name, node in stub.items():
        value = getattr(mod, name)
        if isinstance(node, ast.ClassDef):
            assert isinstance(value, type), name
            members = _names(node.body)
            members.pop("__new__", None)
            members.pop("__call__", None)  # checked below: the C type calls through vectorcall
            assert set(members) == _public(value), f"{module}.{name}: stub members vs the type's"
            instance = value()
            for member, member_node in members.items():
                if isinstance(member_node, ast.FunctionDef) and not _is_property(member_node):
                    _check_function(f"{module}.{name}.{member}", member, getattr(instance, member), member_node)
        elif isinstance(node, ast.FunctionDef):
            assert callable(value), name
            _check_function(f"{module}.{name}", name, value, node)
        else:
            # the module's constants, of the type the stub gives them (int, or str: INTERFACE)
            assert isinstance(node, ast.AnnAssign) and isinstance(node.annotation, ast.Name), name
            assert type(value).__name__ == node.annotation.id, name


def _is_property(node: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Name) and d.id == "property" for d in node.decorator_list)


def test_the_passthrough_type_is_callable_as_its_stub_says() -> None:
    mod = _load("_passthrough")
    node = _stub("_passthrough")["Passthrough"]
    assert isinstance(node, ast.ClassDef)
    assert "__call__" in _names(node.body)
    assert callable(mod.Passthrough())
    assert mod.Passthrough()._passthrough_routes is None  # the stub types it `tuple[str, ...] | None`


def test_the_stubs_ship_with_the_package() -> None:
    """pyproject's package-data names the stubs and py.typed (PEP 561), so wheels and sdists carry them."""
    for name in ("_tracker.pyi", "_passthrough.pyi", "py.typed"):
        assert (PACKAGE / name).is_file(), name
    try:
        import tomllib
    except ImportError:  # 3.10
        pytest.skip("tomllib arrived in 3.11")
    pyproject = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = pyproject["tool"]["setuptools"]["package-data"]["memtracker_web"]
    assert {"py.typed", "*.pyi"} <= set(shipped)
