// TensorRT backend: runs a serialized TensorRT 10 engine built from the exported ONNX graph.
//
// UNVERIFIED: TensorRT is not installed on the machines this project is built and tested
// on, so this file has never been compiled or run here. It is written against TensorRT
// 10's documented C++ API (IRuntime::deserializeCudaEngine, named I/O tensors,
// IExecutionContext::setInputShape / setTensorAddress / enqueueV3, 64-bit Dims) and the
// CUDA runtime API. Build it with -DLUNGSEG_WITH_TENSORRT=ON where TensorRT is found.
//
// The engine keeps the ONNX graph's tensor names ("pixels" in; "mask", "probability" and,
// for schema 2 graphs, "quality" [N, 4] out). enqueueV3 needs an address for every I/O
// tensor, so every output is bound to a device buffer, also those the call does not copy
// back (and any output this file does not know, sized from the context's shape).
// Its height/width range is the one the engine's optimization profile 0 was built for;
// images outside it are refused with the range in the message. Metadata is the JSON
// sidecar the exporter writes beside the engine ("model.engine.json" or "model.json").
// One execution context is shared, so calls on a segmenter are serialized by a mutex.
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "backend.h"

namespace lungseg::detail {
namespace {

// Keeps TensorRT's last error message for our error text; prints nothing.
class Logger final : public nvinfer1::ILogger {
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override {
        if (severity > Severity::kERROR || msg == nullptr) return;
        try {
            std::lock_guard<std::mutex> lock(mutex_);
            last_ = msg;
        } catch (...) {
        }
    }
    std::string last() {
        std::lock_guard<std::mutex> lock(mutex_);
        return last_.empty() ? std::string("no message from TensorRT") : last_;
    }

private:
    std::mutex mutex_;
    std::string last_;
};

void check_cuda(cudaError_t err, const char* what) {
    if (err != cudaSuccess)
        fail(LUNGSEG_ERROR_INFERENCE, std::string("CUDA error in ") + what + ": " + cudaGetErrorString(err));
}

struct DeviceBuffer {
    void* ptr = nullptr;
    std::size_t bytes = 0;
    DeviceBuffer() = default;
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& other) noexcept : ptr(other.ptr), bytes(other.bytes) {
        other.ptr = nullptr;
        other.bytes = 0;
    }
    DeviceBuffer& operator=(DeviceBuffer&&) = delete;
    ~DeviceBuffer() {
        if (ptr != nullptr) cudaFree(ptr);
    }
    void* reserve(std::size_t need) {
        if (need > bytes) {
            if (ptr != nullptr) cudaFree(ptr);
            ptr = nullptr;
            bytes = 0;
            check_cuda(cudaMalloc(&ptr, need), "cudaMalloc");
            bytes = need;
        }
        return ptr;
    }
};

std::size_t element_size(nvinfer1::DataType t) {
    switch (t) {
        case nvinfer1::DataType::kFLOAT: return 4;
        case nvinfer1::DataType::kINT32: return 4;
        case nvinfer1::DataType::kUINT8: return 1;
        case nvinfer1::DataType::kBOOL: return 1;
        default: return 0;
    }
}

std::string read_sidecar(const std::string& path) {
    std::vector<std::string> candidates{path + ".json"};
    const std::size_t dot = path.find_last_of('.');
    const std::size_t slash = path.find_last_of('/');
    if (dot != std::string::npos && (slash == std::string::npos || dot > slash))
        candidates.push_back(path.substr(0, dot) + ".json");
    for (const auto& c : candidates) {
        std::ifstream in(c, std::ios::binary);
        if (!in) continue;
        std::ostringstream s;
        s << in.rdbuf();
        return s.str();
    }
    return "{}";
}

class TensorRtBackend final : public Backend {
public:
    TensorRtBackend(const ModelSource& model, const lungseg_options& options) : device_(options.device_index) {
        if (options.device != LUNGSEG_DEVICE_CUDA)
            fail(LUNGSEG_ERROR_UNSUPPORTED, "the TensorRT backend runs on CUDA only: set options.device = LUNGSEG_DEVICE_CUDA");
        int count = 0;
        if (cudaGetDeviceCount(&count) != cudaSuccess || device_ >= count)
            fail(LUNGSEG_ERROR_UNSUPPORTED, "CUDA device " + std::to_string(device_) + " is not available");
        check_cuda(cudaSetDevice(device_), "cudaSetDevice");
        runtime_.reset(nvinfer1::createInferRuntime(logger_));
        if (!runtime_) fail(LUNGSEG_ERROR_UNSUPPORTED, "TensorRT runtime could not be created: " + logger_.last());
        engine_.reset(runtime_->deserializeCudaEngine(model.data, model.size));
        if (!engine_)
            fail(LUNGSEG_ERROR_MODEL, "model '" + model.path + "' is not a TensorRT engine this TensorRT can load: " + logger_.last());
        check_signature(model.path);
        context_.reset(engine_->createExecutionContext());
        if (!context_) fail(LUNGSEG_ERROR_OUT_OF_MEMORY, "TensorRT execution context: " + logger_.last());
        if (model.from_file) metadata_json_ = read_sidecar(model.path);
        check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
    }

    ~TensorRtBackend() override {
        if (stream_ != nullptr) cudaStreamDestroy(stream_);
    }

    const char* name() const noexcept override { return "tensorrt"; }

    // TensorRT cannot stop an enqueued graph: a cancelled call is reported after it.
    void run(const float* pixels, int64_t height, int64_t width, uint8_t* mask, float* probability, float* quality,
             CallToken& token) override {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!has_quality_) set_no_quality(quality);
        token.check("before the graph ran");
        check_cuda(cudaSetDevice(device_), "cudaSetDevice");
        if (height < min_.d[2] || height > max_.d[2] || width < min_.d[3] || width > max_.d[3])
            fail(LUNGSEG_ERROR_INVALID_ARGUMENT, "image " + std::to_string(width) + "x" + std::to_string(height) +
                                                     " is outside the engine's profile (height " + std::to_string(min_.d[2]) +
                                                     ".." + std::to_string(max_.d[2]) + ", width " + std::to_string(min_.d[3]) +
                                                     ".." + std::to_string(max_.d[3]) + "); rebuild the engine for it");
        const auto count = static_cast<std::size_t>(height * width);
        nvinfer1::Dims shape{};
        shape.nbDims = 4;
        shape.d[0] = 1;
        shape.d[1] = 1;
        shape.d[2] = height;
        shape.d[3] = width;
        if (!context_->setInputShape(kInputName, shape))
            fail(LUNGSEG_ERROR_INFERENCE, "TensorRT setInputShape: " + logger_.last());
        void* in = input_.reserve(count * sizeof(float));
        void* mask_dev = mask_.reserve(count * mask_size_);
        void* prob_dev = prob_.reserve(count * sizeof(float));
        if (!context_->setTensorAddress(kInputName, in) || !context_->setTensorAddress(kMaskName, mask_dev) ||
            !context_->setTensorAddress(kProbabilityName, prob_dev))
            fail(LUNGSEG_ERROR_INFERENCE, "TensorRT setTensorAddress: " + logger_.last());
        void* quality_dev = nullptr;
        if (has_quality_) {
            const int64_t n = output_elements(kQualityName);
            if (n != kQualityFields)
                fail(LUNGSEG_ERROR_INFERENCE, "TensorRT: output 'quality' has " + std::to_string(n) +
                                                  " elements for one image, not lungseg's 4");
            quality_dev = quality_.reserve(kQualityFields * sizeof(float));
            if (!context_->setTensorAddress(kQualityName, quality_dev))
                fail(LUNGSEG_ERROR_INFERENCE, "TensorRT setTensorAddress(quality): " + logger_.last());
        }
        for (auto& extra : extras_) {  // outputs outside the contract: bound, never read
            const int64_t n = output_elements(extra.name.c_str());
            if (n < 0) fail(LUNGSEG_ERROR_INFERENCE, "TensorRT: output '" + extra.name + "' has no shape for this input");
            void* p = extra.buffer.reserve(std::max<std::size_t>(1, static_cast<std::size_t>(n) * extra.element_size));
            if (!context_->setTensorAddress(extra.name.c_str(), p))
                fail(LUNGSEG_ERROR_INFERENCE, "TensorRT setTensorAddress(" + extra.name + "): " + logger_.last());
        }
        check_cuda(cudaMemcpyAsync(in, pixels, count * sizeof(float), cudaMemcpyHostToDevice, stream_), "cudaMemcpyAsync");
        if (!context_->enqueueV3(stream_)) fail(LUNGSEG_ERROR_INFERENCE, "TensorRT enqueueV3: " + logger_.last());
        if (quality != nullptr && quality_dev != nullptr)  // 16 bytes into lungseg's fixed row; synchronized below
            check_cuda(cudaMemcpyAsync(quality, quality_dev, kQualityFields * sizeof(float), cudaMemcpyDeviceToHost, stream_),
                       "cudaMemcpyAsync");
        if (mask != nullptr && mask_type_ == nvinfer1::DataType::kUINT8) {
            check_cuda(cudaMemcpyAsync(mask, mask_dev, count, cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync");
            check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        } else if (mask != nullptr) {
            // bool or int32 mask: copy, then narrow to 0/1 bytes
            host_.resize(count * mask_size_);
            check_cuda(cudaMemcpyAsync(host_.data(), mask_dev, host_.size(), cudaMemcpyDeviceToHost, stream_), "cudaMemcpyAsync");
            check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
            for (std::size_t i = 0; i < count; ++i) {
                bool on = false;
                for (std::size_t b = 0; b < mask_size_; ++b) on = on || host_[i * mask_size_ + b] != 0;
                mask[i] = on ? 1 : 0;
            }
        } else {
            check_cuda(cudaMemcpyAsync(probability, prob_dev, count * sizeof(float), cudaMemcpyDeviceToHost, stream_),
                       "cudaMemcpyAsync");
            check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
        }
    }

private:
    // Elements of an output for the input shape set on the context (-1 when unresolved).
    int64_t output_elements(const char* name) const {
        const nvinfer1::Dims d = context_->getTensorShape(name);
        if (d.nbDims < 0) return -1;
        int64_t n = 1;
        for (int32_t k = 0; k < d.nbDims; ++k) {
            if (d.d[k] < 0) return -1;
            n *= d.d[k];
        }
        return n;
    }

    void check_signature(const std::string& path) {
        bool has_input = false, has_mask = false, has_prob = false;
        std::string bad_quality;
        for (int32_t i = 0; i < engine_->getNbIOTensors(); ++i) {
            const char* n = engine_->getIOTensorName(i);
            const std::string name = n;
            const auto mode = engine_->getTensorIOMode(n);
            const auto type = engine_->getTensorDataType(n);
            if (name == kInputName && mode == nvinfer1::TensorIOMode::kINPUT && type == nvinfer1::DataType::kFLOAT) {
                has_input = true;
                min_ = engine_->getProfileShape(n, 0, nvinfer1::OptProfileSelector::kMIN);
                max_ = engine_->getProfileShape(n, 0, nvinfer1::OptProfileSelector::kMAX);
            } else if (name == kMaskName && mode == nvinfer1::TensorIOMode::kOUTPUT && element_size(type) != 0 &&
                       type != nvinfer1::DataType::kFLOAT) {
                has_mask = true;
                mask_type_ = type;
                mask_size_ = element_size(type);
            } else if (name == kProbabilityName && mode == nvinfer1::TensorIOMode::kOUTPUT &&
                       type == nvinfer1::DataType::kFLOAT) {
                has_prob = true;
            } else if (name == kQualityName && mode == nvinfer1::TensorIOMode::kOUTPUT) {
                const nvinfer1::Dims d = engine_->getTensorShape(n);
                if (type == nvinfer1::DataType::kFLOAT && d.nbDims == 2 && (d.d[1] == kQualityFields || d.d[1] < 0))
                    has_quality_ = true;
                else
                    bad_quality = "; output 'quality' must be float32 [N,4]";
            } else if (mode == nvinfer1::TensorIOMode::kOUTPUT) {
                std::size_t bytes = element_size(type);
                if (bytes == 0) bytes = 8;  // a type this file does not list: room for the widest
                extras_.push_back(Extra{name, bytes, {}});
            } else if (name != kInputName) {
                fail(LUNGSEG_ERROR_MODEL, "engine '" + path + "' is not a lungseg graph: it has an input '" + name +
                                              "' besides 'pixels' float32 [N,1,H,W]");
            }
        }
        if (!has_input || !has_mask || !has_prob || !bad_quality.empty() || min_.nbDims != 4 || max_.nbDims != 4)
            fail(LUNGSEG_ERROR_MODEL, "engine '" + path +
                                          "' is not a lungseg graph: expected input 'pixels' float32 [N,1,H,W] with an "
                                          "optimization profile, outputs 'mask' (uint8/bool/int32) and 'probability' float32"
                                          " (and, optionally, 'quality' float32 [N,4])" + bad_quality);
    }

    // An output outside the contract, bound so that enqueueV3 has every address.
    struct Extra {
        std::string name;
        std::size_t element_size;
        DeviceBuffer buffer;
    };

    struct Deleter {
        template <class T>
        void operator()(T* p) const noexcept {
            delete p;  // TensorRT 10 objects are released with delete
        }
    };

    Logger logger_;
    int device_;
    std::unique_ptr<nvinfer1::IRuntime, Deleter> runtime_;
    std::unique_ptr<nvinfer1::ICudaEngine, Deleter> engine_;
    std::unique_ptr<nvinfer1::IExecutionContext, Deleter> context_;
    cudaStream_t stream_ = nullptr;
    std::mutex mutex_;
    nvinfer1::Dims min_{}, max_{};
    nvinfer1::DataType mask_type_ = nvinfer1::DataType::kUINT8;
    std::size_t mask_size_ = 1;
    DeviceBuffer input_, mask_, prob_, quality_;
    bool has_quality_ = false;  // the engine has the `quality` output (schema 2)
    std::vector<Extra> extras_;
    std::vector<uint8_t> host_;
};

}  // namespace

std::unique_ptr<Backend> create_tensorrt_backend(const ModelSource& model, const lungseg_options& options) {
    return std::make_unique<TensorRtBackend>(model, options);
}

}  // namespace lungseg::detail
