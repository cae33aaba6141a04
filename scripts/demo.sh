#!/usr/bin/env bash
# The README's first command: install everything, then run the demo end to end —
# a throwaway Dovecot with a generated support mailbox, and index → tag → plan →
# approve → purge with the real commands on the embedded SQLite default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m mailhygiene.devtools.demo "$@"
