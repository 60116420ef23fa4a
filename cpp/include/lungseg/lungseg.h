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
 * - Every call that reads or writes a caller buffer takes that buffer's size in BYTES and
 *   refuses a short one with LUNGSEG_ERROR_BUFFER_TOO_SMALL and a message naming both
 *   sizes, before touching it. The pixel buffer must hold
 *   (height - 1) * row_stride + width * bytes_per_pixel bytes (computed without overflow).
 * - Images are 2-D, one channel, row-major, uint8 or uint16 in the detector's own units,
 *   with a row stride in bytes (so a region of a larger buffer can be passed as is).
 *   Output masks are dense: width * height bytes, row stride = width.
 * - Labels: 0 background, 1 the patient's right lung (the image's LEFT side on a standard
 *   PA view), 2 the patient's left lung.
 *
 * Versions and compatibility
 * - lungseg_abi_version() is the library's LUNGSEG_ABI_VERSION. ABI 2 is the
 *   first with sized buffers; later ABI versions only add functions, statuses, flags and
 *   fields at the end of lungseg_options and lungseg_quality (ABI 3: lungseg_analyze() and
 *   the quality flags), so a program built against ABI N works with a library of
 *   ABI >= N. Check at start-up: lungseg_abi_version() >= LUNGSEG_ABI_VERSION.
 * - lungseg_options.struct_size: the library accepts every size it knows (32 bytes: the
 *   layout up to max_pixels of lungseg 0.1; sizeof(lungseg_options) of this header) and
 *   gives the fields beyond a smaller struct_size their defaults. A larger struct_size (a
 *   program built with a newer header) is accepted when every byte beyond this library's
 *   struct is zero (the newer fields left at their defaults) and refused otherwise
 *   (LUNGSEG_ERROR_UNSUPPORTED); sizes below 32, between 32 and sizeof(lungseg_options),
 *   or above 4096 are LUNGSEG_ERROR_INVALID_ARGUMENT.
 * - Models: the artifact's metadata records "schema_version" (written by the lungseg
 *   exporter). An artifact whose schema is newer than LUNGSEG_MODEL_SCHEMA_VERSION, or not
 *   a positive integer, is refused at create time with LUNGSEG_ERROR_MODEL_VERSION and
 *   both versions in the message. Artifacts without the key (exported before it existed,
 *   or foreign graphs that follow the graph contract) are accepted.
 * - Extent: an artifact is exported for one mask convention, metadata "extent": "visible"
 *   (the lung field) or "full" (the full lung extent); absent means "visible".
 *   options.extent requests one (LUNGSEG_EXTENT_ANY accepts either); an artifact of the
 *   other extent is refused with LUNGSEG_ERROR_MODEL_MISMATCH. lungseg_model_extent()
 *   tells which one a segmenter has.
 * - Integrity: with LUNGSEG_CREATE_VERIFY_SHA256 in options.create_flags, create computes
 *   the SHA-256 of the artifact's bytes and compares it with the recorded one: the
 *   caller's options.expected_sha256 (64 hex digits) when given, else the metadata key
 *   "artifact_sha256" (TensorRT sidecar JSON), else the first 64 hex digits of the file
 *   "<model path>.sha256" (sha256sum format). A mismatch, or nothing recorded, is
 *   LUNGSEG_ERROR_CHECKSUM. (The metadata's "weights_sha256" is the training weights
 *   file's hash, which cannot be checked from the artifact.)
 *
 * Thread safety
 * - lungseg_segment(), lungseg_analyze(), lungseg_probability() and the metadata getters
 *   may be called concurrently on one segmenter from several threads. The ONNX Runtime and LibTorch
 *   backends run such calls in parallel (each call has its own workspace); the TensorRT
 *   backend serializes them with a mutex held inside the segmenter. While a caller-owned
 *   workspace is set (lungseg_set_workspace), calls on that segmenter are serialized.
 * - lungseg_cancel() may be called from any thread at any time while the segmenter exists.
 * - lungseg_destroy() and lungseg_set_workspace() must not run while another call uses the
 *   same segmenter.
 * - Different segmenters are independent. lungseg_postprocess() and lungseg_quality_flags()
 *   use no shared state.
 * - lungseg_last_error() is per thread.
 * - The LibTorch backend's num_threads option calls at::set_num_threads(), which is
 *   process-wide; leave it at 0 when the host process uses LibTorch itself.
 *
 * Quality and flags (lungseg_analyze, ABI 3)
 * - A schema 2 graph computes, beside the mask, one row of four float32 values per image
 *   (Python: lungseg.quality.QUALITY_FIELDS): quality (the estimated Dice of the mask
 *   against an expert's, times the view check's probability of an upright frontal chest
 *   X-ray), dice_estimate, frontal_probability and inverted_probability, each in [0, 1].
 *   A network exported without a quality head gives NaN in all four, and so does a graph
 *   without the `quality` output (schema 1 artifacts). How the estimate is made and
 *   calibrated: docs/MODEL_CARD.md and src/lungseg/quality.py of the Python package.
 * - The flags (LUNGSEG_FLAG_*, bit k = lungseg.quality.FLAGS[k]) are computed on the host
 *   from that row and from the 0/1/2 labels of the returned mask (cleaned, unless
 *   LUNGSEG_SEGMENT_RAW), by the rules of lungseg.quality.flags_of() in Python, with the
 *   same arithmetic (counts, shares and aspect in double precision):
 *     INVERTED           inverted_probability >= 0.5;
 *     NOT_FRONTAL_CHEST  otherwise, frontal_probability < 0.5 (NaN probabilities raise
 *                        neither view flag);
 *     ONE_LUNG           no lung pixel, or the smaller lung (label 1 or 2) has fewer pixels
 *                        than 0.25 times the larger;
 *     IMPLAUSIBLE_SHAPE  the lung pixels cover a share of the image outside [0.05, 0.70],
 *                        or the bounding box of all lung pixels has a width / height
 *                        (columns spanned / rows spanned) outside [0.6, 2.6];
 *     LOW_CONFIDENCE     not (quality >= min_quality): a NaN quality raises it.
 *   A mask is meant to be trusted when flags == 0.
 * - min_quality: the caller's float is taken as the decimal number it was written as (the
 *   shortest decimal that rounds to it, e.g. 0.9f is 0.9) and compared with the float32
 *   quality in double precision, as Python compares the float32 quality with its float
 *   min_quality; so min_quality 0.95f here and min_quality=0.95 in Python flag the same
 *   images. 0, a negative value or NaN means LUNGSEG_DEFAULT_MIN_QUALITY (0.90, Python's
 *   lungseg.quality.MIN_QUALITY and the CLI's --min-quality default).
 * - lungseg_quality.struct_size: the library accepts sizeof(lungseg_quality) of ABI 3 (24
 *   bytes, the first layout) and larger sizes up to 4096 (a program built with a newer
 *   header): it writes the fields it knows and sets the bytes beyond them to 0 (a newer
 *   field's "not computed"). Sizes below 24 or above 4096 are
 *   LUNGSEG_ERROR_INVALID_ARGUMENT, refused before anything is written.
 *
 * Cancel
 * - lungseg_cancel(seg) stops every lungseg_segment()/lungseg_analyze()/lungseg_probability()
 *   call running on seg at that moment; they return LUNGSEG_CANCELLED (the output buffer's
 *   content is then undefined; lungseg_analyze()'s *quality is left as it was). Calls that start after lungseg_cancel() returns are not affected, and the
 *   segmenter stays usable. ONNX Runtime stops inside the graph (RunOptions terminate flag,
 *   checked between the graph's operators); LibTorch and TensorRT cannot interrupt a graph
 *   run, so there the call returns LUNGSEG_CANCELLED once the graph finishes, skipping the
 *   clean-up. The host-side stages (pixel conversion, clean-up) check between stages.
 *
 * Threads and latency
 * - num_threads sets the backend's intra-op threads (0: its default). The ONNX Runtime
 *   backend's default is one per core, and its idle pool threads sleep rather than spin.
 *   LibTorch's OpenMP pool spins between parallel regions (OMP_WAIT_POLICY, read once when
 *   OpenMP loads): with num_threads = 0 and neither OMP_WAIT_POLICY nor OMP_NUM_THREADS
 *   set in the environment, the LibTorch backend uses one thread per core minus one (at
 *   least 1), so that a spinning pool never competes with other busy work for every core
 *   (see cpp/README.md, "Threads"). Set num_threads, or OMP_WAIT_POLICY=passive before the
 *   process starts, to choose otherwise.
 * - TorchScript (LibTorch backend) profiles and optimizes the graph during the first two
 *   calls, which are slower than the following ones; run a warm-up image after create.
 * - lungseg_destroy() joins every thread the segmenter's backend started: when it returns
 *   the process has no more threads than before lungseg_create() (ONNX Runtime's
 *   environment is released with the last segmenter). Before the first ONNX Runtime
 *   environment is created, lungseg sets ORT_DISABLE_TELEMETRY=1 in the process
 *   environment unless the process set it: builds of ONNX Runtime with telemetry (the
 *   pip wheel's) otherwise start a thread that lives until the process exits.
 *
 * Memory (measured with cpp/tests/test_memory.cpp, see cpp/README.md, "Memory")
 * - lungseg_create*(): the model file is read into memory (its size), the backend builds
 *   its session from it (weights, about 1-2x the file size, held until destroy) and the
 *   file bytes are freed before create returns (measured: a process holding the shipped
 *   model is about 240 MB resident, ONNX Runtime or LibTorch).
 * - lungseg's own per-call memory is its workspace: the float32 copy of the image (4 bytes
 *   per pixel; lungseg_workspace_size() gives the exact figure) plus the clean-up's lists,
 *   which grow with the number of runs of lung pixels (a few per row: kilobytes), not with
 *   the pixel count. Workspaces are kept by the segmenter (one per concurrent call, grown
 *   to the largest image seen) and reused, or supplied by the caller
 *   (lungseg_set_workspace). Either way a call of a size already seen makes no heap
 *   allocation of image size in lungseg itself; the mask and probability are written
 *   straight into the caller's buffer. lungseg_analyze() needs no more: its quality row is
 *   a fixed 4-float buffer, and the labels its flags are computed on (when the caller asked
 *   for a 0/1 mask) are made in the workspace's bytes once the graph has run.
 * - What remains is the runtime's own: ONNX Runtime's CPU arena holds the graph's
 *   intermediates at the image size (resize products, upsampled logits, probability) and
 *   the network's activations at its fixed input size; it grows to the largest image seen
 *   and is reused, so a second call of the same size allocates nothing of image size (only
 *   about 1,100 small blocks, 0.1 MB, of per-run bookkeeping). Measured on the shipped
 *   model, 4020x4892 uint16, 2 threads (heap peak above the loaded model, per pixel):
 *     ONNX Runtime: first call 18.1 bytes/pixel (workspace 4.0 + arena 14.1), later calls
 *                   of that size 0; plan for 20.
 *     LibTorch:     first call 12.8 bytes/pixel, every later call 8.1 (its intermediates are
 *                   allocated and freed by each call: LibTorch's CPU allocator caches
 *                   nothing); plan for 16.
 *   The TensorRT backend keeps device buffers sized for the largest image seen.
 * - Images above options.max_pixels (default 100 million) are refused before anything
 *   is allocated.
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

/* ABI of this header; lungseg_abi_version() gives the library's (see "Versions" above).
 * ABI 2 changed lungseg_segment(), lungseg_probability() and lungseg_postprocess(): they
 * take the size in bytes of every caller buffer. ABI 3 added lungseg_analyze(),
 * lungseg_quality_flags(), lungseg_quality_init(), lungseg_flag_name() and
 * struct lungseg_quality (see "Quality and flags" below). */
#define LUNGSEG_ABI_VERSION 3

/* Newest artifact metadata "schema_version" this library understands. Schema 2 added the
 * graph output `quality` float32 [N, 4]; schema 1 artifacts (no `quality` output) are still
 * accepted, and their quality values are NaN. */
#define LUNGSEG_MODEL_SCHEMA_VERSION 2

typedef enum lungseg_status {
    LUNGSEG_OK = 0,
    LUNGSEG_ERROR_INVALID_ARGUMENT = 1, /* null pointer, zero or too large size, bad stride, bad enum value */
    LUNGSEG_ERROR_IO = 2,               /* the model file cannot be opened or read */
    LUNGSEG_ERROR_MODEL = 3,            /* corrupt, truncated or foreign model; not a lungseg graph */
    LUNGSEG_ERROR_UNSUPPORTED = 4,      /* backend not built in, device not available, output not in the model */
    LUNGSEG_ERROR_BUFFER_TOO_SMALL = 5, /* a caller buffer (pixels, mask, probability, workspace) is shorter than needed */
    LUNGSEG_ERROR_OUT_OF_MEMORY = 6,
    LUNGSEG_ERROR_INFERENCE = 7,        /* the backend failed while running the graph */
    LUNGSEG_ERROR_NOT_FOUND = 8,        /* metadata key not present */
    LUNGSEG_ERROR_INTERNAL = 9,         /* a bug in lungseg; the message says where */
    LUNGSEG_CANCELLED = 10,             /* lungseg_cancel() stopped the call */
    LUNGSEG_ERROR_MODEL_VERSION = 11,   /* the artifact's metadata schema is newer than this library understands */
    LUNGSEG_ERROR_MODEL_MISMATCH = 12,  /* a valid artifact, but not the one options asked for (extent) */
    LUNGSEG_ERROR_CHECKSUM = 13         /* LUNGSEG_CREATE_VERIFY_SHA256: mismatch, or no recorded sha256 */
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

/* Mask convention of an artifact (metadata "extent"); options.extent requests one. */
typedef enum lungseg_extent {
    LUNGSEG_EXTENT_ANY = 0,     /* options only: accept whatever the artifact has */
    LUNGSEG_EXTENT_VISIBLE = 1, /* the visible lung field (heart shadow left out) */
    LUNGSEG_EXTENT_FULL = 2     /* the full lung extent, behind the heart down to the diaphragm */
} lungseg_extent;

/* Flags of lungseg_segment() and lungseg_postprocess(). */
#define LUNGSEG_SEGMENT_LABELS 0x1u /* write 0/1/2 (background / patient's right / patient's left) instead of 0/1 */
#define LUNGSEG_SEGMENT_RAW 0x2u    /* skip the clean-up (two largest components, hole filling) */

/* Bits of lungseg_quality.flags: reasons not to trust a mask (see "Quality and flags" above;
 * the order of Python's lungseg.quality.FLAGS). lungseg_flag_name() gives their names. */
#define LUNGSEG_FLAG_NOT_FRONTAL_CHEST 1u  /* "not_frontal_chest": not an upright frontal chest X-ray (rotated, upside down, lateral, cropped, not a chest) */
#define LUNGSEG_FLAG_INVERTED 2u           /* "inverted": an inverted (negative) chest X-ray */
#define LUNGSEG_FLAG_ONE_LUNG 4u           /* "one_lung": no lung or one, or the smaller under 0.25 of the larger */
#define LUNGSEG_FLAG_IMPLAUSIBLE_SHAPE 8u  /* "implausible_shape": lung area share or bounding-box aspect out of range */
#define LUNGSEG_FLAG_LOW_CONFIDENCE 16u    /* "low_confidence": quality under min_quality, or NaN (no quality head) */

/* min_quality of lungseg_analyze() when it is given as 0 (Python's lungseg.quality.MIN_QUALITY). */
#define LUNGSEG_DEFAULT_MIN_QUALITY 0.90f

/* Flags of lungseg_options.create_flags. */
#define LUNGSEG_CREATE_VERIFY_SHA256 0x1u /* verify the artifact's SHA-256 (see "Integrity" above) */

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
    /* ---- 32 bytes: the end of lungseg 0.1's struct; the fields below are ABI 2 ---- */
    int32_t extent;               /* lungseg_extent requested; 0 = LUNGSEG_EXTENT_ANY */
    uint32_t create_flags;        /* LUNGSEG_CREATE_VERIFY_SHA256; other bits must be 0 */
    const char* expected_sha256;  /* NULL, or the artifact's SHA-256 as 64 hex digits (implies verification) */
} lungseg_options;

typedef struct lungseg_segmenter lungseg_segmenter; /* opaque */

/* The quality row and the flags of one image (lungseg_analyze). ABI 3; struct_size rules in
 * "Quality and flags" above. */
typedef struct lungseg_quality {
    uint32_t struct_size;       /* sizeof(lungseg_quality); set by lungseg_quality_init() */
    uint32_t flags;             /* LUNGSEG_FLAG_* bits; 0: nothing found against the mask */
    float quality;              /* estimated Dice x frontal_probability, in [0, 1]; NaN without a quality head */
    float dice_estimate;        /* estimated Dice of the mask against an expert's, in [0, 1]; NaN without a head */
    float frontal_probability;  /* view check: probability of an upright frontal chest X-ray; NaN without a head */
    float inverted_probability; /* view check: probability of an inverted (negative) chest X-ray; NaN without a head */
} lungseg_quality;

/* Defaults: AUTO backend, CPU, device 0, backend's threads, default max_pixels, any extent. */
LUNGSEG_API void lungseg_options_init(lungseg_options* options);

/* struct_size = sizeof(lungseg_quality), flags 0, the four values NaN. NULL is ignored. */
LUNGSEG_API void lungseg_quality_init(lungseg_quality* quality);

/* "MAJOR.MINOR.PATCH" of the library. */
LUNGSEG_API const char* lungseg_version(void);

/* LUNGSEG_ABI_VERSION of the library. */
LUNGSEG_API uint32_t lungseg_abi_version(void);

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

/* Release a segmenter; NULL is allowed. Joins the backend's threads before returning. */
LUNGSEG_API void lungseg_destroy(lungseg_segmenter* segmenter);

/*
 * Segment one image into mask (width * height bytes, dense).
 * pixels: pixels_size bytes holding height rows of width pixels of pixel_type, row_stride
 * bytes apart (0 = packed, width * bytes per pixel); pixels_size must be at least
 * (height - 1) * row_stride + width * bytes_per_pixel. mask_size: bytes in mask, at least
 * width * height. flags: LUNGSEG_SEGMENT_LABELS, LUNGSEG_SEGMENT_RAW.
 * The mask is 0/1 (or 0/1/2 with LABELS), the graph's threshold applied; without RAW the
 * two largest components are kept (specks under 2% of the largest dropped) and holes
 * filled, as Segmenter.segment() does in Python. As in Python, images under 2 pixels a
 * side and constant images (nothing to segment) are refused (LUNGSEG_ERROR_INVALID_ARGUMENT).
 * LUNGSEG_CANCELLED when lungseg_cancel() stopped it.
 */
LUNGSEG_API lungseg_status lungseg_segment(lungseg_segmenter* segmenter, const void* pixels,
                                           size_t pixels_size, int32_t pixel_type, uint32_t width,
                                           uint32_t height, size_t row_stride, uint8_t* mask,
                                           size_t mask_size, uint32_t flags);

/*
 * lungseg_segment() plus how far the mask can be trusted: the same arguments, checks, flags
 * (LUNGSEG_SEGMENT_LABELS, LUNGSEG_SEGMENT_RAW), mask, workspace and cancel, and in
 * *quality the graph's quality row and the LUNGSEG_FLAG_* bits (see "Quality and flags"
 * above). The flags are computed on the 0/1/2 labels of the mask this call returns (the
 * cleaned mask unless RAW), as Python's Segmenter.analyze() does; when LABELS is not set
 * the labels are made in the call's workspace and the returned 0/1 mask is unchanged.
 * min_quality: LOW_CONFIDENCE below it; 0 (or negative, or NaN) = LUNGSEG_DEFAULT_MIN_QUALITY.
 * quality: not NULL, struct_size set (lungseg_quality_init()); it is written only when the
 * call succeeds (on failure it is left as it was). A graph without a quality output (schema
 * 1 artifacts) gives NaN values and so LUNGSEG_FLAG_LOW_CONFIDENCE.
 */
LUNGSEG_API lungseg_status lungseg_analyze(lungseg_segmenter* segmenter, const void* pixels, size_t pixels_size,
                                           int32_t pixel_type, uint32_t width, uint32_t height, size_t row_stride,
                                           uint8_t* mask, size_t mask_size, uint32_t flags, float min_quality,
                                           lungseg_quality* quality);

/*
 * The flags alone, for labels obtained elsewhere (e.g. lungseg_probability() thresholded
 * at another threshold, then lungseg_postprocess() with LUNGSEG_SEGMENT_LABELS): reads
 * quality->quality, ->frontal_probability and ->inverted_probability (e.g. from an earlier
 * lungseg_analyze() of the same image) and the 0/1/2 labels (width * height bytes, dense;
 * labels_size bytes at labels; another value is LUNGSEG_ERROR_INVALID_ARGUMENT) and writes
 * quality->flags only. min_quality as for lungseg_analyze().
 */
LUNGSEG_API lungseg_status lungseg_quality_flags(const uint8_t* labels, size_t labels_size, uint32_t width,
                                                 uint32_t height, float min_quality, lungseg_quality* quality);

/* Name of one LUNGSEG_FLAG_* bit ("not_frontal_chest", "inverted", "one_lung",
 * "implausible_shape", "low_confidence": Python's lungseg.quality.FLAGS), NULL for any other
 * value (so `for (b = 1; lungseg_flag_name(b) != NULL; b <<= 1)` visits every flag this
 * library knows). */
LUNGSEG_API const char* lungseg_flag_name(uint32_t flag);

/* Lung probability (float32 in [0, 1], width * height values, dense) before thresholding.
 * probability_size is in BYTES: at least width * height * sizeof(float). */
LUNGSEG_API lungseg_status lungseg_probability(lungseg_segmenter* segmenter, const void* pixels,
                                               size_t pixels_size, int32_t pixel_type,
                                               uint32_t width, uint32_t height, size_t row_stride,
                                               float* probability, size_t probability_size);

/*
 * Host-side clean-up of a mask in place (width * height bytes, dense, any non-zero value
 * is lung; mask_size bytes at mask): the same steps lungseg_segment() applies after the
 * graph, for masks obtained elsewhere (e.g. by thresholding lungseg_probability() at
 * another threshold). flags as for lungseg_segment(). Allocates its run lists per call.
 */
LUNGSEG_API lungseg_status lungseg_postprocess(uint8_t* mask, size_t mask_size, uint32_t width,
                                               uint32_t height, uint32_t flags);

/*
 * Stop every lungseg_segment()/lungseg_analyze()/lungseg_probability() call running on segmenter now; they
 * return LUNGSEG_CANCELLED. Callable from any thread (e.g. a watchdog for a deadline);
 * later calls are not affected. Harmless when nothing runs.
 */
LUNGSEG_API lungseg_status lungseg_cancel(lungseg_segmenter* segmenter);

/*
 * Bytes of workspace one call on a width x height image needs from lungseg (the float32
 * copy of the image, aligned): what lungseg_set_workspace() must be given for that size.
 * The backend runtime's own memory (ONNX Runtime's arena, LibTorch's tensors) is not part
 * of it: see "Memory" above.
 */
LUNGSEG_API lungseg_status lungseg_workspace_size(const lungseg_segmenter* segmenter, uint32_t width,
                                                  uint32_t height, size_t* bytes);

/*
 * Hand the segmenter a caller-owned workspace of size bytes (any alignment), used by every
 * later call instead of memory of lungseg's own; calls are then serialized on this
 * segmenter, and an image that needs more than size bytes is refused with
 * LUNGSEG_ERROR_BUFFER_TOO_SMALL (the message names both sizes). The buffer must stay
 * valid until lungseg_set_workspace(segmenter, NULL, 0) (back to lungseg's own) or
 * lungseg_destroy(). The workspaces lungseg allocated so far are freed here.
 */
LUNGSEG_API lungseg_status lungseg_set_workspace(lungseg_segmenter* segmenter, void* workspace,
                                                 size_t size);

/* The model's metadata as a JSON object text ("{}" when the artifact carries none). */
LUNGSEG_API lungseg_status lungseg_metadata_json(const lungseg_segmenter* segmenter,
                                                 const char** json);

/*
 * One top-level metadata value as text (strings unquoted; numbers, true/false as written;
 * objects and arrays as JSON text). LUNGSEG_ERROR_NOT_FOUND when absent. Keys written by
 * the lungseg exporter include "schema_version", "lungseg_version", "format",
 * "image_size", "threshold", "extent", "weights_sha256", "precision" and "model".
 */
LUNGSEG_API lungseg_status lungseg_metadata_value(const lungseg_segmenter* segmenter,
                                                  const char* key, const char** value);

/* The artifact's mask convention: "visible" or "full" ("visible" when the metadata has no
 * "extent"). */
LUNGSEG_API lungseg_status lungseg_model_extent(const lungseg_segmenter* segmenter,
                                                const char** extent);

/* "onnxruntime", "libtorch" or "tensorrt". */
LUNGSEG_API lungseg_status lungseg_backend_name(const lungseg_segmenter* segmenter,
                                                const char** name);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LUNGSEG_LUNGSEG_H */
