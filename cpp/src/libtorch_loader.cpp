// The LibTorch backend, loaded on demand: liblungseg has no link-time dependency on
// LibTorch. The first time a TorchScript model is opened (or lungseg_backend_available()
// asks about LibTorch), this file dlopen()s liblungseg_libtorch.so and wraps the C table it
// exports (backend_plugin.h) in a Backend. An ONNX-only process never loads it, nor torch.
//
// Where the plugin is looked for, first hit wins:
//   1. $LUNGSEG_LIBTORCH_PLUGIN, a path to the library (for programs linked statically
//      whose plugin does not lie beside them);
//   2. the directory of the object this code is in (liblungseg.so, or the executable that
//      linked liblungseg.a statically);
//   3. the name alone, through the dynamic loader's search (RUNPATH of liblungseg,
//      LD_LIBRARY_PATH, ld.so.cache).
// The plugin's own dependencies (libtorch_cpu.so, libc10.so, ...) are found through its
// RUNPATH ($ORIGIN) or the loader's search path; when they are missing, the message says so.
// A loaded plugin stays loaded for the life of the process (LibTorch does not support
// being unloaded); a failed load is retried on the next call.
#include <dlfcn.h>
#include <sys/stat.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "backend.h"
#include "backend_plugin.h"

namespace lungseg::detail {
namespace {

constexpr const char* kPluginFile = "liblungseg_libtorch.so";

std::mutex g_mutex;
const lungseg_backend_plugin* g_plugin = nullptr;  // set once, never reset

bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

std::string own_directory() {
    Dl_info info{};
    if (::dladdr(reinterpret_cast<void*>(&own_directory), &info) == 0 || info.dli_fname == nullptr) return "";
    const std::string self = info.dli_fname;
    const std::size_t slash = self.find_last_of('/');
    return slash == std::string::npos ? std::string() : self.substr(0, slash);
}

// Loads `path` and checks its table; on failure appends the reason to `why`.
const lungseg_backend_plugin* try_load(const std::string& path, std::string& why) {
    void* lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        const char* e = ::dlerror();
        why += "\n  " + path + ": " + (e != nullptr ? e : "dlopen failed");
        return nullptr;
    }
    auto entry = reinterpret_cast<lungseg_backend_plugin_entry>(::dlsym(lib, LUNGSEG_LIBTORCH_PLUGIN_SYMBOL));
    const lungseg_backend_plugin* table = entry != nullptr ? entry() : nullptr;
    if (table == nullptr || table->abi_version != LUNGSEG_BACKEND_PLUGIN_ABI ||
        table->struct_size < LUNGSEG_BACKEND_PLUGIN_V1_SIZE || table->create == nullptr || table->run == nullptr ||
        table->metadata_json == nullptr || table->destroy == nullptr) {
        why += "\n  " + path + ": not a lungseg LibTorch plugin of interface version " +
               std::to_string(LUNGSEG_BACKEND_PLUGIN_ABI) +
               (table != nullptr ? " (it has version " + std::to_string(table->abi_version) + ")" : std::string());
        ::dlclose(lib);
        return nullptr;
    }
    return table;  // the library stays loaded
}

// The plugin table, or nullptr with the reasons in `why`.
const lungseg_backend_plugin* load_plugin(std::string& why) {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_plugin != nullptr) return g_plugin;
    const lungseg_backend_plugin* table = nullptr;
    if (const char* env = std::getenv("LUNGSEG_LIBTORCH_PLUGIN"); env != nullptr && env[0] != '\0') {
        table = try_load(env, why);  // asked for explicitly: no other place is tried
    } else {
        const std::string dir = own_directory();
        const std::string beside = dir.empty() ? std::string() : dir + "/" + kPluginFile;
        if (!beside.empty() && file_exists(beside))
            table = try_load(beside, why);
        else if (!beside.empty())
            why += "\n  " + beside + ": no such file";
        if (table == nullptr) table = try_load(kPluginFile, why);
    }
    g_plugin = table;
    return table;
}

// A Backend that forwards to the plugin's C functions.
class PluginBackend final : public Backend {
public:
    PluginBackend(const lungseg_backend_plugin* plugin, void* handle) : plugin_(plugin), handle_(handle) {
        const char* json = plugin_->metadata_json(handle_);
        if (json != nullptr && json[0] != '\0') metadata_json_ = json;
    }
    ~PluginBackend() override { plugin_->destroy(handle_); }
    PluginBackend(const PluginBackend&) = delete;
    PluginBackend& operator=(const PluginBackend&) = delete;

    const char* name() const noexcept override { return "libtorch"; }

    // A TorchScript forward cannot be interrupted: a cancel is seen before and after it.
    void run(const float* pixels, int64_t height, int64_t width, uint8_t* mask, float* probability, float* quality,
             CallToken& token) override {
        token.check("before the LibTorch graph");
        char error[2048] = "";
        // A plugin of the first table (no run_quality) gives no quality row: NaN.
        const bool has_run_quality =
            plugin_->struct_size >= sizeof(lungseg_backend_plugin) && plugin_->run_quality != nullptr;
        if (!has_run_quality) set_no_quality(quality);
        const int32_t status =
            has_run_quality
                ? plugin_->run_quality(handle_, pixels, height, width, mask, probability, quality, error, sizeof error)
                : plugin_->run(handle_, pixels, height, width, mask, probability, error, sizeof error);
        if (status != LUNGSEG_OK) fail(static_cast<lungseg_status>(status), error);
        token.check("after the LibTorch graph");
    }

private:
    const lungseg_backend_plugin* plugin_;
    void* handle_;
};

}  // namespace

bool libtorch_backend_available() noexcept {
    try {
        std::string why;
        return load_plugin(why) != nullptr;
    } catch (...) {
        return false;
    }
}

std::unique_ptr<Backend> create_libtorch_backend(const ModelSource& model, const lungseg_options& options) {
    std::string why;
    const lungseg_backend_plugin* plugin = load_plugin(why);
    if (plugin == nullptr)
        fail(LUNGSEG_ERROR_UNSUPPORTED,
             "model '" + model.path + "' needs the LibTorch backend, an optional library (" + kPluginFile +
                 ", built with the CMake option LUNGSEG_WITH_LIBTORCH) that could not be loaded:" + why);
    char error[2048] = "";
    void* handle = nullptr;
    const int32_t status = plugin->create(model.data, model.size, model.path.c_str(), options.device,
                                          options.device_index, options.num_threads, &handle, error, sizeof error);
    if (status != LUNGSEG_OK || handle == nullptr)
        fail(status != LUNGSEG_OK ? static_cast<lungseg_status>(status) : LUNGSEG_ERROR_INTERNAL, error);
    try {
        return std::make_unique<PluginBackend>(plugin, handle);
    } catch (...) {
        plugin->destroy(handle);
        throw;
    }
}

}  // namespace lungseg::detail
