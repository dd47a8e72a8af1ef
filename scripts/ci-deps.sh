#!/usr/bin/env bash
# Install the external tools the tests drive: Debian's prometheus (the end-to-end
# scrape test) and a static helm (the chart tests). Idempotent and quick when both
# are already there, so CI and developers can call it before every test run.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [[ ! -x /usr/bin/prometheus ]]; then
  SUDO=""
  if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
  if [[ -n "$SUDO" ]] && ! sudo -n true 2>/dev/null && [[ -z "${CI:-}" ]]; then
    echo "ci-deps: not root and no sudo: skipping Debian's prometheus (its end-to-end test will skip)" >&2
  else
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # the package's postinst may try to start its service: harmless without systemd, never used by tests
    $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  fi
fi
[[ -x /usr/bin/prometheus ]] && /usr/bin/prometheus --version 2>&1 | head -n 1

"$ROOT/scripts/fetch-helm.sh" >/dev/null
