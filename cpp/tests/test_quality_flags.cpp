// The C++ quality flags (through the C ABI's lungseg_quality_flags, the computation
// lungseg_analyze runs) equal Python's lungseg.quality.flags_of on the golden fixtures,
// bit for bit: every flag, NaN rows, and the values at and next to each cut-off.
//
//   test_quality_flags cpp/tests/fixtures/quality_flags_golden.txt
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "lungseg/lungseg.h"
#include "test_support.h"

namespace {

struct QualityCase {
    std::string name, min_quality, names;
    uint32_t height = 0, width = 0, bits = 0;
    float row[4] = {0, 0, 0, 0};
    std::vector<uint8_t> labels;
};

// Format: see make_postprocess_fixtures.py (quality flags).
std::vector<QualityCase> read_cases(const std::string& path) {
    std::istringstream in(lungseg_test::read_text(path));
    std::vector<QualityCase> cases;
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream head(line);
        std::string word, values[4];
        QualityCase c;
        head >> word >> c.name >> c.height >> c.width >> c.min_quality >> values[0] >> values[1] >> values[2] >>
            values[3] >> c.bits >> c.names;
        if (word != "case" || !head) throw std::runtime_error("bad case line: " + line.substr(0, 60));
        for (int k = 0; k < 4; ++k) c.row[k] = static_cast<float>(std::strtod(values[k].c_str(), nullptr));  // "nan" too
        if (!std::getline(in, line) || line.rfind("labels", 0) != 0) throw std::runtime_error("truncated case " + c.name);
        const std::size_t sp = line.find(' ');
        c.labels = lungseg_test::unrle(sp == std::string::npos ? "" : line.substr(sp + 1),
                                       static_cast<std::size_t>(c.height) * c.width);
        cases.push_back(std::move(c));
    }
    return cases;
}

std::string names_of(uint32_t bits) {
    std::string s;
    for (uint32_t b = 1; lungseg_flag_name(b) != nullptr; b <<= 1)
        if (bits & b) s += (s.empty() ? "" : ",") + std::string(lungseg_flag_name(b));
    return s.empty() ? "-" : s;
}

void check_case(const QualityCase& c, int& flagged) {
    lungseg_quality q;
    lungseg_quality_init(&q);
    q.quality = c.row[0];
    q.dice_estimate = c.row[1];
    q.frontal_probability = c.row[2];
    q.inverted_probability = c.row[3];
    q.flags = 0xDEADu;  // overwritten
    const float min_quality = c.min_quality == "default" ? 0.0f : static_cast<float>(std::strtod(c.min_quality.c_str(), nullptr));
    const lungseg_status st = lungseg_quality_flags(c.labels.data(), c.labels.size(), c.width, c.height, min_quality, &q);
    CHECK_MSG(st == LUNGSEG_OK, "%s: %s", c.name.c_str(), lungseg_last_error());
    CHECK_MSG(q.flags == c.bits, "%s: flags %u (%s), Python %u (%s)", c.name.c_str(), q.flags, names_of(q.flags).c_str(),
              c.bits, c.names.c_str());
    CHECK_MSG(names_of(q.flags) == c.names || q.flags != c.bits, "%s: names %s vs %s", c.name.c_str(),
              names_of(q.flags).c_str(), c.names.c_str());
    // The row is read, never written.
    CHECK(std::memcmp(&q.quality, &c.row[0], sizeof(float)) == 0 || (std::isnan(q.quality) && std::isnan(c.row[0])));
    if (c.min_quality == "default") {  // LUNGSEG_DEFAULT_MIN_QUALITY given explicitly is the default
        lungseg_quality e = q;
        CHECK(lungseg_quality_flags(c.labels.data(), c.labels.size(), c.width, c.height, LUNGSEG_DEFAULT_MIN_QUALITY, &e) ==
              LUNGSEG_OK);
        CHECK_MSG(e.flags == c.bits, "%s: LUNGSEG_DEFAULT_MIN_QUALITY gives %u, 0 gives %u", c.name.c_str(), e.flags, c.bits);
        CHECK(lungseg_quality_flags(c.labels.data(), c.labels.size(), c.width, c.height,
                                    std::numeric_limits<float>::quiet_NaN(), &e) == LUNGSEG_OK &&
              e.flags == c.bits);
        CHECK(lungseg_quality_flags(c.labels.data(), c.labels.size(), c.width, c.height, -1.0f, &e) == LUNGSEG_OK &&
              e.flags == c.bits);
    }
    flagged += c.bits != 0;
}

void check_bad_arguments() {
    std::vector<uint8_t> labels(12, 0);
    labels[1] = 1;
    labels[10] = 2;
    lungseg_quality q;
    lungseg_quality_init(&q);
    CHECK(std::isnan(q.quality) && std::isnan(q.dice_estimate) && std::isnan(q.frontal_probability) &&
          std::isnan(q.inverted_probability) && q.flags == 0 && q.struct_size == sizeof q);
    lungseg_quality_init(nullptr);
    CHECK(lungseg_quality_flags(nullptr, 12, 4, 3, 0, &q) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    CHECK(std::strstr(lungseg_last_error(), "labels is NULL") != nullptr);
    CHECK(lungseg_quality_flags(labels.data(), 12, 4, 3, 0, nullptr) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    CHECK(std::strstr(lungseg_last_error(), "quality is NULL") != nullptr);
    CHECK(lungseg_quality_flags(labels.data(), 12, 0, 3, 0, &q) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    CHECK(lungseg_quality_flags(labels.data(), 11, 4, 3, 0, &q) == LUNGSEG_ERROR_BUFFER_TOO_SMALL);
    CHECK(std::strstr(lungseg_last_error(), "labels_size 11 bytes is below width * height = 12") != nullptr);
    CHECK(lungseg_quality_flags(labels.data(), 12, 0xFFFFFFFFu, 0xFFFFFFFFu, 0, &q) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    q.struct_size = sizeof q - 4;
    q.flags = 77;
    CHECK(lungseg_quality_flags(labels.data(), 12, 4, 3, 0, &q) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    CHECK(std::strstr(lungseg_last_error(), "lungseg_quality_init") != nullptr && q.flags == 77);  // untouched
    q.struct_size = 5000;
    CHECK(lungseg_quality_flags(labels.data(), 12, 4, 3, 0, &q) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    q.struct_size = sizeof q;
    labels[5] = 255;  // a 0/255 mask is not labels
    CHECK(lungseg_quality_flags(labels.data(), 12, 4, 3, 0, &q) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    CHECK(std::strstr(lungseg_last_error(), "1 pixels of labels are not 0, 1 or 2") != nullptr);
    labels[5] = 0;
    CHECK(lungseg_quality_flags(labels.data(), 12, 4, 3, 0, &q) == LUNGSEG_OK);
    CHECK(std::string(lungseg_last_error()).empty());
    CHECK((q.flags & LUNGSEG_FLAG_LOW_CONFIDENCE) != 0);  // NaN quality from lungseg_quality_init
    // Flag names: Python's FLAGS in bit order, NULL past the last.
    const char* expected[] = {"not_frontal_chest", "inverted", "one_lung", "implausible_shape", "low_confidence"};
    const uint32_t bits[] = {LUNGSEG_FLAG_NOT_FRONTAL_CHEST, LUNGSEG_FLAG_INVERTED, LUNGSEG_FLAG_ONE_LUNG,
                             LUNGSEG_FLAG_IMPLAUSIBLE_SHAPE, LUNGSEG_FLAG_LOW_CONFIDENCE};
    for (int k = 0; k < 5; ++k) {
        CHECK(bits[k] == (1u << k));
        CHECK(lungseg_flag_name(1u << k) != nullptr && std::string(lungseg_flag_name(1u << k)) == expected[k]);
    }
    CHECK(lungseg_flag_name(0) == nullptr && lungseg_flag_name(32) == nullptr && lungseg_flag_name(3) == nullptr);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: test_quality_flags FIXTURES\n");
        return 2;
    }
    const std::vector<QualityCase> cases = read_cases(argv[1]);
    CHECK(cases.size() >= 50);
    int flagged = 0;
    for (const auto& c : cases) check_case(c, flagged);
    std::printf("quality flags golden: %zu cases (%d with flags) compared with Python's flags_of\n", cases.size(), flagged);
    check_bad_arguments();
    return lungseg_test::finish("test_quality_flags");
}
