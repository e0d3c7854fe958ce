# syntax=docker/dockerfile:1.7
# One image for the edge and the Fargate workers; the command (the whole argv) picks the role:
#   docker run IMAGE                                      -> python -m grpc_edge
#   docker run IMAGE python -m functions.queue_worker     -> the heavy-report worker
#   docker run IMAGE python -m functions.standby          -> the standby worker
# There is no ENTRYPOINT: ECS passes a task definition's Command as the image's CMD, which
# is appended to any ENTRYPOINT, so the task definitions carry the full argv
# (cdk/constructs/*: EDGE_COMMAND, WORKER_COMMAND, STANDBY_COMMAND).
# The HEALTHCHECK calls grpc.health.v1 on the edge, for `docker run` only: ECS ignores an
# image's HEALTHCHECK and runs only the health check a container definition names
# (the edge is judged by the ALB; the workers name none).
ARG PYTHON_VERSION=3.11

FROM ghcr.io/astral-sh/uv:0.5 AS uv

# --- build: resolve exactly uv.lock, runtime dependencies only -------------------------
FROM python:${PYTHON_VERSION}-slim AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first: this layer is reused until pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-install-project
COPY README.md ./
COPY reportgrid ./reportgrid
COPY grpc_edge ./grpc_edge
COPY functions ./functions
# The project itself as a wheel in the venv (not editable), so the runtime needs no source.
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-editable

# --- runtime: the venv and nothing else, as a non-root user ----------------------------
FROM python:${PYTHON_VERSION}-slim AS runtime
RUN groupadd --system --gid 10001 reportgrid \
 && useradd --system --uid 10001 --gid reportgrid --no-create-home --shell /usr/sbin/nologin reportgrid
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    REPORTGRID_EDGE_PORT=50051
WORKDIR /app
USER 10001:10001
EXPOSE 50051
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-m", "grpc_edge.healthcheck"]
# SIGTERM goes straight to python (exec form, PID 1), which drains and exits 0.
STOPSIGNAL SIGTERM
# Empty ENTRYPOINT: CMD (or the task definition's Command, which replaces it) is the argv.
ENTRYPOINT []
CMD ["python", "-m", "grpc_edge"]
