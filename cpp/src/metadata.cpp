// A small strict JSON reader for the metadata object; nested values are kept as text.
#include "metadata.h"

#include <cstdint>
#include <cstdio>

namespace lungseg::detail {
namespace {

constexpr int kMaxDepth = 64;

class Reader {
public:
    explicit Reader(const std::string& text) : s_(text) {}

    bool object(std::map<std::string, std::string>& out) {
        skip_space();
        if (!eat('{')) return false;
        skip_space();
        if (eat('}')) return at_end();
        for (;;) {
            skip_space();
            std::string key, value;
            if (!string(key)) return false;
            skip_space();
            if (!eat(':')) return false;
            skip_space();
            if (peek() == '"') {
                if (!string(value)) return false;
            } else {
                const std::size_t start = i_;
                if (!skip_value(0)) return false;
                value = s_.substr(start, i_ - start);
            }
            out[key] = value;
            skip_space();
            if (eat(',')) continue;
            if (eat('}')) return at_end();
            return false;
        }
    }

private:
    char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
    bool eat(char c) {
        if (i_ < s_.size() && s_[i_] == c) {
            ++i_;
            return true;
        }
        return false;
    }
    void skip_space() {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
    }
    bool at_end() {
        skip_space();
        return i_ == s_.size();
    }

    bool hex4(uint32_t& v) {
        if (s_.size() - i_ < 4) return false;
        v = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = s_[i_++];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= static_cast<uint32_t>(c - '0');
            else if (c >= 'a' && c <= 'f') v |= static_cast<uint32_t>(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') v |= static_cast<uint32_t>(c - 'A' + 10);
            else return false;
        }
        return true;
    }

    static void put_utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    bool string(std::string& out) {
        if (!eat('"')) return false;
        while (i_ < s_.size()) {
            const char c = s_[i_++];
            if (c == '"') return true;
            if (static_cast<unsigned char>(c) < 0x20) return false;
            if (c != '\\') {
                out += c;
                continue;
            }
            if (i_ >= s_.size()) return false;
            const char e = s_[i_++];
            switch (e) {
                case '"': out += '"'; break;
                case '\\': out += '\\'; break;
                case '/': out += '/'; break;
                case 'b': out += '\b'; break;
                case 'f': out += '\f'; break;
                case 'n': out += '\n'; break;
                case 'r': out += '\r'; break;
                case 't': out += '\t'; break;
                case 'u': {
                    uint32_t cp = 0;
                    if (!hex4(cp)) return false;
                    if (cp >= 0xD800 && cp < 0xDC00) {  // high surrogate: a low one must follow
                        uint32_t lo = 0;
                        if (!eat('\\') || !eat('u') || !hex4(lo) || lo < 0xDC00 || lo >= 0xE000) return false;
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    } else if (cp >= 0xDC00 && cp < 0xE000) {
                        return false;
                    }
                    put_utf8(out, cp);
                    break;
                }
                default: return false;
            }
        }
        return false;
    }

    bool literal(const char* word) {
        std::size_t k = 0;
        while (word[k] != '\0') {
            if (!eat(word[k])) return false;
            ++k;
        }
        return true;
    }

    bool digits() {
        const std::size_t start = i_;
        while (peek() >= '0' && peek() <= '9') ++i_;
        return i_ > start;
    }

    bool number() {
        eat('-');
        if (eat('0')) {
            // no leading zeros
        } else if (!digits()) {
            return false;
        }
        if (eat('.') && !digits()) return false;
        if (peek() == 'e' || peek() == 'E') {
            ++i_;
            if (!eat('+')) eat('-');
            if (!digits()) return false;
        }
        return true;
    }

    bool skip_value(int depth) {
        if (depth > kMaxDepth) return false;
        skip_space();
        const char c = peek();
        if (c == '"') {
            std::string ignored;
            return string(ignored);
        }
        if (c == '{' || c == '[') {
            const char close = c == '{' ? '}' : ']';
            ++i_;
            skip_space();
            if (eat(close)) return true;
            for (;;) {
                skip_space();
                if (c == '{') {
                    std::string ignored;
                    if (!string(ignored)) return false;
                    skip_space();
                    if (!eat(':')) return false;
                }
                if (!skip_value(depth + 1)) return false;
                skip_space();
                if (eat(',')) continue;
                return eat(close);
            }
        }
        if (c == 't') return literal("true");
        if (c == 'f') return literal("false");
        if (c == 'n') return literal("null");
        return number();
    }

    const std::string& s_;
    std::size_t i_ = 0;
};

void put_json_string(std::string& out, const std::string& s) {
    out += '"';
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out += ch;
                }
        }
    }
    out += '"';
}

}  // namespace

bool parse_json_object(const std::string& text, std::map<std::string, std::string>& out) {
    out.clear();
    Reader reader(text);
    if (!reader.object(out)) {
        out.clear();
        return false;
    }
    return true;
}

std::string json_object_of_strings(const std::vector<std::pair<std::string, std::string>>& members) {
    std::string out = "{";
    for (std::size_t k = 0; k < members.size(); ++k) {
        if (k != 0) out += ", ";
        put_json_string(out, members[k].first);
        out += ": ";
        put_json_string(out, members[k].second);
    }
    out += '}';
    return out;
}

}  // namespace lungseg::detail
