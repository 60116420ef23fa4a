// The C++ host-side postprocessing (through the C ABI's lungseg_postprocess) reproduces the
// golden fixtures that Python's lungseg.postprocess produced, pixel for pixel.
//
//   test_postprocess cpp/tests/fixtures/postprocess_golden.txt
#include <cstdio>
#include <string>
#include <vector>

#include "lungseg/lungseg.h"
#include "test_support.h"

using lungseg_test::GoldenCase;

namespace {

std::size_t count_diff(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
    std::size_t n = 0;
    for (std::size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
    return n;
}

void check_case(const GoldenCase& c) {
    struct Step {
        const char* name;
        uint32_t flags;
        const std::vector<uint8_t>* expected;
    };
    const Step steps[] = {
        {"clean", 0, &c.clean},
        {"labels", LUNGSEG_SEGMENT_RAW | LUNGSEG_SEGMENT_LABELS, &c.labels},
        {"clean_labels", LUNGSEG_SEGMENT_LABELS, &c.clean_labels},
        {"raw (unchanged)", LUNGSEG_SEGMENT_RAW, &c.input},
    };
    for (const Step& s : steps) {
        std::vector<uint8_t> mask = c.input;
        const lungseg_status st = lungseg_postprocess(mask.data(), mask.size(), c.width, c.height, s.flags);
        CHECK_MSG(st == LUNGSEG_OK, "%s %s: %s", c.name.c_str(), s.name, lungseg_last_error());
        const std::size_t diff = count_diff(mask, *s.expected);
        CHECK_MSG(diff == 0, "%s (%ux%u) %s: %zu pixels differ from Python", c.name.c_str(), c.width, c.height, s.name,
                  diff);
    }
}

// The tie rule the C++ side documents (Python's argsort leaves it to the CPU's sort): of
// equal-sized components, the one met first in raster order ranks first.
void check_tie_rule() {
    // Three 2-pixel components; clean keeps the first two in raster order.
    std::vector<uint8_t> m = {1, 1, 0, 1, 1, 0, 1, 1};
    CHECK(lungseg_postprocess(m.data(), m.size(), 8, 1, 0) == LUNGSEG_OK);
    const std::vector<uint8_t> expected = {1, 1, 0, 1, 1, 0, 0, 0};
    CHECK(m == expected);
    // Equal sizes and equal centroid columns: the first (upper) one is labelled 1.
    std::vector<uint8_t> s = {1, 0, 0, 1};  // 4x1 column: two single pixels
    CHECK(lungseg_postprocess(s.data(), s.size(), 1, 4, LUNGSEG_SEGMENT_LABELS | LUNGSEG_SEGMENT_RAW) == LUNGSEG_OK);
    CHECK(s[0] == 1 && s[3] == 2);
}

void check_bad_arguments() {
    std::vector<uint8_t> m(4, 1);
    CHECK(lungseg_postprocess(nullptr, 4, 2, 2, 0) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(lungseg_last_error()).find("mask is NULL") != std::string::npos);
    CHECK(lungseg_postprocess(m.data(), m.size(), 0, 2, 0) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    CHECK(lungseg_postprocess(m.data(), m.size(), 2, 0, 0) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    CHECK(lungseg_postprocess(m.data(), m.size(), 2, 2, 0x80) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    CHECK(std::string(lungseg_last_error()).find("unknown flags") != std::string::npos);
    CHECK(lungseg_postprocess(m.data(), m.size(), 0xFFFFFFFFu, 0xFFFFFFFFu, 0) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    // A mask buffer shorter than width * height is refused before it is touched.
    CHECK(lungseg_postprocess(m.data(), m.size(), 3, 2, 0) == LUNGSEG_ERROR_BUFFER_TOO_SMALL);
    CHECK(std::string(lungseg_last_error()).find("mask_size 4 bytes is below width * height = 6") != std::string::npos);
    CHECK(lungseg_postprocess(m.data(), m.size(), 2, 2, 0) == LUNGSEG_OK);
    CHECK(std::string(lungseg_last_error()).empty());
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: test_postprocess FIXTURES\n");
        return 2;
    }
    const std::vector<GoldenCase> cases = lungseg_test::read_golden(argv[1]);
    CHECK(cases.size() >= 30);
    for (const auto& c : cases) check_case(c);
    std::printf("postprocess golden: %zu cases x 4 flag sets compared with Python\n", cases.size());
    check_tie_rule();
    check_bad_arguments();
    return lungseg_test::finish("test_postprocess");
}
