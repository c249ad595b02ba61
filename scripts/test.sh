#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite. Chromium (for the live-demo browser test) is
# installed from Debian's packages when we may; without it that one test skips and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium could not be installed: the browser test will skip"
fi
exec .venv/bin/pytest -q "$@"
