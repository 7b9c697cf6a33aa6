#!/usr/bin/env bash
# The project's virtualenv (.venv) with the pinned packages of pyproject.toml. Idempotent: the
# install runs again only when pyproject.toml changed; pip's cache makes a re-install quick.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mkdir -p "$STATE_DIR"
PY=$(command -v python3.11 || command -v python3) || die "python3 (3.11) not found"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || die "$PY is $("$PY" -V 2>&1); the project needs Python 3.11 (mitmproxy 11.0.x)"
stamp="$VENV_DIR/.installed-$(cat "$PROJECT_DIR/pyproject.toml" | sha256sum | cut -c1-16)"
if [[ -f "$stamp" ]]; then
  log "python environment up to date ($VENV_DIR)"
  exit 0
fi
[[ -x "$VENV_DIR/bin/python" ]] || "$PY" -m venv "$VENV_DIR" || die "could not create $VENV_DIR"
log "installing python packages into $VENV_DIR"
"$VENV_DIR/bin/pip" install -q --upgrade pip >"$STATE_DIR/pip.log" 2>&1 || true
"$VENV_DIR/bin/pip" install -q -e "$PROJECT_DIR[dev]" >>"$STATE_DIR/pip.log" 2>&1 \
  || { tail -n 20 "$STATE_DIR/pip.log" >&2; die "pip install failed (log: $STATE_DIR/pip.log)"; }
rm -f "$VENV_DIR"/.installed-*
touch "$stamp"
log "python packages installed"
