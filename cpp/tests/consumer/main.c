/* A firmware-style C program using the installed lungseg package (C only, C99):
 *
 *   lungseg_consumer MODEL.onnx [TORCHSCRIPT_PROBE]
 *
 * Segments a synthetic 16-bit image with two bright "lungs" and checks the labels, then
 * checks (on Linux) that the process never mapped LibTorch: an ONNX-only product must not
 * load torch. With TORCHSCRIPT_PROBE, it then opens that file (a TorchScript-like archive)
 * and prints "probe: <status> <message>": the LibTorch backend is loaded only then, from
 * liblungseg_libtorch.so beside the library, and reports why when it cannot be loaded.
 * Exit status 0 when the labels are right and torch was not mapped before the probe.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lungseg/lungseg.h>

/* 1 when a mapped file's name contains `needle` (Linux /proc/self/maps), 0 when not or unknown. */
static int mapped(const char* needle) {
    char line[4096];
    int found = 0;
    FILE* f = fopen("/proc/self/maps", "r");
    if (f == NULL) return 0;
    while (!found && fgets(line, sizeof line, f) != NULL) found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

int main(int argc, char** argv) {
    enum { W = 48, H = 32 };
    static unsigned short pixels[W * H];
    static unsigned char labels[W * H];
    lungseg_segmenter* seg = NULL;
    lungseg_options options;
    lungseg_quality quality;
    lungseg_status status;
    size_t right = 0, left = 0, i;
    int x, y;

    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s MODEL [TORCHSCRIPT_PROBE]\n", argv[0]);
        return 2;
    }
    for (y = 0; y < H; ++y)
        for (x = 0; x < W; ++x)
            pixels[y * W + x] = (unsigned short)(((x > 6 && x < 18) || (x > 29 && x < 42)) && y > 4 && y < 28 ? 4000 : 90);
    lungseg_options_init(&options);
    options.num_threads = 1;
    if (lungseg_create(argv[1], &options, &seg) != LUNGSEG_OK) {
        fprintf(stderr, "create: %s\n", lungseg_last_error());
        return 1;
    }
    status = lungseg_segment(seg, pixels, sizeof pixels, LUNGSEG_PIXEL_UINT16, W, H, 0, labels, sizeof labels,
                             LUNGSEG_SEGMENT_LABELS);
    if (status != LUNGSEG_OK) {
        fprintf(stderr, "segment: %s\n", lungseg_last_error());
        lungseg_destroy(seg);
        return 1;
    }
    /* ABI 3: the same mask with its quality row and flags; the test model has no quality
     * output (as a schema 1 artifact), so the row is NaN and only low_confidence is raised. */
    lungseg_quality_init(&quality);
    status = lungseg_analyze(seg, pixels, sizeof pixels, LUNGSEG_PIXEL_UINT16, W, H, 0, labels, sizeof labels,
                             LUNGSEG_SEGMENT_LABELS, 0.0f, &quality);
    lungseg_destroy(seg);
    if (status != LUNGSEG_OK) {
        fprintf(stderr, "analyze: %s\n", lungseg_last_error());
        return 1;
    }
    printf("analyze: quality %f, flags 0x%x (%s)\n", (double)quality.quality, (unsigned)quality.flags,
           quality.flags == LUNGSEG_FLAG_LOW_CONFIDENCE ? lungseg_flag_name(quality.flags) : "?");
    if (quality.flags != LUNGSEG_FLAG_LOW_CONFIDENCE || quality.quality == quality.quality) {
        fprintf(stderr, "analyze: expected NaN quality and the low_confidence flag alone\n");
        return 1;
    }
    for (i = 0; i < sizeof labels; ++i) {
        right += labels[i] == 1;
        left += labels[i] == 2;
    }
    printf("lungseg %s: right lung %lu px, left lung %lu px\n", lungseg_version(), (unsigned long)right,
           (unsigned long)left);
    if (right != 11 * 23 || left != 12 * 23) {
        fprintf(stderr, "wrong labels: expected 253 and 276 px\n");
        return 1;
    }
    if (mapped("libc10") || mapped("libtorch") || mapped("liblungseg_libtorch")) {
        fprintf(stderr, "LibTorch was loaded by an ONNX-only program\n");
        return 1;
    }
    printf("torch mapped: no\n");

    if (argc == 3) {
        status = lungseg_create(argv[2], &options, &seg);
        printf("probe: %s %s\n", lungseg_status_string(status), status == LUNGSEG_OK ? "" : lungseg_last_error());
        printf("torch mapped after the probe: %s\n", mapped("libc10") ? "yes" : "no");
        lungseg_destroy(seg);
    }
    return 0;
}
