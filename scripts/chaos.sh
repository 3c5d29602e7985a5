#!/usr/bin/env bash
# Faults while everything runs (PostgreSQL crash-restarts, broker kills, relay
# and worker SIGKILLs), then a check that nothing was lost or doubled and that
# no process died by itself; prints a summary with the stall after each fault.
#
#   scripts/chaos.sh --seconds 600 [--seed N] [--json outcome.json]
#
# It stops and starts the services of scripts/services.sh: run nothing else
# against them meanwhile.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
eval "$(bash scripts/services.sh env)"
exec "${PYTHON:-$ROOT/.venv/bin/python}" -m tests.chaos.runner "$@"
