#!/usr/bin/env bash
# The whole suite from a fresh checkout: system packages, npm dependencies, build, lint, every test.
# Tests start the servers they need (nfs-ganesha, glusterd, ...) on 127.0.0.1 and stop them by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  echo "scripts/test.sh must run as root: the tests make real mounts and start storage servers" >&2
  exit 1
fi
scripts/install-test-deps.sh
npm ci --no-audit --no-fund
npm test
