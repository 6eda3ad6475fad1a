"""The Dockerfile's essentials, read as Docker reads it (no Docker engine here).

The HEALTHCHECK's command is also run for real against servers on 127.0.0.1.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
PORT = 8000


class Instruction(NamedTuple):
    keyword: str
    args: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # Docker drops comment lines inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        instructions.append(Instruction(keyword.upper(), " ".join(args.split()), start))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


INSTRUCTIONS = parse(DOCKERFILE.read_text())
COMMENTS = "\n".join(line for line in DOCKERFILE.read_text().splitlines() if line.lstrip().startswith("#"))


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in INSTRUCTIONS:
        if ins.keyword == "FROM":
            result.append([])
        assert result, f"line {ins.line}: {ins.keyword} before the first FROM"
        result[-1].append(ins)
    return result


FINAL = stages()[-1]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [ins for ins in stage if ins.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the stage, found {len(found)}"
    return found[0]


def exec_form(ins: Instruction) -> list[str]:
    """CMD/HEALTHCHECK CMD in JSON (exec) form: no shell between Docker and the program."""
    text = ins.args
    if ins.keyword == "HEALTHCHECK":
        text = text[text.index(" CMD ") + len(" CMD ") :]
    argv = json.loads(text)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv)
    return argv


def option(argv: list[str], *names: str) -> str:
    for i, arg in enumerate(argv):
        if arg in names:
            return argv[i + 1]
    raise AssertionError(f"none of {names} in {argv}")


def install_line() -> str:
    runs = [ins.args for stage in stages() for ins in stage if ins.keyword == "RUN" and "pip install" in ins.args]
    assert len(runs) == 1, runs
    return runs[0]


def test_every_stage_is_python_313_or_newer_slim() -> None:
    images = [ins.args.split()[0] for ins in INSTRUCTIONS if ins.keyword == "FROM"]
    assert len(images) == 2, "a build stage with the compiler and a slim final stage"
    for image in images:
        match = re.fullmatch(r"python:(\d+)\.(\d+)(?:\.(\d+))?-slim(?:-[a-z]+)?", image)
        assert match, f"{image}: want an official python:3.X-slim image"
        major, minor, patch = (int(g) if g else None for g in match.groups())
        assert (major, minor) >= (3, 13), image
        if (major, minor) == (3, 13) and patch is not None:
            assert patch >= 3, f"{image}: 3.13.0-3.13.2 refuse the exact engine"


def test_the_image_is_the_newest_cpython_ci_tests() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    tested = {(3, 13)} | {tuple(map(int, v.split("."))) for v in re.findall(r"ensure-cpython (3\.\d+)", ci)}
    images = [ins.args.split()[0] for ins in INSTRUCTIONS if ins.keyword == "FROM"]
    for image in images:
        version = tuple(map(int, re.match(r"python:(\d+)\.(\d+)", image).groups()))
        assert version == max(tested), f"{image}: .ci/run tests up to {max(tested)}"


def test_compiler_stays_in_the_build_stage() -> None:
    build, final = stages()
    assert build[0].args.endswith(" AS build")
    assert any(
        ins.keyword == "RUN" and "apt-get install" in ins.args and " gcc " in f"{ins.args} " and "libc6-dev" in ins.args
        for ins in build
    )
    assert not [ins for ins in final if ins.keyword == "RUN" and re.search(r"\b(apt-get|gcc)\b", ins.args)]
    assert any(ins.keyword == "COPY" and ins.args == "--from=build /opt/venv /opt/venv" for ins in final)
    env = " ".join(ins.args for ins in final if ins.keyword == "ENV")
    assert 'PATH="/opt/venv/bin:$PATH"' in env


def test_installs_the_package_with_its_extension_and_the_server_stack() -> None:
    tomllib = pytest.importorskip("tomllib")
    line = install_line()
    argv = shlex.split(line.split("pip install", 1)[1].split("&&")[0])
    package = [a for a in argv if a.startswith(".")]
    assert len(package) == 1, argv
    extras = re.fullmatch(r"\.\[([a-z,]+)\]", package[0])
    assert extras, f"install the source tree with extras, got {package[0]}"
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in extras.group(1).split(","):
        assert extra in declared, f"extra [{extra}] is not declared in pyproject.toml"
    assert "fastapi" in extras.group(1).split(","), "the example app imports fastapi"
    pins = {a.split("==")[0]: a.split("==")[1] for a in argv if "==" in a}
    assert set(pins) == {"gunicorn", "uvicorn", "uvicorn-worker"}, pins
    # The build proves the exact engine loads from the installed package.
    assert "cd / " in line and "engine_status()" in line and "assert s['available']" in line
    build = stages()[0]
    copied = [ins.args.split()[:-1] for ins in build if ins.keyword == "COPY"]
    sources = {src.rstrip("/") for group in copied for src in group}
    assert sources == {"pyproject.toml", "setup.py", "README.md", "memtracker_web"}
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_runs_as_a_non_root_user() -> None:
    user = only(FINAL, "USER").args
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    useradd = [ins.args for ins in FINAL if ins.keyword == "RUN" and "useradd" in ins.args]
    assert len(useradd) == 1 and useradd[0].split()[-1] == user
    uid = re.search(r"--uid (\d+)", useradd[0])
    assert uid and int(uid.group(1)) >= 1000
    order = [ins.keyword for ins in FINAL]
    assert order.index("USER") < order.index("CMD")
    # Everything copied after the user exists stays root-owned: the app cannot rewrite its code.
    assert not [ins for ins in FINAL if ins.keyword == "COPY" and "--chown" in ins.args]


def test_cmd_is_gunicorn_with_uvicorn_workers_serving_the_fastapi_example() -> None:
    argv = exec_form(only(FINAL, "CMD"))
    assert argv[0] == "gunicorn"
    worker = option(argv, "-k", "--worker-class")
    assert worker == "uvicorn_worker.UvicornWorker"  # uvicorn.workers is deprecated upstream
    assert "uvicorn-worker==" in install_line()
    assert option(argv, "-b", "--bind") == f"0.0.0.0:{PORT}"
    config = option(argv, "-c", "--config")
    assert (ROOT / config).is_file()
    module, _, attr = argv[-1].partition(":")
    assert (module, attr) == ("examples.fastapi_app", "app")
    assert re.search(r"^app = FastAPI\(", (ROOT / "examples" / "fastapi_app.py").read_text(), re.M)
    # gunicorn imports the app from its working directory, where the examples are copied.
    assert only(FINAL, "WORKDIR").args == "/app"
    assert any(ins.keyword == "COPY" and ins.args == "examples/ examples/" for ins in FINAL)
    env = " ".join(ins.args for ins in FINAL if ins.keyword == "ENV")
    assert "PROMETHEUS_MULTIPROC_DIR=/tmp/" in env, "the config's multiprocess metrics need a writable dir"


def test_expose_and_healthcheck_use_the_served_port() -> None:
    assert only(FINAL, "EXPOSE").args == str(PORT)
    health = only(FINAL, "HEALTHCHECK")
    for setting in ("--interval=", "--timeout=", "--retries="):
        assert setting in health.args
    argv = exec_form(health)
    assert argv[:2] == ["python", "-c"] and len(argv) == 3
    assert "urllib.request" in argv[2] and f"http://127.0.0.1:{PORT}/" in argv[2]
    assert "curl" not in health.args and "wget" not in health.args  # slim images have neither


def test_memtracker_token_is_documented_and_has_no_value() -> None:
    envs = [ins.args for ins in FINAL if ins.keyword == "ENV" and "MEMTRACKER_TOKEN" in ins.args]
    assert envs == ['MEMTRACKER_TOKEN=""']
    assert not [ins for ins in INSTRUCTIONS if ins.keyword == "ARG" and "TOKEN" in ins.args]
    assert "MEMTRACKER_TOKEN" in COMMENTS and "-e MEMTRACKER_TOKEN=" in COMMENTS


def test_dockerignore_keeps_builds_out_but_not_what_is_copied() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for wanted in (".git", ".venv*", "build", "**/*.so", "**/__pycache__"):
        assert wanted in patterns
    copied = {
        src.rstrip("/")
        for ins in INSTRUCTIONS
        if ins.keyword == "COPY" and "--from" not in ins.args
        for src in ins.args.split()[:-1]
    }
    for source in copied:
        hits = [p for p in patterns if fnmatch.fnmatch(source, p) or fnmatch.fnmatch(source, p.rstrip("/*"))]
        assert not hits, f"COPY {source} is excluded from the build context by {hits}"


# -- the HEALTHCHECK command, run -------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(params=[200, 500], ids=["healthy", "failing"])
def server(request: pytest.FixtureRequest) -> Iterator[tuple[int, int]]:
    handler = type("Handler", (_Handler,), {"status": request.param})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], request.param
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def healthcheck(port: int) -> subprocess.CompletedProcess:
    code = exec_form(only(FINAL, "HEALTHCHECK"))[2].replace(f":{PORT}/", f":{port}/")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)


def test_healthcheck_passes_only_on_a_200(server: tuple[int, int]) -> None:
    port, status = server
    result = healthcheck(port)
    assert (result.returncode == 0) == (status == 200), result.stderr


def test_healthcheck_fails_when_nothing_listens() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert healthcheck(port).returncode != 0
