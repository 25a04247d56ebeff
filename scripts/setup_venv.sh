#!/usr/bin/env bash
# Make (or refresh) .venv with the real OpenMMLab stack freezefix is tested against.
#
# Idempotent: a stamp file records the hash of this script and pyproject.toml; when neither changed
# and the venv imports, the script exits in well under a second.  mmcv has no wheel on PyPI for
# Python 3.11 and is compiled from source (~7 min on 2 cores); pip caches the built wheel, so a
# second venv on the same machine takes seconds.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${FREEZEFIX_VENV:-$root/.venv}"
python="${PYTHON:-python3.11}"

source "$root/scripts/venv_lib.sh"
want=$(stamp_of scripts/setup_venv.sh scripts/constraints.txt pyproject.toml)
if venv_current "$venv" "$want"; then
  echo "setup_venv: $venv is up to date"
  exit 0
fi
make_venv "$venv" "$python"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
export PIP_CONSTRAINT="$root/scripts/constraints.txt"

# torch first and pinned: anything that lets pip choose a torch downloads a multi-GB CUDA build.
# setuptools 80.9 still ships pkg_resources, which the mmcv build and `mmdet::` bases import.
"${pip[@]}" install -q torch setuptools wheel ninja

if ! "$venv/bin/python" -c 'import mmcv.ops' 2>/dev/null; then
  echo "setup_venv: building mmcv 2.1.0 from source (about 7 minutes the first time; cached after)"
  MAX_JOBS=2 "${pip[@]}" install -q --no-build-isolation mmcv mmengine
fi

# mmdet / mmdet3d's declared requirements pull open3d and friends that building models never needs;
# install what their model code imports, then the packages themselves without dependencies.
"${pip[@]}" install -q numba pycocotools shapely scipy six terminaltables tqdm pyquaternion
"${pip[@]}" install -q --no-deps mmdet mmdet3d

# freezefix itself (editable) with its own and its test dependencies.
"${pip[@]}" install -q --no-build-isolation -e "$root[test]"

"$venv/bin/python" -c 'import freezefix, mmdet, mmdet3d, mmcv.ops; print("setup_venv: ok", mmdet.__version__, mmdet3d.__version__)'
echo "$want" > "$venv/.freezefix-stamp"
