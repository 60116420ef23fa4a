#!/usr/bin/env bash
# Build and test the C++ runtime from a clean checkout, as CI does (scripts/run_tests.sh).
#
#   1. ONNX Runtime SDK (scripts/fetch_onnxruntime_sdk.sh; reused when present)
#   2. release build (GCC, warnings as errors): liblungseg with the ONNX Runtime backend and,
#      where torch is importable, the optional LibTorch backend library liblungseg_libtorch.so
#      (liblungseg never links torch; it loads the plugin for TorchScript models): golden
#      fixtures, bad-input tests, parity with the Python package on both backends, example
#      program, exported symbols, install + readelf checks + moved prefix + C-only consumer
#   3. Clang build with AddressSanitizer + UndefinedBehaviorSanitizer: the ABI tests and the
#      libFuzzer targets for LUNGSEG_FUZZ_SECONDS each
#   4. aarch64 cross build (scripts/cross_aarch64.sh), its tests through qemu-aarch64
#
# Needs: cmake, ninja, g++, clang + libclang-rt-14-dev, libstb-dev, g++-aarch64-linux-gnu +
# qemu-user (step 4; skipped when absent unless LUNGSEG_CROSS=1), and the project's Python
# environment active (torch, onnxruntime, onnx; used for LibTorch, the SDK and parity).
# Environment: LUNGSEG_CPP_JOBS (default 2), LUNGSEG_FUZZ_SECONDS (default 60),
#              LUNGSEG_CPP_SANITIZE=0 to skip step 3, LUNGSEG_CROSS=0 to skip step 4
#              (1: fail when the cross toolchain is missing), LUNGSEG_NICE (default "nice -n 19"),
#              LUNGSEG_CPP_BUILD / LUNGSEG_CPP_ASAN_BUILD / LUNGSEG_CROSS_BUILD: build folders
#              (default build/cpp, build/cpp-asan, build/cross-aarch64).
set -euo pipefail
cd "$(dirname "$0")/.."

JOBS=${LUNGSEG_CPP_JOBS:-2}
FUZZ_SECONDS=${LUNGSEG_FUZZ_SECONDS:-60}
SANITIZE=${LUNGSEG_CPP_SANITIZE:-1}
read -r -a NICE <<< "${LUNGSEG_NICE:-nice -n 19}"
PYTHON=${PYTHON:-python}
B=${LUNGSEG_CPP_BUILD:-build/cpp}
BA=${LUNGSEG_CPP_ASAN_BUILD:-build/cpp-asan}
T0=$SECONDS
phase() { echo "== test_cpp: $* ($((SECONDS - T0)) s so far)"; }

phase "ONNX Runtime SDK"
PYTHON=$PYTHON "${NICE[@]}" bash scripts/fetch_onnxruntime_sdk.sh build/onnxruntime-sdk

TORCH_ARGS=(-DLUNGSEG_WITH_LIBTORCH=OFF)
if TORCH_PREFIX=$("$PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null); then
    TORCH_ARGS=(-DLUNGSEG_WITH_LIBTORCH=ON "-DCMAKE_PREFIX_PATH=$TORCH_PREFIX")
else
    echo "test_cpp: torch not importable; building without the optional LibTorch backend library"
fi

phase "release build (GCC)"
"${NICE[@]}" cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLUNGSEG_WERROR=ON \
    -DLUNGSEG_ARTIFACTS_DIR="$PWD/$B-artifacts" "-DPython3_EXECUTABLE=$(command -v "$PYTHON")" \
    "${TORCH_ARGS[@]}" > "$B-configure.log" || { cat "$B-configure.log"; exit 1; }
grep -E "^-- lungseg|Warning" "$B-configure.log" || true
"${NICE[@]}" cmake --build "$B" -j "$JOBS"
phase "release tests"
"${NICE[@]}" ctest --test-dir "$B" -j "$JOBS" --output-on-failure --timeout 900
# The parity tables (pixels that differ, Dice) in the log, whatever ctest printed.
grep -h -E "^(backend|case|synth|montgomery|shenzhen|passed|skipped|foreign|FAILED)" \
    "$B"/Testing/Temporary/LastTest.log || true

if [ "$SANITIZE" != "0" ]; then
    phase "sanitizer + fuzz build (Clang, ASan + UBSan, libFuzzer)"
    "${NICE[@]}" cmake -S . -B "$BA" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ -DLUNGSEG_WERROR=ON \
        -DLUNGSEG_SANITIZE=ON -DLUNGSEG_FUZZ=ON -DLUNGSEG_FUZZ_SECONDS="$FUZZ_SECONDS" \
        -DLUNGSEG_WITH_LIBTORCH=OFF -DLUNGSEG_BUILD_TOOLS=OFF > "$BA-configure.log" \
        || { cat "$BA-configure.log"; exit 1; }
    "${NICE[@]}" cmake --build "$BA" -j "$JOBS"
    phase "sanitizer tests and fuzzing"
    "${NICE[@]}" ctest --test-dir "$BA" -j "$JOBS" --output-on-failure --timeout 900
    grep -h -E "^(#[0-9]+ +DONE|Done [0-9]+ runs|stat::number_of_executed_units|stat::new_units_added)" \
        "$BA"/Testing/Temporary/LastTest.log || true
fi
if [ "${LUNGSEG_CROSS:-auto}" != "0" ]; then
    phase "aarch64 cross build"
    PYTHON=$PYTHON LUNGSEG_CROSS_NATIVE_BUILD=$B bash scripts/cross_aarch64.sh
fi
phase "C++ build and tests done"
