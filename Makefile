# The two commands of the README, and the checks CI runs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: demo test install services check lint typecheck docs pytest clean peers bench-peers

## Run the sample app on the embedded default (SQLite, no servers).
demo: install
	$(PY) -m sample_app demo

## Install, start PostgreSQL and Kafka, run every check and the whole test suite.
test: install services check pytest

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

# EVENTSOURCE_EXTERNAL_SERVICES=1 (with the two URLs set) uses services that run elsewhere.
services: install
	@if [ -n "$$EVENTSOURCE_EXTERNAL_SERVICES" ]; then echo "using external services"; \
	else PYTHON=$(PY) bash scripts/services.sh up; fi

check: lint typecheck docs

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy --strict eventsource migrations

## Build the docs site into site/ from docs/ and the docstrings; warnings are errors.
## (The variable silences a notice the theme prints about its own future.)
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Two processes share the suite; the tests that stop the shared Kafka broker
# run alone afterwards. PYTEST_ARGS (e.g. tests/store) replaces both runs by one.
pytest: install
	eval "$$(bash scripts/services.sh env)" && \
	if [ -n '$(PYTEST_ARGS)' ]; then $(PY) -m pytest $(PYTEST_ARGS); else \
	$(PY) -m pytest -n 2 --dist loadfile -m "not serial" && $(PY) -m pytest -m serial; fi

## The peer benchmark's environments: `eventsourcing` into .venv (the `peers`
## extra), quix-streams into .venv-peers (it pins older confluent-kafka and pydantic).
peers: install $(VENV)/.peers .venv-peers/.installed

$(VENV)/.peers: pyproject.toml
	$(PY) -m pip install -q -e ".[dev,peers]"
	touch $@

.venv-peers/.installed: benchmarks/peers/requirements.txt
	$(PYTHON) -m venv .venv-peers
	.venv-peers/bin/python -m pip install -q -r benchmarks/peers/requirements.txt
	touch $@

## Run it (Kafka and PostgreSQL for the fold part) and save the run under benchmarks/results/.
bench-peers: peers services
	eval "$$(bash scripts/services.sh env)" && $(PY) -m benchmarks.bench_peers

clean:
	rm -rf $(VENV) .venv-peers .pytest_cache .mypy_cache .ruff_cache site
