/* Segments a synthetic image with the installed lungseg runtime: lungseg_consumer MODEL */
#include <stdio.h>
#include <stdlib.h>

#include <lungseg/lungseg.h>

int main(int argc, char** argv) {
    enum { W = 48, H = 32 };
    static unsigned short pixels[W * H];
    static unsigned char labels[W * H];
    lungseg_segmenter* seg = NULL;
    lungseg_options options;
    size_t right = 0, left = 0, i;
    int x, y;

    if (argc != 2) {
        fprintf(stderr, "usage: %s MODEL\n", argv[0]);
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
    if (lungseg_segment(seg, pixels, LUNGSEG_PIXEL_UINT16, W, H, 0, labels, sizeof labels, LUNGSEG_SEGMENT_LABELS) !=
        LUNGSEG_OK) {
        fprintf(stderr, "segment: %s\n", lungseg_last_error());
        lungseg_destroy(seg);
        return 1;
    }
    for (i = 0; i < sizeof labels; ++i) {
        right += labels[i] == 1;
        left += labels[i] == 2;
    }
    lungseg_destroy(seg);
    printf("lungseg %s: right lung %zu px, left lung %zu px\n", lungseg_version(), right, left);
    return right == 11 * 23 && left == 12 * 23 ? 0 : 1;
}
