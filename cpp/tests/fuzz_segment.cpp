// libFuzzer target: the pixel-buffer entry points (lungseg_segment, lungseg_analyze,
// lungseg_probability, lungseg_postprocess) and the workspace/cancel calls with fuzzed sizes, strides, pixel
// types, flags, buffer sizes and pixels, on the small per-pixel test graph (lung where
// pixel > 128; with the quality output of schema 2). The harness allocates exactly the bytes it declares (pixels_size,
// mask_size, the workspace's size), so AddressSanitizer sees any access past them.
// Request layout:
//   byte 0  pixel type: 0 uint8, 1 uint16, 2 uint8, 3 an invalid value (byte >> 2)
//   byte 1  flags (low 2 bits valid; bit 7 adds an unknown flag; bit 2: one byte short
//           workspace in mode 4)
//   byte 2  width  (0..64)      byte 3  height (0..64)
//   byte 4  bits 0-2: extra row stride bytes (0..7; 0 = packed); bits 3-4: the declared
//           buffer sizes: 0 exact, 1 pixels one byte short, 2 output one element short,
//           3 pixels_size = byte 6 (a tiny buffer)
//   byte 5  mode: 0-1 segment, 2 probability, 3 postprocess the pixels as a mask,
//           4 segment with a caller workspace, 5 cancel (nothing running) then segment,
//           6 lungseg_analyze (min_quality from byte 1, the quality struct's size from
//           byte 4 bit 5: sizeof or one byte short), 7 segment
//   rest    pixel bytes, repeated to fill the buffer
#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "lungseg/lungseg.h"
#include "test_models.h"

namespace {

lungseg_segmenter* segmenter() {
    static lungseg_segmenter* seg = [] {
        // The schema 2 variant: the quality output too (lungseg_segment does not fetch it).
        const std::string model = lungseg_test::make_onnx_model(lungseg_test::Variant::Quality);
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
    const int sizing = (data[4] >> 3) & 3;
    const int mode = data[5] % 8;
    const std::size_t bpp = type == LUNGSEG_PIXEL_UINT16 ? 2 : 1;
    const std::size_t stride = pad == 0 ? 0 : w * bpp + pad;
    const std::size_t row = stride == 0 ? w * bpp : stride;
    std::size_t need = h == 0 ? 0 : row * (h - 1) + w * bpp;
    if (sizing == 1 && need > 0) --need;
    if (sizing == 3) need = size > 6 ? data[6] : 0;
    std::vector<uint8_t> pixels(need);  // exactly pixels_size bytes (data() may be NULL when 0)
    const uint8_t* body = data + 6;
    const std::size_t body_size = size - 6;
    for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = body_size ? body[i % body_size] : 0;
    const void* px = pixels.empty() ? static_cast<const void*>(data) : pixels.data();

    lungseg_segmenter* seg = segmenter();
    std::size_t count = static_cast<std::size_t>(w) * h;
    if (sizing == 2 && count > 0) --count;
    if (mode == 2) {
        std::vector<float> prob(count);
        (void)lungseg_probability(seg, px, pixels.size(), type, w, h, stride, prob.data(), prob.size() * sizeof(float));
    } else if (mode == 6) {
        std::vector<uint8_t> mask(count);
        lungseg_quality quality;
        lungseg_quality_init(&quality);
        if (data[4] & 0x20u) quality.struct_size -= 1;
        const float min_quality = static_cast<float>(data[1]) / 128.0f - 0.5f;  // negative (default) .. 1.49
        (void)lungseg_analyze(seg, px, pixels.size(), type, w, h, stride, mask.data(), mask.size(), flags, min_quality,
                              &quality);
        if (!mask.empty()) (void)lungseg_quality_flags(mask.data(), mask.size(), w, h, min_quality, &quality);
    } else if (mode == 3) {
        std::vector<uint8_t> mask(pixels.begin(), pixels.begin() + static_cast<std::ptrdiff_t>(std::min(count, pixels.size())));
        mask.resize(count);
        (void)lungseg_postprocess(mask.data(), mask.size(), w, h, flags);
    } else {
        std::vector<unsigned char> workspace;
        if (mode == 4) {
            std::size_t bytes = 0;
            if (lungseg_workspace_size(seg, w, h, &bytes) == LUNGSEG_OK) {
                workspace.resize(bytes - ((data[1] & 4u) ? 1 : 0));
                (void)lungseg_set_workspace(seg, workspace.data(), workspace.size());
            }
        } else if (mode == 5) {
            (void)lungseg_cancel(seg);
        }
        std::vector<uint8_t> mask(count);
        (void)lungseg_segment(seg, px, pixels.size(), type, w, h, stride, mask.data(), mask.size(), flags);
        if (!workspace.empty()) (void)lungseg_set_workspace(seg, nullptr, 0);
    }
    return 0;
}
