// libFuzzer target: the pixel-buffer entry points (lungseg_segment, lungseg_probability,
// lungseg_postprocess) with fuzzed sizes, strides, pixel types, flags and pixels, on the
// small per-pixel test graph (lung where pixel > 128). The harness hands the library a
// buffer of exactly the size the request describes, so AddressSanitizer sees any read past
// it. Request layout:
//   byte 0  pixel type: 0 uint8, 1 uint16, 2 uint8, 3 an invalid value (byte >> 2)
//   byte 1  flags (low 2 bits valid; bit 7 adds an unknown flag)
//   byte 2  width  (0..64)      byte 3  height (0..64)
//   byte 4  extra row stride bytes (0..7; 0 = packed)
//   byte 5  mode: 0-1 segment, 2 probability, 3 postprocess the pixels as a mask
//   rest    pixel bytes, repeated to fill the buffer
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lungseg/lungseg.h"
#include "test_models.h"

namespace {

lungseg_segmenter* segmenter() {
    static lungseg_segmenter* seg = [] {
        const std::string model = lungseg_test::make_onnx_model();
        lungseg_options options;
        lungseg_options_init(&options);
        options.num_threads = 1;
        lungseg_segmenter* s = nullptr;
        if (lungseg_create_from_memory(model.data(), model.size(), &options, &s) != LUNGSEG_OK) __builtin_trap();
        return s;
    }();
    return seg;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 6) return 0;
    const int sel = data[0] & 3;
    const int32_t type = sel == 1 ? LUNGSEG_PIXEL_UINT16 : sel == 3 ? static_cast<int32_t>(data[0] >> 2) : LUNGSEG_PIXEL_UINT8;
    uint32_t flags = data[1] & 3u;
    if (data[1] & 0x80u) flags |= 0x40u;
    const uint32_t w = data[2] % 65u, h = data[3] % 65u;
    const std::size_t pad = data[4] % 8u;
    const int mode = data[5] % 4;
    const std::size_t bpp = type == LUNGSEG_PIXEL_UINT16 ? 2 : 1;
    const std::size_t stride = pad == 0 ? 0 : w * bpp + pad;
    const std::size_t row = stride == 0 ? w * bpp : stride;
    const std::size_t need = h == 0 ? 0 : row * (h - 1) + w * bpp;
    std::vector<uint8_t> pixels(need == 0 ? 1 : need);
    const uint8_t* body = data + 6;
    const std::size_t body_size = size - 6;
    for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = body_size ? body[i % body_size] : 0;

    lungseg_segmenter* seg = segmenter();
    const std::size_t count = static_cast<std::size_t>(w) * h;
    if (mode <= 1) {
        std::vector<uint8_t> mask(count == 0 ? 1 : count);
        (void)lungseg_segment(seg, pixels.data(), type, w, h, stride, mask.data(), count, flags);
    } else if (mode == 2) {
        std::vector<float> prob(count == 0 ? 1 : count);
        (void)lungseg_probability(seg, pixels.data(), type, w, h, stride, prob.data(), count);
    } else {
        std::vector<uint8_t> mask(pixels.begin(), pixels.begin() + static_cast<std::ptrdiff_t>(std::min(count, pixels.size())));
        mask.resize(count == 0 ? 1 : count);
        (void)lungseg_postprocess(mask.data(), w, h, flags);
    }
    return 0;
}
