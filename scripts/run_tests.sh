#!/usr/bin/env bash
# The project's test suites: pytest, then the C++ build + ctest (sanitizers, bounded fuzzing).
# Needs the environment that .ci/run installs.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q "$@"
bash scripts/test_cpp.sh
