// Golden parity: the C++ runtime's masks equal the Python package's on the exported model.
//
//   test_parity --backend onnxruntime|libtorch --group synthetic|real MANIFEST
//   test_parity --compare-png OUTPUT.png EXPECTED.pgm
//
// MANIFEST is written by make_artifacts.py. For each case the input PNG (8 or 16 bit) is
// read with stb, segmented through the C ABI three ways (graph mask, cleaned mask, 0/1/2
// labels) and compared with lungseg.Segmenter's output; the probability is compared too.
// Prints, per case, the pixels that differ and the Dice score; fails below Dice 0.999.
// lungseg_analyze (cleaned, and RAW): its quality row must be within kMaxQualityDiff of
// Python's (NaN where Python's is NaN), and its flag bits must be Python's flags_of bits:
// the C++ flag computation on Python's own labels and row gives Python's bits exactly, and
// the bits of the C++ call equal them unless the C++ labels differ from Python's or a row
// value lies within kMaxQualityDiff of a cut-off (then the difference is printed, not failed).
// Exit 77 (ctest: skipped) when the group has no case, e.g. no real data on this machine.
#include <stb_image.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "lungseg/lungseg.h"
#include "test_support.h"

namespace {

constexpr double kMinDice = 0.999;
constexpr double kMaxQualityDiff = 2e-3;  // lungseg.export.parity's fp32 max_abs_quality_diff

// <prefix>.quality.txt: the row (4 floats, "nan" allowed), Python's bits for the cleaned
// labels and for label_lungs(raw).
struct PythonQuality {
    float row[4] = {0, 0, 0, 0};
    uint32_t bits_clean = 0, bits_raw = 0;
};

PythonQuality read_quality(const std::string& path) {
    std::istringstream in(lungseg_test::read_text(path));
    PythonQuality q;
    std::string v[4];
    in >> v[0] >> v[1] >> v[2] >> v[3] >> q.bits_clean >> q.bits_raw;
    if (!in) throw std::runtime_error("cannot parse " + path);
    for (int k = 0; k < 4; ++k) q.row[k] = static_cast<float>(std::strtod(v[k].c_str(), nullptr));
    return q;
}

// Largest |a - b| of two rows; NaN in both is equal, NaN in one is infinite.
double row_diff(const float* a, const float* b) {
    double d = 0;
    for (int k = 0; k < 4; ++k) {
        if (std::isnan(a[k]) && std::isnan(b[k])) continue;
        if (std::isnan(a[k]) || std::isnan(b[k])) return INFINITY;
        d = std::max(d, std::fabs(static_cast<double>(a[k]) - b[k]));
    }
    return d;
}

// A row value within `tol` of the cut-off it is compared with: flags may then differ.
bool near_cutoff(const float* row, double tol) {
    const auto near = [&](float v, double c) { return !std::isnan(v) && std::fabs(static_cast<double>(v) - c) <= tol; };
    return near(row[0], 0.90) || near(row[2], 0.5) || near(row[3], 0.5);
}

std::string flag_text(uint32_t bits) {
    std::string s;
    for (uint32_t b = 1; lungseg_flag_name(b) != nullptr; b <<= 1)
        if (bits & b) s += (s.empty() ? "" : ",") + std::string(lungseg_flag_name(b));
    return s.empty() ? "-" : s;
}

struct Image {
    int width = 0, height = 0;
    bool is16 = false;
    std::vector<uint8_t> bytes;  // packed uint8 or uint16 (native order)
};

bool read_png(const std::string& path, Image& img) {
    int channels = 0;
    img.is16 = stbi_is_16_bit(path.c_str()) != 0;
    void* data = img.is16 ? static_cast<void*>(stbi_load_16(path.c_str(), &img.width, &img.height, &channels, 1))
                          : static_cast<void*>(stbi_load(path.c_str(), &img.width, &img.height, &channels, 1));
    if (data == nullptr) return false;
    const std::size_t n = static_cast<std::size_t>(img.width) * static_cast<std::size_t>(img.height) * (img.is16 ? 2 : 1);
    img.bytes.assign(static_cast<uint8_t*>(data), static_cast<uint8_t*>(data) + n);
    stbi_image_free(data);
    return true;
}

struct Comparison {
    std::size_t differ = 0;
    double dice = 1.0;
};

// Pixels that differ, and the Dice score of the lung pixels (same non-zero label).
Comparison compare(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want) {
    Comparison c;
    std::size_t both = 0, a = 0, b = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
        c.differ += got[i] != want[i];
        a += got[i] != 0;
        b += want[i] != 0;
        both += got[i] != 0 && got[i] == want[i];
    }
    c.dice = a + b == 0 ? 1.0 : 2.0 * static_cast<double>(both) / static_cast<double>(a + b);
    return c;
}

std::vector<float> read_f32(const std::string& path, std::size_t n) {
    std::ifstream in(path, std::ios::binary);
    std::vector<float> v(n);
    in.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(n * sizeof(float)));
    if (!in) throw std::runtime_error("cannot read " + path);
    return v;
}

struct Manifest {
    std::map<std::string, std::string> header;
    std::vector<std::vector<std::string>> rows;  // group, name, png, prefix
};

Manifest read_manifest(const std::string& path) {
    Manifest m;
    std::istringstream in(lungseg_test::read_text(path));
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        std::vector<std::string> f;
        std::istringstream fields(line);
        std::string part;
        while (std::getline(fields, part, '\t')) f.push_back(part);
        if (line[0] == '#') {
            if (f.size() == 2) m.header[f[0].substr(2)] = f[1];
        } else if (f.size() == 4) {
            m.rows.push_back(f);
        }
    }
    return m;
}

int compare_png(const std::string& png, const std::string& pgm) {
    Image img;
    if (!read_png(png, img) || img.is16) {
        std::fprintf(stderr, "%s: cannot read as an 8-bit PNG\n", png.c_str());
        return 1;
    }
    uint32_t w = 0, h = 0;
    const std::vector<uint8_t> want = lungseg_test::read_pgm(pgm, w, h);
    if (static_cast<uint32_t>(img.width) != w || static_cast<uint32_t>(img.height) != h) {
        std::fprintf(stderr, "size %dx%d, expected %ux%u\n", img.width, img.height, w, h);
        return 1;
    }
    const Comparison c = compare(img.bytes, want);
    std::printf("%s vs Python: %zu of %zu pixels differ, Dice %.6f\n", png.c_str(), c.differ, want.size(), c.dice);
    return c.dice >= kMinDice ? 0 : 1;
}

// The exported artifact's metadata as the library reads it: the exporter's schema_version
// is one the library understands (else create failed), its extent is reported, and a
// request for the other extent is refused while one for its own is accepted.
int check_extent(const std::string& path, lungseg_options options, lungseg_segmenter* seg) {
    const char* extent = nullptr;
    const char* schema = nullptr;
    if (lungseg_model_extent(seg, &extent) != LUNGSEG_OK) return 1;
    const bool has_schema = lungseg_metadata_value(seg, "schema_version", &schema) == LUNGSEG_OK;
    std::printf("artifact metadata: schema_version %s, extent %s\n", has_schema ? schema : "(none)", extent);
    const bool full = std::string(extent) == "full";
    int failures = 0;
    lungseg_segmenter* other = nullptr;
    options.extent = full ? LUNGSEG_EXTENT_FULL : LUNGSEG_EXTENT_VISIBLE;
    if (lungseg_create(path.c_str(), &options, &other) != LUNGSEG_OK) {
        std::printf("FAILED: requesting the artifact's own extent: %s\n", lungseg_last_error());
        ++failures;
    }
    lungseg_destroy(other);
    other = nullptr;
    options.extent = full ? LUNGSEG_EXTENT_VISIBLE : LUNGSEG_EXTENT_FULL;
    const lungseg_status st = lungseg_create(path.c_str(), &options, &other);
    if (st != LUNGSEG_ERROR_MODEL_MISMATCH) {
        std::printf("FAILED: requesting the other extent gave %s: %s\n", lungseg_status_string(st), lungseg_last_error());
        ++failures;
    }
    lungseg_destroy(other);
    return failures;
}

int check_foreign(const std::string& path, const lungseg_options& options) {
    lungseg_segmenter* seg = nullptr;
    lungseg_status st = lungseg_create(path.c_str(), &options, &seg);
    if (st == LUNGSEG_OK) {
        const uint8_t px[16] = {0, 9, 200, 7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 250};
        uint8_t mask[16];
        st = lungseg_segment(seg, px, sizeof px, LUNGSEG_PIXEL_UINT8, 4, 4, 0, mask, sizeof mask, 0);
        lungseg_destroy(seg);
    }
    const bool ok = st != LUNGSEG_OK && std::strstr(lungseg_last_error(), "not a lungseg graph") != nullptr;
    std::printf("foreign TorchScript module: %s (%s)\n", ok ? "refused" : "NOT REFUSED", lungseg_last_error());
    return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress reaches ctest's log even on a timeout
    std::string backend, group, manifest_path;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--compare-png" && i + 2 < argc) return compare_png(argv[i + 1], argv[i + 2]);
        if (a == "--backend" && i + 1 < argc) backend = argv[++i];
        else if (a == "--group" && i + 1 < argc) group = argv[++i];
        else manifest_path = a;
    }
    if (backend.empty() || group.empty() || manifest_path.empty()) {
        std::fprintf(stderr, "usage: test_parity --backend B --group G MANIFEST | --compare-png PNG PGM\n");
        return 2;
    }
    const Manifest m = read_manifest(manifest_path);
    const auto model = m.header.find("model_" + backend);
    if (model == m.header.end()) {
        std::printf("skipped: the manifest has no %s model\n", backend.c_str());
        return 77;
    }
    std::vector<std::vector<std::string>> cases;
    for (const auto& r : m.rows)
        if (r[0] == group) cases.push_back(r);
    if (cases.empty()) {
        const auto note = m.header.find("real_data");
        std::printf("skipped: no %s cases (%s)\n", group.c_str(), note == m.header.end() ? "" : note->second.c_str());
        return 77;
    }

    lungseg_options options;
    lungseg_options_init(&options);
    options.backend = backend == "libtorch" ? LUNGSEG_BACKEND_LIBTORCH : LUNGSEG_BACKEND_ONNXRUNTIME;
    // One intra-op thread: CI machines are small and shared, and LibTorch's OpenMP threads
    // slow down by orders of magnitude when their cores are busy with other work.
    options.num_threads = 1;
    lungseg_segmenter* seg = nullptr;
    if (lungseg_create(model->second.c_str(), &options, &seg) != LUNGSEG_OK) {
        std::fprintf(stderr, "cannot load %s: %s\n", model->second.c_str(), lungseg_last_error());
        return 1;
    }
    std::unique_ptr<lungseg_segmenter, void (*)(lungseg_segmenter*)> owner(seg, lungseg_destroy);
    const auto weights = m.header.find("weights");
    std::printf("backend %s, model %s, weights %s\n", backend.c_str(), model->second.c_str(),
                weights == m.header.end() ? "?" : weights->second.c_str());
    std::printf("%-34s %11s %6s | %-20s | %-20s | %-20s | %9s | %8s | %9s | %s\n", "case", "size", "bits",
                "graph mask: diff px", "cleaned: diff px", "labels: diff px", "max|dp|", "ms/call", "max|dq|",
                "flags C++ / Python (cleaned; raw)");
    const auto quality_output = m.header.find("quality_output");
    const bool graph_has_quality = quality_output == m.header.end() || quality_output->second == "yes";

    int failures = 0;
    for (const auto& c : cases) {
        Image img;
        if (!read_png(c[2], img)) {
            std::fprintf(stderr, "%s: cannot read %s\n", c[1].c_str(), c[2].c_str());
            ++failures;
            continue;
        }
        const auto w = static_cast<uint32_t>(img.width), h = static_cast<uint32_t>(img.height);
        const int32_t type = img.is16 ? LUNGSEG_PIXEL_UINT16 : LUNGSEG_PIXEL_UINT8;
        const char* kinds[] = {"raw", "clean", "labels"};
        const uint32_t flags[] = {LUNGSEG_SEGMENT_RAW, 0, LUNGSEG_SEGMENT_LABELS};
        std::string cells[3];
        double ms = 0;
        for (int k = 0; k < 3; ++k) {
            std::vector<uint8_t> got(static_cast<std::size_t>(w) * h);
            const auto t0 = std::chrono::steady_clock::now();
            if (lungseg_segment(seg, img.bytes.data(), img.bytes.size(), type, w, h, 0, got.data(), got.size(), flags[k]) != LUNGSEG_OK) {
                std::fprintf(stderr, "%s: %s\n", c[1].c_str(), lungseg_last_error());
                ++failures;
                break;
            }
            if (k == 0) ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
            uint32_t pw = 0, ph = 0;
            const std::vector<uint8_t> want = lungseg_test::read_pgm(c[3] + "." + kinds[k] + ".pgm", pw, ph);
            if (pw != w || ph != h) {
                std::fprintf(stderr, "%s: reference size %ux%u\n", c[1].c_str(), pw, ph);
                ++failures;
                break;
            }
            const Comparison cmp = compare(got, want);
            char cell[64];
            std::snprintf(cell, sizeof cell, "%6zu (Dice %.5f)", cmp.differ, cmp.dice);
            cells[k] = cell;
            if (cmp.dice < kMinDice) {
                std::fprintf(stderr, "%s %s: Dice %.6f below %.3f\n", c[1].c_str(), kinds[k], cmp.dice, kMinDice);
                ++failures;
            }
        }
        std::vector<float> prob(static_cast<std::size_t>(w) * h);
        double max_dp = -1;
        if (lungseg_probability(seg, img.bytes.data(), img.bytes.size(), type, w, h, 0, prob.data(), prob.size() * sizeof(float)) == LUNGSEG_OK) {
            const std::vector<float> want = read_f32(c[3] + ".prob.f32", prob.size());
            max_dp = 0;
            for (std::size_t i = 0; i < prob.size(); ++i) max_dp = std::max(max_dp, std::fabs(double(prob[i]) - want[i]));
        } else {
            std::fprintf(stderr, "%s: probability: %s\n", c[1].c_str(), lungseg_last_error());
            ++failures;
        }
        // lungseg_analyze: quality row and flags, cleaned (mode 0) and RAW.
        double max_dq = -1;
        std::string flag_cell;
        const PythonQuality py = read_quality(c[3] + ".quality.txt");
        for (const uint32_t mode : {0u, LUNGSEG_SEGMENT_RAW}) {
            std::vector<uint8_t> got(static_cast<std::size_t>(w) * h);
            lungseg_quality q;
            lungseg_quality_init(&q);
            if (lungseg_analyze(seg, img.bytes.data(), img.bytes.size(), type, w, h, 0, got.data(), got.size(), mode, 0.0f,
                                &q) != LUNGSEG_OK) {
                std::fprintf(stderr, "%s: analyze: %s\n", c[1].c_str(), lungseg_last_error());
                ++failures;
                break;
            }
            const float row[4] = {q.quality, q.dice_estimate, q.frontal_probability, q.inverted_probability};
            const uint32_t want = mode == 0 ? py.bits_clean : py.bits_raw;
            if (graph_has_quality) {
                const double dq = row_diff(row, py.row);
                max_dq = std::max(max_dq, dq);
                if (!(dq <= kMaxQualityDiff)) {
                    std::fprintf(stderr, "%s: quality row (%g %g %g %g) differs from Python's (%g %g %g %g) by %g\n",
                                 c[1].c_str(), row[0], row[1], row[2], row[3], py.row[0], py.row[1], py.row[2], py.row[3], dq);
                    ++failures;
                }
            } else if (!(std::isnan(row[0]) && std::isnan(row[3]))) {
                std::fprintf(stderr, "%s: the graph has no quality output, yet the row is not NaN\n", c[1].c_str());
                ++failures;
            }
            // Python's labels (of the cleaned or raw mask) with Python's row: exactly Python's bits.
            uint32_t pw = 0, ph = 0;
            std::vector<uint8_t> py_labels = lungseg_test::read_pgm(c[3] + (mode == 0 ? ".labels.pgm" : ".raw.pgm"), pw, ph);
            if (mode != 0 && lungseg_postprocess(py_labels.data(), py_labels.size(), w, h,
                                                  LUNGSEG_SEGMENT_RAW | LUNGSEG_SEGMENT_LABELS) != LUNGSEG_OK)
                ++failures;
            lungseg_quality on_python = q;
            std::memcpy(&on_python.quality, py.row, sizeof py.row);
            if (lungseg_quality_flags(py_labels.data(), py_labels.size(), w, h, 0.0f, &on_python) != LUNGSEG_OK ||
                on_python.flags != want) {
                std::fprintf(stderr, "%s%s: mode of Python's labels and row: C++ %s, Python %s\n", c[1].c_str(),
                             mode ? " (raw)" : "", flag_text(on_python.flags).c_str(), flag_text(want).c_str());
                ++failures;
            }
            // The call's own bits: Python's, unless its labels or a near-cut-off row explain a difference.
            std::vector<uint8_t> labels = got;
            lungseg_postprocess(labels.data(), labels.size(), w, h, LUNGSEG_SEGMENT_RAW | LUNGSEG_SEGMENT_LABELS);
            const bool same_labels = labels == py_labels;
            if (q.flags != want) {
                const bool explained =
                    !same_labels || (graph_has_quality && (near_cutoff(py.row, kMaxQualityDiff) || near_cutoff(row, kMaxQualityDiff)));
                std::printf("%s%s: lungseg_analyze mode %s, Python %s (%s)\n", c[1].c_str(), mode ? " (raw)" : "",
                            flag_text(q.flags).c_str(), flag_text(want).c_str(),
                            explained ? "explained: labels differ or a value is at a cut-off" : "FAILED");
                if (!explained) ++failures;
            }
            flag_cell += (mode ? "; " : "") + flag_text(q.flags) + (q.flags == want ? "" : " / " + flag_text(want));
        }
        char size[32];
        std::snprintf(size, sizeof size, "%ux%u", w, h);
        std::printf("%-34s %11s %6d | %-20s | %-20s | %-20s | %9.2e | %8.1f | %9.2e | %s\n", c[1].c_str(), size,
                    img.is16 ? 16 : 8, cells[0].c_str(), cells[1].c_str(), cells[2].c_str(), max_dp, ms, max_dq,
                    flag_cell.c_str());
    }
    const auto foreign = m.header.find("foreign_" + backend);
    if (foreign != m.header.end() && group == "synthetic") failures += check_foreign(foreign->second, options);
    if (group == "synthetic") failures += check_extent(model->second, options, seg);
    std::printf("%s: %zu cases, %d failure(s)\n", failures ? "FAILED" : "passed", cases.size(), failures);
    return failures ? 1 : 0;
}
