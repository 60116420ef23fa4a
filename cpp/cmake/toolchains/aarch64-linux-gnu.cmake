# CMake toolchain file: cross-compile lungseg for 64-bit Arm Linux (aarch64) with Debian's
# GNU cross toolchain (apt-get install gcc-aarch64-linux-gnu g++-aarch64-linux-gnu; its
# libc, libstdc++ and libgcc for aarch64 live in /usr/aarch64-linux-gnu).
#
#   scripts/fetch_onnxruntime_sdk.sh build/onnxruntime-sdk-aarch64 aarch64
#   cmake -S . -B build/aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cpp/cmake/toolchains/aarch64-linux-gnu.cmake \
#         -DLUNGSEG_BUILD_TOOLS=OFF
#
# Other toolchains: -DLUNGSEG_CROSS_PREFIX=<triplet>- (compiler name prefix) and
# -DLUNGSEG_SYSROOT=<target root> (libraries and headers of the target).
# Where qemu-aarch64 (Debian qemu-user) is installed, ctest runs the aarch64 test programs
# through it (CMAKE_CROSSCOMPILING_EMULATOR), with the sysroot's dynamic loader.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(LUNGSEG_CROSS_PREFIX "aarch64-linux-gnu-" CACHE STRING "Name prefix of the cross compilers and binutils")
set(LUNGSEG_SYSROOT "/usr/aarch64-linux-gnu" CACHE PATH "Root of the target's libraries and headers")

set(CMAKE_C_COMPILER "${LUNGSEG_CROSS_PREFIX}gcc")
set(CMAKE_CXX_COMPILER "${LUNGSEG_CROSS_PREFIX}g++")

# Libraries, headers and packages come from the target root (and from paths given
# outright, such as ONNXRUNTIME_ROOT or an installed lungseg prefix); programs from the host.
set(CMAKE_FIND_ROOT_PATH "${LUNGSEG_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# BOTH: find_package(lungseg) must find a staging prefix given in CMAKE_PREFIX_PATH.
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# qemu-user 7.2 (Debian 12) shows an aarch64 program the host's /proc/cpuinfo, and ONNX
# Runtime's CPU detection (cpuinfo) crashes on an x86 one while the library loads.
# LUNGSEG_QEMU_ROOT may name a directory to use as qemu's -L root instead of the sysroot:
# lib -> the sysroot's lib, plus a proc/cpuinfo describing Arm cores, which qemu serves
# in place of the host's (scripts/cross_aarch64.sh makes one).
set(LUNGSEG_QEMU_ROOT "${LUNGSEG_SYSROOT}" CACHE PATH "qemu-aarch64 -L root (default: LUNGSEG_SYSROOT)")
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES LUNGSEG_CROSS_PREFIX LUNGSEG_SYSROOT LUNGSEG_QEMU_ROOT)
find_program(LUNGSEG_QEMU_AARCH64 NAMES qemu-aarch64 qemu-aarch64-static)
if(LUNGSEG_QEMU_AARCH64 AND NOT CMAKE_CROSSCOMPILING_EMULATOR)
    set(CMAKE_CROSSCOMPILING_EMULATOR "${LUNGSEG_QEMU_AARCH64};-L;${LUNGSEG_QEMU_ROOT}")
endif()
