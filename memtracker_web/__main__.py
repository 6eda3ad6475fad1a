"""``python -m memtracker_web``; also the ``memtracker-web`` console script (pyproject)."""
from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from .cli import main

__all__ = ["main"]


def installed_copy_with_engine() -> Optional[Path]:
    """The installed package, when ``python -m`` picked up a source tree without the extension instead.

    ``python -m`` puts the current directory first on sys.path, so right after
    ``pip install .`` in a checkout it imports the sources, whose extension was
    built into the wheel and not next to them: the demo would run in census
    mode although the exact engine is installed.
    """
    from . import engine

    if engine._tracker is not None or sys.version_info < (3, 13) or os.name != "posix":
        return None
    here = Path(__file__).resolve().parent
    others = [p for p in sys.path if p and Path(p).resolve() != here.parent]
    spec = importlib.machinery.PathFinder.find_spec("memtracker_web", others)
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(list(spec.submodule_search_locations)[0]).resolve()
    built = any((package / f"_tracker{suffix}").exists() for suffix in importlib.machinery.EXTENSION_SUFFIXES)
    return package if package != here and built else None


def _rerun_installed_demo() -> None:
    # Only the demo needs the engine; the environment marker prevents a loop.
    if sys.argv[1:2] != ["demo"] or os.environ.get("MEMTRACKER_REEXEC"):
        return
    package = installed_copy_with_engine()
    if package is None:
        return
    print(f"memtracker-web: the source tree in {Path.cwd()} has no built extension; "
          f"running the installed package ({package})", file=sys.stderr, flush=True)
    os.environ["MEMTRACKER_REEXEC"] = "1"
    # -P: do not put the current directory on sys.path this time.
    flags = subprocess._args_from_interpreter_flags()
    os.execv(sys.executable, [sys.executable, *flags, "-P", "-m", "memtracker_web", *sys.argv[1:]])


if __name__ == "__main__":
    _rerun_installed_demo()
    sys.exit(main())
