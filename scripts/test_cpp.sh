#!/usr/bin/env bash
# Build and test the C++ runtime from a clean checkout, as CI does (scripts/run_tests.sh).
#
#   1. ONNX Runtime SDK (scripts/fetch_onnxruntime_sdk.sh; reused when present)
#   2. release build with the ONNX Runtime and LibTorch backends (GCC, warnings as errors):
#      golden fixtures, bad-input tests, parity with the Python package, example program,
#      install + find_package
#   3. Clang build with AddressSanitizer + UndefinedBehaviorSanitizer: the ABI tests and the
#      libFuzzer targets for LUNGSEG_FUZZ_SECONDS each
#
# Needs: cmake, ninja, g++, clang + libclang-rt-14-dev, libstb-dev, and the project's Python
# environment active (torch, onnxruntime, onnx; used for LibTorch, the SDK and parity).
# Environment: LUNGSEG_CPP_JOBS (default 2), LUNGSEG_FUZZ_SECONDS (default 60),
#              LUNGSEG_CPP_SANITIZE=0 to skip step 3, LUNGSEG_NICE (default "nice -n 19").
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${LUNGSEG_CPP_JOBS:-2}
FUZZ_SECONDS=${LUNGSEG_FUZZ_SECONDS:-60}
SANITIZE=${LUNGSEG_CPP_SANITIZE:-1}
read -r -a NICE <<< "${LUNGSEG_NICE:-nice -n 19}"
PYTHON=${PYTHON:-python}
T0=$SECONDS
phase() { echo "== test_cpp: $* ($((SECONDS - T0)) s so far)"; }

phase "ONNX Runtime SDK"
PYTHON=$PYTHON "${NICE[@]}" bash scripts/fetch_onnxruntime_sdk.sh build/onnxruntime-sdk

TORCH_ARGS=(-DLUNGSEG_WITH_LIBTORCH=OFF)
if TORCH_PREFIX=$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null); then
    TORCH_ARGS=(-DLUNGSEG_WITH_LIBTORCH=ON "-DCMAKE_PREFIX_PATH=$TORCH_PREFIX")
else
    echo "test_cpp: torch not importable; building without the LibTorch backend"
fi

phase "release build (GCC)"
"${NICE[@]}" cmake -S . -B build/cpp -G Ninja -DCMAKE_BUILD_TYPE=Release -DLUNGSEG_WERROR=ON \
    -DLUNGSEG_ARTIFACTS_DIR="$PWD/build/cpp-artifacts" "-DPython3_EXECUTABLE=$(command -v "$PYTHON")" \
    "${TORCH_ARGS[@]}" > build/cpp-configure.log || { cat build/cpp-configure.log; exit 1; }
grep -E "^-- lungseg|Warning" build/cpp-configure.log || true
"${NICE[@]}" cmake --build build/cpp -j "$JOBS"
phase "release tests"
"${NICE[@]}" ctest --test-dir build/cpp -j "$JOBS" --output-on-failure --timeout 900
# The parity tables (pixels that differ, Dice) in the log, whatever ctest printed.
grep -h -E "^(backend|case|synth|montgomery|shenzhen|passed|skipped|foreign|FAILED)" \
    build/cpp/Testing/Temporary/LastTest.log || true

if [ "$SANITIZE" != "0" ]; then
    phase "sanitizer + fuzz build (Clang, ASan + UBSan, libFuzzer)"
    "${NICE[@]}" cmake -S . -B build/cpp-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DLUNGSEG_WERROR=ON \
        -DLUNGSEG_SANITIZE=ON -DLUNGSEG_FUZZ=ON -DLUNGSEG_FUZZ_SECONDS="$FUZZ_SECONDS" \
        -DLUNGSEG_WITH_LIBTORCH=OFF -DLUNGSEG_BUILD_TOOLS=OFF > build/cpp-asan-configure.log \
        || { cat build/cpp-asan-configure.log; exit 1; }
    "${NICE[@]}" cmake --build build/cpp-asan -j "$JOBS"
    phase "sanitizer tests and fuzzing"
    "${NICE[@]}" ctest --test-dir build/cpp-asan -j "$JOBS" --output-on-failure --timeout 900
    grep -h -E "^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::new_units_added)" \
        build/cpp-asan/Testing/Temporary/LastTest.log || true
fi
phase "C++ build and tests done"
