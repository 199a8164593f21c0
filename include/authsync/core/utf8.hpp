// UTF-8 well-formedness (Unicode table 3-7: no overlong forms, no surrogates, nothing above
// U+10FFFF). Pure; one definition for the whole program. The mapper passes an ill-formed
// sequence on for the target to reject (a row error, never a silent U+FFFD); where text must
// be shown or stored anyway (dead letters, the status endpoint) escape_ill_formed_utf8 is the
// one repair.
#pragma once

#include <string>
#include <string_view>

namespace authsync {

// Length of the well-formed sequence at p (1 to 4), or, when ill-formed, minus the length of
// its maximal ill-formed subpart (at least 1). p < end.
int utf8_sequence(const unsigned char* p, const unsigned char* end);

bool is_valid_utf8(std::string_view text);

// `text` with each byte of an ill-formed sequence written as \xHH: storable as text, nothing
// hidden. Well-formed text comes back unchanged.
std::string escape_ill_formed_utf8(std::string_view text);

}  // namespace authsync
