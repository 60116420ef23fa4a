// The C ABI: argument checks, pixel conversion, backend choice, error reporting.
//
// Every exported function catches every exception and turns it into a status code and a
// thread-local message; nothing is printed and nothing terminates the process.
#include "lungseg/lungseg.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "backend.h"
#include "metadata.h"
#include "postprocess.h"

using lungseg::detail::Backend;
using lungseg::detail::CallToken;
using lungseg::detail::Error;
using lungseg::detail::fail;
using lungseg::detail::ModelSource;
using lungseg::detail::PostprocessScratch;

namespace {

// One call's host memory: the float32 image (the graph's input) and the clean-up's lists.
// Library-owned workspaces are kept by the segmenter, one per concurrent call, and grow to
// the largest image seen; the caller's workspace (lungseg_set_workspace) replaces `owned`.
struct Workspace {
    std::unique_ptr<unsigned char[]> owned;
    std::size_t owned_size = 0;
    PostprocessScratch post;
    Workspace* next_free = nullptr;
};

// Bytes of workspace for `count` pixels: float32 each, plus room to align the start.
constexpr std::size_t kWorkspaceAlign = 64;
std::size_t workspace_bytes(uint64_t count) {
    return static_cast<std::size_t>(count) * sizeof(float) + kWorkspaceAlign;
}

}  // namespace

struct lungseg_segmenter {
    std::unique_ptr<Backend> backend;
    std::map<std::string, std::string> metadata;
    std::string extent = "visible";
    uint64_t max_pixels = LUNGSEG_DEFAULT_MAX_PIXELS;

    // Running calls, for lungseg_cancel().
    std::mutex registry;
    CallToken* running = nullptr;

    // Library-owned workspaces.
    std::mutex pool_mutex;
    std::vector<std::unique_ptr<Workspace>> workspaces;
    Workspace* free_list = nullptr;

    // The caller's workspace; calls are serialized on user_mutex while one is set.
    unsigned char* user_workspace = nullptr;
    std::size_t user_workspace_size = 0;
    std::mutex user_mutex;
    Workspace user_slot;
};

void lungseg::detail::CallToken::fail_cancelled(const char* stage) {
    fail(LUNGSEG_CANCELLED, std::string("cancelled by lungseg_cancel() ") + stage);
}

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

// lungseg 0.1's struct ended after max_pixels; ABI 2 appended extent, create_flags and
// expected_sha256. A caller's struct_size says which fields it has (see the header).
constexpr uint32_t kOptionsV1Size = 32;
static_assert(offsetof(lungseg_options, extent) == kOptionsV1Size, "lungseg 0.1's options layout");
constexpr uint32_t kOptionsMaxSize = 4096;

bool is_hex64(const char* s) {
    for (int k = 0; k < 64; ++k)
        if (s[k] == '\0' || !std::isxdigit(static_cast<unsigned char>(s[k]))) return false;
    return s[64] == '\0';
}

lungseg_options checked_options(const lungseg_options* given) {
    lungseg_options o;
    lungseg_options_init(&o);
    if (given == nullptr) return o;
    const uint32_t n = given->struct_size;
    const std::string sizes = "; this library knows " + std::to_string(kOptionsV1Size) + " (lungseg 0.1) and " +
                              std::to_string(sizeof(lungseg_options)) + " (ABI " + std::to_string(LUNGSEG_ABI_VERSION) +
                              "): initialise options with lungseg_options_init()";
    if (n < kOptionsV1Size || (n > kOptionsV1Size && n < sizeof(lungseg_options)))
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "options.struct_size is " + std::to_string(n) + sizes);
    if (n > sizeof(lungseg_options)) {
        if (n > kOptionsMaxSize)
            fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "options.struct_size is " + std::to_string(n) + ", above " +
                                                     std::to_string(kOptionsMaxSize) + sizes);
        // A newer header: accepted when its fields beyond ours are left at 0 (their defaults).
        const auto* bytes = reinterpret_cast<const unsigned char*>(given);
        for (std::size_t k = sizeof(lungseg_options); k < n; ++k)
            if (bytes[k] != 0)
                fail(LUNGSEG_ERROR_UNSUPPORTED, "options.struct_size " + std::to_string(n) +
                                                    " comes from a newer lungseg header and byte " + std::to_string(k) +
                                                    " sets a field this library (ABI " + std::to_string(LUNGSEG_ABI_VERSION) +
                                                    ", " + std::to_string(sizeof(lungseg_options)) +
                                                    "-byte options) does not know");
    }
    std::memcpy(&o, given, std::min<std::size_t>(n, sizeof(lungseg_options)));
    o.struct_size = sizeof(lungseg_options);
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
    if (o.extent < LUNGSEG_EXTENT_ANY || o.extent > LUNGSEG_EXTENT_FULL)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "options.extent " + std::to_string(o.extent) +
                                                 " is not a lungseg_extent value (0 any, 1 visible, 2 full)");
    if ((o.create_flags & ~LUNGSEG_CREATE_VERIFY_SHA256) != 0)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "options.create_flags has unknown bits 0x" + [&] {
            char buf[16];
            std::snprintf(buf, sizeof buf, "%x", static_cast<unsigned>(o.create_flags & ~LUNGSEG_CREATE_VERIFY_SHA256));
            return std::string(buf);
        }());
    if (o.expected_sha256 != nullptr && !is_hex64(o.expected_sha256))
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "options.expected_sha256 is not 64 hex digits");
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

std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

// The SHA-256 recorded for a model file: "<path>.sha256" (sha256sum format), else "".
std::string sidecar_sha256(const std::string& path) {
    std::FILE* f = std::fopen((path + ".sha256").c_str(), "rb");
    if (f == nullptr) return "";
    char buf[65] = {};
    const std::size_t got = std::fread(buf, 1, 64, f);
    std::fclose(f);
    buf[got] = '\0';
    return got == 64 && is_hex64(buf) ? lower(buf) : std::string("-");  // "-": present but unreadable
}

void check_sha256(const ModelSource& model, const std::string& expected, const std::string& source) {
    if (expected == "-")
        fail(LUNGSEG_ERROR_CHECKSUM, "model '" + model.path + "': " + source + " does not start with 64 hex digits");
    const std::string actual = lungseg::detail::sha256_hex(model.data, model.size);
    if (actual != expected)
        fail(LUNGSEG_ERROR_CHECKSUM, "model '" + model.path + "' has SHA-256 " + actual + ", but " + source +
                                         " records " + expected + ": the artifact is corrupt or not the one expected");
}

// Metadata rules checked at create: schema version, extent (requested and recorded).
void check_model_metadata(const ModelSource& model, const lungseg_options& o, lungseg_segmenter& seg) {
    const auto schema = seg.metadata.find("schema_version");
    if (schema != seg.metadata.end()) {
        const std::string& v = schema->second;
        const bool digits = !v.empty() && v.size() <= 9 && std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; });
        const long version = digits ? std::stol(v) : -1;
        if (version < 1)
            fail(LUNGSEG_ERROR_MODEL_VERSION, "model '" + model.path + "': metadata schema_version '" + v +
                                                  "' is not a positive integer; this library understands schema versions 1.." +
                                                  std::to_string(LUNGSEG_MODEL_SCHEMA_VERSION));
        if (version > LUNGSEG_MODEL_SCHEMA_VERSION)
            fail(LUNGSEG_ERROR_MODEL_VERSION, "model '" + model.path + "' has metadata schema_version " + v +
                                                  ", newer than the schema version " +
                                                  std::to_string(LUNGSEG_MODEL_SCHEMA_VERSION) + " this lungseg library (" +
                                                  lungseg_version() + ") understands: use a newer library or export the "
                                                  "model with a matching lungseg");
    }
    const auto extent = seg.metadata.find("extent");
    if (extent != seg.metadata.end()) {
        if (extent->second != "visible" && extent->second != "full")
            fail(LUNGSEG_ERROR_MODEL, "model '" + model.path + "': metadata extent '" + extent->second +
                                          "' is neither 'visible' nor 'full'");
        seg.extent = extent->second;
    }
    if (o.extent != LUNGSEG_EXTENT_ANY) {
        const char* wanted = o.extent == LUNGSEG_EXTENT_FULL ? "full" : "visible";
        if (seg.extent != wanted)
            fail(LUNGSEG_ERROR_MODEL_MISMATCH, "model '" + model.path + "' was exported for the '" + seg.extent +
                                                   "' extent" + (extent == seg.metadata.end() ? " (no extent in its metadata)" : "") +
                                                   ", but options.extent asks for '" + wanted + "'");
    }
}

void create_segmenter(const ModelSource& model, const lungseg_options* options, lungseg_segmenter** out) {
    const lungseg_options o = checked_options(options);
    if (model.size == 0) fail(LUNGSEG_ERROR_MODEL, "model '" + model.path + "' is empty (0 bytes)");
    // Integrity first when the expected hash is known before parsing the artifact.
    const bool verify = (o.create_flags & LUNGSEG_CREATE_VERIFY_SHA256) != 0 || o.expected_sha256 != nullptr;
    bool verified = false;
    if (verify && o.expected_sha256 != nullptr) {
        check_sha256(model, lower(o.expected_sha256), "options.expected_sha256");
        verified = true;
    } else if (verify && model.from_file) {
        const std::string recorded = sidecar_sha256(model.path);
        if (!recorded.empty()) {
            check_sha256(model, recorded, "'" + model.path + ".sha256'");
            verified = true;
        }
    }
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
    if (verify && !verified) {
        const auto recorded = seg->metadata.find("artifact_sha256");
        if (recorded == seg->metadata.end())
            fail(LUNGSEG_ERROR_CHECKSUM, "model '" + model.path +
                                             "': LUNGSEG_CREATE_VERIFY_SHA256 was asked for but no SHA-256 is recorded "
                                             "(options.expected_sha256, metadata artifact_sha256, or a file '" +
                                             model.path + ".sha256')");
        check_sha256(model, is_hex64(recorded->second.c_str()) ? lower(recorded->second) : std::string("-"),
                     "metadata artifact_sha256");
    }
    check_model_metadata(model, o, *seg);
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

const char* pixel_type_name(int32_t pixel_type) { return pixel_type == LUNGSEG_PIXEL_UINT16 ? "uint16" : "uint8"; }

// Checks an image's description and its buffer's size; returns width * height.
uint64_t check_image(const void* pixels, std::size_t pixels_size, int32_t pixel_type, uint32_t width,
                     uint32_t height, std::size_t& row_stride, uint64_t max_pixels) {
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
    const std::size_t row_bytes = static_cast<std::size_t>(width) * bpp;  // width < 2^32, bpp <= 2: no overflow on 64-bit
    if (row_stride == 0) row_stride = row_bytes;
    if (row_stride < row_bytes)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "row_stride " + std::to_string(row_stride) +
                                                 " bytes is smaller than a row of " + std::to_string(width) +
                                                 " pixels (" + std::to_string(row_bytes) + " bytes)");
    // The buffer spans (height - 1) * row_stride + row_bytes bytes; refuse what overflows.
    const std::size_t rows_before_last = static_cast<std::size_t>(height) - 1;
    if ((std::numeric_limits<std::size_t>::max() - row_bytes) / rows_before_last < row_stride)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "row_stride " + std::to_string(row_stride) + " times height " +
                                                 std::to_string(height) + " overflows the address space");
    const std::size_t need = rows_before_last * row_stride + row_bytes;
    if (pixels_size < need)
        fail(LUNGSEG_ERROR_BUFFER_TOO_SMALL, "pixels_size " + std::to_string(pixels_size) + " bytes is below the " +
                                                 std::to_string(need) + " bytes a " + std::to_string(width) + "x" +
                                                 std::to_string(height) + " " + pixel_type_name(pixel_type) +
                                                 " image with row_stride " + std::to_string(row_stride) +
                                                 " needs ((height - 1) * row_stride + width * " + std::to_string(bpp) + ")");
    return count;
}

// The caller's pixels as dense float32 into `out` (width * height floats), the graph's
// input. A constant image is refused, as lungseg.io.validate_pixels does in Python: there
// is nothing to segment in it.
void to_float(const void* pixels, int32_t pixel_type, uint32_t width, uint32_t height, std::size_t row_stride,
              float* out) {
    const auto* base = static_cast<const unsigned char*>(pixels);
    float lo = std::numeric_limits<float>::max(), hi = std::numeric_limits<float>::lowest();
    for (uint32_t y = 0; y < height; ++y) {
        const unsigned char* row = base + static_cast<std::size_t>(y) * row_stride;
        float* dst = out + static_cast<std::size_t>(y) * width;
        if (pixel_type == LUNGSEG_PIXEL_UINT8) {
            for (uint32_t x = 0; x < width; ++x) dst[x] = static_cast<float>(row[x]);
        } else {
            for (uint32_t x = 0; x < width; ++x) {
                uint16_t v;
                std::memcpy(&v, row + 2 * static_cast<std::size_t>(x), sizeof v);  // any alignment
                dst[x] = static_cast<float>(v);
            }
        }
        const auto [rlo, rhi] = std::minmax_element(dst, dst + width);
        lo = std::min(lo, *rlo);
        hi = std::max(hi, *rhi);
    }
    if (lo == hi)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "constant image (every pixel is " + std::to_string(static_cast<long>(lo)) +
                                                 "); nothing to segment");
}

void apply_postprocess(uint8_t* mask, int64_t height, int64_t width, uint32_t flags, PostprocessScratch& scratch,
                       const CallToken* token) {
    if ((flags & LUNGSEG_SEGMENT_RAW) == 0) lungseg::detail::clean_mask(mask, height, width, scratch);
    if (token != nullptr) token->check("during the clean-up");
    if ((flags & LUNGSEG_SEGMENT_LABELS) != 0) lungseg::detail::label_lungs(mask, height, width, scratch);
}

// A running call, linked into its segmenter's list for lungseg_cancel().
class RunningCall {
public:
    explicit RunningCall(lungseg_segmenter& seg) : seg_(seg), token(seg.registry) {
        std::lock_guard<std::mutex> lock(seg_.registry);
        token.next = seg_.running;
        if (seg_.running != nullptr) seg_.running->prev = &token;
        seg_.running = &token;
    }
    ~RunningCall() {
        std::lock_guard<std::mutex> lock(seg_.registry);
        if (token.prev != nullptr) token.prev->next = token.next;
        else seg_.running = token.next;
        if (token.next != nullptr) token.next->prev = token.prev;
    }
    RunningCall(const RunningCall&) = delete;
    RunningCall& operator=(const RunningCall&) = delete;

private:
    lungseg_segmenter& seg_;

public:
    CallToken token;
};

// The workspace of one call: the caller's (calls serialized) or one of the segmenter's own.
class WorkspaceLease {
public:
    WorkspaceLease(lungseg_segmenter& seg, uint32_t width, uint32_t height) : seg_(seg) {
        const uint64_t count = static_cast<uint64_t>(width) * height;
        const std::size_t need = workspace_bytes(count);
        if (seg_.user_workspace != nullptr) {
            user_lock_ = std::unique_lock<std::mutex>(seg_.user_mutex);
            const auto start = reinterpret_cast<std::uintptr_t>(seg_.user_workspace);
            const std::size_t skip = (kWorkspaceAlign - start % kWorkspaceAlign) % kWorkspaceAlign;
            if (seg_.user_workspace_size < need)
                fail(LUNGSEG_ERROR_BUFFER_TOO_SMALL, "the workspace of " + std::to_string(seg_.user_workspace_size) +
                                                         " bytes (lungseg_set_workspace) is below the " + std::to_string(need) +
                                                         " bytes a " + std::to_string(width) + "x" + std::to_string(height) +
                                                         " image needs (lungseg_workspace_size)");
            floats_ = reinterpret_cast<float*>(seg_.user_workspace + skip);
            slot_ = &seg_.user_slot;
            return;
        }
        {
            std::lock_guard<std::mutex> lock(seg_.pool_mutex);
            if (seg_.free_list != nullptr) {
                slot_ = seg_.free_list;
                seg_.free_list = slot_->next_free;
            } else {
                seg_.workspaces.push_back(std::make_unique<Workspace>());
                slot_ = seg_.workspaces.back().get();
            }
            pooled_ = true;
        }
        if (slot_->owned_size < need) {
            slot_->owned.reset();
            slot_->owned_size = 0;
            slot_->owned.reset(new unsigned char[need]);  // uninitialised: every float is written before use
            slot_->owned_size = need;
        }
        floats_ = reinterpret_cast<float*>(slot_->owned.get());
    }
    ~WorkspaceLease() {
        if (!pooled_) return;
        std::lock_guard<std::mutex> lock(seg_.pool_mutex);
        slot_->next_free = seg_.free_list;
        seg_.free_list = slot_;
    }
    WorkspaceLease(const WorkspaceLease&) = delete;
    WorkspaceLease& operator=(const WorkspaceLease&) = delete;

    float* floats() const { return floats_; }
    PostprocessScratch& scratch() const { return slot_->post; }

private:
    lungseg_segmenter& seg_;
    std::unique_lock<std::mutex> user_lock_;
    Workspace* slot_ = nullptr;
    bool pooled_ = false;
    float* floats_ = nullptr;
};

// lungseg_analyze()'s part of a call: the threshold of LOW_CONFIDENCE and where the
// result goes (the caller's struct is written only when the call succeeds).
struct Analysis {
    double min_quality = lungseg::detail::kMinQuality;
    lungseg_quality result{};
};

// One lungseg_segment() / lungseg_analyze() / lungseg_probability() call after its
// arguments were checked.
void run_call(lungseg_segmenter& seg, const void* pixels, int32_t pixel_type, uint32_t width, uint32_t height,
              std::size_t row_stride, uint8_t* mask, float* probability, uint32_t flags, Analysis* analysis = nullptr) {
    RunningCall call(seg);
    WorkspaceLease ws(seg, width, height);
    call.token.check("before the pixel conversion");
    to_float(pixels, pixel_type, width, height, row_stride, ws.floats());
    call.token.check("before the graph ran");
    float row[lungseg::detail::kQualityFields];  // the graph's quality row: a fixed buffer, no allocation
    seg.backend->run(ws.floats(), height, width, mask, probability, analysis != nullptr ? row : nullptr, call.token);
    call.token.check("after the graph ran");
    if (mask == nullptr) return;
    apply_postprocess(mask, height, width, flags, ws.scratch(), &call.token);
    if (analysis == nullptr) return;
    call.token.check("before the quality flags");
    // The flags need the 0/1/2 labels of the returned mask: the mask itself with LABELS, else
    // labels made in the workspace (the float image is done with: the graph has run, and
    // its 4 bytes per pixel hold the 1-byte labels), leaving the caller's 0/1 mask as it is.
    const uint8_t* labels = mask;
    if ((flags & LUNGSEG_SEGMENT_LABELS) == 0) {
        auto* scratch = reinterpret_cast<uint8_t*>(ws.floats());
        std::memcpy(scratch, mask, static_cast<std::size_t>(width) * height);
        lungseg::detail::label_lungs(scratch, height, width, ws.scratch());
        labels = scratch;
    }
    const lungseg::detail::LabelStats stats = lungseg::detail::label_stats(labels, height, width);
    lungseg_quality& q = analysis->result;
    q.flags = lungseg::detail::quality_flags(row, stats, height, width, analysis->min_quality);
    q.quality = row[0];
    q.dice_estimate = row[1];
    q.frontal_probability = row[2];
    q.inverted_probability = row[3];
}

// lungseg_quality.struct_size: 24 bytes (ABI 3, the first layout) up to 4096 (a newer header).
constexpr uint32_t kQualityMaxSize = 4096;

void check_quality_struct(const lungseg_quality* quality) {
    if (quality == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "quality is NULL");
    const uint32_t n = quality->struct_size;
    if (n < sizeof(lungseg_quality) || n > kQualityMaxSize)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "quality->struct_size is " + std::to_string(n) + "; this library knows " +
                                                 std::to_string(sizeof(lungseg_quality)) + " (ABI 3) and accepts up to " +
                                                 std::to_string(kQualityMaxSize) +
                                                 ": initialise the struct with lungseg_quality_init()");
}

// The caller's result struct: the fields this library knows, the bytes beyond them zeroed.
void write_quality(lungseg_quality* out, const lungseg_quality& result) {
    const uint32_t n = out->struct_size;
    lungseg_quality q = result;
    q.struct_size = n;
    std::memcpy(out, &q, sizeof q);
    if (n > sizeof q) std::memset(reinterpret_cast<unsigned char*>(out) + sizeof q, 0, n - sizeof q);
}

// min_quality as Python would have it: the decimal number the caller's float was written as
// (the shortest decimal that rounds to it: 0.9f -> 0.9), in double; 0, negative or NaN: the
// default, Python's MIN_QUALITY.
double resolve_min_quality(float min_quality) {
    if (!(min_quality > 0.0f)) return lungseg::detail::kMinQuality;
    if (std::isinf(min_quality)) return static_cast<double>(min_quality);
    char text[64];
    const std::to_chars_result printed = std::to_chars(text, text + sizeof text, min_quality);  // shortest round trip
    double value = 0.0;
    if (printed.ec != std::errc() || std::from_chars(text, printed.ptr, value).ec != std::errc())
        return static_cast<double>(min_quality);  // not expected to happen
    return value;
}

// A caller's byte buffer of width * height = count bytes (a mask or labels): not NULL, not short.
void check_byte_buffer(const void* data, std::size_t size, uint64_t count, const char* name) {
    if (data == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, std::string(name) + " is NULL");
    if (size < count)
        fail(LUNGSEG_ERROR_BUFFER_TOO_SMALL, std::string(name) + "_size " + std::to_string(size) +
                                                 " bytes is below width * height = " + std::to_string(count) + " bytes");
}

// width * height of a host-side buffer (no model involved): not empty, within kHardMaxPixels.
uint64_t host_buffer_count(uint32_t width, uint32_t height, const char* name) {
    if (width == 0 || height == 0)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT,
             std::string(name) + " size " + std::to_string(width) + "x" + std::to_string(height) + " is empty");
    const uint64_t count = static_cast<uint64_t>(width) * height;
    if (count > kHardMaxPixels)
        fail(LUNGSEG_ERROR_INVALID_ARGUMENT, std::string(name) + " of " + std::to_string(count) +
                                                 " pixels is above the supported " + std::to_string(kHardMaxPixels));
    return count;
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

void lungseg_quality_init(lungseg_quality* quality) {
    if (quality == nullptr) return;
    std::memset(quality, 0, sizeof *quality);
    quality->struct_size = sizeof *quality;
    quality->quality = quality->dice_estimate = quality->frontal_probability = quality->inverted_probability =
        std::numeric_limits<float>::quiet_NaN();
}

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

uint32_t lungseg_abi_version(void) { return LUNGSEG_ABI_VERSION; }

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
        case LUNGSEG_CANCELLED: return "cancelled";
        case LUNGSEG_ERROR_MODEL_VERSION: return "model schema version not supported";
        case LUNGSEG_ERROR_MODEL_MISMATCH: return "model does not match the options";
        case LUNGSEG_ERROR_CHECKSUM: return "checksum mismatch";
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

lungseg_status lungseg_segment(lungseg_segmenter* segmenter, const void* pixels, std::size_t pixels_size,
                               int32_t pixel_type, uint32_t width, uint32_t height, std::size_t row_stride,
                               uint8_t* mask, std::size_t mask_size, uint32_t flags) {
    return guarded("lungseg_segment", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        const uint64_t count =
            check_image(pixels, pixels_size, pixel_type, width, height, row_stride, segmenter->max_pixels);
        check_byte_buffer(mask, mask_size, count, "mask");
        check_flags(flags);
        run_call(*segmenter, pixels, pixel_type, width, height, row_stride, mask, nullptr, flags);
    });
}

lungseg_status lungseg_analyze(lungseg_segmenter* segmenter, const void* pixels, std::size_t pixels_size,
                               int32_t pixel_type, uint32_t width, uint32_t height, std::size_t row_stride,
                               uint8_t* mask, std::size_t mask_size, uint32_t flags, float min_quality,
                               lungseg_quality* quality) {
    return guarded("lungseg_analyze", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        const uint64_t count =
            check_image(pixels, pixels_size, pixel_type, width, height, row_stride, segmenter->max_pixels);
        check_byte_buffer(mask, mask_size, count, "mask");
        check_flags(flags);
        check_quality_struct(quality);
        Analysis analysis;
        analysis.min_quality = resolve_min_quality(min_quality);
        run_call(*segmenter, pixels, pixel_type, width, height, row_stride, mask, nullptr, flags, &analysis);
        write_quality(quality, analysis.result);
    });
}

lungseg_status lungseg_quality_flags(const uint8_t* labels, std::size_t labels_size, uint32_t width, uint32_t height,
                                     float min_quality, lungseg_quality* quality) {
    return guarded("lungseg_quality_flags", [&] {
        if (labels == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "labels is NULL");
        check_byte_buffer(labels, labels_size, host_buffer_count(width, height, "labels"), "labels");
        check_quality_struct(quality);
        const lungseg::detail::LabelStats stats = lungseg::detail::label_stats(labels, height, width);
        if (stats.other != 0)
            fail(LUNGSEG_ERROR_INVALID_ARGUMENT, std::to_string(stats.other) +
                                                     " pixels of labels are not 0, 1 or 2 (labels as lungseg_segment() or "
                                                     "lungseg_postprocess() write them with LUNGSEG_SEGMENT_LABELS)");
        const float row[lungseg::detail::kQualityFields] = {quality->quality, quality->dice_estimate,
                                                            quality->frontal_probability, quality->inverted_probability};
        quality->flags = lungseg::detail::quality_flags(row, stats, height, width, resolve_min_quality(min_quality));
    });
}

const char* lungseg_flag_name(uint32_t flag) {
    switch (flag) {
        case LUNGSEG_FLAG_NOT_FRONTAL_CHEST: return "not_frontal_chest";
        case LUNGSEG_FLAG_INVERTED: return "inverted";
        case LUNGSEG_FLAG_ONE_LUNG: return "one_lung";
        case LUNGSEG_FLAG_IMPLAUSIBLE_SHAPE: return "implausible_shape";
        case LUNGSEG_FLAG_LOW_CONFIDENCE: return "low_confidence";
        default: return nullptr;
    }
}

lungseg_status lungseg_probability(lungseg_segmenter* segmenter, const void* pixels, std::size_t pixels_size,
                                   int32_t pixel_type, uint32_t width, uint32_t height, std::size_t row_stride,
                                   float* probability, std::size_t probability_size) {
    return guarded("lungseg_probability", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        const uint64_t count =
            check_image(pixels, pixels_size, pixel_type, width, height, row_stride, segmenter->max_pixels);
        if (probability == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "probability is NULL");
        if (probability_size / sizeof(float) < count)
            fail(LUNGSEG_ERROR_BUFFER_TOO_SMALL, "probability_size " + std::to_string(probability_size) +
                                                     " bytes is below width * height * 4 = " +
                                                     std::to_string(count * sizeof(float)) + " bytes");
        run_call(*segmenter, pixels, pixel_type, width, height, row_stride, nullptr, probability, 0);
    });
}

lungseg_status lungseg_postprocess(uint8_t* mask, std::size_t mask_size, uint32_t width, uint32_t height,
                                   uint32_t flags) {
    return guarded("lungseg_postprocess", [&] {
        if (mask == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "mask is NULL");
        check_byte_buffer(mask, mask_size, host_buffer_count(width, height, "mask"), "mask");
        check_flags(flags);
        PostprocessScratch scratch;
        apply_postprocess(mask, height, width, flags, scratch, nullptr);
    });
}

lungseg_status lungseg_cancel(lungseg_segmenter* segmenter) {
    return guarded("lungseg_cancel", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        std::lock_guard<std::mutex> lock(segmenter->registry);
        for (CallToken* t = segmenter->running; t != nullptr; t = t->next) t->cancel_locked();
    });
}

lungseg_status lungseg_workspace_size(const lungseg_segmenter* segmenter, uint32_t width, uint32_t height,
                                      std::size_t* bytes) {
    return guarded("lungseg_workspace_size", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        if (bytes == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "bytes is NULL");
        *bytes = 0;
        if (width < 2 || height < 2)
            fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "image is " + std::to_string(width) + "x" + std::to_string(height) +
                                                     "; at least 2 pixels per side are needed");
        const uint64_t count = static_cast<uint64_t>(width) * height;
        if (count > segmenter->max_pixels)
            fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "image size " + std::to_string(width) + "x" + std::to_string(height) +
                                                     " is above the limit of " + std::to_string(segmenter->max_pixels) +
                                                     " pixels (options.max_pixels)");
        *bytes = workspace_bytes(count);
    });
}

lungseg_status lungseg_set_workspace(lungseg_segmenter* segmenter, void* workspace, std::size_t size) {
    return guarded("lungseg_set_workspace", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        if ((workspace == nullptr) != (size == 0))
            fail(LUNGSEG_ERROR_INVALID_ARGUMENT, workspace == nullptr ? "workspace is NULL but size is " + std::to_string(size)
                                                                      : std::string("workspace size is 0"));
        std::lock_guard<std::mutex> user(segmenter->user_mutex);
        segmenter->user_workspace = static_cast<unsigned char*>(workspace);
        segmenter->user_workspace_size = size;
        std::lock_guard<std::mutex> pool(segmenter->pool_mutex);
        segmenter->free_list = nullptr;
        segmenter->workspaces.clear();  // no call runs now (documented): nothing is leased
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

lungseg_status lungseg_model_extent(const lungseg_segmenter* segmenter, const char** extent) {
    return guarded("lungseg_model_extent", [&] {
        if (segmenter == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "segmenter is NULL");
        if (extent == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "extent is NULL");
        *extent = segmenter->extent.c_str();
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
