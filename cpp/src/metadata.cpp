// A small strict JSON reader for the metadata object; nested values are kept as text.
#include "metadata.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>

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

// SHA-256 (FIPS 180-4), one block of 64 bytes at a time.
class Sha256 {
public:
    void update(const unsigned char* p, std::size_t n) {
        total_ += n;
        while (n > 0) {
            const std::size_t k = std::min<std::size_t>(n, 64 - fill_);
            std::memcpy(block_ + fill_, p, k);
            fill_ += k;
            p += k;
            n -= k;
            if (fill_ == 64) {
                compress(block_);
                fill_ = 0;
            }
        }
    }
    std::string hex() {
        const uint64_t bits = total_ * 8;
        const unsigned char pad = 0x80;
        update(&pad, 1);
        const unsigned char zero = 0;
        while (fill_ != 56) update(&zero, 1);
        unsigned char len[8];
        for (int k = 0; k < 8; ++k) len[k] = static_cast<unsigned char>(bits >> (56 - 8 * k));
        update(len, 8);
        static const char digits[] = "0123456789abcdef";
        std::string out;
        for (uint32_t v : h_)
            for (int k = 28; k >= 0; k -= 4) out += digits[(v >> k) & 0xF];
        return out;
    }

private:
    static uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }
    void compress(const unsigned char* b) {
        static const uint32_t k[64] = {
            0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
            0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
            0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
            0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
            0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
            0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
            0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
            0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
        uint32_t w[64];
        for (int i = 0; i < 16; ++i)
            w[i] = (uint32_t{b[4 * i]} << 24) | (uint32_t{b[4 * i + 1]} << 16) | (uint32_t{b[4 * i + 2]} << 8) |
                   uint32_t{b[4 * i + 3]};
        for (int i = 16; i < 64; ++i) {
            const uint32_t s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >> 3);
            const uint32_t s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16] + s0 + w[i - 7] + s1;
        }
        uint32_t a = h_[0], bb = h_[1], c = h_[2], d = h_[3], e = h_[4], f = h_[5], g = h_[6], h = h_[7];
        for (int i = 0; i < 64; ++i) {
            const uint32_t t1 = h + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + k[i] + w[i];
            const uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & bb) ^ (a & c) ^ (bb & c));
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = bb;
            bb = a;
            a = t1 + t2;
        }
        h_[0] += a;
        h_[1] += bb;
        h_[2] += c;
        h_[3] += d;
        h_[4] += e;
        h_[5] += f;
        h_[6] += g;
        h_[7] += h;
    }

    uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    unsigned char block_[64] = {};
    std::size_t fill_ = 0;
    uint64_t total_ = 0;
};

}  // namespace

std::string sha256_hex(const void* data, std::size_t size) {
    Sha256 s;
    if (size > 0) s.update(static_cast<const unsigned char*>(data), size);
    return s.hex();
}

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
