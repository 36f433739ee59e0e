#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what it needs, then lint, types, tests.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v beanstalkd >/dev/null 2>&1; then
    echo "== installing beanstalkd from Debian's packages"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq beanstalkd >/dev/null
fi

# The web page test drives Debian's chromium through Playwright (its own browser download
# is not reachable), so the system browser is installed here.
if [ ! -x /usr/bin/chromium ]; then
    echo "== installing chromium from Debian's packages"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

echo "== installing optialloc with its test and dev extras"
python3 -m pip install -q --disable-pip-version-check -e ".[test,dev]"

# teuthology 1.3.0 in a virtualenv of its own (it pins old versions of many packages):
# tests/test_teuthology_locks.py runs teuthology's own check_lock and the supervisor's
# unlock against optialloc's locks. About 70 s the first time, nothing afterwards.
TEUTHOLOGY_VENV="${OPTIALLOC_TEUTHOLOGY_VENV:-$HOME/.cache/optialloc/teuthology-venv}"
if ! "$TEUTHOLOGY_VENV/bin/python" -c "import teuthology.task.internal.check_lock" 2>/dev/null; then
    echo "== installing teuthology 1.3.0 into $TEUTHOLOGY_VENV (for the lock tests)"
    python3 -m venv "$TEUTHOLOGY_VENV"
    "$TEUTHOLOGY_VENV/bin/pip" install -q --disable-pip-version-check "teuthology==1.3.0" \
        || echo "   (teuthology did not install: its lock tests will be skipped)"
fi
export OPTIALLOC_TEUTHOLOGY_PYTHON="$TEUTHOLOGY_VENV/bin/python"

echo "== ruff"
python3 -m ruff check optialloc tests scripts
echo "== mypy"
python3 -m mypy

echo "== pytest"
# In CI a missing beanstalkd fails the beanstalkd tests instead of skipping them.
export OPTIALLOC_REQUIRE_BEANSTALKD=1
python3 -m pytest -q -p no:cacheprovider "$@"
