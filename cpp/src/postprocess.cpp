// Host-side mask clean-up; see postprocess.h for the rules shared with Python.
//
// Speed on full-size X-rays (4020x4892): as in Python, the mask is read once, as runs of
// non-zero pixels per row (8 bytes at a time), and everything after that works on the runs:
// 8-connected components by union-find over the runs of consecutive rows, sizes, centroids
// and column profiles from the runs, holes as the background gaps between kept runs that are
// not 4-connected to the background outside (again union-find, over the gaps). The output is
// written only inside the bounding box of the mask's pixels (outside it every byte is already 0).
#include "postprocess.h"

#include "lungseg/lungseg.h"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

namespace lungseg::detail {
namespace {

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__GNUC__) || defined(__clang__))
#define LUNGSEG_WORD_SCAN 1
#else
#define LUNGSEG_WORD_SCAN 0
#endif

constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHighs = 0x8080808080808080ull;

// First x in [x, width) with row[x] != 0, else width.
inline int64_t next_nonzero(const uint8_t* row, int64_t x, int64_t width) {
#if LUNGSEG_WORD_SCAN
    for (; x + 8 <= width; x += 8) {
        uint64_t v;
        std::memcpy(&v, row + x, sizeof v);
        if (v != 0) return x + (__builtin_ctzll(v) >> 3);
    }
#endif
    while (x < width && row[x] == 0) ++x;
    return x;
}

// First x in [x, width) with row[x] == 0, else width.
inline int64_t next_zero(const uint8_t* row, int64_t x, int64_t width) {
#if LUNGSEG_WORD_SCAN
    for (; x + 8 <= width; x += 8) {
        uint64_t v;
        std::memcpy(&v, row + x, sizeof v);
        // The lowest set bit marks the lowest zero byte exactly (no borrow reaches below it).
        const uint64_t z = (v - kOnes) & ~v & kHighs;
        if (z != 0) return x + (__builtin_ctzll(z) >> 3);
    }
#endif
    while (x < width && row[x] != 0) ++x;
    return x;
}

inline int32_t find_root(std::vector<int32_t>& parent, int32_t x) {
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

// Roots are always the smallest index of their set (parent[i] <= i throughout).
inline void unite(std::vector<int32_t>& parent, int32_t a, int32_t b) {
    a = find_root(parent, a);
    b = find_root(parent, b);
    if (a < b) parent[b] = a;
    else if (b < a) parent[a] = b;
}

// Runs of non-zero pixels in raster order: row y holds runs row_begin[y] .. row_begin[y+1]-1,
// run i covering columns start[i] .. end[i] - 1. comp[i] is the component of run i: the index
// of its first run in raster order (so components compare in raster order of their first
// pixel, the numbering scipy.ndimage.label gives). size[k] is the pixel count of component k
// (valid where comp[k] == k).
struct Runs {
    explicit Runs(PostprocessScratch& s)
        : row_begin(s.row_begin), start(s.start), end(s.end), comp(s.comp), size(s.size) {}
    std::vector<int32_t>& row_begin;
    std::vector<int32_t>& start;
    std::vector<int32_t>& end;
    std::vector<int32_t>& comp;
    std::vector<int64_t>& size;
    int64_t y0 = 0, y1 = 0;  // rows holding runs: [y0, y1); y0 == y1 when the mask is empty
    int64_t x0 = 0, x1 = 0;  // columns holding runs: [x0, x1)
    int32_t first = -1, second = -1;  // the two largest components (ties: first in raster order)

    int32_t count() const { return static_cast<int32_t>(start.size()); }
};

void find_runs(const uint8_t* mask, int64_t height, int64_t width, Runs& r) {
    r.row_begin.assign(static_cast<std::size_t>(height) + 1, 0);
    r.start.clear();
    r.end.clear();
    r.y0 = height;
    r.y1 = 0;
    r.x0 = width;
    r.x1 = 0;
    for (int64_t y = 0; y < height; ++y) {
        const uint8_t* row = mask + y * width;
        r.row_begin[static_cast<std::size_t>(y)] = r.count();
        int64_t x = next_nonzero(row, 0, width);
        if (x >= width) continue;
        r.y0 = std::min(r.y0, y);
        r.y1 = y + 1;
        r.x0 = std::min(r.x0, x);
        while (x < width) {
            const int64_t e = next_zero(row, x + 1, width);
            r.start.push_back(static_cast<int32_t>(x));
            r.end.push_back(static_cast<int32_t>(e));
            x = e < width ? next_nonzero(row, e + 1, width) : width;
        }
        r.x1 = std::max<int64_t>(r.x1, r.end.back());
    }
    r.row_begin[static_cast<std::size_t>(height)] = r.count();
    if (r.y0 >= r.y1) r.y0 = r.y1 = 0;
}

// 8-connected components of the runs, their sizes and the two largest.
void label_runs(int64_t height, Runs& r) {
    const int32_t n = r.count();
    std::vector<int32_t>& parent = r.comp;
    parent.resize(static_cast<std::size_t>(n));
    for (int32_t i = 0; i < n; ++i) parent[i] = i;
    for (int64_t y = std::max<int64_t>(r.y0, 1); y < r.y1 && y < height; ++y) {
        int32_t i = r.row_begin[y - 1];
        const int32_t ie = r.row_begin[y];
        int32_t j = ie;
        const int32_t je = r.row_begin[y + 1];
        // Runs touch (8-connected) when the columns overlap or meet at a corner.
        while (i < ie && j < je) {
            if (r.end[i] < r.start[j]) {
                ++i;
            } else if (r.end[j] < r.start[i]) {
                ++j;
            } else {
                unite(parent, i, j);
                if (r.end[i] < r.end[j]) ++i;
                else ++j;
            }
        }
    }
    r.size.assign(static_cast<std::size_t>(n), 0);
    for (int32_t i = 0; i < n; ++i) {
        parent[i] = parent[parent[i]];  // parent[i] <= i: already a root's index
        r.size[parent[i]] += r.end[i] - r.start[i];
    }
    r.first = r.second = -1;
    for (int32_t k = 0; k < n; ++k) {  // roots in raster order; strict > keeps the earlier on ties
        if (parent[k] != k) continue;
        if (r.first < 0 || r.size[k] > r.size[r.first]) {
            r.second = r.first;
            r.first = k;
        } else if (r.second < 0 || r.size[k] > r.size[r.second]) {
            r.second = k;
        }
    }
}

// Zero the mask's bounding box (outside it every byte is 0 already).
void clear_box(uint8_t* mask, int64_t width, const Runs& r) {
    for (int64_t y = r.y0; y < r.y1; ++y) std::memset(mask + y * width + r.x0, 0, static_cast<std::size_t>(r.x1 - r.x0));
}

// Sum of the column indices of the pixels of component k (exact).
int64_t column_sum(const Runs& r, int32_t k) {
    int64_t sum = 0;
    for (int32_t i = k; i < r.count(); ++i) {
        if (r.comp[i] != k) continue;
        const int64_t s = r.start[i], e = r.end[i];
        sum += (s + e - 1) * (e - s) / 2;
    }
    return sum;
}

}  // namespace

void clean_mask(uint8_t* mask, int64_t height, int64_t width, PostprocessScratch& scratch) {
    Runs r(scratch);
    find_runs(mask, height, width, r);
    if (r.count() == 0) return;  // all zero already
    label_runs(height, r);
    int32_t first = r.first, second = r.second;
    // Python: sizes[i] >= MIN_COMPONENT_FRACTION * sizes[order[0]], in float64.
    const double limit = kMinComponentFraction * static_cast<double>(r.size[first]);
    if (second >= 0 && !(static_cast<double>(r.size[second]) >= limit)) second = -1;

    // Kept runs, compacted, per row of the box [y0, y1).
    const int64_t y0 = r.y0, y1 = r.y1;
    std::vector<int32_t>& kb = scratch.kb;
    std::vector<int32_t>& ks = scratch.ks;
    std::vector<int32_t>& ke = scratch.ke;
    kb.assign(static_cast<std::size_t>(y1 - y0) + 1, 0);
    ks.clear();
    ke.clear();
    int64_t ky0 = y1, ky1 = y0;
    for (int64_t y = y0; y < y1; ++y) {
        kb[y - y0] = static_cast<int32_t>(ks.size());
        for (int32_t i = r.row_begin[y]; i < r.row_begin[y + 1]; ++i) {
            const int32_t c = r.comp[i];
            if (c == first || c == second) {
                ks.push_back(r.start[i]);
                ke.push_back(r.end[i]);
            }
        }
        if (static_cast<int32_t>(ks.size()) > kb[y - y0]) {
            ky0 = std::min(ky0, y);
            ky1 = y + 1;
        }
    }
    kb[y1 - y0] = static_cast<int32_t>(ks.size());
    const auto kbegin = [&](int64_t y) { return kb[y - y0]; };

    // Holes: gap g (between kept runs g and g + 1 of a row) is node g + 1; node 0 is the
    // background outside (everything beyond the rows' first and last kept runs, the rows
    // above and below the kept box). Background segments of consecutive rows 4-connect
    // where their columns overlap.
    const int32_t nk = static_cast<int32_t>(ks.size());
    std::vector<int32_t>& parent = scratch.parent;
    parent.resize(static_cast<std::size_t>(nk) + 1);
    for (int32_t i = 0; i <= nk; ++i) parent[i] = i;
    using Segment = PostprocessScratch::Segment;
    std::vector<Segment>& above = scratch.above;
    std::vector<Segment>& below = scratch.below;
    const auto segments = [&](int64_t y, std::vector<Segment>& out) {
        out.clear();
        const int32_t b = kbegin(y), e = kbegin(y + 1);
        if (b == e) {
            out.push_back({0, static_cast<int32_t>(width), 0});
            return;
        }
        out.push_back({0, ks[b], 0});
        for (int32_t k = b; k + 1 < e; ++k) out.push_back({ke[k], ks[k + 1], k + 1});
        out.push_back({ke[e - 1], static_cast<int32_t>(width), 0});
    };
    // The first and last kept rows border all-background rows (or the image's edge).
    for (int64_t y : {ky0, ky1 - 1}) {
        for (int32_t k = kbegin(y); k + 1 < kbegin(y + 1); ++k) parent[k + 1] = 0;
    }
    segments(ky0, above);
    for (int64_t y = ky0 + 1; y < ky1; ++y) {
        segments(y, below);
        std::size_t i = 0, j = 0;
        while (i < above.size() && j < below.size()) {
            const Segment &a = above[i], &b = below[j];
            if (a.end <= b.start) {
                ++i;
            } else if (b.end <= a.start) {
                ++j;
            } else {
                if (a.node != b.node) unite(parent, a.node, b.node);
                if (a.end < b.end) ++i;
                else ++j;
            }
        }
        above.swap(below);
    }

    clear_box(mask, width, r);
    for (int64_t y = ky0; y < ky1; ++y) {
        uint8_t* row = mask + y * width;
        const int32_t b = kbegin(y), e = kbegin(y + 1);
        int32_t k = b;
        while (k < e) {
            const int32_t s = ks[k];
            // Extend over the following gaps that are holes.
            while (k + 1 < e && find_root(parent, k + 1) != 0) ++k;
            std::memset(row + s, 1, static_cast<std::size_t>(ke[k] - s));
            ++k;
        }
    }
}

void label_lungs(uint8_t* mask, int64_t height, int64_t width, PostprocessScratch& scratch) {
    Runs r(scratch);
    find_runs(mask, height, width, r);
    if (r.count() == 0) return;  // all zero already
    label_runs(height, r);
    const int32_t first = r.first, second = r.second;
    if (second >= 0) {
        // Centroid columns as Python computes them: an exact integer sum of column indices
        // divided by the pixel count, both as float64.
        const double cx_first = static_cast<double>(column_sum(r, first)) / static_cast<double>(r.size[first]);
        const double cx_second = static_cast<double>(column_sum(r, second)) / static_cast<double>(r.size[second]);
        const bool left_first = cx_first <= cx_second;
        const uint8_t value_first = left_first ? 1 : 2, value_second = left_first ? 2 : 1;
        clear_box(mask, width, r);
        for (int64_t y = r.y0; y < r.y1; ++y) {
            uint8_t* row = mask + y * width;
            for (int32_t i = r.row_begin[y]; i < r.row_begin[y + 1]; ++i) {
                const int32_t c = r.comp[i];
                if (c == first || c == second)
                    std::memset(row + r.start[i], c == first ? value_first : value_second,
                                static_cast<std::size_t>(r.end[i] - r.start[i]));
            }
        }
        return;
    }
    // One component: every run belongs to it.
    const int64_t c0 = r.x0, c1 = r.x1 - 1;
    if (2 * c0 < width && width < 2 * c1) {  // c0 < W/2 < c1
        const int64_t a = c0 + (c1 - c0) / 4, b = c0 + 3 * (c1 - c0) / 4;
        // Pixels per column from the runs: +1 at each start, -1 at each end.
        std::vector<int64_t>& column = scratch.column;
        column.assign(static_cast<std::size_t>(c1 - c0 + 2), 0);
        for (int32_t i = 0; i < r.count(); ++i) {
            ++column[r.start[i] - c0];
            --column[r.end[i] - c0];
        }
        for (std::size_t x = 1; x < column.size(); ++x) column[x] += column[x - 1];
        int64_t split = a;
        for (int64_t x = a + 1; x <= b; ++x) {
            if (column[x - c0] < column[split - c0]) split = x;
        }
        clear_box(mask, width, r);
        for (int64_t y = r.y0; y < r.y1; ++y) {
            uint8_t* row = mask + y * width;
            for (int32_t i = r.row_begin[y]; i < r.row_begin[y + 1]; ++i) {
                const int64_t s = r.start[i], e = r.end[i];
                const int64_t m = std::clamp(split, s, e);
                if (m > s) std::memset(row + s, 1, static_cast<std::size_t>(m - s));
                if (e > m) std::memset(row + m, 2, static_cast<std::size_t>(e - m));
            }
        }
        return;
    }
    const double cx = static_cast<double>(column_sum(r, first)) / static_cast<double>(r.size[first]);
    const uint8_t value = cx < static_cast<double>(width) / 2.0 ? 1 : 2;
    for (int64_t y = r.y0; y < r.y1; ++y) {
        uint8_t* row = mask + y * width;
        for (int32_t i = r.row_begin[y]; i < r.row_begin[y + 1]; ++i)
            std::memset(row + r.start[i], value, static_cast<std::size_t>(r.end[i] - r.start[i]));
    }
}

LabelStats label_stats(const uint8_t* labels, int64_t height, int64_t width) {
    LabelStats s;
    s.row0 = height;
    s.col0 = width;
    for (int64_t y = 0; y < height; ++y) {
        const uint8_t* row = labels + y * width;
        const int64_t first = next_nonzero(row, 0, width);
        if (first >= width) {
            s.count[0] += width;
            continue;
        }
        int64_t last = width - 1;
        while (row[last] == 0) --last;
        int64_t ones = 0, twos = 0, zeros = first + (width - 1 - last);
        for (int64_t x = first; x <= last; ++x) {  // branch-free: the compiler vectorizes it
            const uint8_t v = row[x];
            ones += v == 1;
            twos += v == 2;
            zeros += v == 0;
        }
        s.count[0] += zeros;
        s.count[1] += ones;
        s.count[2] += twos;
        s.other += width - zeros - ones - twos;
        s.row0 = std::min(s.row0, y);
        s.row1 = y;
        s.col0 = std::min(s.col0, first);
        s.col1 = std::max(s.col1, last);
    }
    if (s.row1 < 0) s.row0 = s.col0 = 0;
    return s;
}

uint32_t quality_flags(const float row[4], const LabelStats& s, int64_t height, int64_t width, double min_quality) {
    const double quality = row[0], frontal = row[2], inverted = row[3];  // float32 -> double, as Python's float()
    uint32_t flags = 0;
    if (inverted >= kViewCutoff) flags |= LUNGSEG_FLAG_INVERTED;
    else if (frontal < kViewCutoff) flags |= LUNGSEG_FLAG_NOT_FRONTAL_CHEST;  // NaN: neither
    // counts.min() < ONE_LUNG_RATIO * counts.max() or counts.max() == 0 (int64 vs float64)
    const int64_t small = std::min(s.count[1], s.count[2]), large = std::max(s.count[1], s.count[2]);
    if (static_cast<double>(small) < kOneLungRatio * static_cast<double>(large) || large == 0)
        flags |= LUNGSEG_FLAG_ONE_LUNG;
    // _implausible(): area / float(h * w) outside AREA_RANGE, else the box's aspect
    const int64_t area = s.count[1] + s.count[2];
    const double share = static_cast<double>(area) / static_cast<double>(height * width);
    bool implausible = !(kAreaRange[0] <= share && share <= kAreaRange[1]);
    if (!implausible) {
        const double aspect = static_cast<double>(s.col1 - s.col0 + 1) / static_cast<double>(s.row1 - s.row0 + 1);
        implausible = !(kAspectRange[0] <= aspect && aspect <= kAspectRange[1]);
    }
    if (implausible) flags |= LUNGSEG_FLAG_IMPLAUSIBLE_SHAPE;
    if (!(quality >= min_quality)) flags |= LUNGSEG_FLAG_LOW_CONFIDENCE;  // NaN: not confident either
    return flags;
}

}  // namespace lungseg::detail
