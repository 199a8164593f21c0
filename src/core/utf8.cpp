#include "authsync/core/utf8.hpp"

namespace authsync {

int utf8_sequence(const unsigned char* p, const unsigned char* end) {
    const unsigned char c = *p;
    if (c < 0x80) return 1;
    int need = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c == 0xE0) {
        need = 2;
        lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        need = 2;
    } else if (c == 0xED) {  // no UTF-16 surrogates
        need = 2;
        hi = 0x9F;
    } else if (c == 0xF0) {
        need = 3;
        lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
        need = 3;
    } else if (c == 0xF4) {  // nothing above U+10FFFF
        need = 3;
        hi = 0x8F;
    } else {
        return -1;  // a continuation byte, C0/C1 (overlong) or F5..FF
    }
    for (int i = 1; i <= need; ++i) {
        if (end - p <= i) return -i;
        const unsigned char b = p[i];
        if (b < lo || b > hi) return -i;
        lo = 0x80;
        hi = 0xBF;
    }
    return need + 1;
}

bool is_valid_utf8(std::string_view text) {
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* const end = p + text.size();
    while (p < end) {
        if (*p < 0x80) {
            ++p;
            continue;
        }
        const int n = utf8_sequence(p, end);
        if (n < 0) return false;
        p += n;
    }
    return true;
}

std::string escape_ill_formed_utf8(std::string_view text) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    if (is_valid_utf8(text)) return std::string(text);
    std::string out;
    out.reserve(text.size() + 16);
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* const end = p + text.size();
    while (p < end) {
        const int n = utf8_sequence(p, end);
        if (n > 0) {
            out.append(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
            p += n;
            continue;
        }
        for (int i = 0; i < -n; ++i, ++p) {
            out += "\\x";
            out += kHex[*p >> 4];
            out += kHex[*p & 0xF];
        }
    }
    return out;
}

}  // namespace authsync
