# mlqueue: `make run` starts the whole stack on this machine, `make test` runs the test suite.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint models publish bench bench-quick api-key clean

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

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

models: $(STAMP)
	$(PY) -m training --force

# make publish MODEL=iris [VERSION=3] [URL=s3://bucket/prefix]   (URL defaults to MLQUEUE_MODELS_URL)
publish: $(STAMP)
	$(PY) -m training $(MODEL) $(if $(VERSION),--version $(VERSION)) --publish $(or $(URL),$(MLQUEUE_MODELS_URL))

bench: $(STAMP)
	$(PY) -m bench.run

bench-quick: $(STAMP)
	$(PY) -m bench.run --quick

# make api-key NAME=ci SCOPES=submit,read   (prints the key once, and its MLQUEUE_API_KEYS entry)
api-key: $(STAMP)
	$(PY) -m api.keys $(or $(NAME),me) --scopes $(or $(SCOPES),submit,read)

clean:
	rm -rf $(VENV) .run .pytest_cache
