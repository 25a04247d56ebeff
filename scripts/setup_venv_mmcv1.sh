#!/usr/bin/env bash
# Make (or refresh) .venv-mmcv1: the OLD OpenMMLab stack most BEV research repos (CMT, PETR,
# BEVFormer, UniAD ...) still train on — mmcv-full 1.7.0, mmdet 2.28.2, mmdet3d 1.0.0rc6 — so that
# freezefix's mmcv 1.x backend is tested against the real thing (second CI lane, scripts/test_mmcv1.sh).
#
# Idempotent like setup_venv.sh (stamp file).  mmcv-full 1.7.0 has no wheel for Python 3.11: it is
# compiled from its sdist (~6 min on 2 cores) after raising its hard-coded -std=c++14 to c++20, which
# the ATen headers of torch 2.14 require.  pip does not cache wheels built from a local directory,
# so the built wheel is kept in $FREEZEFIX_WHEEL_CACHE (default ~/.cache/freezefix/wheels).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="${FREEZEFIX_MMCV1_VENV:-$root/.venv-mmcv1}"
python="${PYTHON:-python3.11}"
wheels="${FREEZEFIX_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/freezefix/wheels}"

source "$root/scripts/venv_lib.sh"
want=$(stamp_of scripts/setup_venv_mmcv1.sh scripts/constraints-mmcv1.txt pyproject.toml)
if venv_current "$venv" "$want"; then
  echo "setup_venv_mmcv1: $venv is up to date"
  exit 0
fi
make_venv "$venv" "$python"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
export PIP_CONSTRAINT="$root/scripts/constraints-mmcv1.txt"

# mmcv-full 1.x's runner imports torchvision, so it must be a torchvision built for this torch:
# torch 2.14.1 + torchvision 0.29.1 (a CUDA build that runs on the CPU) lie on this machine's disk.
"${pip[@]}" install -q torch torchvision setuptools wheel ninja
# mmcv-full's runtime requirements (opencv headless: there is no screen), then the model code's.
"${pip[@]}" install -q numpy addict packaging Pillow pyyaml yapf opencv-python-headless
"${pip[@]}" install -q scipy terminaltables six matplotlib numba pyquaternion shapely trimesh \
  pycocotools networkx
"${pip[@]}" install -q --no-deps lyft_dataset_sdk

if ! "$venv/bin/python" -c 'import mmcv.ops' 2>/dev/null; then
  mkdir -p "$wheels"
  wheel=$(ls "$wheels"/mmcv_full-1.7.0-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    echo "setup_venv_mmcv1: building mmcv-full 1.7.0 from source (about 6 minutes; cached after)"
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    "${pip[@]}" download -q --no-deps --no-binary=:all: --no-build-isolation mmcv-full==1.7.0 -d "$src"
    tar -xzf "$src"/mmcv-full-1.7.0.tar.gz -C "$src"
    sed -i 's/-std=c++14/-std=c++20/g' "$src"/mmcv-full-1.7.0/setup.py
    MAX_JOBS=2 "${pip[@]}" wheel -q --no-build-isolation --no-deps "$src"/mmcv-full-1.7.0 -w "$src/out"
    mv "$src"/out/mmcv_full-1.7.0-*.whl "$wheels"/
    wheel=$(ls "$wheels"/mmcv_full-1.7.0-*.whl | head -n1)
  fi
  "${pip[@]}" install -q --no-deps "$wheel"
fi

# mmdet3d 1.0.0rc6 asserts mmcv<=1.7.0, imports mmseg 0.x at the top, and pulls open3d & co.
# through its declared requirements; building models needs none of them.
"${pip[@]}" install -q prettytable
"${pip[@]}" install -q --pre --no-deps --no-build-isolation mmdet mmsegmentation mmdet3d

# freezefix itself (editable) with its own and its test dependencies; no mmengine in this stack.
"${pip[@]}" install -q --no-build-isolation -e "$root[test]"

"$venv/bin/python" - <<'EOF'
import importlib.util, sys
import freezefix, mmcv, mmcv.ops, mmdet, mmdet3d
assert mmcv.__version__.startswith("1."), mmcv.__version__
assert importlib.util.find_spec("mmengine") is None, "mmengine must not be in the mmcv 1.x venv"
print("setup_venv_mmcv1: ok", mmcv.__version__, mmdet.__version__, mmdet3d.__version__)
EOF
echo "$want" > "$venv/.freezefix-stamp"
