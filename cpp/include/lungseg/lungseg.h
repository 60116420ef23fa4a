/*
 * lungseg runtime: the C ABI.
 *
 * Lung segmentation of chest X-rays from a raw detector pixel buffer, with no Python.
 * The model is an artifact exported by the lungseg Python package (ONNX, TorchScript or a
 * TensorRT engine). Its graph holds the whole preprocessing (intensity scaling, resize to
 * the network size) and the graph-side postprocessing (resize back, sigmoid, threshold),
 * so this library only converts the caller's pixels to float32, runs the graph, and
 * applies the host-side clean-up that a graph cannot express (connected components, hole
 * filling, left/right lung labels), written to give the same result as
 * lungseg.postprocess in Python.
 *
 * Conventions
 * - Every function that can fail returns a lungseg_status; LUNGSEG_OK is 0. On failure,
 *   lungseg_last_error() gives a message that names what was wrong.
 * - No C++ exception crosses this interface; the library never calls exit() or abort()
 *   and never writes to stdout or stderr (backend log output is discarded).
 * - Images are 2-D, one channel, row-major, uint8 or uint16 in the detector's own units,
 *   with a row stride in bytes (so a region of a larger buffer can be passed as is).
 *   Output masks are dense: width * height bytes, row stride = width.
 * - Labels: 0 background, 1 the patient's right lung (the image's LEFT side on a standard
 *   PA view), 2 the patient's left lung.
 *
 * Thread safety
 * - lungseg_segment(), lungseg_probability() and the metadata getters may be called
 *   concurrently on one segmenter from several threads. The ONNX Runtime and LibTorch
 *   backends run such calls in parallel (each call has its own buffers); the TensorRT
 *   backend serializes them with a mutex held inside the segmenter.
 * - lungseg_destroy() must not run while another call uses the same segmenter.
 * - Different segmenters are independent. lungseg_postprocess() uses no shared state.
 * - lungseg_last_error() is per thread.
 * - The LibTorch backend's num_threads option calls at::set_num_threads(), which is
 *   process-wide; leave it at 0 when the host process uses LibTorch itself.
 *
 * Threads and latency
 * - num_threads sets the backend's intra-op threads (0: its default, one per core). The
 *   ONNX Runtime backend lets idle pool threads sleep rather than spin. LibTorch's OpenMP
 *   threads spin (OMP_WAIT_POLICY): where the cores are shared with other busy work, use
 *   num_threads = 1 or set OMP_WAIT_POLICY=passive in the process environment, or calls
 *   can become orders of magnitude slower.
 * - TorchScript (LibTorch backend) profiles and optimizes the graph during the first two
 *   calls, which are slower than the following ones; run a warm-up image after create.
 *
 * Memory
 * - lungseg_create*(): the model file is read into memory (its size), the backend builds
 *   its session from it (weights, about 1-2x the file size, held until destroy) and the
 *   file bytes are freed before create returns (measured: a process holding the shipped
 *   model in ONNX Runtime is about 370 MB resident). ONNX Runtime and LibTorch keep
 *   memory arenas that grow to the largest image seen and are reused by later calls.
 * - Each lungseg_segment() call allocates, and frees before it returns, a float32 copy of
 *   the image (4 bytes per pixel), the graph's intermediates at the image size (resize
 *   products, upsampled logits, probability) plus the network's activations at its own
 *   fixed input size, and, unless LUNGSEG_SEGMENT_RAW is given, a component-label image
 *   (4 bytes per pixel) and work lists. The mask is written straight into the caller's
 *   buffer. Measured with ONNX Runtime on a 4020x4892 16-bit image (19.7 MP): about 8
 *   bytes per pixel above the loaded model at the peak; plan for 16 bytes per pixel.
 *   Images above options.max_pixels (default 100 million) are refused before anything
 *   is allocated.
 * - The TensorRT backend keeps device buffers sized for the largest image seen.
 * - Strings returned by the library (metadata, backend name, version) are owned by it:
 *   segmenter strings live until lungseg_destroy(); lungseg_last_error() lives until the
 *   next lungseg call on the same thread.
 */
#ifndef LUNGSEG_LUNGSEG_H
#define LUNGSEG_LUNGSEG_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(LUNGSEG_BUILDING_SHARED)
#    define LUNGSEG_API __declspec(dllexport)
#  elif defined(LUNGSEG_STATIC)
#    define LUNGSEG_API
#  else
#    define LUNGSEG_API __declspec(dllimport)
#  endif
#else
#  define LUNGSEG_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this header; lungseg_version() gives the library's. */
#define LUNGSEG_VERSION_MAJOR 0
#define LUNGSEG_VERSION_MINOR 1
#define LUNGSEG_VERSION_PATCH 0

typedef enum lungseg_status {
    LUNGSEG_OK = 0,
    LUNGSEG_ERROR_INVALID_ARGUMENT = 1, /* null pointer, zero or too large size, bad stride, bad enum value */
    LUNGSEG_ERROR_IO = 2,               /* the model file cannot be opened or read */
    LUNGSEG_ERROR_MODEL = 3,            /* corrupt, truncated or foreign model; not a lungseg graph */
    LUNGSEG_ERROR_UNSUPPORTED = 4,      /* backend not built in, device not available, output not in the model */
    LUNGSEG_ERROR_BUFFER_TOO_SMALL = 5, /* the output buffer holds fewer than width * height elements */
    LUNGSEG_ERROR_OUT_OF_MEMORY = 6,
    LUNGSEG_ERROR_INFERENCE = 7,        /* the backend failed while running the graph */
    LUNGSEG_ERROR_NOT_FOUND = 8,        /* metadata key not present */
    LUNGSEG_ERROR_INTERNAL = 9          /* a bug in lungseg; the message says where */
} lungseg_status;

typedef enum lungseg_backend {
    LUNGSEG_BACKEND_AUTO = 0,        /* from the file suffix (.onnx, .pt/.ts/.torchscript, .engine/.plan) or the bytes */
    LUNGSEG_BACKEND_ONNXRUNTIME = 1, /* .onnx, CPU or the CUDA execution provider */
    LUNGSEG_BACKEND_LIBTORCH = 2,    /* TorchScript archive */
    LUNGSEG_BACKEND_TENSORRT = 3     /* serialized TensorRT 10 engine (built only where TensorRT is found) */
} lungseg_backend;

typedef enum lungseg_device {
    LUNGSEG_DEVICE_CPU = 0,
    LUNGSEG_DEVICE_CUDA = 1
} lungseg_device;

typedef enum lungseg_pixel_type {
    LUNGSEG_PIXEL_UINT8 = 1,
    LUNGSEG_PIXEL_UINT16 = 2 /* native byte order */
} lungseg_pixel_type;

/* Flags of lungseg_segment() and lungseg_postprocess(). */
#define LUNGSEG_SEGMENT_LABELS 0x1u /* write 0/1/2 (background / patient's right / patient's left) instead of 0/1 */
#define LUNGSEG_SEGMENT_RAW 0x2u    /* skip the clean-up (two largest components, hole filling) */

/* Default of lungseg_options.max_pixels: 100 million pixels, well above a 4020x4892 detector. */
#define LUNGSEG_DEFAULT_MAX_PIXELS 100000000u

typedef struct lungseg_options {
    uint32_t struct_size;  /* sizeof(lungseg_options); set by lungseg_options_init() */
    int32_t backend;       /* lungseg_backend */
    int32_t device;        /* lungseg_device */
    int32_t device_index;  /* CUDA device ordinal */
    int32_t num_threads;   /* intra-op threads; 0 = the backend's default */
    uint32_t reserved;     /* must be 0 */
    uint64_t max_pixels;   /* largest width * height accepted; 0 = LUNGSEG_DEFAULT_MAX_PIXELS */
} lungseg_options;

typedef struct lungseg_segmenter lungseg_segmenter; /* opaque */

/* Defaults: AUTO backend, CPU, device 0, backend's threads, default max_pixels. */
LUNGSEG_API void lungseg_options_init(lungseg_options* options);

/* "MAJOR.MINOR.PATCH" of the library. */
LUNGSEG_API const char* lungseg_version(void);

/* Short constant text for a status code ("ok", "invalid argument", ...). */
LUNGSEG_API const char* lungseg_status_string(lungseg_status status);

/* Message of this thread's last failed call; "" after a call that succeeded. */
LUNGSEG_API const char* lungseg_last_error(void);

/* 1 when the backend was compiled into this library, else 0. */
LUNGSEG_API int lungseg_backend_available(int32_t backend);

/* Load a model file. options may be NULL (defaults). *out is set to NULL on failure. */
LUNGSEG_API lungseg_status lungseg_create(const char* model_path, const lungseg_options* options,
                                          lungseg_segmenter** out);

/* Load a model from memory (size bytes, copied as needed; the caller keeps ownership). */
LUNGSEG_API lungseg_status lungseg_create_from_memory(const void* data, size_t size,
                                                      const lungseg_options* options,
                                                      lungseg_segmenter** out);

/* Release a segmenter; NULL is allowed. */
LUNGSEG_API void lungseg_destroy(lungseg_segmenter* segmenter);

/*
 * Segment one image into mask (width * height bytes, dense).
 * pixels: height rows of width pixels of pixel_type, row_stride bytes apart (0 = packed,
 * width * bytes per pixel). flags: LUNGSEG_SEGMENT_LABELS, LUNGSEG_SEGMENT_RAW.
 * The mask is 0/1 (or 0/1/2 with LABELS), the graph's threshold applied; without RAW the
 * two largest components are kept (specks under 2% of the largest dropped) and holes
 * filled, as Segmenter.segment() does in Python. As in Python, images under 2 pixels a
 * side and constant images (nothing to segment) are refused (LUNGSEG_ERROR_INVALID_ARGUMENT).
 */
LUNGSEG_API lungseg_status lungseg_segment(lungseg_segmenter* segmenter, const void* pixels,
                                           int32_t pixel_type, uint32_t width, uint32_t height,
                                           size_t row_stride, uint8_t* mask, size_t mask_size,
                                           uint32_t flags);

/* Lung probability (float32 in [0, 1], width * height values, dense) before thresholding. */
LUNGSEG_API lungseg_status lungseg_probability(lungseg_segmenter* segmenter, const void* pixels,
                                               int32_t pixel_type, uint32_t width,
                                               uint32_t height, size_t row_stride,
                                               float* probability, size_t probability_count);

/*
 * Host-side clean-up of a mask in place (width * height bytes, dense, any non-zero value
 * is lung): the same steps lungseg_segment() applies after the graph, for masks obtained
 * elsewhere (e.g. by thresholding lungseg_probability() at another threshold).
 * flags as for lungseg_segment().
 */
LUNGSEG_API lungseg_status lungseg_postprocess(uint8_t* mask, uint32_t width, uint32_t height,
                                               uint32_t flags);

/* The model's metadata as a JSON object text ("{}" when the artifact carries none). */
LUNGSEG_API lungseg_status lungseg_metadata_json(const lungseg_segmenter* segmenter,
                                                 const char** json);

/*
 * One top-level metadata value as text (strings unquoted; numbers, true/false as written;
 * objects and arrays as JSON text). LUNGSEG_ERROR_NOT_FOUND when absent. Keys written by
 * the lungseg exporter include "lungseg_version", "format", "image_size", "threshold",
 * "weights_sha256", "precision" and "model".
 */
LUNGSEG_API lungseg_status lungseg_metadata_value(const lungseg_segmenter* segmenter,
                                                  const char* key, const char** value);

/* "onnxruntime", "libtorch" or "tensorrt". */
LUNGSEG_API lungseg_status lungseg_backend_name(const lungseg_segmenter* segmenter,
                                                const char** name);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LUNGSEG_LUNGSEG_H */
