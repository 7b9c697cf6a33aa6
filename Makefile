# The two commands of the README are `make demo` (the main job) and `make test`.
# Everything installs and starts itself, idempotently; a second run reuses every cache.
SHELL := /bin/bash
VENV := .venv/bin
MESSAGES ?= 1000000
SEED ?= 42

.PHONY: demo test up down status lint unit integration bench

demo: up  ## bring the stack up, seed the monolith, print where everything answers
	$(VENV)/chat-seed --messages $(MESSAGES) --seed $(SEED) $(if $(RESET),--reset)
	@bash deploy/walkthrough.sh $(SEED)

test: up lint  ## everything CI checks: lint, types, unit and integration tests on the real stack
	$(VENV)/pytest

lint:
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

unit:
	$(VENV)/pytest tests/unit

integration: up
	$(VENV)/pytest tests/integration

bench: up  ## performance figures, each beside its baseline (bench/README.md); needs the seeded data
	$(VENV)/chat-seed --messages $(MESSAGES) --seed $(SEED)
	bash bench/monolith_baseline.sh
	$(VENV)/python -m bench.pipeline

up:
	@bash deploy/stack.sh up

down:
	@bash deploy/stack.sh down

status:
	@bash deploy/stack.sh status
