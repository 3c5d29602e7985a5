#!/usr/bin/env bash
# Remake docs/images/dashboard.png: the dashboard on the sample app, with
# live workers and traffic, as headless Chromium shows it (about 40 s).
#
#   scripts/dashboard_screenshot.sh [OUTPUT.png]
#
# Needs the dev install (`make install`) and Debian's chromium
# (`scripts/services.sh up` installs it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
OUTPUT="$(realpath -m "${1:-$ROOT/docs/images/dashboard.png}")"

cd "$ROOT"
PYTHONPATH="$ROOT" exec "$PYTHON" -m tests.dashboard.screenshot "$OUTPUT"
