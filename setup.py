"""Builds the C extensions memtracker_web._tracker and ._passthrough with strict warnings.

Everything else lives in pyproject.toml. The extensions compile on every CPython
from 3.10; the reference-tracer engine inside _tracker is compiled only where the
headers have PyRefTracer (3.13+), under the guards of memtracker_web/_compat.h.

The engine reads CPython's internal frame headers, which move between releases.
On an interpreter this release was not tested on (a future 3.16, a build whose
internal headers changed) a failed compile must not fail ``pip install``: the
package installs without the extension and runs in census mode, and
``engine_status()["reason"]`` quotes the compiler. ``MEMTRACKER_REQUIRE_EXTENSION=1``
(and ``MEMTRACKER_WERROR=1``, which CI sets) makes a failed build fatal instead.
"""

from __future__ import annotations

import ast
import glob
import hashlib
import os
import platform
import re
import subprocess

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# Written next to the extension when its build failed; read by memtracker_web.engine.
BUILD_FAILURE_FILE = "_extension_build_failed.txt"

extra = []
if platform.python_implementation() == "CPython":
    extra = ["-Wall", "-Wextra", "-Wno-missing-field-initializers", "-std=c11"]
    # CI turns warnings into errors this way: setting CFLAGS instead would
    # replace the interpreter's own flags (-O3 among them) and test an
    # unoptimised build.
    if os.environ.get("MEMTRACKER_WERROR") == "1":
        extra.append("-Werror")


def _interface() -> str:
    """A fingerprint of _tracker's Python interface, its stub, compiled into it as
    INTERFACE: memtracker_web.core.engine compares it with the stub installed beside the
    extension, and refuses one built from other sources (an editable install's, left
    from before a pull) with a reason, instead of calling it with arguments it does not
    take."""
    try:
        with open(os.path.join("memtracker_web", "_tracker.pyi"), "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()[:16]
    except OSError:  # (no stub to build from: none is installed to compare with either)
        return "unmarked"


def _compiler_said(exc: Exception) -> str:
    """The compiler's first error line: the exception only names the command, whose
    output went to the build log, so the command is run once more to read it."""
    match = re.search(r"Command '?(\[.*\])'? returned", str(exc))
    if match:
        try:
            result = subprocess.run(ast.literal_eval(match.group(1)), capture_output=True, text=True, timeout=300)
            for line in (result.stderr + result.stdout).splitlines():
                if "error" in line:
                    return " ".join(line.split())
        except (OSError, ValueError, SyntaxError, subprocess.SubprocessError):
            pass
    return " ".join(str(exc).split())


def _required() -> bool:
    return "1" in (os.environ.get("MEMTRACKER_REQUIRE_EXTENSION"), os.environ.get("MEMTRACKER_WERROR"))


class OptionalBuildExt(build_ext):
    """build_ext whose failure leaves a note instead of failing the install."""

    _in_place = False

    def run(self) -> None:
        # setuptools' run() builds with inplace turned off, then copies to the sources
        self._in_place = bool(self.inplace or getattr(self, "editable_mode", False))
        super().run()

    def _note_paths(self) -> list[str]:
        """Where the package will be imported from: the build folder (wheels) and,
        for in-place and editable builds, the sources."""
        paths = [os.path.join(self.build_lib, "memtracker_web", BUILD_FAILURE_FILE)]
        if self._in_place:
            paths.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "memtracker_web", BUILD_FAILURE_FILE))
        return paths

    def build_extensions(self) -> None:
        for note in self._note_paths():
            if os.path.exists(note):
                os.remove(note)  # an earlier build's failure
        super().build_extensions()

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # the compiler's and the linker's errors have no common base
            if _required():
                raise
            detail = _compiler_said(exc)[:300]
            self.warn(
                f"building {ext.name} failed ({detail}); memtracker-web installs without it and runs in census mode"
            )
            for note in self._note_paths():
                os.makedirs(os.path.dirname(note), exist_ok=True)
                with open(note, "a", encoding="utf-8") as fh:
                    fh.write(f"{ext.name}\tCPython {platform.python_version()}\t{detail}\n")


ext_modules = []
if platform.python_implementation() == "CPython":
    ext_modules.append(
        Extension(
            "memtracker_web._tracker",
            # One translation unit: _tracker.c includes the units of memtracker_web/_engine/
            # (see its opening comment for why); they are listed as depends so that a change
            # rebuilds the extension and sdists carry them.
            sources=["memtracker_web/_tracker.c"],
            depends=[
                "memtracker_web/_compat.h",
                "memtracker_web/_tracker.pyi",
                *sorted(glob.glob("memtracker_web/_engine/*.[ch]")),
            ],
            define_macros=[("MT_INTERFACE", f'"{_interface()}"')],
            extra_compile_args=extra,
            # in-place (editable) builds then skip copying an extension that failed
            optional=not _required(),
        )
    )
    ext_modules.append(
        Extension(
            "memtracker_web._passthrough",
            sources=["memtracker_web/_passthrough.c"],
            depends=["memtracker_web/_compat.h"],
            extra_compile_args=extra,
            optional=not _required(),
        )
    )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
