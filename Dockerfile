# syntax=docker/dockerfile:1
# One image for every Kepler service, worker and the migration job; the container command picks which:
#   uvicorn kepler_gateway.app:create_app --factory --host 0.0.0.0 --port 8000
#   arq kepler_app_service.tasks.WorkerSettings
#   alembic upgrade head
# Build: docker build -t kepler:local .

ARG PYTHON_VERSION=3.11

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

# ---- manifests: just the workspace's pyproject.toml files, so the dependency layer survives code edits ----
FROM python:${PYTHON_VERSION}-slim-bookworm AS manifests
WORKDIR /src
COPY libs libs
COPY services services
RUN find libs services -type f ! -name pyproject.toml -delete

# ---- builder: resolve exactly what uv.lock says into /app/.venv -----------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
# --no-default-groups: the embedded PostgreSQL/Redis (`make run` on a laptop), the Kubernetes contract fake and
# the test tools (the `sandbox` and `dev` groups of pyproject.toml) stay out of the image.
WORKDIR /src

# Third-party dependencies first: this layer is reused until uv.lock or a pyproject.toml changes.
COPY pyproject.toml uv.lock ./
COPY --from=manifests /src/libs libs
COPY --from=manifests /src/services services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-install-workspace

# Then Kepler's own packages, installed as wheels (not editable) so the runtime needs no source tree.
COPY libs libs
COPY services services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-default-groups --no-editable

# ---- runtime: the virtualenv, the migrations and nothing else --------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin kepler
WORKDIR /app
COPY --from=builder /app/.venv /app/.venv
COPY alembic.ini ./
COPY migrations migrations
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001
EXPOSE 8000
CMD ["uvicorn", "kepler_gateway.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--no-proxy-headers"]
