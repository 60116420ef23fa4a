// Writes the small test graphs of test_models.h and seed inputs for the fuzzers:
//   DIR/models/*.onnx    models (fuzz_model_load seeds; the installed-package test's model)
//   DIR/segment/*.bin    pixel-buffer requests (fuzz_segment seeds; format in fuzz_segment.cpp)
//   write_test_models DIR
#include <sys/stat.h>

#include <cstdio>
#include <string>

#include "test_models.h"
#include "test_support.h"

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: write_test_models DIR\n");
        return 2;
    }
    using lungseg_test::make_onnx_model;
    using lungseg_test::Variant;
    using lungseg_test::write_bytes;
    const std::string dir = argv[1];
    const std::string models = dir + "/models", segment = dir + "/segment";
    ::mkdir(dir.c_str(), 0755);
    ::mkdir(models.c_str(), 0755);
    ::mkdir(segment.c_str(), 0755);
    write_bytes(models + "/lungseg.onnx", make_onnx_model());
    write_bytes(models + "/lungseg_no_metadata.onnx", make_onnx_model(Variant::Lungseg, false));
    write_bytes(models + "/foreign_input_name.onnx", make_onnx_model(Variant::ForeignInputName));
    write_bytes(models + "/bool_mask.onnx", make_onnx_model(Variant::BoolMask));
    write_bytes(models + "/misshaped_mask.onnx", make_onnx_model(Variant::MisshapedMask));
    // Metadata as the exporter writes it (schema_version, extent), and a newer schema.
    write_bytes(models + "/extent_full.onnx",
                make_onnx_model(Variant::Lungseg, true, R"({"producer": "lungseg", "schema_version": 1, "extent": "full"})"));
    write_bytes(models + "/schema_v3.onnx",
                make_onnx_model(Variant::Lungseg, true, R"({"producer": "lungseg", "schema_version": 3, "extent": "visible"})"));
    // Schema 2: the quality output, and a quality output off the contract.
    write_bytes(models + "/quality.onnx",
                make_onnx_model(Variant::Quality, true, R"({"producer": "lungseg", "schema_version": 2, "extent": "visible"})"));
    write_bytes(models + "/quality_three_wide.onnx", make_onnx_model(Variant::QualityThreeWide));
    // Requests: type, flags, width, height, stride padding, mode, then pixels.
    for (int k = 0; k < 4; ++k) {
        std::string req = {static_cast<char>(k % 2), static_cast<char>(k), 24, 18, static_cast<char>(k), static_cast<char>(k)};
        for (int i = 0; i < 24 * 18 * 2 + 64; ++i)
            req += static_cast<char>(((i % 24) > 4 && (i % 24) < 10) || ((i % 24) > 14 && (i % 24) < 20) ? 200 : 30 + i % 7);
        write_bytes(segment + "/request" + std::to_string(k) + ".bin", req);
    }
    std::printf("wrote test models to %s and fuzz requests to %s\n", models.c_str(), segment.c_str());
    return 0;
}
