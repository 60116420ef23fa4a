#!/usr/bin/env bash
# The project's test command (README, CI): the Python suite, then the C++ suite where it is built.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q "$@"
