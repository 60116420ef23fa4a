#!/usr/bin/env bash
# Assemble an ONNX Runtime C/C++ SDK (include/ + lib/, the layout of an official release
# tarball) for building the lungseg C++ runtime on Debian 12, where ONNX Runtime has no
# package:
#   - the library from the onnxruntime pip wheel (onnxruntime/capi/libonnxruntime.so.1.*,
#     which carries the whole C API): for the host's architecture, the wheel installed in
#     the active Python; for another one (ARCH aarch64 when cross-compiling), the same
#     version's manylinux wheel for that architecture from PyPI (`pip download
#     --platform manylinux_2_28_aarch64 ...`), unpacked (nothing is installed);
#   - the headers from Debian 13's libonnxruntime-dev .deb, fetched with `apt-get download`
#     through a separate, private APT configuration (the system's sources are untouched).
# ONNX Runtime's C API is versioned: headers of API version N work with any library that
# provides N or later, which the script checks.
#
# Usage: scripts/fetch_onnxruntime_sdk.sh [DEST [ARCH]]
#          DEST default: build/onnxruntime-sdk (host) or build/onnxruntime-sdk-ARCH
#          ARCH: x86_64 or aarch64 (default: this machine's, uname -m)
# Then:  cmake -S . -B build/cpp -DONNXRUNTIME_ROOT=DEST (the default place is found without it;
#        a cross build's default is build/onnxruntime-sdk-<CMAKE_SYSTEM_PROCESSOR>)
#
# Environment:
#   PYTHON                     interpreter whose onnxruntime wheel supplies the library (default: python3)
#   ORT_VERSION                onnxruntime version for another ARCH (default: the one PYTHON has installed)
#   ORT_WHEEL                  an onnxruntime wheel for ARCH already on disk (skips the download)
#   ORT_WHEEL_CACHE            where downloaded wheels are kept (default: build/downloads)
#   ORT_HEADERS_DEB            a libonnxruntime-dev .deb already on disk (skips the download)
#   ORT_HEADERS_SUITE          Debian suite to take the headers from (default: trixie)
#   ORT_HEADERS_MIRROR         Debian mirror (default: the first 'debian' URI in this system's APT sources)
# Elsewhere, point CMake at an official ONNX Runtime release instead: -DONNXRUNTIME_ROOT=/path/to/onnxruntime-linux-x64-1.x
set -euo pipefail
cd "$(dirname "$0")/.."

normalize_arch() {
    case "$1" in
        x86_64|amd64) echo x86_64 ;;
        aarch64|arm64) echo aarch64 ;;
        *) echo "$1" ;;
    esac
}
HOST_ARCH=$(normalize_arch "$(uname -m)")
ARCH=$(normalize_arch "${2:-$HOST_ARCH}")
if [ "$ARCH" = "$HOST_ARCH" ]; then
    DEST=${1:-build/onnxruntime-sdk}
else
    DEST=${1:-build/onnxruntime-sdk-$ARCH}
fi
PYTHON=${PYTHON:-python3}
SUITE=${ORT_HEADERS_SUITE:-trixie}
system_mirror() {  # the Debian archive this machine's APT already uses (never fails)
    local uris
    uris=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
    printf '%s\n' "$uris" | awk '/^URIs:/ {print $2} /^deb / {print ($2 ~ /^\[/) ? $3 : $2}' |
        { grep -v security || true; } | sed -n 1p
}
MIRROR=${ORT_HEADERS_MIRROR:-$(system_mirror)}

say() { echo "fetch_onnxruntime_sdk: $*"; }
die() { echo "fetch_onnxruntime_sdk: error: $*" >&2; exit 1; }
[ -n "$MIRROR" ] || [ -n "${ORT_HEADERS_DEB:-}" ] || die "no Debian mirror found in the APT sources; set ORT_HEADERS_MIRROR"

elf_arch() {  # the ELF machine of a file: x86_64, aarch64 or a number
    "$PYTHON" -c 'import struct, sys
m = struct.unpack("<H", open(sys.argv[1], "rb").read(20)[18:20])[0]
print({62: "x86_64", 183: "aarch64"}.get(m, m))' "$1"
}

# 1. The library from the pip wheel.
mkdir -p "$DEST/lib" "$DEST/include"
if [ "$ARCH" = "$HOST_ARCH" ]; then
    CAPI=$("$PYTHON" - <<'EOF' 2>/dev/null
import pathlib, onnxruntime
print(pathlib.Path(onnxruntime.__file__).parent / "capi")
EOF
) || die "'$PYTHON' cannot import onnxruntime; install it first (pip install onnxruntime, or the project's .[dev] extra)"
    FROM="$CAPI"
else
    # Another architecture: unpack the same version's wheel for it (never installed).
    VERSION=${ORT_VERSION:-$("$PYTHON" -c 'import importlib.metadata as m; print(m.version("onnxruntime"))' 2>/dev/null)} \
        || die "no onnxruntime in '$PYTHON' to take the version from; set ORT_VERSION"
    WHEEL=${ORT_WHEEL:-}
    if [ -z "$WHEEL" ]; then
        CACHE=${ORT_WHEEL_CACHE:-build/downloads}
        mkdir -p "$CACHE"
        WHEEL=$(ls "$CACHE"/onnxruntime-"$VERSION"-*"$ARCH"*.whl 2>/dev/null | head -n 1 || true)
        if [ -z "$WHEEL" ]; then
            PYVER=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
            say "downloading the onnxruntime $VERSION wheel for $ARCH from the package index"
            "$PYTHON" -m pip download -q --only-binary=:all: --no-deps --python-version "$PYVER" \
                --platform "manylinux_2_28_$ARCH" --platform "manylinux_2_27_$ARCH" --platform "manylinux2014_$ARCH" \
                -d "$CACHE" "onnxruntime==$VERSION" || die "pip download of onnxruntime==$VERSION for $ARCH failed"
            WHEEL=$(ls "$CACHE"/onnxruntime-"$VERSION"-*"$ARCH"*.whl 2>/dev/null | head -n 1 || true)
        fi
        [ -n "$WHEEL" ] || die "no onnxruntime $VERSION wheel for $ARCH in $CACHE"
    fi
    CAPI="$DEST/.wheel-capi"
    rm -rf "$CAPI" && mkdir -p "$CAPI"
    "$PYTHON" - "$WHEEL" "$CAPI" <<'EOF' || die "cannot unpack the ONNX Runtime library from $WHEEL"
import pathlib, re, sys, zipfile
wheel, out = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist()
             if re.fullmatch(r"onnxruntime/capi/(libonnxruntime\.so\.1\.[0-9.]+|libonnxruntime_providers_shared\.so)", n)]
    if not any("libonnxruntime.so.1." in n for n in names):
        sys.exit(f"no onnxruntime/capi/libonnxruntime.so.1.* in {wheel}")
    for n in names:
        (out / pathlib.PurePosixPath(n).name).write_bytes(z.read(n))
EOF
    FROM="$(basename "$WHEEL")"
fi
LIB=$(ls "$CAPI"/libonnxruntime.so.1.* 2>/dev/null | head -n 1)
[ -n "$LIB" ] || die "no libonnxruntime.so.1.* in $CAPI"
[ "$(elf_arch "$LIB")" = "$ARCH" ] || die "$LIB is built for $(elf_arch "$LIB"), not $ARCH"
LIB_VERSION=${LIB##*/libonnxruntime.so.}
LIB_API=$(echo "$LIB_VERSION" | cut -d. -f2)

if ! cmp -s "$LIB" "$DEST/lib/libonnxruntime.so.$LIB_VERSION"; then
    rm -f "$DEST"/lib/libonnxruntime.so*
    cp "$LIB" "$DEST/lib/libonnxruntime.so.$LIB_VERSION"
    [ -f "$CAPI/libonnxruntime_providers_shared.so" ] && cp "$CAPI/libonnxruntime_providers_shared.so" "$DEST/lib/"
fi
ln -sf "libonnxruntime.so.$LIB_VERSION" "$DEST/lib/libonnxruntime.so.1"
ln -sf "libonnxruntime.so.1" "$DEST/lib/libonnxruntime.so"
if [ "$CAPI" = "$DEST/.wheel-capi" ]; then rm -rf "$CAPI"; fi
say "library libonnxruntime.so.$LIB_VERSION for $ARCH (C API up to $LIB_API) from $FROM"

# 2. The headers from Debian's libonnxruntime-dev.
if [ ! -f "$DEST/include/onnxruntime_c_api.h" ]; then
    WORK=$(mktemp -d)
    trap 'rm -rf "$WORK"' EXIT
    DEB=${ORT_HEADERS_DEB:-}
    if [ -z "$DEB" ]; then
        command -v apt-get >/dev/null || die "apt-get not found; set ORT_HEADERS_DEB or use an official release (-DONNXRUNTIME_ROOT)"
        mkdir -p "$WORK/apt/lists/partial" "$WORK/apt/cache/archives/partial"
        KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
        echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main" > "$WORK/apt/sources.list"
        APT_OPTS=(-o "Dir::Etc::SourceList=$WORK/apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
                  -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache"
                  -o "Dir::State::Status=/dev/null" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=$(id -un)"
                  -o "Acquire::Languages=none" -o "APT::Architecture=amd64" -q)
        say "downloading libonnxruntime-dev from $MIRROR $SUITE (private APT configuration)"
        apt-get "${APT_OPTS[@]}" update >/dev/null || die "apt-get update of $SUITE failed"
        (cd "$WORK" && apt-get "${APT_OPTS[@]}" download libonnxruntime-dev >/dev/null) \
            || die "apt-get download libonnxruntime-dev failed"
        DEB=$(ls "$WORK"/libonnxruntime-dev_*.deb)
    fi
    dpkg-deb -x "$DEB" "$WORK/deb"
    cp -r "$WORK"/deb/usr/include/onnxruntime/. "$DEST/include/"
    basename "$DEB" > "$DEST/include/HEADERS_FROM"
fi
HEADER_API=$(sed -n 's/^#define ORT_API_VERSION \([0-9]*\).*/\1/p' "$DEST/include/onnxruntime_c_api.h")
[ -n "$HEADER_API" ] || die "cannot read ORT_API_VERSION from $DEST/include/onnxruntime_c_api.h"
[ "$HEADER_API" -le "$LIB_API" ] || die "headers need C API $HEADER_API but the library $LIB_VERSION provides only $LIB_API"
say "headers with C API version $HEADER_API ($(cat "$DEST/include/HEADERS_FROM" 2>/dev/null || echo given))"
printf 'library %s\narch %s\nheaders_api %s\n' "$LIB_VERSION" "$ARCH" "$HEADER_API" > "$DEST/VERSION"
say "SDK ready in $DEST"
