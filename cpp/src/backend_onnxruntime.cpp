// ONNX Runtime backend: runs the exported ONNX graph on the CPU or, where the ONNX Runtime
// library was built with it, the CUDA execution provider.
//
// Written against ONNX Runtime's C API through its header-only C++ wrapper. The API is
// versioned: headers of C API version N work with any library >= N (checked at load).
// Session::Run is thread-safe, so concurrent segment calls run in parallel. Schema 2 graphs
// have a third output, `quality` float32 [N, 4], fetched only when a call asks for it.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#include <onnxruntime_session_options_config_keys.h>

#include <stdlib.h>

#include <array>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "backend.h"
#include "metadata.h"

namespace lungseg::detail {
namespace {

// ONNX Runtime logs through this function instead of to stderr; the library prints nothing.
void discard_log(void*, OrtLoggingLevel, const char*, const char*, const char*, const char*) {}

// The process's Ort::Env, shared by the segmenters and released with the last of them, so
// that no ONNX Runtime object (or thread) outlives the last lungseg_destroy().
class SharedEnv {
public:
    static Ort::Env& acquire() {
        init_api();
        SharedEnv& s = instance();
        std::lock_guard<std::mutex> lock(s.mutex_);
        if (!s.env_) s.env_ = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_ERROR, "lungseg", &discard_log, nullptr);
        ++s.refs_;
        return *s.env_;
    }
    static void release() noexcept {
        SharedEnv& s = instance();
        std::lock_guard<std::mutex> lock(s.mutex_);
        if (--s.refs_ == 0) s.env_.reset();
    }

private:
    static SharedEnv& instance() {
        static SharedEnv s;
        return s;
    }
    static void init_api() {
        static std::once_flag once;
        static const OrtApi* api = nullptr;
        static std::string version;
        std::call_once(once, [] {
            // ONNX Runtime builds with telemetry (the pip wheel's 1DS) start a dispatcher
            // thread with the first environment that lives until the process exits, past
            // every lungseg_destroy(); the variable, read when the environment is created,
            // keeps it from starting. A value the process set itself is left alone.
            ::setenv("ORT_DISABLE_TELEMETRY", "1", 0);
            const OrtApiBase* base = OrtGetApiBase();
            version = base->GetVersionString();
            api = base->GetApi(ORT_API_VERSION);
            if (api != nullptr) Ort::InitApi(api);
        });
        if (api == nullptr)
            fail(LUNGSEG_ERROR_UNSUPPORTED, "the ONNX Runtime library (" + version + ") is older than the headers lungseg was built with (C API version " +
                                                std::to_string(ORT_API_VERSION) + ")");
    }
    std::mutex mutex_;
    std::unique_ptr<Ort::Env> env_;
    int refs_ = 0;
};

// Holds one reference to the shared environment for a backend's lifetime.
struct EnvRef {
    Ort::Env& env = SharedEnv::acquire();
    EnvRef() = default;
    EnvRef(const EnvRef&) = delete;
    EnvRef& operator=(const EnvRef&) = delete;
    ~EnvRef() { SharedEnv::release(); }
};

// lungseg_cancel()'s hook: stop the graph run between operators.
void terminate_run(void* run_options) noexcept {
    OrtStatus* st = Ort::GetApi().RunOptionsSetTerminate(static_cast<OrtRunOptions*>(run_options));
    if (st != nullptr) Ort::GetApi().ReleaseStatus(st);
}

std::string element_type_name(ONNXTensorElementDataType t) {
    switch (t) {
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16: return "uint16";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return "bool";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
        case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
        default: return "type " + std::to_string(static_cast<int>(t));
    }
}

struct TensorSpec {
    std::string name;
    bool is_tensor = false;
    ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    std::vector<int64_t> shape;

    std::string describe() const {
        if (!is_tensor) return "'" + name + "' (not a tensor)";
        std::string s = "'" + name + "' " + element_type_name(type) + " [";
        for (std::size_t k = 0; k < shape.size(); ++k) s += (k ? "," : "") + (shape[k] < 0 ? std::string("?") : std::to_string(shape[k]));
        return s + "]";
    }
    // [N, 1, H, W] with the channel dimension 1 or symbolic.
    bool is_image(ONNXTensorElementDataType want) const {
        return is_tensor && type == want && shape.size() == 4 && (shape[1] == 1 || shape[1] < 0);
    }
    // [N, fields] with the second dimension `fields` or symbolic.
    bool is_row(ONNXTensorElementDataType want, int64_t fields) const {
        return is_tensor && type == want && shape.size() == 2 && (shape[1] == fields || shape[1] < 0);
    }
};

TensorSpec spec_of(const std::string& name, const Ort::TypeInfo& info) {
    TensorSpec s;
    s.name = name;
    if (info.GetONNXType() != ONNX_TYPE_TENSOR) return s;
    auto t = info.GetTensorTypeAndShapeInfo();
    s.is_tensor = true;
    s.type = t.GetElementType();
    s.shape = t.GetShape();
    return s;
}

class OnnxRuntimeBackend final : public Backend {
public:
    OnnxRuntimeBackend(const ModelSource& model, const lungseg_options& options) {
        Ort::Env& env = env_.env;
        Ort::SessionOptions so;
        so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
        so.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
        so.SetInterOpNumThreads(1);
        if (options.num_threads > 0) so.SetIntraOpNumThreads(options.num_threads);
        // Idle pool threads sleep instead of spinning: on a device the cores are shared with
        // the rest of the imaging pipeline, and spinning threads that lose their core make
        // every call slower by orders of magnitude.
        so.AddConfigEntry(kOrtSessionOptionsConfigAllowIntraOpSpinning, "0");
        if (options.device == LUNGSEG_DEVICE_CUDA) append_cuda(so, options.device_index);
        try {
            session_ = Ort::Session(env, model.data, model.size, so);
        } catch (const Ort::Exception& e) {
            fail(LUNGSEG_ERROR_MODEL, "model '" + model.path + "' could not be loaded by ONNX Runtime: " + e.what());
        }
        check_signature(model.path);
        read_metadata();
    }

    const char* name() const noexcept override { return "onnxruntime"; }

    void run(const float* pixels, int64_t height, int64_t width, uint8_t* mask, float* probability, float* quality,
             CallToken& token) override {
        if (!has_quality_) set_no_quality(quality);
        const bool want_quality = quality != nullptr && has_quality_;
        const std::array<int64_t, 4> shape{1, 1, height, width};
        const auto count = static_cast<std::size_t>(height * width);
        const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeDefault);
        Ort::RunOptions run_options;
        if (!token.arm(&terminate_run, static_cast<OrtRunOptions*>(run_options))) token.check("before the graph ran");
        struct Disarm {
            CallToken& token;
            ~Disarm() { token.disarm(); }
        } disarm{token};
        try {
            // The graph only reads its input; ONNX Runtime's API takes a non-const pointer.
            Ort::Value input = Ort::Value::CreateTensor<float>(cpu, const_cast<float*>(pixels), count, shape.data(), shape.size());
            // The outputs are written straight into the caller's buffers (the quality row:
            // lungseg's 4 floats).
            std::array<Ort::Value, 2> outputs{
                mask != nullptr ? Ort::Value::CreateTensor<uint8_t>(cpu, mask, count, shape.data(), shape.size())
                                : Ort::Value::CreateTensor<float>(cpu, probability, count, shape.data(), shape.size()),
                Ort::Value{nullptr}};
            const std::array<int64_t, 2> quality_shape{1, kQualityFields};
            if (want_quality)
                outputs[1] = Ort::Value::CreateTensor<float>(cpu, quality, kQualityFields, quality_shape.data(),
                                                             quality_shape.size());
            const char* input_names[] = {kInputName};
            const char* output_names[] = {mask != nullptr ? kMaskName : kProbabilityName, kQualityName};
            session_.Run(run_options, input_names, &input, 1, output_names, outputs.data(), want_quality ? 2 : 1);
        } catch (const Ort::Exception& e) {
            if (token.cancelled()) CallToken::fail_cancelled("while the graph ran (ONNX Runtime stopped it)");
            fail(LUNGSEG_ERROR_INFERENCE, "ONNX Runtime failed on a " + std::to_string(width) + "x" +
                                              std::to_string(height) + " image: " + e.what());
        }
    }

private:
    static void append_cuda(Ort::SessionOptions& so, int device_index) {
        const OrtApi& api = Ort::GetApi();
        OrtCUDAProviderOptionsV2* cuda = nullptr;
        OrtStatus* st = api.CreateCUDAProviderOptions(&cuda);
        if (st == nullptr) {
            const std::string id = std::to_string(device_index);
            const char* keys[] = {"device_id"};
            const char* values[] = {id.c_str()};
            st = api.UpdateCUDAProviderOptions(cuda, keys, values, 1);
            if (st == nullptr) st = api.SessionOptionsAppendExecutionProvider_CUDA_V2(so, cuda);
        }
        if (cuda != nullptr) api.ReleaseCUDAProviderOptions(cuda);
        if (st != nullptr) {
            std::string msg = api.GetErrorMessage(st);
            api.ReleaseStatus(st);
            fail(LUNGSEG_ERROR_UNSUPPORTED, "the CUDA execution provider is not available in this ONNX Runtime library: " + msg);
        }
    }

    void check_signature(const std::string& path) {
        Ort::AllocatorWithDefaultOptions alloc;
        std::vector<TensorSpec> inputs, outputs;
        for (std::size_t i = 0; i < session_.GetInputCount(); ++i)
            inputs.push_back(spec_of(session_.GetInputNameAllocated(i, alloc).get(), session_.GetInputTypeInfo(i)));
        for (std::size_t i = 0; i < session_.GetOutputCount(); ++i)
            outputs.push_back(spec_of(session_.GetOutputNameAllocated(i, alloc).get(), session_.GetOutputTypeInfo(i)));
        const TensorSpec* mask = nullptr;
        const TensorSpec* prob = nullptr;
        const TensorSpec* quality = nullptr;
        for (const auto& o : outputs) {
            if (o.name == kMaskName) mask = &o;
            if (o.name == kProbabilityName) prob = &o;
            if (o.name == kQualityName) quality = &o;
        }
        // `quality` (schema 2) is optional; when present it is float32 [N, 4].
        const bool quality_ok = quality == nullptr || quality->is_row(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, kQualityFields);
        const bool ok = inputs.size() == 1 && inputs[0].name == kInputName &&
                        inputs[0].is_image(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) && mask != nullptr &&
                        mask->is_image(ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) && prob != nullptr &&
                        prob->is_image(ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) && quality_ok;
        has_quality_ = quality != nullptr;
        if (ok) return;
        std::string found = "inputs";
        for (const auto& s : inputs) found += " " + s.describe();
        found += "; outputs";
        for (const auto& s : outputs) found += " " + s.describe();
        fail(LUNGSEG_ERROR_MODEL, "model '" + path +
                                      "' is not a lungseg graph: expected input 'pixels' float32 [N,1,H,W] and outputs "
                                      "'mask' uint8 and 'probability' float32 [N,1,H,W] (and, optionally, 'quality' "
                                      "float32 [N,4]); found " + found);
    }

    // The exporter writes one metadata_props entry "lungseg.json"; artifacts that carry
    // separate entries instead are read as an object of strings.
    void read_metadata() {
        Ort::AllocatorWithDefaultOptions alloc;
        Ort::ModelMetadata md = session_.GetModelMetadata();
        Ort::AllocatedStringPtr json = md.LookupCustomMetadataMapAllocated(kMetadataName, alloc);
        if (json) {
            metadata_json_ = json.get();
            return;
        }
        std::vector<std::pair<std::string, std::string>> members;
        for (const auto& key : md.GetCustomMetadataMapKeysAllocated(alloc)) {
            Ort::AllocatedStringPtr value = md.LookupCustomMetadataMapAllocated(key.get(), alloc);
            members.emplace_back(key.get(), value ? value.get() : "");
        }
        metadata_json_ = json_object_of_strings(members);
    }

    EnvRef env_;  // declared first: released after the session
    Ort::Session session_{nullptr};
    bool has_quality_ = false;  // the graph has the `quality` output (schema 2)
};

}  // namespace

std::unique_ptr<Backend> create_onnxruntime_backend(const ModelSource& model, const lungseg_options& options) {
    try {
        return std::make_unique<OnnxRuntimeBackend>(model, options);
    } catch (const Ort::Exception& e) {
        fail(LUNGSEG_ERROR_MODEL, "model '" + model.path + "': ONNX Runtime: " + e.what());
    }
}

}  // namespace lungseg::detail
