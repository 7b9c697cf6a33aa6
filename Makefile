# The two commands of the README are `make demo` (the main job) and `make test`.
# Everything installs and starts itself, idempotently; a second run reuses every cache.
SHELL := /bin/bash
VENV := .venv/bin
MESSAGES ?= 1000000
SEED ?= 42
# The new core's engine: empty (the default, Kafka and HBase) or `ENGINE=embedded` (files, no
# JVM: deploy/README.md, "Two engines"), passed on as MIG_ENGINE to every command of the target.
ENGINE ?=
ifneq ($(ENGINE),)
export MIG_ENGINE := $(ENGINE)
endif

.PHONY: demo test up down status lint unit integration bench bench-gateway bench-migrator pipeline

# The main job: the stack, the seeded data set, the pipeline, then a live migration of the data
# set told step by step (deploy/demo.sh, deploy/demo_story.py). STEPS: the sticky percentages the
# story moves through the phases (default 1,10; 1 with ENGINE=embedded).
demo:  ## the stack, the seeded data set, and a live migration of it told step by step
	@bash deploy/demo.sh $(MESSAGES) $(SEED) "$(RESET)" "$(STEPS)"

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

# Not the pipeline: bench/pipeline.py runs its own copies and measures CPU on this machine's
# cores, which a default pipeline beside it would share (deploy/README.md).
bench: up  ## performance figures, each beside its baseline (bench/README.md); needs the seeded data
	$(VENV)/chat-seed --messages $(MESSAGES) --seed $(SEED)
	bash bench/monolith_baseline.sh
	$(VENV)/python -m bench.pipeline

# Its own front door, gateways, pipeline and Read API on free ports (bench/README.md).
bench-gateway: up  ## the front door and the gateway against the monolith and a bare mitmproxy
	$(VENV)/chat-seed --messages $(MESSAGES) --seed $(SEED)
	$(VENV)/python -m bench.gateway

up:
	@bash deploy/stack.sh up

pipeline:  ## the stack, then the capture pipeline under supervisord (not started by up or test)
	@bash deploy/stack.sh pipeline

down:
	@bash deploy/stack.sh down

status:
	@bash deploy/stack.sh status

# Its own read models (tables, topics, control databases, capture pipeline); ARGS passes
# options, e.g. ARGS="--only parity" (bench/README.md).
bench-migrator: up  ## backfill, parity and the monolith's p99 during a backfill, beside their baselines
	$(VENV)/chat-seed --messages $(MESSAGES) --seed $(SEED)
	$(VENV)/python -m bench.migrator $(ARGS)
