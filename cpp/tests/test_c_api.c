/* lungseg.h is plain C: this file is compiled as C99 with pedantic warnings as errors. */
#include <stdio.h>
#include <string.h>

#include "lungseg/lungseg.h"

int main(void) {
    lungseg_options options;
    lungseg_quality quality;
    lungseg_segmenter* seg = NULL;
    unsigned char mask[8] = {1, 0, 0, 1, 1, 0, 0, 1}; /* 4x2: two separate columns */
    int failures = 0;

    lungseg_options_init(&options);
    options.num_threads = 1;
    if (lungseg_create("/nonexistent/model.onnx", &options, &seg) != LUNGSEG_ERROR_IO || seg != NULL) ++failures;
    if (strstr(lungseg_last_error(), "/nonexistent/model.onnx") == NULL) ++failures;
    if (lungseg_postprocess(mask, sizeof mask, 4, 2, LUNGSEG_SEGMENT_LABELS) != LUNGSEG_OK) ++failures;
    if (!(mask[0] == 1 && mask[4] == 1 && mask[3] == 2 && mask[7] == 2)) ++failures; /* image left = 1 */
    /* ABI 3 from C: flags of those labels with a confident frontal row (half the image is
     * lung, box 4 x 2: aspect 2; lungs 2 and 2) are none; NaN quality is low_confidence. */
    lungseg_quality_init(&quality);
    quality.quality = 0.95f;
    quality.dice_estimate = 0.96f;
    quality.frontal_probability = 0.99f;
    quality.inverted_probability = 0.01f;
    if (lungseg_quality_flags(mask, sizeof mask, 4, 2, 0.0f, &quality) != LUNGSEG_OK || quality.flags != 0) ++failures;
    lungseg_quality_init(&quality);
    if (lungseg_quality_flags(mask, sizeof mask, 4, 2, LUNGSEG_DEFAULT_MIN_QUALITY, &quality) != LUNGSEG_OK ||
        quality.flags != LUNGSEG_FLAG_LOW_CONFIDENCE || strcmp(lungseg_flag_name(quality.flags), "low_confidence") != 0)
        ++failures;
    lungseg_destroy(seg);
    printf("test_c_api: %s (lungseg %s)\n", failures ? "FAILED" : "all checks passed", lungseg_version());
    return failures ? 1 : 0;
}
