# Thin wrappers; everything runs through uv, which is installed from PyPI when missing.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
PY_DIRS := libs services tests bench migrations

.PHONY: run test lint typecheck bench migrate sync format admin

$(UV):  # a private venv works even where the system Python refuses user installs (PEP 668)
	python3 -m venv $(CURDIR)/.tools && $(CURDIR)/.tools/bin/pip install --quiet uv \
	  || (python3 -m pip install --user --quiet uv && mkdir -p $(CURDIR)/.tools/bin \
	      && ln -sf $(HOME)/.local/bin/uv $(CURDIR)/.tools/bin/uv)

# Bytecode is compiled here, once: where PYTHONDONTWRITEBYTECODE is set (as on our CI machines) Python
# would otherwise recompile every module of every process it starts, tripling start-up times.
sync: $(UV)
	$(UV) sync --frozen --compile-bytecode
	$(UV) run --no-sync python -m compileall -q libs services migrations


run: sync  ## the whole platform on the embedded stack (or on KEPLER_DATABASE_URL / KEPLER_REDIS_URL)
	$(UV) run python -m kepler_devstack run

test: sync  ## real Postgres and Redis: KEPLER_TEST_DATABASE_URL / KEPLER_TEST_REDIS_URL, else embedded
	$(UV) run pytest

lint: sync
	$(UV) run ruff check $(PY_DIRS)
	$(UV) run ruff format --check $(PY_DIRS)

format: sync
	$(UV) run ruff format $(PY_DIRS)
	$(UV) run ruff check --fix $(PY_DIRS)

typecheck: sync  ## one mypy run per package: every package has its own tests/ folder
	@set -e; for pkg in libs/* services/*; do echo "mypy $$pkg"; $(UV) run mypy $$pkg; done
	$(UV) run mypy tests bench migrations

bench: sync
	@for b in bench/*.py; do echo "== $$b"; $(UV) run python $$b || exit 1; done

migrate: sync  ## alembic upgrade head on KEPLER_DATABASE_URL, else on the embedded Postgres
	$(UV) run python -m kepler_devstack migrate

admin: sync  ## make admin EMAIL=you@example.com [PASSWORD_STDIN=1] [PROMOTE=1]: the first admin, on the running `make run` stack
	@test -n "$(EMAIL)" || { echo "usage: make admin EMAIL=you@example.com [PASSWORD_STDIN=1]" >&2; exit 2; }
	$(UV) run --no-sync kepler-admin create-admin --email "$(EMAIL)" $(if $(PASSWORD_STDIN),--password-stdin) $(if $(PROMOTE),--promote)
