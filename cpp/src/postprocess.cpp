// Host-side mask clean-up; see postprocess.h for the rules shared with Python.
#include "postprocess.h"

#include <algorithm>
#include <cstddef>
#include <vector>

namespace lungseg::detail {
namespace {

// 8-connected components of the non-zero pixels, numbered 1..n in raster order of their
// first pixel (the numbering scipy.ndimage.label gives).
struct Components {
    std::vector<int32_t> labels;  // per pixel: 0 background, else component number
    std::vector<int64_t> sizes;   // sizes[k - 1]: pixels of component k
};

Components label_components(const uint8_t* mask, int64_t height, int64_t width) {
    const int64_t n = height * width;
    Components c;
    c.labels.assign(static_cast<std::size_t>(n), 0);
    std::vector<int32_t> queue;
    for (int64_t start = 0; start < n; ++start) {
        if (mask[start] == 0 || c.labels[start] != 0) continue;
        const auto label = static_cast<int32_t>(c.sizes.size() + 1);
        int64_t size = 0;
        queue.clear();
        queue.push_back(static_cast<int32_t>(start));
        c.labels[start] = label;
        for (std::size_t head = 0; head < queue.size(); ++head) {
            const int64_t p = queue[head];
            ++size;
            const int64_t y = p / width, x = p % width;
            const int64_t y0 = std::max<int64_t>(y - 1, 0), y1 = std::min<int64_t>(y + 1, height - 1);
            const int64_t x0 = std::max<int64_t>(x - 1, 0), x1 = std::min<int64_t>(x + 1, width - 1);
            for (int64_t yy = y0; yy <= y1; ++yy) {
                for (int64_t xx = x0; xx <= x1; ++xx) {
                    const int64_t q = yy * width + xx;
                    if (mask[q] != 0 && c.labels[q] == 0) {
                        c.labels[q] = label;
                        queue.push_back(static_cast<int32_t>(q));
                    }
                }
            }
        }
        c.sizes.push_back(size);
    }
    return c;
}

// Labels (1-based) of the largest and second-largest components; 0 where absent.
// Ties go to the lower label (the component met first in raster order).
void two_largest(const std::vector<int64_t>& sizes, int32_t& first, int32_t& second) {
    first = second = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
        const auto label = static_cast<int32_t>(i + 1);
        if (first == 0 || sizes[i] > sizes[first - 1]) {
            second = first;
            first = label;
        } else if (second == 0 || sizes[i] > sizes[second - 1]) {
            second = label;
        }
    }
}

// The pixels in background (mask == 0) 4-connected to the image border are marked in
// `outside`; every other pixel becomes lung (scipy.ndimage.binary_fill_holes).
void fill_holes(uint8_t* mask, int64_t height, int64_t width, std::vector<int32_t>& work) {
    const int64_t n = height * width;
    std::vector<uint8_t> outside(static_cast<std::size_t>(n), 0);
    work.clear();
    auto seed = [&](int64_t p) {
        if (mask[p] == 0 && outside[p] == 0) {
            outside[p] = 1;
            work.push_back(static_cast<int32_t>(p));
        }
    };
    for (int64_t x = 0; x < width; ++x) {
        seed(x);
        seed((height - 1) * width + x);
    }
    for (int64_t y = 0; y < height; ++y) {
        seed(y * width);
        seed(y * width + width - 1);
    }
    while (!work.empty()) {
        const int64_t p = work.back();
        work.pop_back();
        const int64_t y = p / width, x = p % width;
        if (y > 0) seed(p - width);
        if (y + 1 < height) seed(p + width);
        if (x > 0) seed(p - 1);
        if (x + 1 < width) seed(p + 1);
    }
    for (int64_t p = 0; p < n; ++p) mask[p] = outside[p] ? 0 : 1;
}

}  // namespace

void clean_mask(uint8_t* mask, int64_t height, int64_t width) {
    const int64_t n = height * width;
    Components c = label_components(mask, height, width);
    if (c.sizes.empty()) {
        std::fill(mask, mask + n, uint8_t{0});
        return;
    }
    int32_t first = 0, second = 0;
    two_largest(c.sizes, first, second);
    // Python: sizes[i] >= MIN_COMPONENT_FRACTION * sizes[order[0]], in float64.
    const double limit = kMinComponentFraction * static_cast<double>(c.sizes[first - 1]);
    if (second != 0 && !(static_cast<double>(c.sizes[second - 1]) >= limit)) second = 0;
    for (int64_t p = 0; p < n; ++p) {
        const int32_t l = c.labels[p];
        mask[p] = (l != 0 && (l == first || l == second)) ? 1 : 0;
    }
    std::vector<int32_t> work;
    std::vector<int32_t>().swap(c.labels);  // free before the fill's own buffer
    fill_holes(mask, height, width, work);
}

void label_lungs(uint8_t* mask, int64_t height, int64_t width) {
    const int64_t n = height * width;
    Components c = label_components(mask, height, width);
    if (c.sizes.empty()) {
        std::fill(mask, mask + n, uint8_t{0});
        return;
    }
    int32_t first = 0, second = 0;
    two_largest(c.sizes, first, second);
    if (second != 0) {
        // Centroid columns as scipy.ndimage.center_of_mass computes them: an exact integer
        // sum of column indices divided by the pixel count, both as float64.
        int64_t sum_first = 0, sum_second = 0;
        for (int64_t p = 0; p < n; ++p) {
            if (c.labels[p] == first) sum_first += p % width;
            else if (c.labels[p] == second) sum_second += p % width;
        }
        const double cx_first = static_cast<double>(sum_first) / static_cast<double>(c.sizes[first - 1]);
        const double cx_second = static_cast<double>(sum_second) / static_cast<double>(c.sizes[second - 1]);
        const bool left_first = cx_first <= cx_second;
        const uint8_t value_first = left_first ? 1 : 2, value_second = left_first ? 2 : 1;
        for (int64_t p = 0; p < n; ++p) {
            const int32_t l = c.labels[p];
            mask[p] = l == first ? value_first : (l == second ? value_second : 0);
        }
        return;
    }
    // One component: every non-zero pixel belongs to it.
    int64_t c0 = width, c1 = -1, sum = 0;
    std::vector<int64_t> column(static_cast<std::size_t>(width), 0);
    for (int64_t p = 0; p < n; ++p) {
        if (c.labels[p] == 0) continue;
        const int64_t x = p % width;
        c0 = std::min(c0, x);
        c1 = std::max(c1, x);
        sum += x;
        ++column[x];
    }
    if (2 * c0 < width && width < 2 * c1) {  // c0 < W/2 < c1
        const int64_t a = c0 + (c1 - c0) / 4, b = c0 + 3 * (c1 - c0) / 4;
        int64_t split = a;
        for (int64_t x = a + 1; x <= b; ++x) {
            if (column[x] < column[split]) split = x;
        }
        for (int64_t p = 0; p < n; ++p) {
            if (c.labels[p] != 0) mask[p] = (p % width) < split ? 1 : 2;
            else mask[p] = 0;
        }
        return;
    }
    const double cx = static_cast<double>(sum) / static_cast<double>(c.sizes[0]);
    const uint8_t value = cx < static_cast<double>(width) / 2.0 ? 1 : 2;
    for (int64_t p = 0; p < n; ++p) mask[p] = c.labels[p] != 0 ? value : 0;
}

}  // namespace lungseg::detail
