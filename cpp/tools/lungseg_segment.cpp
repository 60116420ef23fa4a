// lungseg_segment: segment the lungs of one chest X-ray PNG with the lungseg runtime.
//
//   lungseg_segment MODEL INPUT.png OUTPUT.png [--labels] [--raw] [--backend ort|torch|trt]
//                   [--device cpu|cuda] [--threads N]
//
// Reads 8- or 16-bit PNG (gray, gray+alpha, RGB or RGBA; colour is converted to gray with
// the ITU-R 601 weights lungseg.io uses), writes the mask as an 8-bit PNG: 0/255, or with
// --labels 0/1/2 (1 = the patient's right lung, on the image's left), as the Python CLI does.
// Prints the quality row and the flags (lungseg_analyze, lungseg_quality_flags) and the time
// of each stage. The library itself depends on no image library; this
// example uses stb (Debian: libstb-dev).
#include <stb_image.h>
#include <stb_image_write.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "lungseg/lungseg.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

int usage(const char* message) {
    if (message != nullptr) std::fprintf(stderr, "lungseg_segment: %s\n", message);
    std::fprintf(stderr,
                 "usage: lungseg_segment MODEL INPUT.png OUTPUT.png [--labels] [--raw]\n"
                 "                       [--backend ort|torch|trt] [--device cpu|cuda] [--threads N]\n"
                 "  --labels   write 0/1/2 (1 = patient's right lung, image left) instead of 0/255\n"
                 "  --raw      skip the clean-up (two largest components, hole filling)\n");
    return 2;
}

struct Image {
    std::vector<uint16_t> pixels16;
    std::vector<uint8_t> pixels8;
    int width = 0, height = 0, bits = 8;
};

// Channels -> gray as lungseg.io.to_grayscale does: RGB(A) weighted 0.299/0.587/0.114,
// rounded half to even; gray+alpha keeps the gray channel.
template <class T>
std::vector<T> to_gray(const T* data, int width, int height, int channels) {
    const std::size_t n = static_cast<std::size_t>(width) * static_cast<std::size_t>(height);
    std::vector<T> out(n);
    for (std::size_t i = 0; i < n; ++i) {
        const T* p = data + i * static_cast<std::size_t>(channels);
        if (channels <= 2) {
            out[i] = p[0];
        } else {
            const float g = static_cast<float>(p[0]) * 0.299f + static_cast<float>(p[1]) * 0.587f +
                            static_cast<float>(p[2]) * 0.114f;
            out[i] = static_cast<T>(std::nearbyint(g));
        }
    }
    return out;
}

bool read_png(const char* path, Image& img, std::string& error) {
    int channels = 0;
    if (stbi_is_16_bit(path)) {
        std::unique_ptr<stbi_us, void (*)(void*)> data(stbi_load_16(path, &img.width, &img.height, &channels, 0),
                                                      stbi_image_free);
        if (!data) {
            error = stbi_failure_reason() ? stbi_failure_reason() : "unknown error";
            return false;
        }
        img.bits = 16;
        img.pixels16 = to_gray<uint16_t>(data.get(), img.width, img.height, channels);
        return true;
    }
    std::unique_ptr<stbi_uc, void (*)(void*)> data(stbi_load(path, &img.width, &img.height, &channels, 0),
                                                  stbi_image_free);
    if (!data) {
        error = stbi_failure_reason() ? stbi_failure_reason() : "unknown error";
        return false;
    }
    img.bits = 8;
    img.pixels8 = to_gray<uint8_t>(data.get(), img.width, img.height, channels);
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> positional;
    uint32_t flags = 0;
    lungseg_options options;
    lungseg_options_init(&options);
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
        if (a == "--labels") {
            flags |= LUNGSEG_SEGMENT_LABELS;
        } else if (a == "--raw") {
            flags |= LUNGSEG_SEGMENT_RAW;
        } else if (a == "--backend") {
            const char* v = value();
            if (v == nullptr) return usage("--backend needs a value");
            const std::string b = v;
            if (b == "ort" || b == "onnxruntime") options.backend = LUNGSEG_BACKEND_ONNXRUNTIME;
            else if (b == "torch" || b == "libtorch") options.backend = LUNGSEG_BACKEND_LIBTORCH;
            else if (b == "trt" || b == "tensorrt") options.backend = LUNGSEG_BACKEND_TENSORRT;
            else return usage("--backend must be ort, torch or trt");
        } else if (a == "--device") {
            const char* v = value();
            if (v == nullptr) return usage("--device needs a value");
            const std::string d = v;
            if (d == "cpu") options.device = LUNGSEG_DEVICE_CPU;
            else if (d == "cuda") options.device = LUNGSEG_DEVICE_CUDA;
            else return usage("--device must be cpu or cuda");
        } else if (a == "--threads") {
            const char* v = value();
            char* end = nullptr;
            const long n = v ? std::strtol(v, &end, 10) : -1;
            if (v == nullptr || *end != '\0' || n < 0 || n > 1024) return usage("--threads needs a number 0..1024");
            options.num_threads = static_cast<int32_t>(n);
        } else if (a == "-h" || a == "--help") {
            usage(nullptr);
            return 0;
        } else if (!a.empty() && a[0] == '-') {
            return usage(("unknown option " + a).c_str());
        } else {
            positional.push_back(a);
        }
    }
    if (positional.size() != 3) return usage("expected MODEL INPUT.png OUTPUT.png");
    const std::string& model = positional[0];
    const std::string& input = positional[1];
    const std::string& output = positional[2];

    auto t0 = Clock::now();
    Image img;
    std::string error;
    if (!read_png(input.c_str(), img, error)) {
        std::fprintf(stderr, "lungseg_segment: %s: cannot read image: %s\n", input.c_str(), error.c_str());
        return 1;
    }
    const double t_read = ms_since(t0);

    t0 = Clock::now();
    lungseg_segmenter* seg = nullptr;
    if (lungseg_create(model.c_str(), &options, &seg) != LUNGSEG_OK) {
        std::fprintf(stderr, "lungseg_segment: %s\n", lungseg_last_error());
        return 1;
    }
    std::unique_ptr<lungseg_segmenter, void (*)(lungseg_segmenter*)> owner(seg, lungseg_destroy);
    const double t_load = ms_since(t0);

    const auto w = static_cast<uint32_t>(img.width), h = static_cast<uint32_t>(img.height);
    std::vector<uint8_t> mask(static_cast<std::size_t>(w) * h);
    t0 = Clock::now();
    // The graph mask and its quality row (lungseg_analyze, RAW: the clean-up is timed apart).
    lungseg_quality quality;
    lungseg_quality_init(&quality);
    lungseg_status st =
        img.bits == 16
            ? lungseg_analyze(seg, img.pixels16.data(), img.pixels16.size() * sizeof(uint16_t), LUNGSEG_PIXEL_UINT16, w,
                              h, 0, mask.data(), mask.size(), LUNGSEG_SEGMENT_RAW, 0.0f, &quality)
            : lungseg_analyze(seg, img.pixels8.data(), img.pixels8.size(), LUNGSEG_PIXEL_UINT8, w, h, 0, mask.data(),
                              mask.size(), LUNGSEG_SEGMENT_RAW, 0.0f, &quality);
    const double t_infer = ms_since(t0);
    if (st != LUNGSEG_OK) {
        std::fprintf(stderr, "lungseg_segment: %s: %s\n", input.c_str(), lungseg_last_error());
        return 1;
    }
    t0 = Clock::now();
    if (flags != LUNGSEG_SEGMENT_RAW && lungseg_postprocess(mask.data(), mask.size(), w, h, flags) != LUNGSEG_OK) {
        std::fprintf(stderr, "lungseg_segment: %s\n", lungseg_last_error());
        return 1;
    }
    const double t_post = ms_since(t0);
    // The flags of the mask written (cleaned unless --raw), as Python's analyze() gives them.
    std::vector<uint8_t> labels = mask;
    if ((flags & LUNGSEG_SEGMENT_LABELS) == 0 &&
        lungseg_postprocess(labels.data(), labels.size(), w, h, LUNGSEG_SEGMENT_RAW | LUNGSEG_SEGMENT_LABELS) != LUNGSEG_OK) {
        std::fprintf(stderr, "lungseg_segment: %s\n", lungseg_last_error());
        return 1;
    }
    if (lungseg_quality_flags(labels.data(), labels.size(), w, h, 0.0f, &quality) != LUNGSEG_OK) {
        std::fprintf(stderr, "lungseg_segment: %s\n", lungseg_last_error());
        return 1;
    }

    t0 = Clock::now();
    if ((flags & LUNGSEG_SEGMENT_LABELS) == 0)
        for (auto& v : mask) v = v ? 255 : 0;
    const std::string tmp = output + ".tmp";
    if (!stbi_write_png(tmp.c_str(), img.width, img.height, 1, mask.data(), img.width) ||
        std::rename(tmp.c_str(), output.c_str()) != 0) {
        std::remove(tmp.c_str());
        std::fprintf(stderr, "lungseg_segment: %s: cannot write the mask\n", output.c_str());
        return 1;
    }
    const double t_write = ms_since(t0);

    const char* backend = "?";
    lungseg_backend_name(seg, &backend);
    std::size_t lung = 0;
    for (auto v : mask) lung += v != 0;
    std::printf("%s: %dx%d %d-bit, backend %s, lung %.1f%% of the image\n", input.c_str(), img.width, img.height,
                img.bits, backend, 100.0 * static_cast<double>(lung) / static_cast<double>(mask.size()));
    std::string flag_names;
    for (uint32_t bit = 1; lungseg_flag_name(bit) != nullptr; bit <<= 1)
        if (quality.flags & bit) flag_names += (flag_names.empty() ? "" : ", ") + std::string(lungseg_flag_name(bit));
    std::printf("quality %.3f (Dice estimate %.3f, frontal %.3f, inverted %.3f); flags: %s\n",
                static_cast<double>(quality.quality), static_cast<double>(quality.dice_estimate),
                static_cast<double>(quality.frontal_probability), static_cast<double>(quality.inverted_probability),
                flag_names.empty() ? "none" : flag_names.c_str());
    std::printf("time: read %.1f ms, load model %.1f ms, inference %.1f ms, postprocess %.1f ms, write %.1f ms\n",
                t_read, t_load, t_infer, t_post, t_write);
    return 0;
}
