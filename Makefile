# mlqueue: `make run` starts the whole stack on this machine, `make test` runs the test suite,
# `make test-fast` its in-process and unit tiers (no worker, no subprocess stack: under a minute).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint models publish bench bench-quick api-key clean

$(STAMP): requirements/*.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m devtools.stack

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

# tests/fast (the app in process on a real Redis, marked inprocess) and every test that needs no
# server (not integration), less the few that train a network or wait out timeouts (slow); on every
# core (pytest-xdist: each process has its own Redis fixture), as collecting alone takes 15 s
test-fast: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -n auto -m "(inprocess or not integration) and not slow"

# ruff, then mypy --strict over the product packages (pyproject.toml [tool.mypy]; about 6 s)
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

models: $(STAMP)
	$(PY) -m training --force

# make publish MODEL=iris [VERSION=3] [URL=s3://bucket/prefix]   (URL defaults to MLQUEUE_MODELS_URL)
publish: $(STAMP)
	$(PY) -m training $(MODEL) $(if $(VERSION),--version $(VERSION)) --publish $(or $(URL),$(MLQUEUE_MODELS_URL))

bench: $(STAMP)
	$(PY) -m bench.run

bench-quick: $(STAMP)
	$(PY) -m bench.run --quick

# make api-key NAME=ci SCOPES=submit,read [WEIGHT=2 PRIORITY=low MAX_PRIORITY=normal]
# (prints the key once, and its MLQUEUE_API_KEYS entry)
DEFAULT_SCOPES := submit,read  # a variable: a literal comma would split $(or ...)'s arguments
api-key: $(STAMP)
	$(PY) -m api.keys $(or $(NAME),me) --scopes $(or $(SCOPES),$(DEFAULT_SCOPES)) \
		$(if $(WEIGHT),--weight $(WEIGHT)) $(if $(PRIORITY),--priority $(PRIORITY)) \
		$(if $(MAX_PRIORITY),--max-priority $(MAX_PRIORITY))

clean:
	rm -rf $(VENV) .run .pytest_cache .ruff_cache .mypy_cache
