# syntax=docker/dockerfile:1.7
# Two images from one file, each with only its own code and wheels (cdk/artifacts.py):
#   docker build --target edge .     -> python -m grpc_edge (the default command)
#   docker build --target worker .   -> python -m functions.queue_worker (default), or with
#                                       the command `python -m functions.standby`
# There is no ENTRYPOINT: ECS passes a task definition's Command as the image's CMD, which
# is appended to any ENTRYPOINT, so the task definitions carry the full argv
# (cdk/constructs/*: EDGE_COMMAND, WORKER_COMMAND, STANDBY_COMMAND).
# The edge's HEALTHCHECK calls grpc.health.v1, for `docker run` only: ECS ignores an
# image's HEALTHCHECK and runs only the health check a container definition names
# (the edge is judged by the ALB; the workers name none).
ARG PYTHON_VERSION=3.11

FROM ghcr.io/astral-sh/uv:0.5 AS uv

# --- build: the artifact tree (/app/lib) of each target, from exactly uv.lock ----------
FROM python:${PYTHON_VERSION}-slim AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PYTHON_DOWNLOADS=never
WORKDIR /src
# The lock and every member's metadata first: the wheel layer is reused until they change.
COPY pyproject.toml uv.lock ./
COPY client/pyproject.toml client/
COPY core/pyproject.toml core/
COPY edge/pyproject.toml edge/
COPY workers/pyproject.toml workers/
COPY devstack/pyproject.toml devstack/
COPY cdk/artifacts.py cdk/

FROM build AS edge-build
RUN --mount=type=cache,target=/root/.cache/uv python cdk/artifacts.py edge /app/lib --step deps
COPY client client
COPY core core
COPY edge edge
RUN python cdk/artifacts.py edge /app/lib --step code && python -m compileall -q /app/lib

FROM build AS worker-build
RUN --mount=type=cache,target=/root/.cache/uv python cdk/artifacts.py worker /app/lib --step deps
COPY client client
COPY core core
COPY workers workers
RUN python cdk/artifacts.py worker /app/lib --step code && python -m compileall -q /app/lib

# --- runtime: the artifact tree and nothing else, as a non-root user -------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
RUN groupadd --system --gid 10001 reportgrid \
 && useradd --system --uid 10001 --gid reportgrid --no-create-home --shell /usr/sbin/nologin reportgrid
ENV PYTHONPATH=/app/lib \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /app
USER 10001:10001
# SIGTERM goes straight to python (exec form, PID 1), which drains and exits 0.
STOPSIGNAL SIGTERM
# Empty ENTRYPOINT: CMD (or the task definition's Command, which replaces it) is the argv.
ENTRYPOINT []

FROM runtime AS worker
COPY --from=worker-build /app/lib /app/lib
CMD ["python", "-m", "functions.queue_worker"]

# The last stage is the default target: `docker build .` builds the edge.
FROM runtime AS edge
COPY --from=edge-build /app/lib /app/lib
ENV REPORTGRID_EDGE_PORT=50051
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "grpc_edge.healthcheck"]
CMD ["python", "-m", "grpc_edge"]
