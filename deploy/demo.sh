#!/usr/bin/env bash
# `make demo`, the README's main job: the stack, the seeded data set, the pipeline, then a live
# migration of the data set told step by step (deploy/demo_story.py), then where everything
# answers (walkthrough.sh). Idempotent: a second run reuses every cache and the data set.
# Usage: demo.sh MESSAGES SEED [RESET] [STEPS]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MESSAGES="${1:-1000000}"
SEED="${2:-42}"
RESET="${3:-}"
STEPS="${4:-}"
ENGINE="${MIG_ENGINE:-kafka-hbase}"
# The embedded engine is the first look: one sticky step of 1 % of the rooms.
[[ -n "$STEPS" ]] || { [[ "$ENGINE" == embedded ]] && STEPS=1 || STEPS=1,10; }
[[ "$STEPS" =~ ^[0-9]+(\.[0-9]+)?(,[0-9]+(\.[0-9]+)?)*$ ]] || die "STEPS=$STEPS is not a comma list of percentages (1,10)"

bash "$DEPLOY_DIR/stack.sh" up
# The history is written before the pipeline starts: what was there before the migration is the
# backfill's to bring over (the binlog source's first start reads from the binlog's end).
"$VENV_DIR/bin/chat-seed" --messages "$MESSAGES" --seed "$SEED" ${RESET:+--reset}
bash "$DEPLOY_DIR/stack.sh" pipeline
"$VENV_DIR/bin/python" "$DEPLOY_DIR/demo_story.py" --steps "$STEPS" --engine "$ENGINE"
bash "$DEPLOY_DIR/walkthrough.sh" "$SEED"
