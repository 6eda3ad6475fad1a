# Short ways to run the checks. Run them inside the venv you installed with
#   pip install -e ".[test,dev]"
# or pass PYTHON=/path/to/venv/bin/python. See CONTRIBUTING.md.
PYTHON ?= python
# make bench BENCH="bench/bench_queries.py" (or any script in bench/, with its own flags)
BENCH ?= bench/bench_core.py --rounds 7
C_SOURCES := memtracker_web/_tracker.c memtracker_web/_passthrough.c memtracker_web/_compat.h \
	memtracker_web/_engine/*.[ch]

.PHONY: lint format test bench ci

# ruff (lint rules and formatting in pyproject.toml), clang-format (.clang-format), mypy
# (the modules listed in [tool.mypy]) and lint-imports (the layers: [tool.importlinter])
lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	clang-format --dry-run --Werror $(C_SOURCES)
	$(PYTHON) -m mypy
	$(PYTHON) -c 'from importlinter.cli import lint_imports_command; lint_imports_command()'   # lint-imports

# Rewrites files: ruff format for the Python, clang-format (.clang-format) for the C
format:
	$(PYTHON) -m ruff format .
	clang-format -i $(C_SOURCES)

# The README's test command
test:
	$(PYTHON) -X dev -m pytest

# Results and the command behind each number: bench/RESULTS.md
bench:
	PYTHONPATH=. $(PYTHON) $(BENCH)

# The whole CI on this checkout: needs ../shared beside it (see .ci/run)
ci:
	.ci/run
