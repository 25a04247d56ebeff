#!/usr/bin/env bash
# Every test, slow ones too, on both OpenMMLab stacks freezefix supports (each install idempotent):
#   lane 1: the mmengine stack in .venv (scripts/setup_venv.sh) — the whole suite;
#   lane 2: the mmcv 1.x stack in .venv-mmcv1 (scripts/test_mmcv1.sh) — its tests + the seed example;
#   lane 3: Python 3.8 without any OpenMMLab package in .venv-py38 (scripts/test_py38.sh).
# FREEZEFIX_LANES=mmengine runs lane 1 only; extra arguments go to lane 1's pytest.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bash scripts/setup_venv.sh || exit 1
started=$SECONDS
.venv/bin/python -m pytest -m "slow or not slow" -p no:cacheprovider "$@"
status=$?
# pytest exits 5 when it collected no test: that is a broken suite here, never a pass.
if [ "$status" -eq 5 ]; then
  echo "test.sh: pytest collected no tests" >&2
fi
echo "test.sh: lane 1 (mmengine stack) exit $status in $((SECONDS - started)) s"
if [ "${FREEZEFIX_LANES:-all}" != "mmengine" ]; then
  started=$SECONDS
  bash scripts/test_mmcv1.sh
  lane2=$?
  echo "test.sh: lane 2 (mmcv 1.x stack) exit $lane2 in $((SECONDS - started)) s"
  [ "$lane2" -eq 0 ] || status=1
  started=$SECONDS
  bash scripts/test_py38.sh
  lane3=$?
  echo "test.sh: lane 3 (Python 3.8, no stack) exit $lane3 in $((SECONDS - started)) s"
  [ "$lane3" -eq 0 ] || status=1
fi
[ "$status" -eq 0 ] || exit 1
