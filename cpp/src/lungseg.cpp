// The C ABI: argument checks, pixel conversion, backend choice, error reporting.
//
// Every exported function catches every exception and turns it into a status code and a
// thread-local message; nothing is printed and nothing terminates the process.
#include "lungseg/lungseg.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "backend.h"
#include "metadata.h"
#include "postprocess.h"

using lungseg::detail::Backend;
using lungseg::detail::Error;
using lungseg::detail::fail;
using lungseg::detail::ModelSource;

struct lungseg_segmenter {
    std::unique_ptr<Backend> backend;
    std::map<std::string, std::string> metadata;
    uint64_t max_pixels = LUNGSEG_DEFAULT_MAX_PIXELS;
};

namespace {

// Postprocessing indexes pixels with int32 and ONNX/TorchScript shapes are int64, so one
// image is limited to 2^31 - 1 pixels whatever max_pixels says.
constexpr uint64_t kHardMaxPixels = static_cast<uint64_t>(std::numeric_limits<int32_t>::max());

thread_local std::string g_last_error;

void set_last_error(const char* message) noexcept {
    try {
        g_last_error = message;
    } catch (...) {
        g_last_error.clear();  // out of memory while reporting: an empty message beats none
    }
}

// Run `body`, translating any exception into a status and a message.
template <class Body>
lungseg_status guarded(const char* function, Body&& body) noexcept {
    try {
        body();
        g_last_error.clear();
        return LUNGSEG_OK;
    } catch (const Error& e) {
        set_last_error(e.what());
        return e.status();
    } catch (const std::bad_alloc&) {
        set_last_error("out of memory");
        return LUNGSEG_ERROR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        try {
            g_last_error = std::string(function) + ": unexpected error: " + e.what();
        } catch (...) {
            g_last_error.clear();
        }
        return LUNGSEG_ERROR_INTERNAL;
    } catch (...) {
        set_last_error("unexpected non-standard exception");
        return LUNGSEG_ERROR_INTERNAL;
    }
}

std::string errno_text(int err) { return std::generic_category().message(err); }

std::string lower_suffix(const std::string& path) {
    const std::size_t slash = path.find_last_of("/\\");
    const std::size_t dot = path.find_last_of('.');
    if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
    std::string s = path.substr(dot);
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

const char* backend_label(int32_t backend) {
    switch (backend) {
        case LUNGSEG_BACKEND_ONNXRUNTIME: return "ONNX Runtime";
        case LUNGSEG_BACKEND_LIBTORCH: return "LibTorch";
        case LUNGSEG_BACKEND_TENSORRT: return "TensorRT";
        default: return "?";
    }
}

const char* backend_option(int32_t backend) {
    switch (backend) {
        case LUNGSEG_BACKEND_ONNXRUNTIME: return "LUNGSEG_WITH_ONNXRUNTIME";
        case LUNGSEG_BACKEND_LIBTORCH: return "LUNGSEG_WITH_LIBTORCH";
        case LUNGSEG_BACKEND_TENSORRT: return "LUNGSEG_WITH_TENSORRT";
        default: return "?";
    }
}

bool backend_built(int32_t backend) {
    switch (backend) {
#ifdef LUNGSEG_HAVE_ONNXRUNTIME
        case LUNGSEG_BACKEND_ONNXRUNTIME: return true;
#endif
#ifdef LUNGSEG_HAVE_LIBTORCH
        case LUNGSEG_BACKEND_LIBTORCH: return lungseg::detail::libtorch_backend_available();
#endif
#ifdef LUNGSEG_HAVE_TENSORRT
        case LUNGSEG_BACKEND_TENSORRT: return true;
#endif
        default: return false;
    }
}

// AUTO: the file suffix decides; without a known one, a zip archive (TorchScript) is
// told from everything else, which goes to ONNX Runtime (protobuf has no magic number).
int32_t choose_backend(const ModelSource& model) {
    if (model.from_file) {
        const std::string s = lower_suffix(model.path);
        if (s == ".onnx" || s == ".ort") return LUNGSEG_BACKEND_ONNXRUNTIME;
        if (s == ".pt" || s == ".pth" || s == ".ts" || s == ".torchscript" || s == ".jit")
            return LUNGSEG_BACKEND_LIBTORCH;
        if (s == ".engine" || s == ".plan" || s == ".trt") return LUNGSEG_BACKEND_TENSORRT;
    }
    const auto* b = static_cast<const unsigned char*>(model.data);
    if (model.size >= 4 && b[0] == 'P' && b[1] == 'K' && b[2] == 3 && b[3] == 4)
        return LUNGSEG_BACKEND_LIBTORCH;
    return LUNGSEG_BACKEND_ONNXRUNTIME;
}

lungseg_options checked_options(const lungseg_options* given) {
    lungseg_options o;
    lungseg_options_init(&o);
    if (given == nullptr) return o;
    if (given->struct_size != sizeof(lungseg_options))
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT,
             "options.struct_size is " + std::to_string(given->struct_size) + ", expected " +
                 std::to_string(sizeof(lungseg_options)) + ": initialise options with lungseg_options_init()");
    o = *given;
    if (o.backend < LUNGSEG_BACKEND_AUTO || o.backend > LUNGSEG_BACKEND_TENSORRT)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "options.backend " + std::to_string(o.backend) + " is not a lungseg_backend value");
    if (o.device != LUNGSEG_DEVICE_CPU && o.device != LUNGSEG_DEVICE_CUDA)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "options.device " + std::to_string(o.device) + " is not a lungseg_device value");
    if (o.device_index < 0)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "options.device_index " + std::to_string(o.device_index) + " is negative");
    if (o.num_threads < 0)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "options.num_threads " + std::to_string(o.num_threads) + " is negative");
    if (o.reserved != 0) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "options.reserved must be 0");
    if (o.max_pixels == 0) o.max_pixels = LUNGSEG_DEFAULT_MAX_PIXELS;
    if (o.max_pixels > kHardMaxPixels)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "options.max_pixels " + std::to_string(o.max_pixels) +
                                                 " is above the supported " + std::to_string(kHardMaxPixels));
    return o;
}

std::vector<unsigned char> read_file(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        const int err = errno;
        fail(LUNGSEG_ERROR_IO, "cannot open model file '" + path + "': " + errno_text(err));
    }
    if (!S_ISREG(st.st_mode)) fail(LUNGSEG_ERROR_IO, "model path '" + path + "' is not a regular file");
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        const int err = errno;
        fail(LUNGSEG_ERROR_IO, "cannot open model file '" + path + "': " + errno_text(err));
    }
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(f, &std::fclose);
    std::vector<unsigned char> data;
    data.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = data.empty() ? 0 : std::fread(data.data(), 1, data.size(), f);
    if (got != data.size() || std::ferror(f)) {
        const int err = errno;
        fail(LUNGSEG_ERROR_IO, "cannot read model file '" + path + "': " + (err ? errno_text(err) : "short read"));
    }
    return data;
}

void create_segmenter(const ModelSource& model, const lungseg_options* options, lungseg_segmenter** out) {
    const lungseg_options o = checked_options(options);
    if (model.size == 0) fail(LUNGSEG_ERROR_MODEL, "model '" + model.path + "' is empty (0 bytes)");
    int32_t backend = o.backend;
    if (backend == LUNGSEG_BACKEND_AUTO) backend = choose_backend(model);
    // LibTorch is a plugin loaded on first use; its loader says why it could not be loaded.
    if (backend != LUNGSEG_BACKEND_LIBTORCH && !backend_built(backend))
        fail(LUNGSEG_ERROR_UNSUPPORTED,
             "model '" + model.path + "' needs the " + backend_label(backend) +
                 " backend, which this lungseg library was built without (CMake option " +
                 backend_option(backend) + ")");
    auto seg = std::make_unique<lungseg_segmenter>();
    seg->max_pixels = o.max_pixels;
    switch (backend) {
#ifdef LUNGSEG_HAVE_ONNXRUNTIME
        case LUNGSEG_BACKEND_ONNXRUNTIME: seg->backend = lungseg::detail::create_onnxruntime_backend(model, o); break;
#endif
#ifdef LUNGSEG_HAVE_LIBTORCH
        case LUNGSEG_BACKEND_LIBTORCH: seg->backend = lungseg::detail::create_libtorch_backend(model, o); break;
#endif
#ifdef LUNGSEG_HAVE_TENSORRT
        case LUNGSEG_BACKEND_TENSORRT: seg->backend = lungseg::detail::create_tensorrt_backend(model, o); break;
#endif
        default: fail(LUNGSEG_ERROR_INTERNAL, "backend " + std::to_string(backend) + " not dispatched");
    }
    lungseg::detail::parse_json_object(seg->backend->metadata_json(), seg->metadata);
    *out = seg.release();
}

std::size_t bytes_per_pixel(int32_t pixel_type) {
    switch (pixel_type) {
        case LUNGSEG_PIXEL_UINT8: return 1;
        case LUNGSEG_PIXEL_UINT16: return 2;
        default:
            fail(LUNGSEG_ERROR_INVALID_ARGUMENT,
                 "pixel_type " + std::to_string(pixel_type) +
                     " is not supported: use LUNGSEG_PIXEL_UINT8 (1) or LUNGSEG_PIXEL_UINT16 (2)");
    }
}

// Checks an image's description; returns width * height.
uint64_t check_image(const void* pixels, int32_t pixel_type, uint32_t width, uint32_t height,
                     std::size_t& row_stride, uint64_t max_pixels) {
    if (pixels == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "pixels is NULL");
    const std::size_t bpp = bytes_per_pixel(pixel_type);
    if (width == 0 || height == 0)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT,
             "image size " + std::to_string(width) + "x" + std::to_string(height) + " is empty");
    if (width < 2 || height < 2)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "image is " + std::to_string(width) + "x" + std::to_string(height) +
                                                 "; at least 2 pixels per side are needed");
    const uint64_t count = static_cast<uint64_t>(width) * height;
    if (count > max_pixels)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "image size " + std::to_string(width) + "x" + std::to_string(height) +
                                                 " (" + std::to_string(count) + " pixels) is above the limit of " +
                                                 std::to_string(max_pixels) + " pixels (options.max_pixels)");
    const uint64_t row_bytes = static_cast<uint64_t>(width) * bpp;
    if (row_stride == 0) row_stride = static_cast<std::size_t>(row_bytes);
    if (row_stride < row_bytes)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "row_stride " + std::to_string(row_stride) +
                                                 " bytes is smaller than a row of " + std::to_string(width) +
                                                 " pixels (" + std::to_string(row_bytes) + " bytes)");
    if ((std::numeric_limits<std::size_t>::max() - row_bytes) / height < row_stride)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "row_stride " + std::to_string(row_stride) + " times height " +
                                                 std::to_string(height) + " overflows the address space");
    return count;
}

// The caller's pixels as dense float32, the graph's input. A constant image is refused, as
// lungseg.io.validate_pixels does in Python: there is nothing to segment in it.
std::vector<float> to_float(const void* pixels, int32_t pixel_type, uint32_t width, uint32_t height,
                            std::size_t row_stride) {
    std::vector<float> out(static_cast<std::size_t>(width) * height);
    const auto* base = static_cast<const unsigned char*>(pixels);
    for (uint32_t y = 0; y < height; ++y) {
        const unsigned char* row = base + static_cast<std::size_t>(y) * row_stride;
        float* dst = out.data() + static_cast<std::size_t>(y) * width;
        if (pixel_type == LUNGSEG_PIXEL_UINT8) {
            for (uint32_t x = 0; x < width; ++x) dst[x] = static_cast<float>(row[x]);
        } else {
            for (uint32_t x = 0; x < width; ++x) {
                uint16_t v;
                std::memcpy(&v, row + 2 * static_cast<std::size_t>(x), sizeof v);  // any alignment
                dst[x] = static_cast<float>(v);
            }
        }
    }
    const auto [lo, hi] = std::minmax_element(out.begin(), out.end());
    if (*lo == *hi)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "constant image (every pixel is " + std::to_string(static_cast<long>(*lo)) +
                                                 "); nothing to segment");
    return out;
}

void apply_postprocess(uint8_t* mask, int64_t height, int64_t width, uint32_t flags) {
    if ((flags & LUNGSEG_SEGMENT_RAW) == 0) lungseg::detail::clean_mask(mask, height, width);
    if ((flags & LUNGSEG_SEGMENT_LABELS) != 0) lungseg::detail::label_lungs(mask, height, width);
}

void check_flags(uint32_t flags) {
    if ((flags & ~(LUNGSEG_SEGMENT_LABELS | LUNGSEG_SEGMENT_RAW)) != 0)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "unknown flags 0x" + [&] {
            char buf[16];
            std::snprintf(buf, sizeof buf, "%x", static_cast<unsigned>(flags));
            return std::string(buf);
        }());
}

}  // namespace

extern "C" {

void lungseg_options_init(lungseg_options* options) {
    if (options == nullptr) return;
    std::memset(options, 0, sizeof *options);
    options->struct_size = sizeof *options;
    options->backend = LUNGSEG_BACKEND_AUTO;
    options->device = LUNGSEG_DEVICE_CPU;
    options->max_pixels = LUNGSEG_DEFAULT_MAX_PIXELS;
}

const char* lungseg_version(void) {
#define LUNGSEG_STR2(x) #x
#define LUNGSEG_STR(x) LUNGSEG_STR2(x)
    return LUNGSEG_STR(LUNGSEG_VERSION_MAJOR) "." LUNGSEG_STR(LUNGSEG_VERSION_MINOR) "." LUNGSEG_STR(LUNGSEG_VERSION_PATCH);
}

const char* lungseg_status_string(lungseg_status status) {
    switch (status) {
        case LUNGSEG_OK: return "ok";
        case LUNGSEG_ERROR_INVALID_ARGUMENT: return "invalid argument";
        case LUNGSEG_ERROR_IO: return "i/o error";
        case LUNGSEG_ERROR_MODEL: return "bad model";
        case LUNGSEG_ERROR_UNSUPPORTED: return "unsupported";
        case LUNGSEG_ERROR_BUFFER_TOO_SMALL: return "buffer too small";
        case LUNGSEG_ERROR_OUT_OF_MEMORY: return "out of memory";
        case LUNGSEG_ERROR_INFERENCE: return "inference failed";
        case LUNGSEG_ERROR_NOT_FOUND: return "not found";
        case LUNGSEG_ERROR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

const char* lungseg_last_error(void) { return g_last_error.c_str(); }

int lungseg_backend_available(int32_t backend) { return backend_built(backend) ? 1 : 0; }

lungseg_status lungseg_create(const char* model_path, const lungseg_options* options, lungseg_segmenter** out) {
    return guarded("lungseg_create", [&] {
        if (out == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "out is NULL");
        *out = nullptr;
        if (model_path == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "model_path is NULL");
        if (model_path[0] == '\0') fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "model_path is empty");
        checked_options(options);  // report bad options before touching the file
        const std::vector<unsigned char> bytes = read_file(model_path);
        ModelSource model{bytes.data(), bytes.size(), model_path, true};
        create_segmenter(model, options, out);
    });
}

lungseg_status lungseg_create_from_memory(const void* data, std::size_t size, const lungseg_options* options,
                                          lungseg_segmenter** out) {
    return guarded("lungseg_create_from_memory", [&] {
        if (out == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "out is NULL");
        *out = nullptr;
        if (data == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "data is NULL");
        ModelSource model{data, size, "<memory>", false};
        create_segmenter(model, options, out);
    });
}

void lungseg_destroy(lungseg_segmenter* segmenter) {
    try {
        delete segmenter;
    } catch (...) {
        // a backend's destructor threw: nothing sensible to report from a void function
    }
}

lungseg_status lungseg_segment(lungseg_segmenter* segmenter, const void* pixels, int32_t pixel_type,
                               uint32_t width, uint32_t height, std::size_t row_stride, uint8_t* mask,
                               std::size_t mask_size, uint32_t flags) {
    return guarded("lungseg_segment", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        const uint64_t count = check_image(pixels, pixel_type, width, height, row_stride, segmenter->max_pixels);
        if (mask == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "mask is NULL");
        if (mask_size < count)
            fail(LUNGSEG_ERROR_BUFFER_TOO_SMALL, "mask_size " + std::to_string(mask_size) + " is below width * height = " +
                                                     std::to_string(count) + " bytes");
        check_flags(flags);
        const std::vector<float> input = to_float(pixels, pixel_type, width, height, row_stride);
        segmenter->backend->run(input.data(), height, width, mask, nullptr);
        apply_postprocess(mask, height, width, flags);
    });
}

lungseg_status lungseg_probability(lungseg_segmenter* segmenter, const void* pixels, int32_t pixel_type,
                                   uint32_t width, uint32_t height, std::size_t row_stride, float* probability,
                                   std::size_t probability_count) {
    return guarded("lungseg_probability", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        const uint64_t count = check_image(pixels, pixel_type, width, height, row_stride, segmenter->max_pixels);
        if (probability == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "probability is NULL");
        if (probability_count < count)
            fail(LUNGSEG_ERROR_BUFFER_TOO_SMALL, "probability_count " + std::to_string(probability_count) +
                                                     " is below width * height = " + std::to_string(count));
        const std::vector<float> input = to_float(pixels, pixel_type, width, height, row_stride);
        segmenter->backend->run(input.data(), height, width, nullptr, probability);
    });
}

lungseg_status lungseg_postprocess(uint8_t* mask, uint32_t width, uint32_t height, uint32_t flags) {
    return guarded("lungseg_postprocess", [&] {
        if (mask == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "mask is NULL");
        if (width == 0 || height == 0)
            fail(LUNGSEG_ERROR_INVALID_ARGUMENT,
                 "mask size " + std::to_string(width) + "x" + std::to_string(height) + " is empty");
        const uint64_t count = static_cast<uint64_t>(width) * height;
        if (count > kHardMaxPixels)
            fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "mask of " + std::to_string(count) + " pixels is above the supported " +
                                                     std::to_string(kHardMaxPixels));
        check_flags(flags);
        apply_postprocess(mask, height, width, flags);
    });
}

lungseg_status lungseg_metadata_json(const lungseg_segmenter* segmenter, const char** json) {
    return guarded("lungseg_metadata_json", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        if (json == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "json is NULL");
        *json = segmenter->backend->metadata_json().c_str();
    });
}

lungseg_status lungseg_metadata_value(const lungseg_segmenter* segmenter, const char* key, const char** value) {
    return guarded("lungseg_metadata_value", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        if (key == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "key is NULL");
        if (value == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "value is NULL");
        *value = nullptr;
        const auto it = segmenter->metadata.find(key);
        if (it == segmenter->metadata.end())
            fail(LUNGSEG_ERROR_NOT_FOUND, std::string("metadata has no key '") + key + "'");
        *value = it->second.c_str();
    });
}

lungseg_status lungseg_backend_name(const lungseg_segmenter* segmenter, const char** name) {
    return guarded("lungseg_backend_name", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        if (name == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "name is NULL");
        *name = segmenter->backend->name();
    });
}

}  // extern "C"
