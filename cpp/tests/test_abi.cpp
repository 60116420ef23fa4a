// Bad input through the C ABI returns an error status with a useful message, never a crash;
// good input gives the expected masks. Runs under AddressSanitizer + UBSan in CI.
//
//   test_abi WORK_DIR
//
// Models are the small graphs of test_models.h (no Python needed): the lungseg contract
// with a per-pixel rule (lung where pixel > 128), foreign graphs and corrupt files.
#include <sys/stat.h>

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
        CHECK_MSG(contains(lungseg_last_error(), part), "message '%s' lacks '%s'", lungseg_last_error(), part); \
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
    EXPECT_STATUS(lungseg_segment(nullptr, img.data(), U8, w, h, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
    EXPECT_STATUS(lungseg_segment(seg, nullptr, U8, w, h, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "pixels is NULL");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), U8, w, h, 0, nullptr, mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "mask is NULL");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), U8, 0, h, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "0x30 is empty");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), U8, w, 0, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "is empty");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), U8, 1, h, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "at least 2 pixels");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), U8, 100000, 100000, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "max_pixels");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), U8, 0xFFFFFFFFu, 0xFFFFFFFFu, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "above the limit");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), U8, w, h, w - 1, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "row_stride 39 bytes is smaller than a row of 40 pixels (40 bytes)");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), U16, w, h, w, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "(80 bytes)");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), U8, w, h, std::numeric_limits<std::size_t>::max() / 2, mask.data(),
                                  mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "overflows");
    EXPECT_STATUS(lungseg_segment(seg, img.data(), U8, w, h, 0, mask.data(), mask.size() - 1, 0),
                  LUNGSEG_ERROR_BUFFER_TOO_SMALL, "mask_size 1199");
    for (int32_t bad_type : {0, 3, -1, 8}) {
        EXPECT_STATUS(lungseg_segment(seg, img.data(), bad_type, w, h, 0, mask.data(), mask.size(), 0),
                      LUNGSEG_ERROR_INVALID_ARGUMENT, "pixel_type");
    }
    EXPECT_STATUS(lungseg_segment(seg, img.data(), U8, w, h, 0, mask.data(), mask.size(), 0x10),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "unknown flags 0x10");
    const std::vector<uint8_t> constant(w * h, 77);
    EXPECT_STATUS(lungseg_segment(seg, constant.data(), U8, w, h, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "constant image");
    std::vector<float> prob(w * h);
    EXPECT_STATUS(lungseg_probability(seg, img.data(), U8, w, h, 0, nullptr, prob.size()),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "probability is NULL");
    EXPECT_STATUS(lungseg_probability(seg, img.data(), U8, w, h, 0, prob.data(), 10), LUNGSEG_ERROR_BUFFER_TOO_SMALL,
                  "probability_count 10");
    EXPECT_STATUS(lungseg_probability(seg, img.data(), 5, w, h, 0, prob.data(), prob.size()),
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
    CHECK(lungseg_segment(seg, img.data(), LUNGSEG_PIXEL_UINT8, w, h, 0, raw.data(), raw.size(), LUNGSEG_SEGMENT_RAW) ==
          LUNGSEG_OK);
    CHECK(std::string(lungseg_last_error()).empty());
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < raw.size(); ++i) wrong += raw[i] != (img[i] > 128 ? 1 : 0);
    CHECK_MSG(wrong == 0, "%zu pixels differ from the graph's rule", wrong);
    // Default flags = clean-up; LABELS = clean-up + labels: the same as lungseg_postprocess.
    CHECK(lungseg_segment(seg, img.data(), LUNGSEG_PIXEL_UINT8, w, h, 0, mask.data(), mask.size(), 0) == LUNGSEG_OK);
    std::vector<uint8_t> expected = raw;
    CHECK(lungseg_postprocess(expected.data(), w, h, 0) == LUNGSEG_OK);
    CHECK(mask == expected);
    CHECK(lungseg_segment(seg, img.data(), LUNGSEG_PIXEL_UINT8, w, h, 0, labels.data(), labels.size(),
                          LUNGSEG_SEGMENT_LABELS) == LUNGSEG_OK);
    expected = raw;
    CHECK(lungseg_postprocess(expected.data(), w, h, LUNGSEG_SEGMENT_LABELS) == LUNGSEG_OK);
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
    CHECK(lungseg_segment(seg, buf16.data() + 1, LUNGSEG_PIXEL_UINT16, w, h, stride16, mask16.data(), mask16.size(),
                          LUNGSEG_SEGMENT_RAW) == LUNGSEG_OK);
    wrong = 0;
    for (std::size_t i = 0; i < raw.size(); ++i) wrong += mask16[i] != (img[i] * 257 > 128 ? 1 : 0);
    CHECK_MSG(wrong == 0, "16-bit strided: %zu pixels differ", wrong);
    const std::size_t stride8 = w + 13;
    std::vector<uint8_t> buf8(stride8 * h, 0xFF);
    for (uint32_t y = 0; y < h; ++y) std::memcpy(&buf8[y * stride8], &img[y * w], w);
    std::vector<uint8_t> mask8(w * h);
    CHECK(lungseg_segment(seg, buf8.data(), LUNGSEG_PIXEL_UINT8, w, h, stride8, mask8.data(), mask8.size(),
                          LUNGSEG_SEGMENT_RAW) == LUNGSEG_OK);
    CHECK(mask8 == raw);

    std::vector<float> prob(w * h);
    CHECK(lungseg_probability(seg, img.data(), LUNGSEG_PIXEL_UINT8, w, h, 0, prob.data(), prob.size()) == LUNGSEG_OK);
    wrong = 0;
    for (std::size_t i = 0; i < prob.size(); ++i) wrong += !(prob[i] >= 0.f && prob[i] <= 1.f) || ((prob[i] > 0.5f) != (raw[i] == 1));
    CHECK_MSG(wrong == 0, "%zu probabilities disagree with the mask", wrong);

    // Smallest image the library accepts.
    const uint8_t tiny[4] = {0, 255, 255, 0};
    uint8_t tiny_mask[4] = {9, 9, 9, 9};
    CHECK(lungseg_segment(seg, tiny, LUNGSEG_PIXEL_UINT8, 2, 2, 0, tiny_mask, 4, LUNGSEG_SEGMENT_LABELS) == LUNGSEG_OK);
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
    EXPECT_STATUS(lungseg_segment(seg, img.data(), LUNGSEG_PIXEL_UINT8, 20, 20, 0, mask.data(), mask.size(), 0),
                  LUNGSEG_ERROR_INVALID_ARGUMENT, "limit of 100 pixels");
    CHECK(lungseg_segment(seg, img.data(), LUNGSEG_PIXEL_UINT8, 10, 10, 20, mask.data(), mask.size(), 0) == LUNGSEG_OK);
    lungseg_destroy(seg);

    // "mask" declared [N,1,H,W] but computed as [1,1,1,1]: refused at load or when run.
    const std::string bad = make_onnx_model(Variant::MisshapedMask);
    seg = nullptr;
    const lungseg_status st = lungseg_create_from_memory(bad.data(), bad.size(), nullptr, &seg);
    if (st == LUNGSEG_OK) {
        EXPECT_STATUS(lungseg_segment(seg, img.data(), LUNGSEG_PIXEL_UINT8, 20, 20, 0, mask.data(), mask.size(), 0),
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
    CHECK(lungseg_segment(seg, img.data(), LUNGSEG_PIXEL_UINT8, w, h, 0, reference.data(), reference.size(),
                          LUNGSEG_SEGMENT_LABELS) == LUNGSEG_OK);
    std::vector<int> bad(4, 0);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            std::vector<uint8_t> m(w * h);
            for (int k = 0; k < 10; ++k) {
                const lungseg_status st = lungseg_segment(seg, img.data(), LUNGSEG_PIXEL_UINT8, w, h, 0, m.data(),
                                                          m.size(), LUNGSEG_SEGMENT_LABELS);
                if (st != LUNGSEG_OK || m != reference) ++bad[static_cast<std::size_t>(t)];
                // errors are per thread: a failing call here does not disturb the others
                uint8_t dummy = 0;
                if (lungseg_segment(seg, img.data(), 9, w, h, 0, &dummy, 1, 0) != LUNGSEG_ERROR_INVALID_ARGUMENT ||
                    !contains(lungseg_last_error(), "pixel_type 9"))
                    ++bad[static_cast<std::size_t>(t)];
            }
        });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < 4; ++t) CHECK_MSG(bad[static_cast<std::size_t>(t)] == 0, "thread %d: %d bad results", t, bad[static_cast<std::size_t>(t)]);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: test_abi WORK_DIR\n");
        return 2;
    }
    g_dir = argv[1];
    ::mkdir(g_dir.c_str(), 0755);
    test_library_info();
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
    }
    lungseg_destroy(seg);
    test_limits_and_misshaped_output();
    return lungseg_test::finish("test_abi");
}
