#!/usr/bin/env bash
# Install the real stack (idempotent, fast when .venv is current) and run every test, slow ones too.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup_venv.sh
set +e
.venv/bin/python -m pytest -m "slow or not slow" -p no:cacheprovider "$@"
status=$?
set -e
# pytest exits 5 when it collected no test: that is a broken suite here, never a pass.
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
