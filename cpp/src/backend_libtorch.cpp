// LibTorch backend: runs the exported TorchScript archive (CPU, or CUDA where LibTorch was
// built with it). Built as its own library, liblungseg_libtorch.so (CMake option
// LUNGSEG_WITH_LIBTORCH), that liblungseg loads at run time only when a TorchScript model
// is opened (libtorch_loader.cpp); liblungseg itself never links LibTorch. The two talk
// through the C table of backend_plugin.h, the one symbol this library exports.
//
// The archive's forward(pixels) returns (probability, mask, quality) as SegmentationPipeline
// does (schema 1 archives: (probability, mask)); outputs are told apart by dtype and rank
// (uint8/bool mask, floating 4-D probability, floating [N, 4] quality), and a dict with
// keys "mask", "probability" and "quality" is accepted too. Metadata is the archive's extra file
// "lungseg.json". TorchScript inference is thread-safe, so concurrent calls run in parallel.
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <cstring>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "backend.h"
#include "backend_plugin.h"

namespace lungseg::detail {
namespace {

// The model bytes, read by TorchScript's archive reader without a copy.
class MemoryReader final : public caffe2::serialize::ReadAdapterInterface {
public:
    MemoryReader(const void* data, std::size_t size) : data_(static_cast<const char*>(data)), size_(size) {}
    std::size_t size() const override { return size_; }
    std::size_t read(uint64_t pos, void* buf, std::size_t n, const char*) const override {
        if (pos >= size_) return 0;
        const std::size_t k = std::min<std::size_t>(n, size_ - static_cast<std::size_t>(pos));
        std::memcpy(buf, data_ + pos, k);
        return k;
    }

private:
    const char* data_;
    std::size_t size_;
};

std::string torch_message(const std::exception& e) {
    if (const auto* ce = dynamic_cast<const c10::Error*>(&e)) return ce->what_without_backtrace();
    return e.what();
}

// Not a Backend subclass: liblungseg wraps the C table in its own Backend (libtorch_loader.cpp).
class LibTorchBackend final {
public:
    LibTorchBackend(const ModelSource& model, const lungseg_options& options) : device_(torch::kCPU) {
        if (options.device == LUNGSEG_DEVICE_CUDA) {
            if (!torch::cuda::is_available())
                fail(LUNGSEG_ERROR_UNSUPPORTED, "CUDA was requested but this LibTorch has no usable CUDA device");
            if (options.device_index >= static_cast<int>(torch::cuda::device_count()))
                fail(LUNGSEG_ERROR_UNSUPPORTED, "CUDA device " + std::to_string(options.device_index) + " does not exist (" +
                                                    std::to_string(torch::cuda::device_count()) + " found)");
            device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(options.device_index));
        }
        if (options.num_threads > 0) at::set_num_threads(options.num_threads);  // process-wide (documented)
        else apply_default_threads();
        torch::jit::ExtraFilesMap extra{{kMetadataName, ""}};
        try {
            module_ = torch::jit::load(std::make_shared<MemoryReader>(model.data, model.size), device_, extra);
        } catch (const std::exception& e) {
            fail(LUNGSEG_ERROR_MODEL, "model '" + model.path + "' could not be loaded as a TorchScript archive: " + torch_message(e));
        }
        module_.eval();
        const auto forward = module_.find_method("forward");
        if (!forward || forward->function().getSchema().arguments().size() != 2)
            fail(LUNGSEG_ERROR_MODEL, "model '" + model.path + "' is not a lungseg graph: it has no forward(pixels) method");
        if (!extra[kMetadataName].empty()) metadata_json_ = extra[kMetadataName];
    }

    const std::string& metadata_json() const noexcept { return metadata_json_; }

    void run(const float* pixels, int64_t height, int64_t width, uint8_t* mask, float* probability, float* quality) {
        const auto count = static_cast<std::size_t>(height * width);
        try {
            c10::InferenceMode guard;
            at::Tensor input = torch::from_blob(const_cast<float*>(pixels), {1, 1, height, width}, torch::kFloat32);
            if (device_.is_cuda()) input = input.to(device_);
            const c10::IValue out = module_.forward({input});
            if (quality != nullptr) copy_quality(out, quality);
            at::Tensor wanted = pick_output(out, mask != nullptr);
            if (wanted.numel() != static_cast<int64_t>(count) || wanted.dim() != 4)
                fail(LUNGSEG_ERROR_INFERENCE, "the TorchScript model returned a tensor of shape " + shape_text(wanted) +
                                                  " for a 1x1x" + std::to_string(height) + "x" + std::to_string(width) + " input");
            if (mask != nullptr) {
                wanted = wanted.to(torch::kCPU, torch::kUInt8).contiguous();
                std::memcpy(mask, wanted.data_ptr<uint8_t>(), count);
            } else {
                wanted = wanted.to(torch::kCPU, torch::kFloat32).contiguous();
                std::memcpy(probability, wanted.data_ptr<float>(), count * sizeof(float));
            }
        } catch (const Error&) {
            throw;
        } catch (const std::exception& e) {
            fail(LUNGSEG_ERROR_INFERENCE, "LibTorch failed on a " + std::to_string(width) + "x" + std::to_string(height) +
                                              " image: " + torch_message(e));
        }
    }

private:
    // num_threads = 0. LibTorch's OpenMP pool spins between parallel regions unless the
    // process set OMP_WAIT_POLICY=passive (read once, when the OpenMP runtime loads, so it
    // cannot be changed from here). A spinning pool on every core, sharing them with any
    // other busy thread, made a 512x512 image take 2.1 s instead of about 0.2 s. Unless the
    // process chose its policy or thread count (OMP_WAIT_POLICY, OMP_NUM_THREADS), leave one
    // core free: one thread per core minus one, at least 1. Process-wide, as documented.
    static void apply_default_threads() {
        if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("OMP_NUM_THREADS") != nullptr) return;
        const unsigned cores = std::thread::hardware_concurrency();
        const int threads = cores > 1 ? static_cast<int>(cores) - 1 : 1;
        if (at::get_num_threads() > threads) at::set_num_threads(threads);
    }

    static std::string shape_text(const at::Tensor& t) {
        std::string s = "[";
        for (int64_t k = 0; k < t.dim(); ++k) s += (k ? "," : "") + std::to_string(t.size(k));
        return s + "]";
    }

    static bool is_quality(const at::Tensor& t) {
        return t.is_floating_point() && t.dim() == 2 && t.size(1) == kQualityFields;
    }

    // The quality row [1, 4] into `quality` (4 floats); NaN when the graph returns none.
    static void copy_quality(const c10::IValue& out, float* quality) {
        at::Tensor found;
        if (out.isTuple()) {
            for (const auto& e : out.toTupleRef().elements())
                if (e.isTensor() && is_quality(e.toTensor())) {
                    found = e.toTensor();
                    break;
                }
        } else if (out.isGenericDict()) {
            for (const auto& kv : out.toGenericDict())
                if (kv.key().isString() && kv.key().toStringRef() == kQualityName && kv.value().isTensor())
                    found = kv.value().toTensor();
            if (found.defined() && !is_quality(found))
                fail(LUNGSEG_ERROR_INFERENCE, "the TorchScript model's 'quality' output has shape " + shape_text(found) +
                                                  ", not lungseg's floating-point [1,4]");
        }
        if (!found.defined()) {
            set_no_quality(quality);
            return;
        }
        if (found.size(0) != 1)
            fail(LUNGSEG_ERROR_INFERENCE, "the TorchScript model returned a quality tensor of shape " + shape_text(found) +
                                              " for one image");
        const at::Tensor row = found.to(torch::kCPU, torch::kFloat32).contiguous();
        std::memcpy(quality, row.data_ptr<float>(), kQualityFields * sizeof(float));
    }

    // The mask (uint8/bool) or the probability (floating, 4-D) among the outputs.
    static at::Tensor pick_output(const c10::IValue& out, bool want_mask) {
        std::vector<at::Tensor> tensors;
        if (out.isTuple()) {
            for (const auto& e : out.toTupleRef().elements())
                if (e.isTensor()) tensors.push_back(e.toTensor());
        } else if (out.isGenericDict()) {
            for (const auto& kv : out.toGenericDict()) {
                if (kv.key().isString() && kv.key().toStringRef() == (want_mask ? kMaskName : kProbabilityName) &&
                    kv.value().isTensor())
                    return kv.value().toTensor();
            }
        } else if (out.isTensor()) {
            tensors.push_back(out.toTensor());
        }
        for (const auto& t : tensors) {
            const bool is_mask = t.scalar_type() == torch::kUInt8 || t.scalar_type() == torch::kBool;
            if (want_mask ? is_mask : t.is_floating_point() && t.dim() == 4) return t;
        }
        fail(LUNGSEG_ERROR_INFERENCE, std::string("the TorchScript model returned no ") +
                                          (want_mask ? "uint8 mask" : "floating-point probability") +
                                          " tensor: not a lungseg graph (expected forward(pixels) -> (probability, mask, quality))");
    }

    torch::jit::Module module_;
    torch::Device device_;
    std::string metadata_json_ = "{}";
};

LibTorchBackend* create_backend(const ModelSource& model, const lungseg_options& options) {
    try {
        return new LibTorchBackend(model, options);
    } catch (const Error&) {
        throw;
    } catch (const std::exception& e) {
        fail(LUNGSEG_ERROR_MODEL, "model '" + model.path + "': LibTorch: " + torch_message(e));
    }
}

// ---- the plugin's C table ------------------------------------------------------------------
void copy_message(const char* text, char* error, std::size_t error_size) noexcept {
    if (error == nullptr || error_size == 0) return;
    std::size_t n = std::strlen(text);
    if (n >= error_size) n = error_size - 1;
    std::memcpy(error, text, n);
    error[n] = '\0';
}

template <class Body>
int32_t guarded(char* error, std::size_t error_size, Body&& body) noexcept {
    try {
        body();
        return LUNGSEG_OK;
    } catch (const Error& e) {
        copy_message(e.what(), error, error_size);
        return e.status();
    } catch (const std::bad_alloc&) {
        copy_message("out of memory", error, error_size);
        return LUNGSEG_ERROR_OUT_OF_MEMORY;
    } catch (const std::exception& e) {
        copy_message(e.what(), error, error_size);
        return LUNGSEG_ERROR_INTERNAL;
    } catch (...) {
        copy_message("unexpected non-standard exception in the LibTorch backend", error, error_size);
        return LUNGSEG_ERROR_INTERNAL;
    }
}

int32_t plugin_create(const void* data, std::size_t size, const char* path, int32_t device, int32_t device_index,
                      int32_t num_threads, void** handle, char* error, std::size_t error_size) {
    return guarded(error, error_size, [&] {
        if (handle == nullptr) fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "handle is NULL");
        *handle = nullptr;
        ModelSource model{data, size, path != nullptr ? path : "<memory>", false};
        lungseg_options options;
        std::memset(&options, 0, sizeof options);
        options.device = device;
        options.device_index = device_index;
        options.num_threads = num_threads;
        *handle = create_backend(model, options);
    });
}

int32_t plugin_run(void* handle, const float* pixels, int64_t height, int64_t width, uint8_t* mask,
                   float* probability, char* error, std::size_t error_size) {
    return guarded(error, error_size, [&] {
        static_cast<LibTorchBackend*>(handle)->run(pixels, height, width, mask, probability, nullptr);
    });
}

int32_t plugin_run_quality(void* handle, const float* pixels, int64_t height, int64_t width, uint8_t* mask,
                           float* probability, float* quality, char* error, std::size_t error_size) {
    return guarded(error, error_size, [&] {
        static_cast<LibTorchBackend*>(handle)->run(pixels, height, width, mask, probability, quality);
    });
}

const char* plugin_metadata_json(const void* handle) {
    return static_cast<const LibTorchBackend*>(handle)->metadata_json().c_str();
}

void plugin_destroy(void* handle) { delete static_cast<LibTorchBackend*>(handle); }

const lungseg_backend_plugin kPlugin = {
    sizeof(lungseg_backend_plugin), LUNGSEG_BACKEND_PLUGIN_ABI, "libtorch",
    &plugin_create, &plugin_run, &plugin_metadata_json, &plugin_destroy, &plugin_run_quality,
};

}  // namespace
}  // namespace lungseg::detail

extern "C" __attribute__((visibility("default"))) const lungseg_backend_plugin* lungseg_libtorch_plugin(void) {
    return &lungseg::detail::kPlugin;
}
