// Internal interface between the C ABI (lungseg.cpp) and the inference backends.
//
// A backend loads one exported lungseg graph and runs it on one image: float32 pixels
// [1, 1, H, W] in, the graph's uint8 `mask` or float32 `probability` [1, 1, H, W] out, and
// on request the float32 `quality` row [1, 4] (schema 2 graphs; NaN where the graph has none).
// Backends report failures by throwing lungseg::detail::Error; lungseg.cpp turns every
// exception into a status code at the ABI boundary.
#ifndef LUNGSEG_SRC_BACKEND_H
#define LUNGSEG_SRC_BACKEND_H

#include <atomic>
#include <cstddef>
#include <limits>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "lungseg/lungseg.h"

namespace lungseg::detail {

// The exception every internal failure is reported with.
class Error : public std::exception {
public:
    Error(lungseg_status status, std::string message)
        : status_(status), message_(std::move(message)) {}
    lungseg_status status() const noexcept { return status_; }
    const char* what() const noexcept override { return message_.c_str(); }

private:
    lungseg_status status_;
    std::string message_;
};

[[noreturn]] inline void fail(lungseg_status status, std::string message) {
    throw Error(status, std::move(message));
}

// The quality row of a graph without a `quality` output (schema 1): NaN in every field.
inline void set_no_quality(float* quality) noexcept {
    if (quality == nullptr) return;
    for (int k = 0; k < 4; ++k) quality[k] = std::numeric_limits<float>::quiet_NaN();
}

// Names fixed by the exported-graph contract.
inline constexpr const char* kInputName = "pixels";
inline constexpr const char* kMaskName = "mask";
inline constexpr const char* kProbabilityName = "probability";
inline constexpr const char* kQualityName = "quality";
inline constexpr int kQualityFields = 4;  // quality, dice_estimate, frontal_probability, inverted_probability
inline constexpr const char* kMetadataName = "lungseg.json";

// The model as bytes in memory; `path` names it in messages ("<memory>" when none) and
// lets a backend find side files (a TensorRT engine's JSON metadata).
struct ModelSource {
    const void* data = nullptr;
    std::size_t size = 0;
    std::string path;
    bool from_file = false;
};

// One running call, as lungseg_cancel() sees it. Calls are linked into their segmenter's
// list (under its mutex) while they run; lungseg_cancel() sets `cancelled` on each and
// runs the hook a backend armed (ONNX Runtime: RunOptions::SetTerminate), under the same
// mutex, so a hook is never called after disarm() returned.
class CallToken {
public:
    explicit CallToken(std::mutex& registry) : registry_(registry) {}
    CallToken(const CallToken&) = delete;
    CallToken& operator=(const CallToken&) = delete;

    bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }
    // Throws LUNGSEG_CANCELLED naming `stage` when the call was cancelled.
    void check(const char* stage) const {
        if (cancelled()) fail_cancelled(stage);
    }
    [[noreturn]] static void fail_cancelled(const char* stage);

    // Arm the backend's stop hook for the graph run; false (hook not armed) when the call
    // was cancelled already.
    bool arm(void (*hook)(void*), void* arg) {
        std::lock_guard<std::mutex> lock(registry_);
        if (cancelled()) return false;
        hook_ = hook;
        hook_arg_ = arg;
        return true;
    }
    void disarm() noexcept {
        std::lock_guard<std::mutex> lock(registry_);
        hook_ = nullptr;
        hook_arg_ = nullptr;
    }

    // Called by lungseg_cancel() with the registry mutex held.
    void cancel_locked() noexcept {
        cancelled_.store(true, std::memory_order_release);
        if (hook_ != nullptr) hook_(hook_arg_);
    }

    CallToken* prev = nullptr;  // the segmenter's list of running calls
    CallToken* next = nullptr;

private:
    std::mutex& registry_;
    std::atomic<bool> cancelled_{false};
    void (*hook_)(void*) = nullptr;
    void* hook_arg_ = nullptr;
};

class Backend {
public:
    virtual ~Backend() = default;
    virtual const char* name() const noexcept = 0;

    // Run the graph on pixels (dense float32, height * width). Exactly one of mask
    // (height * width bytes) and probability (height * width floats) is non-null and
    // receives that output. quality: null, or kQualityFields floats that receive the graph's
    // `quality` row, NaN when the graph has no such output. A backend that can stop a running
    // graph arms `token`'s hook; every backend checks the token before and after the graph.
    virtual void run(const float* pixels, int64_t height, int64_t width, uint8_t* mask,
                     float* probability, float* quality, CallToken& token) = 0;

    // The artifact's metadata as JSON object text ("{}" when none).
    const std::string& metadata_json() const noexcept { return metadata_json_; }

protected:
    std::string metadata_json_ = "{}";
};

// Factories, each defined in its own backend_*.cpp when that backend is built.
std::unique_ptr<Backend> create_onnxruntime_backend(const ModelSource& model,
                                                    const lungseg_options& options);
// LibTorch lives in the optional liblungseg_libtorch.so, loaded on first use
// (libtorch_loader.cpp); available() loads it if it can.
std::unique_ptr<Backend> create_libtorch_backend(const ModelSource& model,
                                                 const lungseg_options& options);
bool libtorch_backend_available() noexcept;
std::unique_ptr<Backend> create_tensorrt_backend(const ModelSource& model,
                                                 const lungseg_options& options);

}  // namespace lungseg::detail

#endif  // LUNGSEG_SRC_BACKEND_H
