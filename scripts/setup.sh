#!/usr/bin/env bash
# Install everything mailhygiene needs on Debian/Ubuntu: Dovecot (for the demo and the
# tests), imapfilter (for the benchmark's peer comparison), Chromium (for the web page's
# browser tests) and a virtualenv with the package and its development tools. Safe to run
# again; it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v dovecot >/dev/null 2>&1 || missing+=(dovecot-imapd)
command -v imapfilter >/dev/null 2>&1 || missing+=(imapfilter)
# The web page's browser tests drive Debian's Chromium (never a downloaded browser).
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} ..." >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The throwaway Dovecot is started by our own code; the distribution's service is not needed.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet dovecot 2>/dev/null; then
  as_root systemctl disable --now dovecot >/dev/null 2>&1 || true
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "installing mailhygiene, its development tools and the benchmark plot into .venv ..." >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e ".[dev,bench]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
