# ctest install_package: the installed package is self-contained and relocatable.
#
#   1. cmake --install the build tree into PREFIX;
#   2. readelf -d every lungseg ELF file installed: RUNPATH/RPATH entries are $ORIGIN-relative
#      (no build tree, no venv), liblungseg needs no torch library; the package's CMake files
#      name no absolute path (build tree, sources, venv, the prefix itself, MKL junk);
#   3. MOVE the prefix elsewhere; only then configure the C-only consumer project against the
#      moved prefix (find_package(lungseg)), link it with the shared and the static library,
#      and run both with LD_LIBRARY_PATH unset: they segment an image, and no LibTorch gets
#      mapped by an ONNX-only program; a TorchScript-like probe then reports (from the moved
#      prefix) why the LibTorch backend cannot load, or, given TORCH_LIB_DIR, loads it.
#
# cmake -DBUILD_DIR= -DPREFIX= -DSOURCE_DIR= -DWORK_DIR= -DMODEL= -DGENERATOR= -DREADELF=
#       [-DFORBIDDEN=path;path] [-DTORCH_LIB_DIR=] [-DTOOLCHAIN_FILE=] [-DEMULATOR=cmd;args]
#       [-DALLOWED_RPATH=path;path] (LUNGSEG_LIBTORCH_INSTALL_RPATH: absolute entries the build was asked for)
#       [-DC_COMPILER=] -P run_consumer.cmake
cmake_minimum_required(VERSION 3.18)

# run(COMMAND...): runs it, fails on a non-zero exit, sets run_output; prints the output
# unless run_quiet is set.
function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT run_quiet OR NOT rc EQUAL 0)
        message("${out}${err}")
    endif()
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "failed (${rc}): ${ARGN}")
    endif()
    set(run_output "${out}${err}" PARENT_SCOPE)
endfunction()

function(check condition_text)
    if(NOT (${ARGN}))
        message(FATAL_ERROR "install_package: ${condition_text}")
    endif()
endfunction()

foreach(_v BUILD_DIR PREFIX SOURCE_DIR WORK_DIR MODEL GENERATOR READELF)
    if(NOT ${_v})
        message(FATAL_ERROR "run_consumer.cmake: -D${_v}= is required")
    endif()
endforeach()
set(MOVED "${PREFIX}-moved")
file(REMOVE_RECURSE "${PREFIX}" "${MOVED}" "${WORK_DIR}")

# ---- 1. install ----------------------------------------------------------------------------
run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}")

# ---- 2. what was installed -------------------------------------------------------------------
file(GLOB _libs LIST_DIRECTORIES false "${PREFIX}/lib*/liblungseg*")
file(GLOB _bins LIST_DIRECTORIES false "${PREFIX}/bin/*")
set(_shared_lib "")
set(_elf_count 0)
foreach(_f ${_libs} ${_bins})
    if(IS_SYMLINK "${_f}" OR _f MATCHES "\\.a$")
        continue()
    endif()
    math(EXPR _elf_count "${_elf_count} + 1")
    set(run_quiet ON)
    run("${READELF}" -d "${_f}")
    set(run_quiet OFF)
    set(_dyn "${run_output}")
    get_filename_component(_name "${_f}" NAME)
    string(REGEX MATCHALL "Library (runpath|rpath): \\[[^]\n]*\\]" _paths "${_dyn}")
    foreach(_p ${_paths})
        string(REGEX REPLACE "^Library (runpath|rpath): \\[(.*)\\]$" "\\2" _p "${_p}")
        string(REPLACE ":" ";" _entries "${_p}")
        foreach(_e ${_entries})
            check("${_name} has the RUNPATH entry '${_e}', which is not relative to \$ORIGIN: the install is not relocatable"
                  _e MATCHES "^\\$ORIGIN(/|$)" OR (_name MATCHES "libtorch" AND _e IN_LIST ALLOWED_RPATH))
        endforeach()
    endforeach()
    message("install_package: ${_name}: RUNPATH/RPATH ${_paths}")
    if(_name MATCHES "^liblungseg\\.so")
        set(_shared_lib "${_f}")
        string(REGEX MATCHALL "Shared library: \\[[^]\n]*\\]" _needed "${_dyn}")
        message("install_package: ${_name} NEEDED ${_needed}")
        check("${_name} needs a torch library: ${_needed}" NOT _needed MATCHES "torch|c10")
    endif()
endforeach()
check("no liblungseg.so installed under ${PREFIX}/lib" _shared_lib)

file(GLOB _cmake_files "${PREFIX}/lib*/cmake/lungseg/*.cmake")
check("no package config installed" _cmake_files)
list(APPEND FORBIDDEN "${PREFIX}" "${BUILD_DIR}")
foreach(_f ${_cmake_files})
    file(READ "${_f}" _text)
    foreach(_bad ${FORBIDDEN} "site-packages" "/lib/intel64" "find_dependency(Torch")
        string(FIND "${_text}" "${_bad}" _at)
        check("${_f} contains '${_bad}': the package config must use paths relative to itself" _at EQUAL -1)
    endforeach()
endforeach()

# ---- 3. move the prefix, then build and run the C consumer against it ----------------------------
file(RENAME "${PREFIX}" "${MOVED}")
message("install_package: moved ${PREFIX} -> ${MOVED}")
set(_configure "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}" -G "${GENERATOR}"
    "-DCMAKE_PREFIX_PATH=${MOVED}" -DCMAKE_BUILD_TYPE=Release)
if(TOOLCHAIN_FILE)
    list(APPEND _configure "-DCMAKE_TOOLCHAIN_FILE=${TOOLCHAIN_FILE}")
elseif(C_COMPILER)
    list(APPEND _configure "-DCMAKE_C_COMPILER=${C_COMPILER}")
endif()
run(${_configure})
run("${CMAKE_COMMAND}" --build "${WORK_DIR}")

set(run_quiet ON)
run("${READELF}" -d "${WORK_DIR}/consumer_static")
check("consumer_static needs liblungseg.so: it should hold the static library" NOT run_output MATCHES "liblungseg")
run("${READELF}" -d "${WORK_DIR}/consumer_shared")
set(run_quiet OFF)
check("consumer_shared does not need liblungseg.so" run_output MATCHES "Shared library: \\[liblungseg\\.so")

# A TorchScript-like file: a zip archive's magic number and nothing a loader can use.
string(ASCII 80 75 3 4 _zip_magic)
set(_probe "${WORK_DIR}/probe.pt")
file(WRITE "${_probe}" "${_zip_magic}not really a TorchScript archive")
set(_env "${CMAKE_COMMAND}" -E env --unset=LD_LIBRARY_PATH --unset=LUNGSEG_LIBTORCH_PLUGIN)
file(GLOB _plugin "${MOVED}/lib*/liblungseg_libtorch.so")
foreach(_kind shared static)
    run(${_env} ${EMULATOR} "${WORK_DIR}/consumer_${_kind}" "${MODEL}" "${_probe}")
    check("consumer_${_kind}: no segmentation line" run_output MATCHES "right lung 253 px, left lung 276 px")
    check("consumer_${_kind}: the probe did not report an unloadable LibTorch backend"
          run_output MATCHES "probe: unsupported [^\n]*liblungseg_libtorch\\.so" OR
          (ALLOWED_RPATH AND run_output MATCHES "probe: bad model"))
endforeach()
if(_plugin AND TORCH_LIB_DIR AND NOT EMULATOR)
    # The moved prefix's plugin loads once LibTorch can be found; it then refuses the probe.
    run("${CMAKE_COMMAND}" -E env "LD_LIBRARY_PATH=${TORCH_LIB_DIR}" "${WORK_DIR}/consumer_shared" "${MODEL}" "${_probe}")
    check("consumer_shared: the installed LibTorch plugin did not load and refuse the probe"
          run_output MATCHES "probe: bad model [^\n]*TorchScript")
    check("consumer_shared: LibTorch not mapped after the probe" run_output MATCHES "torch mapped after the probe: yes")
endif()
message("install_package: ${_elf_count} ELF files checked; the moved prefix works from C (shared and static)")
