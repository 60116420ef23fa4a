// Bad input through the C ABI returns an error status with a useful message, never a crash;
// good input gives the expected masks. Runs under AddressSanitizer + UBSan in CI.
//
//   test_abi WORK_DIR
//
// Models are the small graphs of test_models.h (no Python needed): the lungseg contract
// with a per-pixel rule (lung where pixel > 128), foreign graphs and corrupt files.
#include <dirent.h>
#include <sys/stat.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "lungseg/lungseg.h"
#include "test_models.h"
#include "test_support.h"

using lungseg_test::make_onnx_model;
using lungseg_test::Variant;

namespace {

std::string g_dir;

bool contains(const char* text, const char* part) { return std::strstr(text, part) != nullptr; }

// Expect `st` to be `want` with a message containing `part`.
#define EXPECT_STATUS(call, want, part)                                                                  \
    do {                                                                                                 \
        const lungseg_status st_ = (call);                                                               \
        CHECK_MSG(st_ == (want), "got %d (%s), message '%s'", static_cast<int>(st_),                     \
                  lungseg_status_string(st_), lungseg_last_error());                                     \
        CHECK_MSG(contains(lungseg_last_error(), part), "message '%s' lacks '%s'", lungseg_last_error(), std::string(part).c_str()); \
        std::printf("  %-17s %s\n", lungseg_status_string(st_), lungseg_last_error());                        \
    } while (0)

std::string file(const std::string& name, const std::string& bytes) {
    const std::string path = g_dir + "/" + name;
    lungseg_test::write_bytes(path, bytes);
    return path;
}

lungseg_segmenter* create_ok(const std::string& bytes, const lungseg_options* o = nullptr) {
    lungseg_segmenter* seg = nullptr;
    const lungseg_status st = lungseg_create_from_memory(bytes.data(), bytes.size(), o, &seg);
    CHECK_MSG(st == LUNGSEG_OK && seg != nullptr, "create failed: %s", lungseg_last_error());
    return seg;
}

void test_library_info() {
    CHECK(std::string(lungseg_version()) == std::to_string(LUNGSEG_VERSION_MAJOR) + "." +
                                                std::to_string(LUNGSEG_VERSION_MINOR) + "." +
                                                std::to_string(LUNGSEG_VERSION_PATCH));
    for (int s = 0; s <= 9; ++s) CHECK(std::strlen(lungseg_status_string(static_cast<lungseg_status>(s))) > 0);
    CHECK(std::string(lungseg_status_string(static_cast<lungseg_status>(15))) == "unknown status");
    CHECK(lungseg_backend_available(LUNGSEG_BACKEND_ONNXRUNTIME) == 1);
    CHECK(lungseg_backend_available(LUNGSEG_BACKEND_AUTO) == 0);
    CHECK(lungseg_backend_available(99) == 0);
    lungseg_destroy(nullptr);
    lungseg_options_init(nullptr);
    lungseg_options o;
    lungseg_options_init(&o);
    CHECK(o.struct_size == sizeof o && o.backend == LUNGSEG_BACKEND_AUTO && o.max_pixels == LUNGSEG_DEFAULT_MAX_PIXELS);
}

void test_create_bad_input() {
    const std::string good = make_onnx_model();
    lungseg_segmenter* seg = reinterpret_cast<lungseg_segmenter*>(&g_dir);  // must be reset to NULL
    EXPECT_STATUS(lungseg_create(nullptr, nullptr, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT, "model_path is NULL");
    CHECK(seg == nullptr);
    EXPECT_STATUS(lungseg_create("x.onnx", nullptr, nullptr), LUNGSEG_ERROR_INVALID_ARGUMENT, "out is NULL");
    EXPECT_STATUS(lungseg_create("", nullptr, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT, "empty");
    const std::string missing = g_dir + "/no/such/model.onnx";
    EXPECT_STATUS(lungseg_create(missing.c_str(), nullptr, &seg), LUNGSEG_ERROR_IO, "No such file");
    CHECK(contains(lungseg_last_error(), missing.c_str()));
    EXPECT_STATUS(lungseg_create(g_dir.c_str(), nullptr, &seg), LUNGSEG_ERROR_IO, "not a regular file");
    EXPECT_STATUS(lungseg_create(file("empty.onnx", "").c_str(), nullptr, &seg), LUNGSEG_ERROR_MODEL, "empty");
    EXPECT_STATUS(lungseg_create(file("truncated.onnx", good.substr(0, good.size() / 2)).c_str(), nullptr, &seg),
                  LUNGSEG_ERROR_MODEL, "truncated.onnx");
    std::string garbage(4096, '\0');
    uint32_t x = 12345;
    for (auto& c : garbage) c = static_cast<char>((x = x * 1103515245u + 12345u) >> 24);
    EXPECT_STATUS(lungseg_create(file("garbage.onnx", garbage).c_str(), nullptr, &seg), LUNGSEG_ERROR_MODEL,
                  "could not be loaded by ONNX Runtime");
    EXPECT_STATUS(lungseg_create(file("text.onnx", "this is not a model\n").c_str(), nullptr, &seg),
                  LUNGSEG_ERROR_MODEL, "text.onnx");
    // A zip archive goes to LibTorch: a bad model where LibTorch is built, else unsupported.
    const std::string zip = file("garbage.pt", std::string("PK\x03\x04", 4) + garbage);
    if (lungseg_backend_available(LUNGSEG_BACKEND_LIBTORCH))
        EXPECT_STATUS(lungseg_create(zip.c_str(), nullptr, &seg), LUNGSEG_ERROR_MODEL, "TorchScript");
    else
        EXPECT_STATUS(lungseg_create(zip.c_str(), nullptr, &seg), LUNGSEG_ERROR_UNSUPPORTED, "LUNGSEG_WITH_LIBTORCH");
    if (!lungseg_backend_available(LUNGSEG_BACKEND_TENSORRT))
        EXPECT_STATUS(lungseg_create(file("model.engine", garbage).c_str(), nullptr, &seg), LUNGSEG_ERROR_UNSUPPORTED,
                      "LUNGSEG_WITH_TENSORRT");
    // Valid ONNX graphs that are not lungseg graphs.
    const struct {
        Variant v;
        const char* name;
        const char* part;
    } foreign[] = {
        {Variant::ForeignInputName, "foreign_input_name.onnx", "'input'"},
        {Variant::Uint8Input, "uint8_input.onnx", "'pixels' uint8"},
        {Variant::NoMaskOutput, "no_mask.onnx", "not a lungseg graph"},
        {Variant::BoolMask, "bool_mask.onnx", "'mask' bool"},
    };
    for (const auto& f : foreign) {
        EXPECT_STATUS(lungseg_create(file(f.name, make_onnx_model(f.v)).c_str(), nullptr, &seg), LUNGSEG_ERROR_MODEL,
                      f.part);
        CHECK(contains(lungseg_last_error(), "not a lungseg graph"));
    }
    // From memory.
    EXPECT_STATUS(lungseg_create_from_memory(nullptr, 10, nullptr, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT, "data is NULL");
    EXPECT_STATUS(lungseg_create_from_memory(good.data(), 0, nullptr, &seg), LUNGSEG_ERROR_MODEL, "empty");
    EXPECT_STATUS(lungseg_create_from_memory(good.data(), good.size() - 7, nullptr, &seg), LUNGSEG_ERROR_MODEL, "<memory>");
    EXPECT_STATUS(lungseg_create_from_memory(good.data(), good.size(), nullptr, nullptr), LUNGSEG_ERROR_INVALID_ARGUMENT,
                  "out is NULL");
}

void test_bad_options() {
    const std::string good = make_onnx_model();
    const std::string path = file("lungseg.onnx", good);
    lungseg_segmenter* seg = nullptr;
    lungseg_options o;
    auto reset = [&] { lungseg_options_init(&o); };
    reset();
    o.struct_size = 8;
    EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT, "lungseg_options_init");
    reset();
    o.backend = 42;
    EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT, "options.backend 42");
    reset();
    o.device = 7;
    EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT, "options.device 7");
    reset();
    o.device_index = -1;
    EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT, "device_index");
    reset();
    o.num_threads = -3;
    EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT, "num_threads");
    reset();
    o.reserved = 1;
    EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT, "reserved");
    reset();
    o.max_pixels = uint64_t{1} << 40;
    EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT, "max_pixels");
    reset();
    o.device = LUNGSEG_DEVICE_CUDA;  // the pip wheel's ONNX Runtime is CPU-only
    const lungseg_status st = lungseg_create(path.c_str(), &o, &seg);
    CHECK_MSG(st == LUNGSEG_ERROR_UNSUPPORTED || st == LUNGSEG_OK, "CUDA: %s", lungseg_last_error());
    lungseg_destroy(seg);
    seg = nullptr;
    reset();
    o.backend = LUNGSEG_BACKEND_TENSORRT;
    if (!lungseg_backend_available(LUNGSEG_BACKEND_TENSORRT))
        EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg), LUNGSEG_ERROR_UNSUPPORTED, "TensorRT");
    reset();
    o.backend = LUNGSEG_BACKEND_LIBTORCH;  // an ONNX file forced onto LibTorch
    EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg),
                  lungseg_backend_available(LUNGSEG_BACKEND_LIBTORCH) ? LUNGSEG_ERROR_MODEL : LUNGSEG_ERROR_UNSUPPORTED,
                  lungseg_backend_available(LUNGSEG_BACKEND_LIBTORCH) ? "TorchScript archive" : "LibTorch");
    CHECK(seg == nullptr);
}

std::vector<uint8_t> test_image(uint32_t w, uint32_t h) {
    std::vector<uint8_t> img(static_cast<std::size_t>(w) * h);
    for (uint32_t y = 0; y < h; ++y)
        for (uint32_t x = 0; x < w; ++x) {
            const bool left = (x - w * 0.3) * (x - w * 0.3) / (w * w * 0.02) + (y - h * 0.5) * (y - h * 0.5) / (h * h * 0.1) < 1;
            const bool right = (x - w * 0.7) * (x - w * 0.7) / (w * w * 0.02) + (y - h * 0.5) * (y - h * 0.5) / (h * h * 0.1) < 1;
            const bool speck = (x * 7 + y * 13) % 97 == 0;
            img[static_cast<std::size_t>(y) * w + x] = static_cast<uint8_t>(left || right || speck ? 200 : 40 + (x + y) % 50);
        }
    return img;
}

void test_segment_bad_input(lungseg_segmenter* seg) {
    const uint32_t w = 40, h = 30;
    const std::vector<uint8_t> img = test_image(w, h);
    std::vector<uint8_t> mask(w * h);
    const auto U8 = LUNGSEG_PIXEL_UINT8, U16 = LUNGSEG_PIXEL_UINT16;
    EXPECT_STATUS(lungseg_segment(nullptr, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
    EXPECT_STATUS(lungseg_segment(seg, nullptr, img.size(), U8, w, h, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "pixels is NULL");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), U8, w, h, 0, nullptr, mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "mask is NULL");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), U8, 0, h, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "0x30 is empty");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), U8, w, 0, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "is empty");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), U8, 1, h, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "at least 2 pixels");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), U8, 100000, 100000, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "max_pixels");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), U8, 0xFFFFFFFFu, 0xFFFFFFFFu, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "above the limit");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), U8, w, h, w - 1, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "row_stride 39 bytes is smaller than a row of 40 pixels (40 bytes)");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), U16, w, h, w, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "(80 bytes)");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), U8, w, h, std::numeric_limits<std::size_t>::max() / 2, mask.data(),
                                  mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "overflows");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size() - 1, 0),
                  LUNGSEG_ERROR_BUFFER_TOO_SMALL, "mask_size 1199");
    for (int32_t bad_type : {0, 3, -1, 8}) {
        EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), bad_type, w, h, 0, mask.data(), mask.size(), 0),
                      LUNGSEG_ERROR_INVALID_ARGUMENT, "pixel_type");
    }
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size(), 0x10),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "unknown flags 0x10");
    const std::vector<uint8_t> constant(w * h, 77);
    EXPECT_STATUS(lungseg_segment(seg, constant.data(), constant.size(), U8, w, h, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "constant image");
    std::vector<float> prob(w * h);
    EXPECT_STATUS(lungseg_probability(seg, img.data(), img.size(), U8, w, h, 0, nullptr, prob.size() * sizeof(float)),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "probability is NULL");
    EXPECT_STATUS(lungseg_probability(seg, img.data(), img.size(), U8, w, h, 0, prob.data(), 10), LUNGSEG_ERROR_BUFFER_TOO_SMALL,
                  "probability_size 10 bytes");
    EXPECT_STATUS(lungseg_probability(seg, img.data(), img.size(), 5, w, h, 0, prob.data(), prob.size() * sizeof(float)),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "pixel_type 5");
    const char* text = nullptr;
    EXPECT_STATUS(lungseg_metadata_json(nullptr, &text), LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
    EXPECT_STATUS(lungseg_metadata_json(seg, nullptr), LUNGSEG_ERROR_INVALID_ARGUMENT, "json is NULL");
    EXPECT_STATUS(lungseg_metadata_value(seg, nullptr, &text), LUNGSEG_ERROR_INVALID_ARGUMENT, "key is NULL");
    EXPECT_STATUS(lungseg_metadata_value(seg, "version", nullptr), LUNGSEG_ERROR_INVALID_ARGUMENT, "value is NULL");
    EXPECT_STATUS(lungseg_metadata_value(seg, "no_such_key", &text), LUNGSEG_ERROR_NOT_FOUND, "no_such_key");
    EXPECT_STATUS(lungseg_backend_name(seg, nullptr), LUNGSEG_ERROR_INVALID_ARGUMENT, "name is NULL");
}

void test_segment_good_input(lungseg_segmenter* seg) {
    const uint32_t w = 40, h = 30;
    const std::vector<uint8_t> img = test_image(w, h);
    std::vector<uint8_t> raw(w * h), mask(w * h), labels(w * h);
    CHECK(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, raw.data(), raw.size(), LUNGSEG_SEGMENT_RAW) ==
          LUNGSEG_OK);
    CHECK(std::string(lungseg_last_error()).empty());
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < raw.size(); ++i) wrong += raw[i] != (img[i] > 128 ? 1 : 0);
    CHECK_MSG(wrong == 0, "%zu pixels differ from the graph's rule", wrong);
    // Default flags = clean-up; LABELS = clean-up + labels: the same as lungseg_postprocess.
    CHECK(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, mask.data(), mask.size(), 0) == LUNGSEG_OK);
    std::vector<uint8_t> expected = raw;
    CHECK(lungseg_postprocess(expected.data(), expected.size(), w, h, 0) == LUNGSEG_OK);
    CHECK(mask == expected);
    CHECK(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, labels.data(), labels.size(),
                          LUNGSEG_SEGMENT_LABELS) == LUNGSEG_OK);
    expected = raw;
    CHECK(lungseg_postprocess(expected.data(), expected.size(), w, h, LUNGSEG_SEGMENT_LABELS) == LUNGSEG_OK);
    CHECK(labels == expected);
    std::size_t ones = 0, twos = 0;
    for (auto v : labels) {
        ones += v == 1;
        twos += v == 2;
    }
    CHECK(ones > 50 && twos > 50);

    // A padded row stride and 16-bit pixels at an odd (unaligned) address give the same mask.
    const std::size_t stride16 = 2 * w + 7;
    std::vector<uint8_t> buf16(1 + stride16 * h, 0xAB);
    for (uint32_t y = 0; y < h; ++y)
        for (uint32_t x = 0; x < w; ++x) {
            const uint16_t v = static_cast<uint16_t>(img[y * w + x] * 257);  // same relative intensities
            std::memcpy(&buf16[1 + y * stride16 + 2 * x], &v, 2);
        }
    std::vector<uint8_t> mask16(w * h);
    CHECK(lungseg_segment(seg, buf16.data() + 1, buf16.size() - 1, LUNGSEG_PIXEL_UINT16, w, h, stride16, mask16.data(), mask16.size(),
                          LUNGSEG_SEGMENT_RAW) == LUNGSEG_OK);
    wrong = 0;
    for (std::size_t i = 0; i < raw.size(); ++i) wrong += mask16[i] != (img[i] * 257 > 128 ? 1 : 0);
    CHECK_MSG(wrong == 0, "16-bit strided: %zu pixels differ", wrong);
    const std::size_t stride8 = w + 13;
    std::vector<uint8_t> buf8(stride8 * h, 0xFF);
    for (uint32_t y = 0; y < h; ++y) std::memcpy(&buf8[y * stride8], &img[y * w], w);
    std::vector<uint8_t> mask8(w * h);
    CHECK(lungseg_segment(seg, buf8.data(), buf8.size(), LUNGSEG_PIXEL_UINT8, w, h, stride8, mask8.data(), mask8.size(),
                          LUNGSEG_SEGMENT_RAW) == LUNGSEG_OK);
    CHECK(mask8 == raw);

    std::vector<float> prob(w * h);
    CHECK(lungseg_probability(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, prob.data(), prob.size() * sizeof(float)) == LUNGSEG_OK);
    wrong = 0;
    for (std::size_t i = 0; i < prob.size(); ++i) wrong += !(prob[i] >= 0.f && prob[i] <= 1.f) || ((prob[i] > 0.5f) != (raw[i] == 1));
    CHECK_MSG(wrong == 0, "%zu probabilities disagree with the mask", wrong);

    // Smallest image the library accepts.
    const uint8_t tiny[4] = {0, 255, 255, 0};
    uint8_t tiny_mask[4] = {9, 9, 9, 9};
    CHECK(lungseg_segment(seg, tiny, sizeof tiny, LUNGSEG_PIXEL_UINT8, 2, 2, 0, tiny_mask, 4, LUNGSEG_SEGMENT_LABELS) == LUNGSEG_OK);
    CHECK(tiny_mask[0] == 0 && tiny_mask[1] != 0 && tiny_mask[2] != 0 && tiny_mask[3] == 0);
}

void test_metadata(lungseg_segmenter* seg) {
    const char* json = nullptr;
    CHECK(lungseg_metadata_json(seg, &json) == LUNGSEG_OK && json != nullptr && json[0] == '{');
    const char* v = nullptr;
    CHECK(lungseg_metadata_value(seg, "version", &v) == LUNGSEG_OK && std::string(v) == "test");
    CHECK(lungseg_metadata_value(seg, "image_size", &v) == LUNGSEG_OK && std::string(v) == "0");
    CHECK(lungseg_metadata_value(seg, "threshold", &v) == LUNGSEG_OK && std::string(v) == "0.5");
    CHECK(lungseg_metadata_value(seg, "names", &v) == LUNGSEG_OK && v[0] == '{');
    CHECK(lungseg_metadata_value(seg, "note", &v) == LUNGSEG_OK && std::string(v) == "caf\xc3\xa9");
    const char* name = nullptr;
    CHECK(lungseg_backend_name(seg, &name) == LUNGSEG_OK && std::string(name) == "onnxruntime");

    lungseg_segmenter* bare = create_ok(make_onnx_model(Variant::Lungseg, false));
    CHECK(lungseg_metadata_json(bare, &json) == LUNGSEG_OK && std::string(json) == "{}");
    CHECK(lungseg_metadata_value(bare, "version", &v) == LUNGSEG_ERROR_NOT_FOUND);
    lungseg_destroy(bare);
}

void test_limits_and_misshaped_output() {
    lungseg_options o;
    lungseg_options_init(&o);
    o.max_pixels = 100;
    o.num_threads = 1;
    lungseg_segmenter* seg = create_ok(make_onnx_model(), &o);
    const std::vector<uint8_t> img = test_image(20, 20);
    std::vector<uint8_t> mask(400);
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, 20, 20, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "limit of 100 pixels");
    CHECK(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, 10, 10, 20, mask.data(), mask.size(), 0) == LUNGSEG_OK);
    lungseg_destroy(seg);

    // "mask" declared [N,1,H,W] but computed as [1,1,1,1]: refused at load or when run.
    const std::string bad = make_onnx_model(Variant::MisshapedMask);
    seg = nullptr;
    const lungseg_status st = lungseg_create_from_memory(bad.data(), bad.size(), nullptr, &seg);
    if (st == LUNGSEG_OK) {
        EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, 20, 20, 0, mask.data(), mask.size(), 0),
                      LUNGSEG_ERROR_INFERENCE, "ONNX Runtime failed on a 20x20 image");
    } else {
        CHECK_MSG(st == LUNGSEG_ERROR_MODEL, "misshaped: %s", lungseg_last_error());
    }
    lungseg_destroy(seg);
}

void test_concurrent_calls(lungseg_segmenter* seg) {
    const uint32_t w = 64, h = 48;
    const std::vector<uint8_t> img = test_image(w, h);
    std::vector<uint8_t> reference(w * h);
    CHECK(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, reference.data(), reference.size(),
                          LUNGSEG_SEGMENT_LABELS) == LUNGSEG_OK);
    std::vector<int> bad(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            std::vector<uint8_t> m(w * h);
            for (int k = 0; k < 10; ++k) {
                const lungseg_status st = lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, m.data(),
                                                          m.size(), LUNGSEG_SEGMENT_LABELS);
                if (st != LUNGSEG_OK || m != reference) ++bad[static_cast<std::size_t>(t)];
                // errors are per thread: a failing call here does not disturb the others
                uint8_t dummy = 0;
                if (lungseg_segment(seg, img.data(), img.size(), 9, w, h, 0, &dummy, 1, 0) != LUNGSEG_ERROR_INVALID_ARGUMENT ||
                    !contains(lungseg_last_error(), "pixel_type 9"))
                    ++bad[static_cast<std::size_t>(t)];
            }
        });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) CHECK_MSG(bad[static_cast<std::size_t>(t)] == 0, "thread %d: %d bad results", t, bad[static_cast<std::size_t>(t)]);
}

// ---- sized buffers -----------------------------------------------------------------------

void test_short_buffers(lungseg_segmenter* seg) {
    // The issue's cases: 100 x 1,000,000 described over a 64-byte buffer (used to crash),
    // and 100 x 1000 over a buffer one row short (used to read past it and return OK).
    std::vector<uint8_t> small(64, 100), mask(64);
    EXPECT_STATUS(lungseg_segment(seg, small.data(), small.size(), LUNGSEG_PIXEL_UINT8, 100, 1000000, 0, mask.data(),
                                  mask.size(), 0),
                  LUNGSEG_ERROR_BUFFER_TOO_SMALL, "pixels_size 64 bytes is below the 100000000 bytes a 100x1000000 uint8");
    const uint32_t w = 100, h = 1000;
    std::vector<uint8_t> img(w * h);
    for (std::size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i % 251);
    std::vector<uint8_t> out(w * h);
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size() - w, LUNGSEG_PIXEL_UINT8, w, h, 0, out.data(), out.size(), 0),
                  LUNGSEG_ERROR_BUFFER_TOO_SMALL, "pixels_size 99900 bytes is below the 100000 bytes");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size() - 1, LUNGSEG_PIXEL_UINT8, w, h, 0, out.data(), out.size(), 0),
                  LUNGSEG_ERROR_BUFFER_TOO_SMALL, "99999");
    CHECK(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, out.data(), out.size(),
                          LUNGSEG_SEGMENT_RAW) == LUNGSEG_OK);
    // Strided uint16: the last row needs only its own pixels, not a whole stride.
    const std::size_t stride = 2 * 40 + 10, need = (30 - 1) * stride + 2 * 40;
    std::vector<uint8_t> buf16(need, 0);
    for (std::size_t i = 0; i < need; ++i) buf16[i] = static_cast<uint8_t>(i * 13);
    std::vector<uint8_t> m16(40 * 30);
    CHECK_MSG(lungseg_segment(seg, buf16.data(), need, LUNGSEG_PIXEL_UINT16, 40, 30, stride, m16.data(), m16.size(), 0) ==
                  LUNGSEG_OK,
              "%s", lungseg_last_error());
    EXPECT_STATUS(lungseg_segment(seg, buf16.data(), need - 1, LUNGSEG_PIXEL_UINT16, 40, 30, stride, m16.data(),
                                  m16.size(), 0),
                  LUNGSEG_ERROR_BUFFER_TOO_SMALL, "uint16 image with row_stride 90 needs");
    std::vector<float> prob(40 * 30);
    EXPECT_STATUS(lungseg_probability(seg, buf16.data(), need - 1, LUNGSEG_PIXEL_UINT16, 40, 30, stride, prob.data(),
                                      prob.size() * sizeof(float)),
                  LUNGSEG_ERROR_BUFFER_TOO_SMALL, "pixels_size");
    EXPECT_STATUS(lungseg_probability(seg, buf16.data(), need, LUNGSEG_PIXEL_UINT16, 40, 30, stride, prob.data(),
                                      prob.size() * sizeof(float) - 1),
                  LUNGSEG_ERROR_BUFFER_TOO_SMALL, "probability_size 4799 bytes is below width * height * 4 = 4800");
    // (height - 1) * row_stride overflowing size_t is refused, not wrapped around.
    EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, 3,
                                  std::numeric_limits<std::size_t>::max() / 2 + 1, out.data(), out.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "overflows");
}

// ---- options.struct_size, ABI version --------------------------------------------------

// lungseg 0.1's options struct, as a program built with that header passes it.
struct OptionsV1 {
    uint32_t struct_size;
    int32_t backend, device, device_index, num_threads;
    uint32_t reserved;
    uint64_t max_pixels;
};

void test_struct_size() {
    CHECK(lungseg_abi_version() == LUNGSEG_ABI_VERSION);
    CHECK(LUNGSEG_ABI_VERSION == 3 && LUNGSEG_MODEL_SCHEMA_VERSION == 2);
    CHECK(sizeof(lungseg_quality) == 24);  // ABI 3's layout: the size lungseg_quality.struct_size starts from
    CHECK(sizeof(OptionsV1) == 32);
    const std::string model = make_onnx_model();
    lungseg_segmenter* seg = nullptr;
    // The older, smaller struct: accepted, the newer fields take their defaults.
    OptionsV1 v1{32, LUNGSEG_BACKEND_AUTO, LUNGSEG_DEVICE_CPU, 0, 1, 0, 1000};
    CHECK_MSG(lungseg_create_from_memory(model.data(), model.size(), reinterpret_cast<const lungseg_options*>(&v1), &seg) ==
                  LUNGSEG_OK,
              "%s", lungseg_last_error());
    if (seg != nullptr) {
        const std::vector<uint8_t> img = test_image(40, 30);  // 1200 pixels > max_pixels 1000 from the v1 struct
        std::vector<uint8_t> mask(img.size());
        EXPECT_STATUS(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, 40, 30, 0, mask.data(), mask.size(), 0),
                      LUNGSEG_ERROR_INVALID_ARGUMENT, "limit of 1000 pixels");
        const char* extent = nullptr;
        CHECK(lungseg_model_extent(seg, &extent) == LUNGSEG_OK && std::string(extent) == "visible");
    }
    lungseg_destroy(seg);
    seg = nullptr;
    // A newer, larger struct whose unknown fields are 0: accepted. Non-zero: refused.
    struct Bigger {
        lungseg_options o;
        uint64_t newer[4];
    } big{};
    lungseg_options_init(&big.o);
    big.o.struct_size = sizeof big;
    CHECK_MSG(lungseg_create_from_memory(model.data(), model.size(), &big.o, &seg) == LUNGSEG_OK, "%s", lungseg_last_error());
    lungseg_destroy(seg);
    seg = nullptr;
    big.newer[2] = 1;
    EXPECT_STATUS(lungseg_create_from_memory(model.data(), model.size(), &big.o, &seg), LUNGSEG_ERROR_UNSUPPORTED,
                  "newer lungseg header");
    CHECK(seg == nullptr);
    // Sizes that are no version's.
    lungseg_options o;
    for (uint32_t bad : {0u, 8u, 31u, 33u, static_cast<uint32_t>(sizeof(lungseg_options) - 1), 100000u}) {
        lungseg_options_init(&o);
        o.struct_size = bad;
        EXPECT_STATUS(lungseg_create_from_memory(model.data(), model.size(), &o, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT,
                      "options.struct_size is");
        CHECK(contains(lungseg_last_error(), std::to_string(bad).c_str()));
    }
    lungseg_options_init(&o);
    o.extent = 3;
    EXPECT_STATUS(lungseg_create_from_memory(model.data(), model.size(), &o, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT,
                  "options.extent 3");
    lungseg_options_init(&o);
    o.create_flags = 0x10;
    EXPECT_STATUS(lungseg_create_from_memory(model.data(), model.size(), &o, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT,
                  "create_flags has unknown bits 0x10");
    lungseg_options_init(&o);
    o.expected_sha256 = "abc";
    EXPECT_STATUS(lungseg_create_from_memory(model.data(), model.size(), &o, &seg), LUNGSEG_ERROR_INVALID_ARGUMENT,
                  "expected_sha256 is not 64 hex digits");
}

// ---- model schema version, extent, sha256 ------------------------------------------------

std::string model_with(const std::string& json) { return make_onnx_model(Variant::Lungseg, true, json); }

void test_model_versions_and_extent() {
    lungseg_segmenter* seg = nullptr;
    lungseg_options o;
    lungseg_options_init(&o);
    const std::string v1 = model_with(R"({"producer": "lungseg", "schema_version": 1, "extent": "full"})");
    CHECK_MSG(lungseg_create_from_memory(v1.data(), v1.size(), &o, &seg) == LUNGSEG_OK, "%s", lungseg_last_error());
    const char* extent = nullptr;
    CHECK(seg != nullptr && lungseg_model_extent(seg, &extent) == LUNGSEG_OK && std::string(extent) == "full");
    lungseg_destroy(seg);
    seg = nullptr;
    const std::string v3 = model_with(R"({"producer": "lungseg", "schema_version": 3})");
    EXPECT_STATUS(lungseg_create_from_memory(v3.data(), v3.size(), &o, &seg), LUNGSEG_ERROR_MODEL_VERSION,
                  "schema_version 3, newer than the schema version 2");
    CHECK(seg == nullptr);
    const std::string junk = model_with(R"({"schema_version": "one"})");
    EXPECT_STATUS(lungseg_create_from_memory(junk.data(), junk.size(), &o, &seg), LUNGSEG_ERROR_MODEL_VERSION,
                  "schema_version 'one' is not a positive integer");
    const std::string zero = model_with(R"({"schema_version": 0})");
    EXPECT_STATUS(lungseg_create_from_memory(zero.data(), zero.size(), &o, &seg), LUNGSEG_ERROR_MODEL_VERSION, "'0'");
    const std::string sideways = model_with(R"({"schema_version": 1, "extent": "sideways"})");
    EXPECT_STATUS(lungseg_create_from_memory(sideways.data(), sideways.size(), &o, &seg), LUNGSEG_ERROR_MODEL,
                  "extent 'sideways'");

    // Requested extent: the artifact's own is accepted, the other refused.
    const std::string full = v1, visible = model_with(R"({"schema_version": 1, "extent": "visible"})");
    const std::string old = make_onnx_model();  // no "extent": visible
    o.extent = LUNGSEG_EXTENT_FULL;
    CHECK(lungseg_create_from_memory(full.data(), full.size(), &o, &seg) == LUNGSEG_OK);
    lungseg_destroy(seg);
    seg = nullptr;
    EXPECT_STATUS(lungseg_create_from_memory(visible.data(), visible.size(), &o, &seg), LUNGSEG_ERROR_MODEL_MISMATCH,
                  "exported for the 'visible' extent, but options.extent asks for 'full'");
    EXPECT_STATUS(lungseg_create_from_memory(old.data(), old.size(), &o, &seg), LUNGSEG_ERROR_MODEL_MISMATCH,
                  "no extent in its metadata");
    o.extent = LUNGSEG_EXTENT_VISIBLE;
    EXPECT_STATUS(lungseg_create_from_memory(full.data(), full.size(), &o, &seg), LUNGSEG_ERROR_MODEL_MISMATCH,
                  "exported for the 'full' extent, but options.extent asks for 'visible'");
    CHECK(lungseg_create_from_memory(old.data(), old.size(), &o, &seg) == LUNGSEG_OK);
    CHECK(lungseg_model_extent(seg, &extent) == LUNGSEG_OK && std::string(extent) == "visible");
    EXPECT_STATUS(lungseg_model_extent(seg, nullptr), LUNGSEG_ERROR_INVALID_ARGUMENT, "extent is NULL");
    EXPECT_STATUS(lungseg_model_extent(nullptr, &extent), LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
    lungseg_destroy(seg);
    seg = nullptr;
}

// SHA-256 of a file by the system's sha256sum ("" when it is not available).
std::string sha256sum(const std::string& path) {
    std::FILE* p = ::popen(("sha256sum '" + path + "'").c_str(), "r");
    if (p == nullptr) return "";
    char buf[65] = {};
    const std::size_t got = std::fread(buf, 1, 64, p);
    ::pclose(p);
    return got == 64 ? std::string(buf) : std::string();
}

void test_sha256() {
    const std::string bytes = make_onnx_model();
    const std::string path = file("checked.onnx", bytes);
    std::remove((path + ".sha256").c_str());
    lungseg_segmenter* seg = nullptr;
    lungseg_options o;
    lungseg_options_init(&o);
    o.create_flags = LUNGSEG_CREATE_VERIFY_SHA256;
    EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg), LUNGSEG_ERROR_CHECKSUM, "no SHA-256 is recorded");
    const std::string sum = sha256sum(path);
    if (sum.empty()) {
        std::printf("  sha256sum not available: the recorded-hash cases are skipped\n");
        return;
    }
    lungseg_test::write_bytes(path + ".sha256", sum + "  checked.onnx\n");
    CHECK_MSG(lungseg_create(path.c_str(), &o, &seg) == LUNGSEG_OK, "%s", lungseg_last_error());
    lungseg_destroy(seg);
    seg = nullptr;
    std::string wrong = sum;
    wrong[10] = wrong[10] == '0' ? '1' : '0';
    lungseg_test::write_bytes(path + ".sha256", wrong + "  checked.onnx\n");
    EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg), LUNGSEG_ERROR_CHECKSUM, ("has SHA-256 " + sum).c_str());
    CHECK(contains(lungseg_last_error(), wrong.c_str()));
    lungseg_test::write_bytes(path + ".sha256", "not a hash\n");
    EXPECT_STATUS(lungseg_create(path.c_str(), &o, &seg), LUNGSEG_ERROR_CHECKSUM, "does not start with 64 hex digits");
    // Without the flag the sidecar is not read.
    lungseg_options plain;
    lungseg_options_init(&plain);
    CHECK(lungseg_create(path.c_str(), &plain, &seg) == LUNGSEG_OK);
    lungseg_destroy(seg);
    seg = nullptr;
    // options.expected_sha256 (upper case is fine) for a model in memory.
    std::string upper = sum;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    o.create_flags = 0;
    o.expected_sha256 = upper.c_str();
    CHECK_MSG(lungseg_create_from_memory(bytes.data(), bytes.size(), &o, &seg) == LUNGSEG_OK, "%s", lungseg_last_error());
    lungseg_destroy(seg);
    seg = nullptr;
    o.expected_sha256 = wrong.c_str();
    EXPECT_STATUS(lungseg_create_from_memory(bytes.data(), bytes.size(), &o, &seg), LUNGSEG_ERROR_CHECKSUM,
                  "options.expected_sha256 records");
    // The metadata key artifact_sha256 (as a TensorRT sidecar carries it) is checked too.
    const std::string claims = model_with("{\"artifact_sha256\": \"" + sum + "\"}");
    o.expected_sha256 = nullptr;
    o.create_flags = LUNGSEG_CREATE_VERIFY_SHA256;
    EXPECT_STATUS(lungseg_create_from_memory(claims.data(), claims.size(), &o, &seg), LUNGSEG_ERROR_CHECKSUM,
                  "metadata artifact_sha256 records");
}

// ---- workspace -----------------------------------------------------------------------------

void test_workspace(lungseg_segmenter* seg) {
    const uint32_t w = 40, h = 30;
    const std::vector<uint8_t> img = test_image(w, h);
    std::vector<uint8_t> reference(w * h), mask(w * h);
    CHECK(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, reference.data(), reference.size(),
                          LUNGSEG_SEGMENT_LABELS) == LUNGSEG_OK);
    std::size_t bytes = 0;
    CHECK(lungseg_workspace_size(seg, w, h, &bytes) == LUNGSEG_OK);
    CHECK_MSG(bytes >= w * h * sizeof(float) && bytes <= w * h * sizeof(float) + 64, "workspace %zu bytes", bytes);
    EXPECT_STATUS(lungseg_workspace_size(seg, 1, h, &bytes), LUNGSEG_ERROR_INVALID_ARGUMENT, "at least 2 pixels");
    EXPECT_STATUS(lungseg_workspace_size(seg, 100000, 100000, &bytes), LUNGSEG_ERROR_INVALID_ARGUMENT, "max_pixels");
    EXPECT_STATUS(lungseg_workspace_size(seg, w, h, nullptr), LUNGSEG_ERROR_INVALID_ARGUMENT, "bytes is NULL");
    EXPECT_STATUS(lungseg_workspace_size(nullptr, w, h, &bytes), LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
    CHECK(lungseg_workspace_size(seg, w, h, &bytes) == LUNGSEG_OK);
    // Exactly the size asked for, at an odd address: the same labels.
    std::vector<unsigned char> ws(bytes + 1);
    CHECK(lungseg_set_workspace(seg, ws.data() + 1, bytes) == LUNGSEG_OK);
    for (int k = 0; k < 3; ++k) {
        CHECK(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, mask.data(), mask.size(),
                              LUNGSEG_SEGMENT_LABELS) == LUNGSEG_OK);
        CHECK(mask == reference);
    }
    // A larger image than the workspace holds.
    const std::vector<uint8_t> big = test_image(w, h + 1);
    std::vector<uint8_t> big_mask(big.size());
    EXPECT_STATUS(lungseg_segment(seg, big.data(), big.size(), LUNGSEG_PIXEL_UINT8, w, h + 1, 0, big_mask.data(),
                                  big_mask.size(), 0),
                  LUNGSEG_ERROR_BUFFER_TOO_SMALL, ("the workspace of " + std::to_string(bytes) + " bytes").c_str());
    CHECK(contains(lungseg_last_error(), "40x31 image needs"));
    EXPECT_STATUS(lungseg_set_workspace(seg, nullptr, 10), LUNGSEG_ERROR_INVALID_ARGUMENT, "workspace is NULL");
    EXPECT_STATUS(lungseg_set_workspace(seg, ws.data(), 0), LUNGSEG_ERROR_INVALID_ARGUMENT, "workspace size is 0");
    EXPECT_STATUS(lungseg_set_workspace(nullptr, ws.data(), 10), LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
    // Back to the library's own: larger images work again.
    CHECK(lungseg_set_workspace(seg, nullptr, 0) == LUNGSEG_OK);
    CHECK(lungseg_segment(seg, big.data(), big.size(), LUNGSEG_PIXEL_UINT8, w, h + 1, 0, big_mask.data(), big_mask.size(),
                          0) == LUNGSEG_OK);
}

// ---- cancel ---------------------------------------------------------------------------------

void test_cancel() {
    lungseg_options o;
    lungseg_options_init(&o);
    o.num_threads = 1;
    lungseg_segmenter* seg = create_ok(make_onnx_model(), &o);
    if (seg == nullptr) return;
    EXPECT_STATUS(lungseg_cancel(nullptr), LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
    CHECK(lungseg_cancel(seg) == LUNGSEG_OK);  // nothing running: harmless, later calls unaffected
    const uint32_t w = 3000, h = 3000;
    std::vector<uint8_t> img(static_cast<std::size_t>(w) * h);
    for (std::size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>((i * 2654435761u) >> 24);
    std::vector<uint8_t> mask(img.size());
    const auto t0 = std::chrono::steady_clock::now();
    CHECK(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, mask.data(), mask.size(),
                          LUNGSEG_SEGMENT_RAW) == LUNGSEG_OK);
    const double call_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    // A second thread segments until one of its calls is stopped inside the graph (by ONNX
    // Runtime's terminate flag); this thread cancels meanwhile, at moments spread over the
    // length of one call (each call starts when the previous one was cancelled), so that
    // some land in the pixel conversion and some in the graph, whatever the build's speed.
    std::atomic<bool> done{false};
    int ok = 0, cancelled = 0, in_graph = 0, other = 0, analyze_cancelled = 0;
    std::string other_message;
    std::thread worker([&] {
        std::vector<uint8_t> m(img.size());
        for (int k = 0; k < 300 && (in_graph == 0 || analyze_cancelled == 0); ++k) {
            // Every other call is lungseg_analyze(): cancelled the same way, *quality left as it was.
            lungseg_quality q;
            lungseg_quality_init(&q);
            q.flags = 0xABCDu;
            const lungseg_status st =
                k % 2 == 0 ? lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, m.data(), m.size(),
                                             LUNGSEG_SEGMENT_RAW)
                           : lungseg_analyze(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, m.data(), m.size(),
                                             LUNGSEG_SEGMENT_RAW, 0.0f, &q);
            if (k % 2 == 1 && st != LUNGSEG_OK && q.flags != 0xABCDu) ++other;
            if (k % 2 == 1 && st == LUNGSEG_OK && q.flags == 0xABCDu) ++other;
            if (k % 2 == 1 && st == LUNGSEG_CANCELLED) ++analyze_cancelled;
            if (st == LUNGSEG_OK) {
                ++ok;
            } else if (st == LUNGSEG_CANCELLED) {
                ++cancelled;
                if (contains(lungseg_last_error(), "ONNX Runtime stopped it")) ++in_graph;
                if (!contains(lungseg_last_error(), "cancelled by lungseg_cancel()")) ++other;
            } else {
                ++other;
                other_message = lungseg_last_error();
            }
        }
        done = true;
    });
    for (int k = 0; !done; ++k) {
        const double position = std::fmod(0.6180339887 * k, 1.0);  // low-discrepancy spread over [0, 1)
        std::this_thread::sleep_for(std::chrono::microseconds(200 + static_cast<long>(position * 1.2 * call_us)));
        CHECK(lungseg_cancel(seg) == LUNGSEG_OK);
    }
    worker.join();
    std::printf("  cancel: %d calls completed, %d cancelled (%d inside the graph, %d lungseg_analyze), %d other\n", ok,
                cancelled, in_graph, analyze_cancelled, other);
    CHECK_MSG(other == 0, "unexpected results: %s", other_message.c_str());
    CHECK(cancelled > 0);
    CHECK_MSG(in_graph > 0, "no call was stopped inside the graph");
    CHECK_MSG(analyze_cancelled > 0, "no lungseg_analyze() call was cancelled");
    // The segmenter is still usable after cancellations.
    CHECK(lungseg_segment(seg, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, mask.data(), mask.size(),
                          LUNGSEG_SEGMENT_RAW) == LUNGSEG_OK);
    lungseg_destroy(seg);
}

// ---- lungseg_analyze: quality row and flags ------------------------------------------------

lungseg_quality fresh_quality() {
    lungseg_quality q;
    lungseg_quality_init(&q);
    return q;
}

// The flags lungseg_quality_flags() gives for `mask` (0/1 or 0/1/2) and the row of q: what
// lungseg_analyze() must have given with the same flags.
uint32_t flags_via_quality_flags(std::vector<uint8_t> mask, uint32_t w, uint32_t h, uint32_t flags,
                                 const lungseg_quality& q, float min_quality) {
    if ((flags & LUNGSEG_SEGMENT_LABELS) == 0)
        CHECK(lungseg_postprocess(mask.data(), mask.size(), w, h, LUNGSEG_SEGMENT_LABELS | LUNGSEG_SEGMENT_RAW) ==
              LUNGSEG_OK);  // labels of the mask as returned (already cleaned unless RAW)
    lungseg_quality copy = q;
    CHECK_MSG(lungseg_quality_flags(mask.data(), mask.size(), w, h, min_quality, &copy) == LUNGSEG_OK, "%s",
              lungseg_last_error());
    return copy.flags;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// The test graph without a quality output (a schema 1 artifact): NaN row, LOW_CONFIDENCE,
// and the mask exactly lungseg_segment()'s for every flag set.
void test_analyze(lungseg_segmenter* seg) {
    const uint32_t w = 40, h = 30;
    const std::vector<uint8_t> img = test_image(w, h);
    const auto U8 = LUNGSEG_PIXEL_UINT8;
    for (uint32_t flags : {0u, LUNGSEG_SEGMENT_LABELS, LUNGSEG_SEGMENT_RAW, LUNGSEG_SEGMENT_RAW | LUNGSEG_SEGMENT_LABELS}) {
        std::vector<uint8_t> want(w * h), got(w * h, 9);
        CHECK(lungseg_segment(seg, img.data(), img.size(), U8, w, h, 0, want.data(), want.size(), flags) == LUNGSEG_OK);
        lungseg_quality q = fresh_quality();
        q.flags = 0xABCDu;
        CHECK_MSG(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, got.data(), got.size(), flags, 0.0f, &q) ==
                      LUNGSEG_OK,
                  "%s", lungseg_last_error());
        CHECK(std::string(lungseg_last_error()).empty());
        CHECK_MSG(got == want, "analyze's mask differs from segment's (flags %u)", flags);
        CHECK(q.struct_size == sizeof q);
        CHECK(std::isnan(q.quality) && std::isnan(q.dice_estimate) && std::isnan(q.frontal_probability) &&
              std::isnan(q.inverted_probability));
        CHECK_MSG((q.flags & LUNGSEG_FLAG_LOW_CONFIDENCE) != 0, "flags 0x%x", q.flags);
        CHECK((q.flags & (LUNGSEG_FLAG_INVERTED | LUNGSEG_FLAG_NOT_FRONTAL_CHEST)) == 0);  // NaN view: neither
        CHECK_MSG(q.flags == flags_via_quality_flags(got, w, h, flags, q, 0.0f), "flags %u: 0x%x", flags, q.flags);
    }
    // Argument checks, each before anything is written.
    std::vector<uint8_t> mask(w * h, 7);
    lungseg_quality q = fresh_quality();
    q.flags = 0xABCDu;
    EXPECT_STATUS(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size(), 0, 0.0f, nullptr),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "quality is NULL");
    EXPECT_STATUS(lungseg_analyze(nullptr, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size(), 0, 0.0f, &q),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
    EXPECT_STATUS(lungseg_analyze(seg, img.data(), img.size() - 1, U8, w, h, 0, mask.data(), mask.size(), 0, 0.0f, &q),
                  LUNGSEG_ERROR_BUFFER_TOO_SMALL, "pixels_size 1199 bytes is below the 1200 bytes");
    EXPECT_STATUS(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size() - 1, 0, 0.0f, &q),
                  LUNGSEG_ERROR_BUFFER_TOO_SMALL, "mask_size 1199");
    EXPECT_STATUS(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, nullptr, mask.size(), 0, 0.0f, &q),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "mask is NULL");
    EXPECT_STATUS(lungseg_analyze(seg, img.data(), img.size(), 3, w, h, 0, mask.data(), mask.size(), 0, 0.0f, &q),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "pixel_type 3");
    EXPECT_STATUS(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size(), 0x20, 0.0f, &q),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "unknown flags 0x20");
    const std::vector<uint8_t> constant(w * h, 77);
    EXPECT_STATUS(lungseg_analyze(seg, constant.data(), constant.size(), U8, w, h, 0, mask.data(), mask.size(), 0, 0.0f, &q),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "constant image");
    for (uint32_t bad : {0u, 8u, static_cast<uint32_t>(sizeof(lungseg_quality) - 1), 4097u, 100000u}) {
        q.struct_size = bad;
        EXPECT_STATUS(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size(), 0, 0.0f, &q),
                      LUNGSEG_ERROR_INVALID_ARGUMENT, "quality->struct_size is");
        CHECK(contains(lungseg_last_error(), std::to_string(bad).c_str()));
    }
    CHECK(q.flags == 0xABCDu);  // none of the refused calls wrote it
    std::size_t untouched = 0;
    for (uint8_t v : mask) untouched += v == 7;
    CHECK(untouched == mask.size());
    // A newer header's larger struct: our fields written, the bytes beyond them zeroed.
    struct Bigger {
        lungseg_quality q;
        unsigned char newer[40];
    } big;
    std::memset(&big, 0x5A, sizeof big);
    big.q.struct_size = sizeof big;
    CHECK_MSG(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size(), 0, 0.0f, &big.q) ==
                  LUNGSEG_OK,
              "%s", lungseg_last_error());
    CHECK(big.q.struct_size == sizeof big && std::isnan(big.q.quality) && (big.q.flags & LUNGSEG_FLAG_LOW_CONFIDENCE));
    std::size_t zero = 0;
    for (unsigned char b : big.newer) zero += b == 0;
    CHECK_MSG(zero == sizeof big.newer, "%zu of %zu bytes beyond the struct zeroed", zero, sizeof big.newer);
    // A caller workspace of exactly lungseg_workspace_size(): the labels for the flags fit
    // in it (ASan sees any byte beyond), results unchanged.
    std::size_t bytes = 0;
    CHECK(lungseg_workspace_size(seg, w, h, &bytes) == LUNGSEG_OK);
    std::vector<unsigned char> ws(bytes);
    CHECK(lungseg_set_workspace(seg, ws.data(), ws.size()) == LUNGSEG_OK);
    std::vector<uint8_t> own(w * h), reference(w * h);
    CHECK(lungseg_segment(seg, img.data(), img.size(), U8, w, h, 0, reference.data(), reference.size(), 0) == LUNGSEG_OK);
    lungseg_quality in_ws = fresh_quality();
    CHECK(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, own.data(), own.size(), 0, 0.0f, &in_ws) == LUNGSEG_OK);
    CHECK(own == reference && in_ws.flags == big.q.flags);
    CHECK(lungseg_set_workspace(seg, nullptr, 0) == LUNGSEG_OK);
    // After a cancel with nothing running, analyze works as before.
    CHECK(lungseg_cancel(seg) == LUNGSEG_OK);
    lungseg_quality after = fresh_quality();
    CHECK(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, own.data(), own.size(), 0, 0.0f, &after) == LUNGSEG_OK);
    CHECK(own == reference && after.flags == big.q.flags);
}

// Mean of the test graph's probability, sigmoid(pixel - 128), in double.
double mean_probability(const std::vector<uint8_t>& img) {
    double sum = 0;
    for (uint8_t v : img) sum += 1.0 / (1.0 + std::exp(-(static_cast<double>(v) - 128.0)));
    return sum / static_cast<double>(img.size());
}

// The schema 2 test graph: the row from the graph (it depends on the image), flags by the
// rules, min_quality, and quality outputs off the contract.
void test_analyze_quality_model() {
    {  // a schema 1 artifact (no quality output) says so with NaN and LOW_CONFIDENCE
        const std::string v1 = model_with(R"({"producer": "lungseg", "schema_version": 1})");
        lungseg_segmenter* old = create_ok(v1);
        const std::vector<uint8_t> img = test_image(40, 30);
        std::vector<uint8_t> mask(img.size());
        lungseg_quality q = fresh_quality();
        q.quality = 0.5f;
        CHECK(old != nullptr && lungseg_analyze(old, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, 40, 30, 0, mask.data(),
                                                mask.size(), 0, 0.5f, &q) == LUNGSEG_OK);
        CHECK(std::isnan(q.quality) && std::isnan(q.inverted_probability) && (q.flags & LUNGSEG_FLAG_LOW_CONFIDENCE) != 0);
        lungseg_destroy(old);
    }
    const std::string model = make_onnx_model(Variant::Quality, true, R"({"producer": "lungseg", "schema_version": 2})");
    lungseg_options o;
    lungseg_options_init(&o);
    o.num_threads = 1;
    lungseg_segmenter* seg = create_ok(model, &o);
    if (seg == nullptr) return;
    const auto U8 = LUNGSEG_PIXEL_UINT8;
    for (uint32_t h : {30u, 31u}) {
        const uint32_t w = 40;
        std::vector<uint8_t> img = test_image(w, h);
        if (h == 31)
            for (auto& v : img) v = static_cast<uint8_t>(v > 128 ? v : 130 + v % 3);  // nearly all lung: quality near 1
        const double m = mean_probability(img);
        for (uint32_t flags : {0u, LUNGSEG_SEGMENT_LABELS, LUNGSEG_SEGMENT_RAW}) {
            std::vector<uint8_t> mask(w * h), want(w * h);
            lungseg_quality q = fresh_quality();
            CHECK_MSG(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size(), flags, 0.0f, &q) ==
                          LUNGSEG_OK,
                      "%s", lungseg_last_error());
            CHECK(lungseg_segment(seg, img.data(), img.size(), U8, w, h, 0, want.data(), want.size(), flags) == LUNGSEG_OK);
            CHECK(mask == want);
            const float row[4] = {q.quality, q.dice_estimate, q.frontal_probability, q.inverted_probability};
            for (int k = 0; k < 4; ++k) {
                const double expected = lungseg_test::kQualityScale[k] * m + lungseg_test::kQualityOffset[k];
                CHECK_MSG(std::fabs(row[k] - expected) < 1e-5, "%ux%u field %d: %.7f, expected %.7f", w, h, k, row[k],
                          expected);
            }
            CHECK(q.flags == flags_via_quality_flags(mask, w, h, flags, q, 0.0f));
            CHECK((q.flags & (LUNGSEG_FLAG_INVERTED | LUNGSEG_FLAG_NOT_FRONTAL_CHEST)) == 0);  // frontal 0.9, inverted 0.1
            const bool low = !(static_cast<double>(q.quality) >= 0.9);
            CHECK(((q.flags & LUNGSEG_FLAG_LOW_CONFIDENCE) != 0) == low);
            // min_quality: 0.1 lets the row through, 1.0 (or above the row) never does.
            lungseg_quality lenient = fresh_quality(), strict = fresh_quality();
            CHECK(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size(), flags, 0.1f, &lenient) ==
                  LUNGSEG_OK);
            CHECK(lungseg_analyze(seg, img.data(), img.size(), U8, w, h, 0, mask.data(), mask.size(), flags, 1.0f, &strict) ==
                  LUNGSEG_OK);
            CHECK((lenient.flags & LUNGSEG_FLAG_LOW_CONFIDENCE) == 0 && (strict.flags & LUNGSEG_FLAG_LOW_CONFIDENCE) != 0);
            CHECK((lenient.flags | LUNGSEG_FLAG_LOW_CONFIDENCE) == (q.flags | LUNGSEG_FLAG_LOW_CONFIDENCE));
            CHECK(same_bits(lenient.quality, q.quality) && same_bits(strict.dice_estimate, q.dice_estimate));
            if (h == 30 && flags == 0)
                std::printf("  analyze %ux%u: row (%.4f %.4f %.4f %.4f), flags 0x%x; mean probability %.4f\n", w, h, row[0],
                            row[1], row[2], row[3], q.flags, m);
        }
    }
    // lungseg_segment / lungseg_probability on a schema 2 graph are unchanged by the extra output.
    const std::vector<uint8_t> img = test_image(40, 30);
    std::vector<uint8_t> raw(img.size());
    CHECK(lungseg_segment(seg, img.data(), img.size(), U8, 40, 30, 0, raw.data(), raw.size(), LUNGSEG_SEGMENT_RAW) ==
          LUNGSEG_OK);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < raw.size(); ++i) wrong += raw[i] != (img[i] > 128 ? 1 : 0);
    CHECK(wrong == 0);
    lungseg_destroy(seg);

    // A `quality` output off the contract: refused at create ([N,3], int64) or when run ([1,8]).
    const std::string three_wide = make_onnx_model(Variant::QualityThreeWide);
    EXPECT_STATUS(lungseg_create_from_memory(three_wide.data(), three_wide.size(), &o, &seg), LUNGSEG_ERROR_MODEL,
                  "; outputs 'mask' uint8");
    // (the width ONNX Runtime reports is the declared 3 or the inferred [1,3])
    CHECK(contains(lungseg_last_error(), "not a lungseg graph") && contains(lungseg_last_error(), "'quality' float32 [") &&
          contains(lungseg_last_error(), ",3]") && seg == nullptr);
    const std::string int64_quality = make_onnx_model(Variant::QualityInt64);
    EXPECT_STATUS(lungseg_create_from_memory(int64_quality.data(), int64_quality.size(), &o, &seg), LUNGSEG_ERROR_MODEL,
                  "'quality' int64");
    const std::string misshaped = make_onnx_model(Variant::QualityMisshaped);
    seg = create_ok(misshaped, &o);
    if (seg != nullptr) {
        std::vector<uint8_t> mask(img.size());
        lungseg_quality q = fresh_quality();
        q.flags = 0xABCDu;
        EXPECT_STATUS(lungseg_analyze(seg, img.data(), img.size(), U8, 40, 30, 0, mask.data(), mask.size(), 0, 0.0f, &q),
                      LUNGSEG_ERROR_INFERENCE, "ONNX Runtime failed on a 40x30 image");
        CHECK(q.flags == 0xABCDu && std::isnan(q.quality));  // left as it was
        // The mask alone does not need the quality output.
        CHECK(lungseg_segment(seg, img.data(), img.size(), U8, 40, 30, 0, mask.data(), mask.size(), 0) == LUNGSEG_OK);
    }
    lungseg_destroy(seg);
}

// ---- threads do not outlive lungseg_destroy ---------------------------------------------

int thread_count() {
    DIR* d = ::opendir("/proc/self/task");
    if (d == nullptr) return -1;
    int n = 0;
    while (const dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    return n;
}

// The thread count once it reaches `want` or stops changing: a joined thread can stay
// listed for a moment after pthread_join returns (seen under qemu-user).
int settled_thread_count(int want) {
    int n = thread_count();
    for (int k = 0; k < 50 && n != want; ++k) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        n = thread_count();
    }
    return n;
}

void test_threads_released() {
    const int before = thread_count();
    if (before < 0) {
        std::printf("  /proc/self/task not readable: thread check skipped\n");
        return;
    }
    lungseg_options o;
    lungseg_options_init(&o);
    o.num_threads = 3;  // an intra-op pool of 2 threads besides the caller's
    lungseg_segmenter* a = create_ok(make_onnx_model(), &o);
    lungseg_segmenter* b = create_ok(make_onnx_model(), &o);
    const std::vector<uint8_t> img = test_image(400, 300);
    std::vector<uint8_t> mask(img.size());
    CHECK(lungseg_segment(a, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, 400, 300, 0, mask.data(), mask.size(), 0) ==
          LUNGSEG_OK);
    const int running = thread_count();
    lungseg_destroy(a);
    lungseg_destroy(b);
    const int after = settled_thread_count(before);
    std::printf("  threads: %d before create, %d with two segmenters, %d after destroy\n", before, running, after);
    CHECK(running > before);  // the check sees the backend's threads at all
    CHECK_MSG(after == before, "%d thread(s) outlive lungseg_destroy", after - before);
    // And again: the released runtime environment can be made anew.
    lungseg_segmenter* c = create_ok(make_onnx_model(), &o);
    CHECK(lungseg_segment(c, img.data(), img.size(), LUNGSEG_PIXEL_UINT8, 400, 300, 0, mask.data(), mask.size(), 0) ==
          LUNGSEG_OK);
    lungseg_destroy(c);
    CHECK(settled_thread_count(before) == before);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: test_abi WORK_DIR\n");
        return 2;
    }
    g_dir = argv[1];
    ::mkdir(g_dir.c_str(), 0755);
    test_threads_released();  // first: no other segmenter exists
    test_library_info();
    test_struct_size();
    test_model_versions_and_extent();
    test_sha256();
    test_cancel();
    test_create_bad_input();
    test_bad_options();
    const std::string good = make_onnx_model();
    lungseg_segmenter* seg = nullptr;
    CHECK_MSG(lungseg_create(file("lungseg.onnx", good).c_str(), nullptr, &seg) == LUNGSEG_OK, "%s", lungseg_last_error());
    if (seg != nullptr) {
        test_segment_bad_input(seg);
        test_segment_good_input(seg);
        test_metadata(seg);
        test_concurrent_calls(seg);
        test_short_buffers(seg);
        test_workspace(seg);
        test_analyze(seg);
    }
    lungseg_destroy(seg);
    test_analyze_quality_model();
    test_limits_and_misshaped_output();
    return lungseg_test::finish("test_abi");
}
