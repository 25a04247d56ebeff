#!/usr/bin/env bash
# Lane 3: the oldest Python freezefix declares (requires-python >= 3.8: the Python of many BEV research
# environments), with freezefix's own dependencies only and no OpenMMLab package.  The static core
# (resolver, rewriter, CLI) must work there, and the model commands must say they need the training
# environment.  freezefix is installed with its declared requirements, so this also proves they
# resolve on 3.8 (libcst 1.1.0, tomli); none of them is torch.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
venv="${FREEZEFIX_PY38_VENV:-$root/.venv-py38}"

python="${PYTHON38:-}"
if [ -z "$python" ]; then
  for candidate in python3.8 "$(pyenv root 2>/dev/null)"/versions/3.8*/bin/python /usr/bin/python3.8; do
    if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 8)' 2>/dev/null; then
      python=$candidate
      break
    fi
  done
fi
if [ -z "$python" ]; then
  echo "test_py38.sh: no Python 3.8 found (set PYTHON38=/path/to/python3.8)" >&2
  exit 1
fi

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install -e ".[test]"
if "$venv/bin/python" -c 'import torch' 2>/dev/null; then
  echo "test_py38.sh: torch was installed: freezefix must not require it" >&2
  exit 1
fi
"$venv/bin/python" -c 'import sys, freezefix.cli; from importlib.metadata import version; print("test_py38.sh: Python", sys.version.split()[0], "libcst", version("libcst"))'

set +e
"$venv/bin/python" -m pytest -m "slow or not slow" -p no:cacheprovider tests/test_rewrite.py tests/test_resolve.py tests/test_static_eval.py tests/test_import_layers.py tests/test_rule_registry.py tests/test_rule_docs.py tests/test_rules_fast.py tests/test_weights.py \
  tests/test_suppressions.py tests/test_workers.py tests/test_readme.py tests/test_private_names.py \
  tests/test_no_stack.py "$@"
status=$?
set -e
[ "$status" -ne 5 ] || { echo "test_py38.sh: pytest collected no tests" >&2; exit 1; }
exit "$status"
