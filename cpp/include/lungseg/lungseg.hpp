// lungseg runtime: header-only RAII C++ wrapper over the C ABI (lungseg.h).
//
// The wrapper owns the segmenter handle (move-only) and turns status codes into
// lungseg::Error exceptions carrying the status and the library's message. It adds no
// state of its own, so the C ABI's thread-safety and memory notes apply unchanged.
//
//     lungseg::Segmenter seg("lungseg.onnx");
//     std::vector<uint8_t> labels = seg.segment(pixels16, width, height, 0, LUNGSEG_SEGMENT_LABELS);
//
// The pixel overloads take std::vector (its size is the buffer's size, checked by the
// library); segment_into() takes a pointer and a size in bytes.
#ifndef LUNGSEG_LUNGSEG_HPP
#define LUNGSEG_LUNGSEG_HPP

#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "lungseg.h"

namespace lungseg {

class Error : public std::runtime_error {
public:
    Error(lungseg_status status, const std::string& message)
        : std::runtime_error(message), status_(status) {}
    lungseg_status status() const noexcept { return status_; }

private:
    lungseg_status status_;
};

namespace detail {
inline void check(lungseg_status status) {
    if (status == LUNGSEG_OK) return;
    std::string message = lungseg_last_error();
    if (message.empty()) message = lungseg_status_string(status);
    throw Error(status, message);
}
}  // namespace detail

enum class Backend : int32_t {
    Auto = LUNGSEG_BACKEND_AUTO,
    OnnxRuntime = LUNGSEG_BACKEND_ONNXRUNTIME,
    LibTorch = LUNGSEG_BACKEND_LIBTORCH,
    TensorRT = LUNGSEG_BACKEND_TENSORRT,
};

enum class Device : int32_t { Cpu = LUNGSEG_DEVICE_CPU, Cuda = LUNGSEG_DEVICE_CUDA };

struct Options {
    Backend backend = Backend::Auto;
    Device device = Device::Cpu;
    int32_t device_index = 0;
    int32_t num_threads = 0;      // 0: the backend's default
    uint64_t max_pixels = 0;      // 0: LUNGSEG_DEFAULT_MAX_PIXELS
    lungseg_extent extent = LUNGSEG_EXTENT_ANY;  // refuse an artifact of the other extent
    bool verify_sha256 = false;   // LUNGSEG_CREATE_VERIFY_SHA256
    std::string expected_sha256;  // "" or 64 hex digits (implies verification)

    lungseg_options to_c() const {
        lungseg_options o;
        lungseg_options_init(&o);
        o.backend = static_cast<int32_t>(backend);
        o.device = static_cast<int32_t>(device);
        o.device_index = device_index;
        o.num_threads = num_threads;
        o.max_pixels = max_pixels;
        o.extent = static_cast<int32_t>(extent);
        o.create_flags = verify_sha256 ? LUNGSEG_CREATE_VERIFY_SHA256 : 0u;
        o.expected_sha256 = expected_sha256.empty() ? nullptr : expected_sha256.c_str();  // valid while *this lives
        return o;
    }
};

inline bool backend_available(Backend backend) {
    return lungseg_backend_available(static_cast<int32_t>(backend)) != 0;
}

// Host-side clean-up of a 0/1 mask in place (see lungseg_postprocess).
inline void postprocess(std::vector<uint8_t>& mask, uint32_t width, uint32_t height, uint32_t flags = 0) {
    detail::check(lungseg_postprocess(mask.data(), mask.size(), width, height, flags));
}

// Names of the LUNGSEG_FLAG_* bits set in flags ("one_lung", ...), lowest bit first.
inline std::vector<std::string> flag_names(uint32_t flags) {
    std::vector<std::string> names;
    for (uint32_t bit = 1; bit != 0 && lungseg_flag_name(bit) != nullptr; bit <<= 1)
        if ((flags & bit) != 0) names.emplace_back(lungseg_flag_name(bit));
    return names;
}

// What Segmenter::analyze() returns: the mask and its quality row and flags.
struct Analysis {
    std::vector<uint8_t> mask;  // 0/1, or 0/1/2 with LUNGSEG_SEGMENT_LABELS
    lungseg_quality quality{};  // quality, dice_estimate, frontal/inverted probability, flags
    bool trusted() const noexcept { return quality.flags == 0; }
    std::vector<std::string> flags() const { return flag_names(quality.flags); }
};

// The library's LUNGSEG_ABI_VERSION; a program built with this header needs >= its own.
inline bool abi_compatible() noexcept { return lungseg_abi_version() >= LUNGSEG_ABI_VERSION; }

class Segmenter {
public:
    explicit Segmenter(const std::string& model_path, const Options& options = {}) {
        const lungseg_options o = options.to_c();
        detail::check(lungseg_create(model_path.c_str(), &o, &handle_));
        max_pixels_ = o.max_pixels;
    }

    static Segmenter from_memory(const void* data, std::size_t size, const Options& options = {}) {
        const lungseg_options o = options.to_c();
        lungseg_segmenter* h = nullptr;
        detail::check(lungseg_create_from_memory(data, size, &o, &h));
        Segmenter s(h);
        s.max_pixels_ = o.max_pixels;
        return s;
    }

    Segmenter(Segmenter&& other) noexcept
        : handle_(std::exchange(other.handle_, nullptr)), max_pixels_(other.max_pixels_) {}
    Segmenter& operator=(Segmenter&& other) noexcept {
        if (this != &other) {
            lungseg_destroy(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
            max_pixels_ = other.max_pixels_;
        }
        return *this;
    }
    Segmenter(const Segmenter&) = delete;
    Segmenter& operator=(const Segmenter&) = delete;
    ~Segmenter() { lungseg_destroy(handle_); }

    // Mask (0/1, or 0/1/2 with LUNGSEG_SEGMENT_LABELS) of width * height bytes.
    // pixels: the whole image, as a vector (its size is the buffer's size).
    std::vector<uint8_t> segment(const std::vector<uint8_t>& pixels, uint32_t width, uint32_t height,
                                 std::size_t row_stride = 0, uint32_t flags = 0) const {
        return segment_any(pixels.data(), pixels.size(), LUNGSEG_PIXEL_UINT8, width, height, row_stride, flags);
    }
    std::vector<uint8_t> segment(const std::vector<uint16_t>& pixels, uint32_t width, uint32_t height,
                                 std::size_t row_stride = 0, uint32_t flags = 0) const {
        return segment_any(pixels.data(), pixels.size() * 2, LUNGSEG_PIXEL_UINT16, width, height, row_stride, flags);
    }

    // Into a caller-owned buffer of mask_size bytes (no allocation here); pixels_size in bytes.
    void segment_into(const void* pixels, std::size_t pixels_size, lungseg_pixel_type type, uint32_t width,
                      uint32_t height, std::size_t row_stride, uint8_t* mask, std::size_t mask_size,
                      uint32_t flags = 0) const {
        detail::check(
            lungseg_segment(handle_, pixels, pixels_size, type, width, height, row_stride, mask, mask_size, flags));
    }

    // Mask plus quality row and flags (see lungseg_analyze); min_quality 0: the default (0.90).
    Analysis analyze(const std::vector<uint8_t>& pixels, uint32_t width, uint32_t height, std::size_t row_stride = 0,
                     uint32_t flags = 0, float min_quality = 0.0f) const {
        return analyze_any(pixels.data(), pixels.size(), LUNGSEG_PIXEL_UINT8, width, height, row_stride, flags,
                           min_quality);
    }
    Analysis analyze(const std::vector<uint16_t>& pixels, uint32_t width, uint32_t height, std::size_t row_stride = 0,
                     uint32_t flags = 0, float min_quality = 0.0f) const {
        return analyze_any(pixels.data(), pixels.size() * 2, LUNGSEG_PIXEL_UINT16, width, height, row_stride, flags,
                           min_quality);
    }

    // Into caller-owned buffers (no allocation here); returns the quality row and flags.
    lungseg_quality analyze_into(const void* pixels, std::size_t pixels_size, lungseg_pixel_type type, uint32_t width,
                                 uint32_t height, std::size_t row_stride, uint8_t* mask, std::size_t mask_size,
                                 uint32_t flags = 0, float min_quality = 0.0f) const {
        lungseg_quality q;
        lungseg_quality_init(&q);
        detail::check(lungseg_analyze(handle_, pixels, pixels_size, type, width, height, row_stride, mask, mask_size,
                                      flags, min_quality, &q));
        return q;
    }

    std::vector<float> probability(const std::vector<uint8_t>& pixels, uint32_t width, uint32_t height,
                                   std::size_t row_stride = 0) const {
        return probability_any(pixels.data(), pixels.size(), LUNGSEG_PIXEL_UINT8, width, height, row_stride);
    }
    std::vector<float> probability(const std::vector<uint16_t>& pixels, uint32_t width, uint32_t height,
                                   std::size_t row_stride = 0) const {
        return probability_any(pixels.data(), pixels.size() * 2, LUNGSEG_PIXEL_UINT16, width, height, row_stride);
    }

    // Stop the calls running on this segmenter (from any thread): they throw Error with
    // status LUNGSEG_CANCELLED.
    void cancel() const { detail::check(lungseg_cancel(handle_)); }

    // Workspace bytes a width x height call needs; hand one over with set_workspace()
    // (the buffer must outlive its use; nullptr, 0 returns to the library's own).
    std::size_t workspace_size(uint32_t width, uint32_t height) const {
        std::size_t bytes = 0;
        detail::check(lungseg_workspace_size(handle_, width, height, &bytes));
        return bytes;
    }
    void set_workspace(void* workspace, std::size_t size) { detail::check(lungseg_set_workspace(handle_, workspace, size)); }

    // "visible" or "full".
    std::string extent() const {
        const char* e = nullptr;
        detail::check(lungseg_model_extent(handle_, &e));
        return e;
    }

    std::string metadata_json() const {
        const char* json = nullptr;
        detail::check(lungseg_metadata_json(handle_, &json));
        return json;
    }

    // A top-level metadata value, or nullopt when the key is absent.
    std::optional<std::string> metadata(const std::string& key) const {
        const char* value = nullptr;
        const lungseg_status st = lungseg_metadata_value(handle_, key.c_str(), &value);
        if (st == LUNGSEG_ERROR_NOT_FOUND) return std::nullopt;
        detail::check(st);
        return std::string(value);
    }

    std::string backend_name() const {
        const char* name = nullptr;
        detail::check(lungseg_backend_name(handle_, &name));
        return name;
    }

    lungseg_segmenter* handle() const noexcept { return handle_; }

private:
    explicit Segmenter(lungseg_segmenter* handle) noexcept : handle_(handle) {}

    // Output size, refused before allocating when the library would refuse the image anyway.
    std::size_t output_size(uint32_t width, uint32_t height) const {
        const uint64_t n = static_cast<uint64_t>(width) * height;
        const uint64_t limit = max_pixels_ != 0 ? max_pixels_ : LUNGSEG_DEFAULT_MAX_PIXELS;
        if (n > limit)
            throw Error(LUNGSEG_ERROR_INVALID_ARGUMENT, "image size " + std::to_string(width) + "x" +
                                                            std::to_string(height) + " is above the limit of " +
                                                            std::to_string(limit) + " pixels (max_pixels)");
        return static_cast<std::size_t>(n);
    }

    std::vector<uint8_t> segment_any(const void* pixels, std::size_t pixels_size, lungseg_pixel_type type,
                                     uint32_t width, uint32_t height, std::size_t row_stride, uint32_t flags) const {
        std::vector<uint8_t> mask(output_size(width, height));
        detail::check(lungseg_segment(handle_, pixels, pixels_size, type, width, height, row_stride, mask.data(),
                                      mask.size(), flags));
        return mask;
    }

    Analysis analyze_any(const void* pixels, std::size_t pixels_size, lungseg_pixel_type type, uint32_t width,
                         uint32_t height, std::size_t row_stride, uint32_t flags, float min_quality) const {
        Analysis a;
        a.mask.resize(output_size(width, height));
        a.quality = analyze_into(pixels, pixels_size, type, width, height, row_stride, a.mask.data(), a.mask.size(),
                                 flags, min_quality);
        return a;
    }

    std::vector<float> probability_any(const void* pixels, std::size_t pixels_size, lungseg_pixel_type type,
                                       uint32_t width, uint32_t height, std::size_t row_stride) const {
        std::vector<float> prob(output_size(width, height));
        detail::check(lungseg_probability(handle_, pixels, pixels_size, type, width, height, row_stride,
                                          prob.data(), prob.size() * sizeof(float)));
        return prob;
    }

    lungseg_segmenter* handle_ = nullptr;
    uint64_t max_pixels_ = 0;
};

}  // namespace lungseg

#endif  // LUNGSEG_LUNGSEG_HPP
