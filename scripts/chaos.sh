#!/usr/bin/env bash
# Faults while everything runs (PostgreSQL crash-restarts, broker kills, relay
# and worker SIGKILLs), then a check that nothing was lost or doubled and that
# no process died by itself; prints a summary with the stall after each fault.
#
#   scripts/chaos.sh --seconds 600 [--seed N] [--json outcome.json]
#   scripts/chaos.sh --own-services --seconds 600 ...
#
# It stops and starts the services of scripts/services.sh: run nothing else
# against them meanwhile. With --own-services it brings up a PostgreSQL
# cluster and a Kafka broker of its own (other ports, another state
# directory), runs against those and stops them at the end, so that the
# services other work uses are left alone.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ "${1:-}" = "--own-services" ]; then
  shift
  export EVENTSOURCE_SERVICES_DIR="${EVENTSOURCE_CHAOS_SERVICES_DIR:-$HOME/.cache/eventsource-chaos}"
  export EVENTSOURCE_PG_CLUSTER=eventsource_chaos EVENTSOURCE_PG_PORT=5443
  export EVENTSOURCE_KAFKA_PORT=19092 EVENTSOURCE_KAFKA_CONTROLLER_PORT=19093
  export EVENTSOURCE_KAFKA_SASL_PORT=19094 EVENTSOURCE_KAFKA_SSL_PORT=19095
  export EVENTSOURCE_KAFKA_MTLS_PORT=19096
  bash scripts/services.sh up
  trap 'bash scripts/services.sh down' EXIT
fi
eval "$(bash scripts/services.sh env)"
"${PYTHON:-$ROOT/.venv/bin/python}" -m tests.chaos.runner "$@"
