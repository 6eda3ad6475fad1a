# memtracker-web's FastAPI example (examples/fastapi_app.py, with a deliberate
# leak on /leak) under gunicorn with uvicorn workers.
#
#   docker build -t memtracker-web .
#   docker run --rm -p 8000:8000 -e MEMTRACKER_TOKEN="$(openssl rand -hex 32)" memtracker-web
#
# MEMTRACKER_TOKEN: the bearer token that /debug/memory and /metrics require
# from anything but loopback. A request from outside the container never comes
# from loopback, so without a token the page answers 403 to it. Pass the token
# at run time (-e or a secret); never bake it into the image. Then:
#   curl -H "Authorization: Bearer $TOKEN" "http://localhost:8000/debug/memory?format=json"
#   MEMTRACKER_TOKEN=$TOKEN python -m memtracker_web report http://localhost:8000/debug/memory
#
# Two workers (examples/gunicorn.conf.py), each with its own monitor. Through
# PROMETHEUS_MULTIPROC_DIR (also the default MEMTRACKER_SHARED_DIR) the page of
# whichever worker answers shows every worker and the totals, and /metrics
# merges them. More workers: -e GUNICORN_CMD_ARGS="--workers 4".

# Build stage: the C extension needs a compiler; it stays in this stage.
FROM python:3.15-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY memtracker_web/ memtracker_web/
# uvicorn.workers is deprecated in uvicorn; its worker class lives in the
# uvicorn-worker package now. Pinned: the server stack this image was written for.
# The last step fails the build unless the exact engine loads (from /, not from
# the source tree, so it is the installed extension that is imported).
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir ".[fastapi]" \
        "gunicorn==27.0.1" "uvicorn==0.54.0" "uvicorn-worker==0.4.0" \
    && cd / \
    && /opt/venv/bin/python -c "import memtracker_web as m; s = m.engine_status(); assert s['available'], s"

FROM python:3.15-slim
COPY --from=build /opt/venv /opt/venv
ENV PATH="/opt/venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/memtracker-prom
# Empty on purpose: set it with `docker run -e MEMTRACKER_TOKEN=...` (see above).
ENV MEMTRACKER_TOKEN=""
RUN useradd --create-home --uid 10001 --user-group app
WORKDIR /app
# Owned by root and read-only for the app user: the code cannot be rewritten at run time.
COPY examples/ examples/
USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/', timeout=4).status == 200 else 1)"]
CMD ["gunicorn", "-c", "examples/gunicorn.conf.py", "--bind", "0.0.0.0:8000", "-k", "uvicorn_worker.UvicornWorker", "examples.fastapi_app:app"]
