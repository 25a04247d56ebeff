#!/usr/bin/env bash
# The second CI lane: the mmcv 1.x stack (mmcv-full 1.7.0, mmdet 2.28.2, mmdet3d 1.0.0rc6) in its
# own venv.  Installs it (idempotent), runs the bundled seed example end to end there, then the
# stack's tests and the stack-independent ones.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup_venv_mmcv1.sh
venv="${FREEZEFIX_MMCV1_VENV:-$root/.venv-mmcv1}"

# The seed example, as a user of an old-stack research repo runs it: dry-run shows the fix (exit 1),
# apply writes it after verifying on the real model, check is then clean (exit 0).
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r tests/fixtures/seed_cmt "$work/seed"
export FREEZEFIX_CACHE_DIR="$work/cache"
(
  cd "$work/seed"
  set +e
  "$venv/bin/freezefix" apply configs --dry-run
  status=$?
  set -e
  [ "$status" -eq 1 ] || { echo "test_mmcv1.sh: apply --dry-run exited $status, expected 1" >&2; exit 1; }
  "$venv/bin/freezefix" apply configs
  "$venv/bin/freezefix" check configs
)
unset FREEZEFIX_CACHE_DIR

set +e
# The stack-independent files run here too: the probe, bench and report tests hold on this stack as well.
"$venv/bin/python" -m pytest -m "slow or not slow" -p no:cacheprovider tests/mmcv1 tests/test_rules.py tests/test_rules_fast.py tests/test_rewrite.py tests/test_frozen_weights.py tests/test_checkpoints.py \
  tests/test_resolve.py tests/test_probe.py tests/test_bench.py tests/test_outputs.py "$@"
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "test_mmcv1.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
