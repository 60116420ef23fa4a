// libFuzzer target: arbitrary bytes as a model (lungseg_create_from_memory) with options
// chosen from the input's length (requested extent, sha256 verification, the older 32-byte
// options struct); a model that loads is then run on a small image and its metadata and
// extent read. Any crash, sanitizer report,
// leak or hang is a finding; error statuses are the expected outcome for most inputs.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "lungseg/lungseg.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    lungseg_options options;
    lungseg_options_init(&options);
    options.num_threads = 1;
    options.backend = LUNGSEG_BACKEND_ONNXRUNTIME;  // the backend built in the fuzz build
    options.extent = static_cast<int32_t>(size % 3);
    if (size % 7 == 0) options.struct_size = 32;  // lungseg 0.1's struct: the new fields default
    if (size % 5 == 0) options.create_flags = LUNGSEG_CREATE_VERIFY_SHA256;  // nothing recorded: refused
    if (size % 11 == 0)
        options.expected_sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";  // sha256("")
    lungseg_segmenter* seg = nullptr;
    if (lungseg_create_from_memory(data, size, &options, &seg) != LUNGSEG_OK) {
        (void)lungseg_last_error();
        return 0;
    }
    const uint32_t w = 16, h = 12;
    std::vector<uint8_t> pixels(w * h), mask(w * h);
    for (uint32_t i = 0; i < w * h; ++i) pixels[i] = static_cast<uint8_t>(i * 37);
    (void)lungseg_segment(seg, pixels.data(), pixels.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, mask.data(), mask.size(),
                          LUNGSEG_SEGMENT_LABELS);
    std::vector<float> prob(w * h);
    (void)lungseg_probability(seg, pixels.data(), pixels.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, prob.data(),
                              prob.size() * sizeof(float));
    const char* text = nullptr;
    (void)lungseg_model_extent(seg, &text);
    (void)lungseg_metadata_json(seg, &text);
    (void)lungseg_metadata_value(seg, "image_size", &text);
    lungseg_destroy(seg);
    return 0;
}
