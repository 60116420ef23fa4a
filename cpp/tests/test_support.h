// Minimal test helpers for the C++ tests (no test framework dependency).
#ifndef LUNGSEG_TESTS_TEST_SUPPORT_H
#define LUNGSEG_TESTS_TEST_SUPPORT_H

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace lungseg_test {

inline int& failures() {
    static int n = 0;
    return n;
}

#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            ++lungseg_test::failures();                                                  \
        }                                                                                \
    } while (0)

#define CHECK_MSG(cond, ...)                                                     \
    do {                                                                         \
        if (!(cond)) {                                                           \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            std::fprintf(stderr, __VA_ARGS__);                                   \
            std::fprintf(stderr, "\n");                                          \
            ++lungseg_test::failures();                                          \
        }                                                                        \
    } while (0)

inline int finish(const char* name) {
    if (failures() == 0) {
        std::printf("%s: all checks passed\n", name);
        return 0;
    }
    std::printf("%s: %d check(s) failed\n", name, failures());
    return 1;
}

inline std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + path);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + path);
}

// One record of cpp/tests/fixtures/postprocess_golden.txt (format: see make_postprocess_fixtures.py).
struct GoldenCase {
    std::string name;
    uint32_t height = 0, width = 0;
    std::vector<uint8_t> input, clean, labels, clean_labels;
};

inline std::vector<uint8_t> unrle(const std::string& text, std::size_t count) {
    std::vector<uint8_t> out;
    out.reserve(count);
    std::istringstream in(text);
    std::string token;
    while (in >> token) {
        const std::size_t x = token.find('x');
        if (x == std::string::npos) throw std::runtime_error("bad run '" + token + "'");
        const unsigned long value = std::stoul(token.substr(0, x));
        const unsigned long n = std::stoul(token.substr(x + 1));
        out.insert(out.end(), n, static_cast<uint8_t>(value));
    }
    if (out.size() != count) throw std::runtime_error("run lengths add up to " + std::to_string(out.size()));
    return out;
}

inline std::vector<GoldenCase> read_golden(const std::string& path) {
    std::istringstream in(read_text(path));
    std::vector<GoldenCase> cases;
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream head(line);
        std::string word;
        GoldenCase c;
        head >> word >> c.name >> c.height >> c.width;
        if (word != "case") throw std::runtime_error("expected 'case', got: " + line.substr(0, 40));
        const std::size_t n = static_cast<std::size_t>(c.height) * c.width;
        for (auto* field : {&c.input, &c.clean, &c.labels, &c.clean_labels}) {
            if (!std::getline(in, line)) throw std::runtime_error("truncated case " + c.name);
            const std::size_t sp = line.find(' ');
            *field = unrle(sp == std::string::npos ? "" : line.substr(sp + 1), n);
        }
        cases.push_back(std::move(c));
    }
    return cases;
}

// Binary PGM (P5, 8-bit), as make_artifacts.py writes the Python reference masks.
inline std::vector<uint8_t> read_pgm(const std::string& path, uint32_t& width, uint32_t& height) {
    const std::string data = read_text(path);
    std::istringstream in(data);
    std::string magic;
    unsigned maxval = 0;
    in >> magic >> width >> height >> maxval;
    if (magic != "P5" || maxval != 255) throw std::runtime_error(path + ": not an 8-bit binary PGM");
    in.get();
    const auto offset = static_cast<std::size_t>(in.tellg());
    const std::size_t n = static_cast<std::size_t>(width) * height;
    if (data.size() < offset + n) throw std::runtime_error(path + ": truncated PGM");
    return std::vector<uint8_t>(data.begin() + static_cast<std::ptrdiff_t>(offset),
                                data.begin() + static_cast<std::ptrdiff_t>(offset + n));
}

}  // namespace lungseg_test

#endif  // LUNGSEG_TESTS_TEST_SUPPORT_H
