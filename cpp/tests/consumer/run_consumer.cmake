# ctest install_package: install the build tree, build the consumer project against the
# installed package, run both programs (shared and static library).
# cmake -DBUILD_DIR= -DPREFIX= -DSOURCE_DIR= -DWORK_DIR= -DMODEL= -DGENERATOR= [-DTORCH_DIR=] -P run_consumer.cmake
function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    message("${out}${err}")
    if(NOT rc EQUAL 0)
        message(FATAL_ERROR "failed (${rc}): ${ARGN}")
    endif()
endfunction()

file(REMOVE_RECURSE "${PREFIX}" "${WORK_DIR}")
run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}")
set(prefix_path "${PREFIX}")
if(TORCH_DIR)
    list(APPEND prefix_path "${TORCH_DIR}")
endif()
string(REPLACE ";" "\\;" prefix_arg "${prefix_path}")
run("${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${WORK_DIR}" -G "${GENERATOR}" "-DCMAKE_PREFIX_PATH=${prefix_arg}"
    -DCMAKE_BUILD_TYPE=Release)
run("${CMAKE_COMMAND}" --build "${WORK_DIR}")
run("${WORK_DIR}/consumer_shared" "${MODEL}")
run("${WORK_DIR}/consumer_static" "${MODEL}")
