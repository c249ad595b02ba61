#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite. Chromium (for the live-demo browser test) and promtool
# (prometheus, for the /metrics lint) are installed from Debian's packages when we may; without them those tests
# skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# promtool (Debian's prometheus package) lints device-serve's /metrics in tests/device/test_prometheus.py.
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null) \
    || echo "could not install ${missing[*]}: the browser test and/or the promtool check will skip"
fi
exec .venv/bin/pytest -q "$@"
