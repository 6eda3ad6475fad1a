"""Builds the C extension memtracker_web._tracker with strict warnings.

Everything else lives in pyproject.toml. The extension compiles on every CPython
from 3.10; the reference-tracer engine inside it is compiled only where the
headers have PyRefTracer (3.13+), under PY_VERSION_HEX guards.
"""
from __future__ import annotations

import os
import platform

from setuptools import Extension, setup

extra = []
if platform.python_implementation() == "CPython":
    extra = ["-Wall", "-Wextra", "-Wno-missing-field-initializers", "-std=c11"]
    # CI turns warnings into errors this way: setting CFLAGS instead would
    # replace the interpreter's own flags (-O3 among them) and test an
    # unoptimised build.
    if os.environ.get("MEMTRACKER_WERROR") == "1":
        extra.append("-Werror")

ext_modules = []
if platform.python_implementation() == "CPython":
    ext_modules.append(
        Extension(
            "memtracker_web._tracker",
            sources=["memtracker_web/_tracker.c"],
            extra_compile_args=extra,
        )
    )
    ext_modules.append(
        Extension(
            "memtracker_web._passthrough",
            sources=["memtracker_web/_passthrough.c"],
            extra_compile_args=extra,
        )
    )

setup(ext_modules=ext_modules)
