#!/usr/bin/env bash
# The project's one test command (README, CONTRIBUTING and CI run exactly this):
# install what is missing, then the quality gates, then the whole test suite.
#   scripts/test.sh                 everything (what CI runs)
#   scripts/test.sh -m "not slow"   pass pytest arguments to narrow the run
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" >&2
ruff check mailhygiene tests scripts
ruff format --check mailhygiene tests scripts
echo "== mypy --strict" >&2
mypy
echo "== import contracts" >&2
lint-imports
echo "== pytest" >&2
python -m pytest "$@"
