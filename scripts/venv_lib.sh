# Sourced by scripts/setup_venv.sh and scripts/setup_venv_mmcv1.sh: the idempotence both share.
# A venv is current when its stamp holds the hash of the files that define it and the packages
# freezefix needs import; then a setup script returns in well under a second.

# stamp_of FILE... : the hash of the files (relative to the repository root) that define a venv.
stamp_of() {
  (cd "$root" && cat scripts/venv_lib.sh "$@") | sha256sum | cut -d' ' -f1
}

# venv_current VENV HASH : exit 0 when VENV was made from files with this HASH and still imports.
venv_current() {
  [ -f "$1/.freezefix-stamp" ] && [ "$(cat "$1/.freezefix-stamp")" = "$2" ] \
    && "$1/bin/python" -c 'import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ("freezefix", "mmdet3d", "mmcv", "libcst")))' 2>/dev/null
}

# make_venv VENV PYTHON : create VENV with PYTHON (python3 when PYTHON is not on PATH) unless it exists.
make_venv() {
  local python=$2
  command -v "$python" >/dev/null || python=python3
  [ -x "$1/bin/python" ] || "$python" -m venv "$1"
}
