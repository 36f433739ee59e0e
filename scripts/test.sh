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

echo "== installing optialloc with its test and dev extras"
python3 -m pip install -q --disable-pip-version-check -e ".[test,dev]"

echo "== ruff"
python3 -m ruff check optialloc tests scripts
echo "== mypy"
python3 -m mypy

echo "== pytest"
# In CI a missing beanstalkd fails the beanstalkd tests instead of skipping them.
export OPTIALLOC_REQUIRE_BEANSTALKD=1
python3 -m pytest -q -p no:cacheprovider "$@"
