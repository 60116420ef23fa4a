/* The interface between liblungseg and an optional backend library loaded at run time
 * (today: liblungseg_libtorch.so, the LibTorch backend).
 *
 * liblungseg never links LibTorch. When a TorchScript model is opened, libtorch_loader.cpp
 * dlopen()s liblungseg_libtorch.so (beside liblungseg, or by name through the dynamic
 * loader's search path) and asks it for this table of C functions. Only C types cross the
 * boundary: no C++ object, allocator or exception passes between the two libraries, so
 * the plugin may be built by another compiler or against another C++ runtime.
 *
 * Errors: a function that fails returns a lungseg_status other than LUNGSEG_OK and writes a
 * NUL-terminated message (truncated to error_size bytes) into `error`.
 */
#ifndef LUNGSEG_SRC_BACKEND_PLUGIN_H
#define LUNGSEG_SRC_BACKEND_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped on any incompatible change of lungseg_backend_plugin. */
#define LUNGSEG_BACKEND_PLUGIN_ABI 1

typedef struct lungseg_backend_plugin {
    uint32_t struct_size; /* sizeof(lungseg_backend_plugin) of the plugin's build */
    uint32_t abi_version; /* LUNGSEG_BACKEND_PLUGIN_ABI of the plugin's build */
    const char* name;     /* "libtorch" */

    /* Load a model from memory (the bytes may be freed once create returns). `path` names
     * it in messages. device: a lungseg_device value; num_threads 0 = the backend's default. */
    int32_t (*create)(const void* data, size_t size, const char* path, int32_t device, int32_t device_index,
                      int32_t num_threads, void** handle, char* error, size_t error_size);
    /* Run on float32 pixels [height, width]; exactly one of mask (height * width bytes)
     * and probability (height * width floats) is non-NULL. May run concurrently. */
    int32_t (*run)(void* handle, const float* pixels, int64_t height, int64_t width, uint8_t* mask,
                   float* probability, char* error, size_t error_size);
    /* The model's metadata as JSON object text; owned by the handle. */
    const char* (*metadata_json)(const void* handle);
    void (*destroy)(void* handle);
    /* ---- the end of the first table (lungseg ABI 2); appended for ABI 3 (struct_size tells) ---- */
    /* run() that also fetches the graph's `quality` row: quality is NULL or 4 floats, NaN
     * when the graph returns no quality tensor. liblungseg uses run() with NaN quality for a
     * plugin whose table ends before this field. */
    int32_t (*run_quality)(void* handle, const float* pixels, int64_t height, int64_t width, uint8_t* mask,
                           float* probability, float* quality, char* error, size_t error_size);
} lungseg_backend_plugin;

/* sizeof the first table (up to destroy): plugins of that size are still loaded. */
#define LUNGSEG_BACKEND_PLUGIN_V1_SIZE (offsetof(lungseg_backend_plugin, run_quality))

/* The one symbol liblungseg_libtorch.so exports. */
#define LUNGSEG_LIBTORCH_PLUGIN_SYMBOL "lungseg_libtorch_plugin"
typedef const lungseg_backend_plugin* (*lungseg_backend_plugin_entry)(void);

#ifdef __cplusplus
}
#endif

#endif /* LUNGSEG_SRC_BACKEND_PLUGIN_H */
