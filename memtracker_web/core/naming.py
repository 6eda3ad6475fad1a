"""Type names as users see them (``module.QualName``) and the way back.

The way back never evaluates text: it finds the module part and walks the
qualname through module and class ``__dict__``s (no getattr: a name runs no
code of anyone's, no module ``__getattr__``, no descriptor), so a name can only
reach classes defined there. For names from requests (``import_modules=False``)
nothing is imported, dunder segments are refused, and every name that is not
a class we can track gets the same answer (no oracle on what else is there).
"""

from __future__ import annotations

import importlib
import re
import sys

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
MAX_NAME_LENGTH = 300


class TypeNameError(ValueError):
    """A type name that is malformed or does not name a class."""


# A metaclass may define __module__ as a class attribute of its own: read type's
# descriptor, which runs no code of anyone's.
_TYPE_MODULE_OF = type.__dict__["__module__"].__get__


def type_module(cls: type) -> str:
    """The class's module as type itself keeps it, or "" (a class made where
    globals had no ``__name__`` has none)."""
    try:
        module = _TYPE_MODULE_OF(cls)
    except AttributeError:
        return ""
    return module if isinstance(module, str) else ""


# A metaclass may define __flags__ as a class attribute of its own: read type's
# descriptor, which runs no code of anyone's.
type_flags = type.__dict__["__flags__"].__get__
IMMUTABLETYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE
HEAPTYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE


def is_python_class(cls: type) -> bool:
    """A class defined in Python code (a class statement or type()): a heap type that
    is not immutable. C types are static, or (many of the stdlib's since 3.12, and
    functools.partial, locks) heap types made immutable, which no class statement makes."""
    return type_flags(cls) & (HEAPTYPE | IMMUTABLETYPE) == HEAPTYPE


def type_name(cls: type) -> str:
    """``module.QualName`` of a class; builtins as ``builtins.dict``."""
    module = getattr(cls, "__module__", None) or "builtins"
    qualname = getattr(cls, "__qualname__", None) or getattr(cls, "__name__", "?")
    return f"{module}.{qualname}"


def resolve_type(name: str, *, import_modules: bool = True) -> type:
    """The class called ``name`` (``module.QualName``).

    Tries the longest importable module prefix first, then walks the rest as
    attributes. Raises TypeNameError naming the problem when the text is not a
    dotted name, nothing importable matches, or the result is not a class.
    """
    if not isinstance(name, str) or not name:
        raise TypeNameError("type name must be a non-empty string like 'myapp.models.Order'")
    if len(name) > MAX_NAME_LENGTH:
        raise TypeNameError(f"type name is longer than {MAX_NAME_LENGTH} characters")
    if not _NAME.match(name):
        raise TypeNameError(f"{name!r} is not a dotted name like 'myapp.models.Order'")
    parts = name.split(".")
    if "<locals>" in name:
        raise TypeNameError(f"{name!r} is local to a function and cannot be looked up by name")
    not_found = TypeNameError(f"no class named {name!r} is loaded")
    if not import_modules and any(p.startswith("__") and p.endswith("__") for p in parts):
        raise not_found
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        module = sys.modules.get(module_name)
        if module is None and import_modules:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            except Exception as exc:  # a module that fails on import is not ours to hide
                raise TypeNameError(f"importing {module_name!r} failed: {exc.__class__.__name__}: {exc}") from None
        if module is None:
            continue
        obj = _lookup(module, parts[split:])
        if obj is _MISSING:
            continue
        if not isinstance(obj, type):
            if not import_modules:
                raise not_found
            raise TypeNameError(f"{name!r} is a {type(obj).__name__}, not a class")
        return obj
    if not import_modules:
        raise not_found
    raise TypeNameError(f"no class named {name!r} could be found")


_MISSING = object()
# type's own descriptors: a metaclass that defines __mro__ or __dict__ runs no code here
# (read by the retention search too)
TYPE_MRO = type.__dict__["__mro__"].__get__
TYPE_DICT = type.__dict__["__dict__"].__get__


def _lookup(obj: object, attrs: list[str]) -> object:
    """Walk ``attrs`` from ``obj`` through ``__dict__``s only: a module's own, a
    class's along its MRO. Never calls into the objects walked."""
    for attr in attrs:
        try:
            if issubclass(type(obj), type):
                # (type's own descriptors: a metaclass that defines __mro__ or __dict__ runs no code here)
                namespaces = (TYPE_DICT(k) for k in TYPE_MRO(obj))
                found = next((namespace[attr] for namespace in namespaces if attr in namespace), _MISSING)
            else:
                namespace = object.__getattribute__(obj, "__dict__") if hasattr(type(obj), "__dict__") else None
                found = namespace.get(attr, _MISSING) if isinstance(namespace, dict) else _MISSING
        except Exception:
            return _MISSING
        if found is _MISSING:
            return _MISSING
        obj = found
    return obj
