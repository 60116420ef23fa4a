// The header-only C++ wrapper: RAII ownership, moves, exceptions carrying status and message.
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "lungseg/lungseg.hpp"
#include "test_models.h"
#include "test_support.h"

namespace {

template <class F>
lungseg_status status_of(F&& f) {
    try {
        f();
    } catch (const lungseg::Error& e) {
        return e.status();
    }
    return LUNGSEG_OK;
}

}  // namespace

int main() {
    const std::string model = lungseg_test::make_onnx_model();
    lungseg::Options options;
    options.num_threads = 1;
    lungseg::Segmenter seg = lungseg::Segmenter::from_memory(model.data(), model.size(), options);
    CHECK(seg.backend_name() == "onnxruntime");
    CHECK(seg.metadata("version").value_or("") == "test");
    CHECK(!seg.metadata("absent").has_value());
    CHECK(seg.metadata_json().find("\"image_size\"") != std::string::npos);

    const uint32_t w = 32, h = 24;
    std::vector<uint16_t> img(w * h);
    for (uint32_t i = 0; i < w * h; ++i) img[i] = static_cast<uint16_t>((i % w) < w / 2 ? 100 : 60000);
    const std::vector<uint8_t> raw = seg.segment(img, w, h, 0, LUNGSEG_SEGMENT_RAW);
    CHECK(raw.size() == w * h && raw[0] == 0 && raw[w - 1] == 1);
    const std::vector<uint8_t> labels = seg.segment(img, w, h, 0, LUNGSEG_SEGMENT_LABELS);
    CHECK(labels[w - 1] == 2);  // one component right of the midline: patient's left lung
    const std::vector<float> prob = seg.probability(img, w, h);
    CHECK(prob.size() == w * h && prob[0] < 0.5f && prob[w - 1] > 0.5f);
    std::vector<uint8_t> copy = raw;
    lungseg::postprocess(copy, w, h, LUNGSEG_SEGMENT_LABELS);
    CHECK(copy == labels);

    // Errors become lungseg::Error with the status and the library's message.
    try {
        lungseg::Segmenter missing("/nonexistent/model.onnx");
        CHECK(false);
    } catch (const lungseg::Error& e) {
        CHECK(e.status() == LUNGSEG_ERROR_IO);
        CHECK(std::string(e.what()).find("/nonexistent/model.onnx") != std::string::npos);
    }
    CHECK(status_of([&] { seg.segment(img, w, h, 3); }) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    CHECK(status_of([&] { seg.segment(img, 200000, 200000); }) == LUNGSEG_ERROR_INVALID_ARGUMENT);
    // The vector's size is the buffer's size: an image larger than the vector is refused.
    CHECK(status_of([&] { seg.segment(img, w, h + 1); }) == LUNGSEG_ERROR_BUFFER_TOO_SMALL);
    std::vector<uint8_t> into(w * h);
    CHECK(status_of([&] { seg.segment_into(img.data(), 10, LUNGSEG_PIXEL_UINT16, w, h, 0, into.data(), into.size()); }) ==
          LUNGSEG_ERROR_BUFFER_TOO_SMALL);
    seg.segment_into(img.data(), img.size() * 2, LUNGSEG_PIXEL_UINT16, w, h, 0, into.data(), into.size(), LUNGSEG_SEGMENT_RAW);
    CHECK(into == raw);

    // New entry points: ABI, extent, cancel (nothing running), caller workspace.
    CHECK(lungseg::abi_compatible());
    CHECK(seg.extent() == "visible");
    seg.cancel();
    std::vector<unsigned char> workspace(seg.workspace_size(w, h));
    seg.set_workspace(workspace.data(), workspace.size());
    CHECK(seg.segment(img, w, h, 0, LUNGSEG_SEGMENT_RAW) == raw);
    CHECK(status_of([&] { seg.segment(std::vector<uint16_t>(w * (h + 8), 7000), w, h + 8); }) == LUNGSEG_ERROR_BUFFER_TOO_SMALL);
    seg.set_workspace(nullptr, 0);
    lungseg::Options full_only;
    full_only.extent = LUNGSEG_EXTENT_FULL;
    CHECK(status_of([&] { lungseg::Segmenter::from_memory(model.data(), model.size(), full_only); }) ==
          LUNGSEG_ERROR_MODEL_MISMATCH);
    std::vector<uint8_t> small(3);
    CHECK(status_of([&] { lungseg::postprocess(small, 2, 2); }) == LUNGSEG_ERROR_BUFFER_TOO_SMALL);

    // analyze(): the mask as segment() gives it, plus the quality row and flags. The test
    // graph has no quality output (NaN: low_confidence); the schema 2 variant has one.
    const lungseg::Analysis plain = seg.analyze(img, w, h, 0, LUNGSEG_SEGMENT_LABELS);
    CHECK(plain.mask == labels && !plain.trusted());
    CHECK(plain.quality.flags & LUNGSEG_FLAG_LOW_CONFIDENCE);
    CHECK(plain.quality.quality != plain.quality.quality);  // NaN
    const std::vector<std::string> names = plain.flags();
    CHECK(!names.empty() && names.back() == "low_confidence");
    CHECK(lungseg::flag_names(LUNGSEG_FLAG_INVERTED | LUNGSEG_FLAG_ONE_LUNG) ==
          (std::vector<std::string>{"inverted", "one_lung"}));
    CHECK(lungseg::flag_names(0).empty());
    const std::string qmodel = lungseg_test::make_onnx_model(lungseg_test::Variant::Quality);
    lungseg::Segmenter qseg = lungseg::Segmenter::from_memory(qmodel.data(), qmodel.size(), options);
    const lungseg::Analysis a = qseg.analyze(img, w, h);
    CHECK(a.mask == seg.segment(img, w, h) && a.quality.quality > 0.5f && a.quality.frontal_probability > 0.89f);
    const lungseg::Analysis lenient = qseg.analyze(img, w, h, 0, 0, 0.01f);
    CHECK((lenient.quality.flags & LUNGSEG_FLAG_LOW_CONFIDENCE) == 0);
    std::vector<uint8_t> qmask(w * h);
    const lungseg_quality q = qseg.analyze_into(img.data(), img.size() * 2, LUNGSEG_PIXEL_UINT16, w, h, 0, qmask.data(),
                                                qmask.size());
    CHECK(q.flags == a.quality.flags && qmask == a.mask);
    CHECK(status_of([&] { qseg.analyze_into(img.data(), img.size() * 2, LUNGSEG_PIXEL_UINT16, w, h, 0, qmask.data(), 3); }) ==
          LUNGSEG_ERROR_BUFFER_TOO_SMALL);

    // Move-only ownership: the moved-from wrapper holds nothing and is safe to destroy.
    lungseg::Segmenter moved = std::move(seg);
    CHECK(seg.handle() == nullptr && moved.handle() != nullptr);
    CHECK(moved.segment(img, w, h, 0, LUNGSEG_SEGMENT_RAW) == raw);
    lungseg::Segmenter other = lungseg::Segmenter::from_memory(model.data(), model.size());
    other = std::move(moved);
    CHECK(other.segment(img, w, h, 0, LUNGSEG_SEGMENT_RAW) == raw);
    CHECK(lungseg::backend_available(lungseg::Backend::OnnxRuntime));
    return lungseg_test::finish("test_wrapper");
}
