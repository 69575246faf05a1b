#!/bin/sh
# Entrypoint of the distillguard image.
#   serve (default): train a model from a generated scenario if none exists at
#     $DISTILLGUARD_MODEL_PATH, then run `distillguard serve` on $DISTILLGUARD_HOST:$DISTILLGUARD_PORT
#     (default 0.0.0.0:8000); everything else (tokens, window, snapshot path, ...) comes from
#     DISTILLGUARD_* variables (service/settings.py).
#   anything else: run it (e.g. `python /app/deploy/feeder.py`, `distillguard replay ...`).
# Training knobs (not service settings): TRAIN_SCENARIO (demo), TRAIN_SEED (1), TRAIN_SCALE (1.0).
set -eu

if [ "${1:-serve}" != "serve" ]; then
    exec "$@"
fi

model="${DISTILLGUARD_MODEL_PATH:?DISTILLGUARD_MODEL_PATH is not set}"
if [ ! -s "$model" ]; then
    scenario="${TRAIN_SCENARIO:-demo}"
    echo "entrypoint: no model at $model; training one on the '$scenario' scenario" >&2
    work="$(mktemp -d)"
    distillguard generate --scenario "$scenario" --seed "${TRAIN_SEED:-1}" \
        --scale "${TRAIN_SCALE:-1.0}" --out "$work"
    # the service scores without an account table (DISTILLGUARD_ACCOUNTS_PATH unset), so train
    # without one too: `train` would otherwise pick up the accounts.parquet beside the events
    rm -f "$work/accounts.parquet" "$work/labels.parquet"
    mkdir -p "$(dirname "$model")"
    distillguard train "$work/events.parquet" --out "$model.tmp"
    mv "$model.tmp" "$model"
    rm -rf "$work"
fi

exec distillguard serve --model "$model" \
    --host "${DISTILLGUARD_HOST:-0.0.0.0}" --port "${DISTILLGUARD_PORT:-8000}"
