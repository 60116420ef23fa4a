// Host-side mask clean-up: the C++ twin of src/lungseg/postprocess.py (and of the flag
// rules of src/lungseg/quality.py, flags_of()).
//
// Both are pinned by the shared golden fixtures in cpp/tests/fixtures (checked by pytest
// and by ctest). The rules, step by step as in Python:
//
// clean_mask: label the 8-connected components of the non-zero pixels; keep the two
//   largest, the second only when it has at least MIN_COMPONENT_FRACTION (2%) of the
//   largest's pixels; fill holes (background not 4-connected to the image border).
// label_lungs: label the 8-connected components; with two or more, the two largest are
//   labelled by the column of their centroid: the one further left (or equal) is 1 (the
//   patient's right), the other 2; everything else 0. With exactly one component: if its
//   columns span the image's midline (c0 < W/2 < c1), it is split at the column of least
//   lung between its quarter points a = c0 + (c1-c0)/4 and b = c0 + 3(c1-c0)/4 (the first
//   such column): columns left of the split are 1, the rest 2; otherwise the component is
//   1 when its centroid's column is left of W/2, else 2.
//
// Ranking of components: by size, largest first; among equal sizes the component met
// first in raster order ranks first (numpy's argsort(-sizes, kind="stable")).
#ifndef LUNGSEG_SRC_POSTPROCESS_H
#define LUNGSEG_SRC_POSTPROCESS_H

#include <cstdint>
#include <vector>

namespace lungseg::detail {

inline constexpr double kMinComponentFraction = 0.02;

// The clean-up's work lists. Their sizes follow the number of runs of non-zero pixels
// (a few per row on a lung mask), not the pixel count; a scratch kept between calls
// keeps its capacity, so a later call on a similar mask allocates nothing.
struct PostprocessScratch {
    struct Segment {
        int32_t start, end, node;
    };
    std::vector<int32_t> row_begin, start, end, comp;
    std::vector<int64_t> size;
    std::vector<int32_t> kb, ks, ke, parent;
    std::vector<Segment> above, below;
    std::vector<int64_t> column;
};

// In place: any non-zero pixel is lung; the result is 0/1. height * width < 2^31.
void clean_mask(uint8_t* mask, int64_t height, int64_t width, PostprocessScratch& scratch);

// In place: any non-zero pixel is lung; the result is 0/1/2.
void label_lungs(uint8_t* mask, int64_t height, int64_t width, PostprocessScratch& scratch);

// The quality flags of lungseg.quality.flags_of() in Python (bits LUNGSEG_FLAG_*), from the
// graph's quality row (quality, dice_estimate, frontal_probability, inverted_probability)
// and 0/1/2 labels, with Python's arithmetic: float32 row values compared as double,
// pixel counts exact, the area share and the bounding box's aspect in double.
inline constexpr double kViewCutoff = 0.5;              // VIEW_CUTOFF
inline constexpr double kMinQuality = 0.90;             // MIN_QUALITY (the default min_quality)
inline constexpr double kOneLungRatio = 0.25;           // ONE_LUNG_RATIO
inline constexpr double kAreaRange[2] = {0.05, 0.70};   // AREA_RANGE
inline constexpr double kAspectRange[2] = {0.6, 2.6};   // BOX_ASPECT_RANGE

// What the flags need of the labels: pixels per label and the bounding box of the non-zero
// pixels (rows [row0, row1], columns [col0, col1], inclusive; meaningless when none).
struct LabelStats {
    int64_t count[3] = {0, 0, 0};  // labels 0, 1, 2
    int64_t other = 0;             // pixels of any other value
    int64_t row0 = 0, row1 = -1, col0 = 0, col1 = -1;
};
LabelStats label_stats(const uint8_t* labels, int64_t height, int64_t width);
uint32_t quality_flags(const float row[4], const LabelStats& stats, int64_t height, int64_t width,
                       double min_quality);

inline void clean_mask(uint8_t* mask, int64_t height, int64_t width) {
    PostprocessScratch scratch;
    clean_mask(mask, height, width, scratch);
}
inline void label_lungs(uint8_t* mask, int64_t height, int64_t width) {
    PostprocessScratch scratch;
    label_lungs(mask, height, width, scratch);
}

}  // namespace lungseg::detail

#endif  // LUNGSEG_SRC_POSTPROCESS_H
