"""README.md works as written.

1. Every ```python block runs in a fresh interpreter with the repository on
   PYTHONPATH. A block right after ``<!-- requires: exact -->`` is skipped
   where the exact engine is unavailable; ``<!-- no-run: reason -->`` skips it.
   A block after ``<!-- pytest-file: NAME -->`` is a test file: it is saved as
   NAME and run with pytest (exact engine only), and the ```text block after it
   is what pytest prints: each of its lines must be a line of the output, the
   last one the start of pytest's last line.
2. The first command of the "Quick start" section (install + demo) runs as a
   newcomer would: in a fresh venv, from a clean copy of the repository, and
   the demo must answer on its port in the mode this interpreter supports.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import NamedTuple

import pytest

import memtracker_web
from support import ENGINE

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"^<!--\s*(requires|no-run|pytest-file)\s*:\s*(.*?)\s*-->$")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
WARNING_LINE = re.compile(r"\b\w*Warning: ")
# Environment a newcomer does not have; PYTHONPATH would hide a broken install.
FOREIGN_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONWARNINGS",
    "VIRTUAL_ENV",
    "MEMTRACKER_TOKEN",
    "PROMETHEUS_MULTIPROC_DIR",
)


class Block(NamedTuple):
    lang: str
    code: str
    line: int  # of the opening fence
    heading: str  # nearest heading above it
    level: int  # that heading's level
    marker: tuple[str, str] | None


def parse(text: str) -> tuple[list[Block], list[tuple[int, int, str]]]:
    """Fenced blocks and (line, level, title) of headings outside them."""
    blocks: list[Block] = []
    headings: list[tuple[int, int, str]] = []
    lines = text.splitlines()
    heading, level, previous = "", 0, ""
    i = 0
    while i < len(lines):
        line = lines[i]
        fence = FENCE.match(line)
        if fence:
            closing = re.compile(r"^ {0,3}" + re.escape(fence.group(1)[0]) + "{" + str(len(fence.group(1))) + r",}\s*$")
            body: list[str] = []
            j = i + 1
            while j < len(lines) and not closing.match(lines[j]):
                body.append(lines[j])
                j += 1
            marker = MARKER.match(previous.strip())
            blocks.append(
                Block(
                    fence.group(2).lower(),
                    "\n".join(body) + "\n",
                    i + 1,
                    heading,
                    level,
                    (marker.group(1), marker.group(2)) if marker else None,
                )
            )
            previous, i = "", j + 1
            continue
        match = HEADING.match(line)
        if match:
            level, heading = len(match.group(1)), match.group(2)
            headings.append((i + 1, level, heading))
        if line.strip():
            previous = line
        i += 1
    return blocks, headings


def readme_blocks() -> list[Block]:
    return parse(README.read_text())[0] if README.exists() else []


PYTHON_BLOCKS = [b for b in readme_blocks() if b.lang in ("python", "py")]


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FOREIGN_ENV}
    env.update(extra)
    return env


def test_readme_has_python_examples_that_run() -> None:
    assert README.exists(), "README.md is missing (issue 7)"
    assert PYTHON_BLOCKS, "README.md has no ```python block"
    running = [b for b in PYTHON_BLOCKS if not b.marker or b.marker[0] != "no-run"]
    assert running, "every ```python block is marked no-run"
    for block in PYTHON_BLOCKS:
        if block.marker:
            kind, value = block.marker
            assert kind != "requires" or value == "exact", (
                f"README.md line {block.line}: unknown requirement {value!r} (only 'exact')"
            )
            assert kind != "no-run" or value, f"README.md line {block.line}: no-run needs a reason"


@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[f"line{b.line}" for b in PYTHON_BLOCKS])
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    if block.marker and block.marker[0] == "no-run":
        pytest.skip(f"README.md line {block.line} is marked no-run: {block.marker[1]}")
    if (block.marker == ("requires", "exact") or block.marker and block.marker[0] == "pytest-file") and not ENGINE[
        "available"
    ]:
        pytest.skip(f"README.md line {block.line} needs the exact engine: {ENGINE['reason']}")
    if block.marker and block.marker[0] == "pytest-file":
        run_test_file(block, tmp_path)
        return
    script = tmp_path / f"readme_line{block.line}.py"
    script.write_text(block.code)
    # A scratch directory: blocks may write files; the repo comes from PYTHONPATH.
    result = subprocess.run(
        [sys.executable, "-X", "dev", str(script)],
        cwd=tmp_path,
        env=child_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    shown = (
        f"README.md line {block.line} (under {block.heading!r}):\n{block.code}\n"
        f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    )
    assert result.returncode == 0, shown
    assert "Traceback" not in result.stderr, shown  # e.g. an exception in a thread
    assert not WARNING_LINE.search(result.stderr), shown
    check_printed(block, result.stdout, shown)


# `print(...)  # 50 <file>:10 in load_orders -- a remark`: what the line prints, <file> standing
# for a file name, before an optional " -- " remark.
PRINTED = re.compile(r"print\(.*\)\s+#\s(?P<text>.+?)(?:\s+--\s.*)?$")


def check_printed(block: Block, stdout: str, shown: str) -> None:
    """Each commented print's comment is a line of the output, in order."""
    lines = stdout.splitlines()
    at = 0
    for offset, code in enumerate(block.code.splitlines(), 1):
        match = PRINTED.search(code)
        if match is None:
            continue
        text = match.group("text")
        pattern = re.compile(re.escape(text).replace(re.escape("<file>"), r"\S+"))
        found = next((i for i in range(at, len(lines)) if pattern.fullmatch(lines[i].strip())), None)
        assert found is not None, f"README.md line {block.line + offset}: the comment says it prints {text!r}\n{shown}"
        at = found + 1


def test_the_printed_output_check_catches_a_wrong_comment() -> None:
    block = Block("python", "print(1, 2)    # 1 3\n", 1, "", 0, None)
    with pytest.raises(AssertionError, match="the comment says it prints '1 3'"):
        check_printed(block, "1 2\n", "")
    check_printed(Block("python", 'print("x.py:3")   # <file>:3 -- a remark\n', 1, "", 0, None), "x.py:3\n", "")


def run_test_file(block: Block, tmp_path: Path) -> None:
    blocks = readme_blocks()
    expected = next(b for b in blocks if b.line > block.line)
    assert expected.lang == "text", f"README.md line {block.line}: a pytest-file block needs a ```text block after it"
    (tmp_path / block.marker[1]).write_text(block.code)
    # as a user runs it: the installed plugin, from the file's directory
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-m", "pytest", "-q", "-p", "no:cacheprovider", block.marker[1]],
        cwd=tmp_path,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    shown = f"README.md line {block.line}:\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
    out = result.stdout.splitlines()
    *lines, last = expected.code.rstrip("\n").splitlines()
    for text in lines:
        assert text in out, f"README.md line {expected.line}: {text!r} is not a line of pytest's output\n{shown}"
    assert out and out[-1].startswith(last + " in "), shown
    assert not WARNING_LINE.search(result.stderr), shown


# -- Quick start -----------------------------------------------------------------


def quick_start_command() -> str:
    assert README.exists(), "README.md is missing (issue 7)"
    blocks, headings = parse(README.read_text())
    section = next(((line, level) for line, level, title in headings if "quick start" in title.lower()), None)
    assert section, "README.md has no heading containing 'Quick start'"
    start, level = section
    end = next((line for line, lvl, _ in headings if line > start and lvl <= level), float("inf"))
    shell = [b for b in blocks if start < b.line < end and b.lang in ("bash", "sh", "shell", "console")]
    assert shell, "the Quick start section has no ```bash block"
    commands = [
        line.strip().removeprefix("$ ")
        for line in shell[0].code.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert commands, "the Quick start's first bash block is empty"
    return commands[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def translate(argv: list[str], venv: Path) -> list[str]:
    """One command of the README as the fresh venv runs it (as if activated)."""
    python = str(venv / "bin" / "python")
    if argv[0] in ("pip", "pip3"):
        return [python, "-m", "pip", *argv[1:]]
    if argv[0] in ("python", "python3"):
        return [python, *argv[1:]]
    if argv[0] == "memtracker-web":
        return [str(venv / "bin" / "memtracker-web"), *argv[1:]]
    raise AssertionError(f"the Quick start runs {argv[0]!r}; this test knows pip, python and memtracker-web")


def with_option(argv: list[str], name: str, value: str) -> list[str]:
    if name in argv:
        i = argv.index(name)
        return argv[: i + 1] + [value] + argv[i + 2 :]
    return argv + [name, value]


def is_demo(argv: list[str]) -> bool:
    return (
        argv[:3] == ["python", "-m", "memtracker_web"]
        and argv[3:4] == ["demo"]
        or argv[:2] == ["memtracker-web", "demo"]
    )


def test_quick_start_in_a_fresh_venv(tmp_path: Path) -> None:
    command = quick_start_command()
    steps = [shlex.split(part) for part in command.split("&&")]
    assert len(steps) >= 2 and is_demo(steps[-1]), f"expected '<install> && <demo>', got {command!r}"
    assert any(step[:2] in (["pip", "install"], ["pip3", "install"]) for step in steps[:-1]), command

    # A clean copy: no built extension, no egg-info, no venvs; README included (pyproject's readme).
    repo = tmp_path / "memtracker-web"
    shutil.copytree(
        ROOT,
        repo,
        ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", "*.so", ".pytest_cache", "artifacts"
        ),
    )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=180)
    env = child_env(PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    log = tmp_path / "install.log"
    for step in steps[:-1]:
        with open(log, "ab") as out:
            done = subprocess.run(
                translate(step, venv), cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT, timeout=900
            )
        assert done.returncode == 0, f"{shlex.join(step)} failed:\n{log.read_text()[-4000:]}"

    port = free_port()
    demo = with_option(with_option(steps[-1], "--port", str(port)), "--duration", "120")
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        # From the repository root, as the README's reader runs it.
        proc = subprocess.Popen(translate(demo, venv), cwd=repo, env=env, stdout=stdout, stderr=stderr)
    try:
        snapshot = wait_for_snapshot(proc, port, out, err)
        expected = "exact" if ENGINE["available"] else "census"
        assert snapshot["mode"] == expected, f"the demo runs in {snapshot['mode']} mode:\n{out.read_text()}"
        assert "memtracker_web.cli.demo_app.CacheEntry" in {t["type"] for t in snapshot["types"]}
        # The server answers a moment before the demo prints its URLs.
        page = f"page:    http://127.0.0.1:{port}/debug/memory\n"
        deadline = time.monotonic() + 10
        while page not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert page in out.read_text(), out.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, f"{out.read_text()}\n{err.read_text()}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    script = subprocess.run(
        [str(venv / "bin" / "memtracker-web"), "--version"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert script.stdout == f"memtracker-web {memtracker_web.__version__}\n", script.stderr


def wait_for_snapshot(proc: subprocess.Popen, port: int, out: Path, err: Path) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the demo exited with {proc.returncode}:\n{out.read_text()}\n{err.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/debug/memory?format=json", timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"the demo did not answer on port {port} within 60 s:\n{out.read_text()}\n{err.read_text()}")
