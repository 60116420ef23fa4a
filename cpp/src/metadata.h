// The artifacts' metadata (a JSON object: version, weights sha256, image_size, threshold,
// names) read into key -> text pairs, and written back as JSON.
#ifndef LUNGSEG_SRC_METADATA_H
#define LUNGSEG_SRC_METADATA_H

#include <cstddef>
#include <map>
#include <string>
#include <vector>
#include <utility>

namespace lungseg::detail {

// Top-level members of a JSON object: strings decoded (unquoted, escapes resolved),
// numbers/true/false/null as written, objects and arrays as their JSON text. Returns false
// (and leaves `out` empty) when the text is not one well-formed JSON object.
bool parse_json_object(const std::string& text, std::map<std::string, std::string>& out);

// SHA-256 of `size` bytes as 64 lower-case hex digits (artifact integrity checks).
std::string sha256_hex(const void* data, std::size_t size);

// A JSON object whose members are the given strings.
std::string json_object_of_strings(const std::vector<std::pair<std::string, std::string>>& members);

}  // namespace lungseg::detail

#endif  // LUNGSEG_SRC_METADATA_H
