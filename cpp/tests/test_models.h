// Small ONNX models for the C ABI tests and the fuzzers, written without Python.
//
// A hand-rolled protobuf writer produces graphs that follow the lungseg contract (input
// `pixels` float32 [N,1,H,W]; outputs `mask` uint8 and `probability` float32) but replace
// the network with a per-pixel rule: probability = sigmoid(pixels - 128), mask =
// probability > 0.5, i.e. lung where a pixel is above 128. That makes masks with many
// components out of arbitrary pixels, which exercises the host-side postprocessing.
// Without a `quality` output the graph is what a schema 1 artifact is; the Quality variant
// adds the schema 2 output `quality` float32 [N, 4] = kQualityScale * mean(probability) +
// kQualityOffset (so the row depends on the image). Other variants break the contract on
// purpose (foreign names, wrong types, missing or mis-shaped outputs) for the bad-input tests.
#ifndef LUNGSEG_TESTS_TEST_MODELS_H
#define LUNGSEG_TESTS_TEST_MODELS_H

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace lungseg_test {

class Proto {
public:
    const std::string& bytes() const { return buf_; }

    Proto& varint_field(int field, uint64_t v) {
        tag(field, 0);
        varint(v);
        return *this;
    }
    Proto& int_field(int field, int64_t v) { return varint_field(field, static_cast<uint64_t>(v)); }
    Proto& string_field(int field, const std::string& s) {
        tag(field, 2);
        varint(s.size());
        buf_ += s;
        return *this;
    }
    Proto& message_field(int field, const Proto& m) { return string_field(field, m.bytes()); }
    Proto& float_field(int field, float f) {
        tag(field, 5);
        uint32_t u;
        std::memcpy(&u, &f, 4);
        for (int k = 0; k < 4; ++k) buf_ += static_cast<char>((u >> (8 * k)) & 0xFF);
        return *this;
    }

private:
    void tag(int field, int wire) { varint((static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire)); }
    void varint(uint64_t v) {
        while (v >= 0x80) {
            buf_ += static_cast<char>((v & 0x7F) | 0x80);
            v >>= 7;
        }
        buf_ += static_cast<char>(v);
    }
    std::string buf_;
};

// ONNX TensorProto.DataType values.
enum : int { kFloat = 1, kUint8 = 2, kInt64 = 7, kBool = 9 };

// The Quality variant's row: quality = scale * mean(probability) + offset, per field.
inline constexpr float kQualityScale[4] = {0.5f, 0.4f, 0.0f, 0.0f};
inline constexpr float kQualityOffset[4] = {0.5f, 0.6f, 0.9f, 0.1f};

// ValueInfoProto for a tensor [N, fields] (symbolic N).
inline Proto row_value(const std::string& name, int elem_type, int64_t fields) {
    Proto shape;
    shape.message_field(1, Proto().string_field(2, "N"));
    shape.message_field(1, Proto().int_field(1, fields));
    Proto tensor;
    tensor.int_field(1, elem_type).message_field(2, shape);
    return Proto().string_field(1, name).message_field(2, Proto().message_field(1, tensor));
}

// ValueInfoProto for a tensor [N, 1, H, W] (symbolic N, H, W).
inline Proto image_value(const std::string& name, int elem_type) {
    Proto shape;
    shape.message_field(1, Proto().string_field(2, "N"));
    shape.message_field(1, Proto().int_field(1, 1));
    shape.message_field(1, Proto().string_field(2, "H"));
    shape.message_field(1, Proto().string_field(2, "W"));
    Proto tensor;
    tensor.int_field(1, elem_type).message_field(2, shape);
    return Proto().string_field(1, name).message_field(2, Proto().message_field(1, tensor));
}

inline Proto node(const std::string& op, const std::vector<std::string>& in, const std::vector<std::string>& out,
                  const std::vector<Proto>& attributes = {}) {
    Proto n;
    for (const auto& s : in) n.string_field(1, s);
    for (const auto& s : out) n.string_field(2, s);
    n.string_field(4, op);
    for (const auto& a : attributes) n.message_field(5, a);
    return n;
}

inline Proto int_attribute(const std::string& name, int64_t v) {
    return Proto().string_field(1, name).int_field(3, v).int_field(20, 2);  // type INT
}

inline Proto scalar_float(const std::string& name, float v) {
    std::string raw(4, '\0');
    std::memcpy(&raw[0], &v, 4);  // little-endian hosts only (x86-64, aarch64)
    return Proto().int_field(2, kFloat).string_field(8, name).string_field(9, raw);
}

// 1-D initializers (TensorProto: dims 1, data_type 2, name 8, raw_data 9).
inline Proto vector_float(const std::string& name, const float* v, int64_t n) {
    std::string raw(static_cast<std::size_t>(4 * n), '\0');
    std::memcpy(&raw[0], v, raw.size());
    return Proto().int_field(1, n).int_field(2, kFloat).string_field(8, name).string_field(9, raw);
}
inline Proto vector_int64(const std::string& name, const int64_t* v, int64_t n) {
    std::string raw(static_cast<std::size_t>(8 * n), '\0');
    std::memcpy(&raw[0], v, raw.size());
    return Proto().int_field(1, n).int_field(2, kInt64).string_field(8, name).string_field(9, raw);
}

enum class Variant {
    Lungseg,           // follows the contract
    ForeignInputName,  // input called "input"
    Uint8Input,        // input of type uint8
    NoMaskOutput,      // only "probability"
    BoolMask,          // "mask" of type bool
    MisshapedMask,     // "mask" declared [N,1,H,W] but computed as [1,1,1,1]
    Quality,           // follows the contract of schema 2: "quality" float32 [N,4] too
    QualityThreeWide,  // "quality" declared [N,3]
    QualityInt64,      // "quality" of type int64 (a foreign third output)
    QualityMisshaped,  // "quality" declared [N,4] but computed as [1,8]
};

// metadata_json: the "lungseg.json" entry; "" = the default test metadata below.
inline std::string make_onnx_model(Variant variant = Variant::Lungseg, bool with_metadata = true,
                                   const std::string& metadata_json = "") {
    const std::string input = variant == Variant::ForeignInputName ? "input" : "pixels";
    Proto graph;
    std::string x = input;
    if (variant == Variant::Uint8Input) {
        graph.message_field(1, node("Cast", {input}, {"pixels_f"}, {int_attribute("to", kFloat)}));
        x = "pixels_f";
    }
    graph.message_field(1, node("Sub", {x, "offset"}, {"centred"}));
    graph.message_field(1, node("Sigmoid", {"centred"}, {"probability"}));
    std::string decided = "probability";
    if (variant == Variant::MisshapedMask) {
        graph.message_field(1, node("ReduceMax", {"probability"}, {"peak"}, {int_attribute("keepdims", 1)}));
        decided = "peak";
    }
    graph.message_field(1, node("Greater", {decided, "half"}, {variant == Variant::BoolMask ? "mask" : "above"}));
    if (variant != Variant::BoolMask)
        graph.message_field(1, node("Cast", {"above"}, {"mask"}, {int_attribute("to", kUint8)}));
    const bool quality = variant == Variant::Quality || variant == Variant::QualityThreeWide ||
                         variant == Variant::QualityInt64 || variant == Variant::QualityMisshaped;
    if (quality) {
        // mean over all of probability [1,1,H,W] -> [1,1,1,1]; * scale [4] + offset [4] -> [1,1,1,4]; -> [1,4]
        graph.message_field(1, node("ReduceMean", {"probability"}, {"mean_probability"}, {int_attribute("keepdims", 1)}));
        graph.message_field(1, node("Mul", {"mean_probability", "quality_scale"}, {"quality_scaled"}));
        graph.message_field(1, node("Add", {"quality_scaled", "quality_offset"}, {"quality_row"}));
        const std::string out = variant == Variant::QualityInt64 ? "quality_f" : "quality";
        graph.message_field(1, node("Reshape", {"quality_row", "quality_shape"}, {out}));
        if (variant == Variant::QualityInt64)
            graph.message_field(1, node("Cast", {"quality_f"}, {"quality"}, {int_attribute("to", kInt64)}));
    }
    graph.string_field(2, "lungseg_test_graph");
    graph.message_field(5, scalar_float("offset", 128.0f));
    graph.message_field(5, scalar_float("half", 0.5f));
    if (quality) {
        static const float scale8[8] = {kQualityScale[0], kQualityScale[1], kQualityScale[2], kQualityScale[3], 0, 0, 0, 0};
        static const float offset8[8] = {kQualityOffset[0], kQualityOffset[1], kQualityOffset[2], kQualityOffset[3], 0, 0, 0, 0};
        const int64_t n = variant == Variant::QualityMisshaped ? 8 : variant == Variant::QualityThreeWide ? 3 : 4;
        const int64_t shape[2] = {-1, n};
        graph.message_field(5, vector_float("quality_scale", scale8, n));
        graph.message_field(5, vector_float("quality_offset", offset8, n));
        graph.message_field(5, vector_int64("quality_shape", shape, 2));
    }
    graph.message_field(11, image_value(input, variant == Variant::Uint8Input ? kUint8 : kFloat));
    if (variant != Variant::NoMaskOutput)
        graph.message_field(12, image_value("mask", variant == Variant::BoolMask ? kBool : kUint8));
    graph.message_field(12, image_value("probability", kFloat));
    if (quality)
        graph.message_field(12, row_value("quality", variant == Variant::QualityInt64 ? kInt64 : kFloat,
                                          variant == Variant::QualityThreeWide ? 3 : 4));

    Proto model;
    model.int_field(1, 8);  // ir_version
    model.string_field(2, "lungseg-tests");
    model.message_field(7, graph);
    model.message_field(8, Proto().string_field(1, "").int_field(2, 17));  // opset 17
    if (with_metadata) {
        const std::string json = !metadata_json.empty() ? metadata_json :
            "{\"version\": \"test\", \"image_size\": 0, \"threshold\": 0.5, \"weights_sha256\": \"none\", "
            "\"names\": {\"input\": \"pixels\", \"outputs\": [\"mask\", \"probability\"]}, \"note\": \"caf\\u00e9\"}";
        model.message_field(14, Proto().string_field(1, "lungseg.json").string_field(2, json));
    }
    return model.bytes();
}

}  // namespace lungseg_test

#endif  // LUNGSEG_TESTS_TEST_MODELS_H
