#include "authsync/mapping/mapper.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <limits>

#include "authsync/core/ascii.hpp"
#include "authsync/core/calendar.hpp"
#include "authsync/core/error.hpp"
#include "authsync/core/utf8.hpp"
#include "authsync/pgoutput/relation_cache.hpp"

namespace authsync::mapping {

namespace {

using pgoutput::ColumnKind;
using pgoutput::TupleColumn;
using pgoutput::TupleData;
using pgoutput::TypeId;

// Built-in type OIDs (pg_type.dat); stable across PostgreSQL versions.
constexpr TypeId kBoolOid = 16;
constexpr TypeId kInt8Oid = 20;
constexpr TypeId kInt2Oid = 21;
constexpr TypeId kInt4Oid = 23;
constexpr TypeId kOidOid = 26;
constexpr TypeId kJsonOid = 114;
constexpr TypeId kFloat4Oid = 700;
constexpr TypeId kFloat8Oid = 701;
constexpr TypeId kDateOid = 1082;
constexpr TypeId kTimestampOid = 1114;
constexpr TypeId kTimestamptzOid = 1184;
constexpr TypeId kNumericOid = 1700;
constexpr TypeId kJsonbOid = 3802;

const char* builtin_type_name(TypeId type_id) {
    switch (type_id) {
        case kBoolOid: return "bool";
        case kInt8Oid: return "int8";
        case kInt2Oid: return "int2";
        case kInt4Oid: return "int4";
        case kOidOid: return "oid";
        case kJsonOid: return "json";
        case kFloat4Oid: return "float4";
        case kFloat8Oid: return "float8";
        case kDateOid: return "date";
        case kTimestampOid: return "timestamp";
        case kTimestamptzOid: return "timestamptz";
        case kNumericOid: return "numeric";
        case kJsonbOid: return "jsonb";
        default: return nullptr;
    }
}

std::string describe_type(TypeId type_id) {
    if (const char* name = builtin_type_name(type_id)) return fmt::format("type {}", name);
    return fmt::format("type oid {}", type_id);
}

bool epoch_millis_applies(TypeId type_id) {
    switch (type_id) {
        case kTimestamptzOid:
        case kTimestampOid:
        case kDateOid:
        case kInt2Oid:
        case kInt4Oid:
        case kInt8Oid:
        case kNumericOid: return true;
        default: return false;
    }
}

// Messages below describe the text, never quote it: column values are users' data.
[[noreturn]] void invalid_text(TypeId type_id) {
    throw MappingError(fmt::format("invalid {} text", builtin_type_name(type_id)));
}

bool is_digit(char c) {
    return c >= '0' && c <= '9';
}

// PostgreSQL's input functions skip the whitespace its scanner does (scanner_isspace).
constexpr std::string_view kPgWhitespace = " \t\n\r\f";

void append_int64(std::string& out, std::int64_t v) {
    char buf[24];
    auto res = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, res.ptr);
}

// ---- JSON strings ----------------------------------------------------------------------------

void append_json_string(std::string& out, std::string_view text) {
    static constexpr char kHex[] = "0123456789abcdef";
    out.reserve(out.size() + text.size() + 2);
    out += '"';
    const auto* p = reinterpret_cast<const unsigned char*>(text.data());
    const auto* const end = p + text.size();
    const auto* run = p;  // start of bytes copied as they are
    auto flush = [&] {
        out.append(reinterpret_cast<const char*>(run), static_cast<std::size_t>(p - run));
    };
    while (p < end) {
        const unsigned char c = *p;
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            ++p;
            continue;
        }
        if (c >= 0x80) {
            // Ill-formed UTF-8 (a SQL_ASCII provider) goes on as it is: the target rejects it,
            // and the change is a row error (apply.on_error), never a silent U+FFFD.
            const int n = utf8_sequence(p, end);
            p += n > 0 ? n : -n;
            continue;
        }
        flush();
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default: {
                const char esc[6] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
                out.append(esc, sizeof esc);
            }
        }
        ++p;
        run = p;
    }
    flush();
    out += '"';
}

// ---- numbers ---------------------------------------------------------------------------------

// int2/int4/int8/oid: optional sign, digits. Leading zeros (never printed by PostgreSQL) are
// dropped because JSON does not allow them.
void append_integer(std::string& out, std::string_view text, TypeId type_id) {
    text = trim(text, kPgWhitespace);
    std::size_t i = 0;
    bool negative = false;
    if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
        negative = text[0] == '-';
        i = 1;
    }
    if (i == text.size()) invalid_text(type_id);
    for (std::size_t j = i; j < text.size(); ++j) {
        if (!is_digit(text[j])) invalid_text(type_id);
    }
    while (i + 1 < text.size() && text[i] == '0') ++i;
    if (negative) out += '-';
    out.append(text.substr(i));
}

struct NumberParts {
    bool negative = false;
    std::string_view int_digits;   // may be empty (".5")
    std::string_view frac_digits;  // empty when there is no fraction
    char exp_sign = 0;             // 0, '+' or '-'
    std::string_view exp_digits;   // empty when there is no exponent
};

// numeric/float text. Returns false for anything that is not a finite decimal number.
bool split_number(std::string_view text, NumberParts& parts) {
    std::size_t i = 0;
    const std::size_t n = text.size();
    if (i < n && (text[i] == '-' || text[i] == '+')) parts.negative = text[i++] == '-';
    std::size_t start = i;
    while (i < n && is_digit(text[i])) ++i;
    parts.int_digits = text.substr(start, i - start);
    if (i < n && text[i] == '.') {
        start = ++i;
        while (i < n && is_digit(text[i])) ++i;
        parts.frac_digits = text.substr(start, i - start);
    }
    if (parts.int_digits.empty() && parts.frac_digits.empty()) return false;
    if (i < n && (text[i] == 'e' || text[i] == 'E')) {
        ++i;
        if (i < n && (text[i] == '-' || text[i] == '+')) parts.exp_sign = text[i++];
        start = i;
        while (i < n && is_digit(text[i])) ++i;
        parts.exp_digits = text.substr(start, i - start);
        if (parts.exp_digits.empty()) return false;
    }
    return i == n;
}

// NaN and the infinities are valid numeric/float values but not JSON numbers: they become the
// strings PostgreSQL prints. Returns false when `body` (after the sign) is none of them.
bool append_special_number(std::string& out, std::string_view text) {
    bool negative = false;
    std::string_view body = text;
    if (!body.empty() && (body[0] == '-' || body[0] == '+')) {
        negative = body[0] == '-';
        body.remove_prefix(1);
    }
    if (iequals_ascii(body, "nan")) {
        out += "\"NaN\"";
        return true;
    }
    if (iequals_ascii(body, "infinity") || iequals_ascii(body, "inf")) {
        out += negative ? "\"-Infinity\"" : "\"Infinity\"";
        return true;
    }
    return false;
}

void append_decimal(std::string& out, std::string_view text, TypeId type_id) {
    text = trim(text, kPgWhitespace);
    NumberParts parts;
    if (!split_number(text, parts)) {
        if (append_special_number(out, text)) return;
        invalid_text(type_id);
    }
    if (parts.negative) out += '-';
    std::string_view int_digits = parts.int_digits;
    while (int_digits.size() > 1 && int_digits[0] == '0') int_digits.remove_prefix(1);
    if (int_digits.empty()) {
        out += '0';
    } else {
        out.append(int_digits);
    }
    if (!parts.frac_digits.empty()) {
        out += '.';
        out.append(parts.frac_digits);
    }
    if (!parts.exp_digits.empty()) {
        out += 'e';
        if (parts.exp_sign != 0) out += parts.exp_sign;
        out.append(parts.exp_digits);
    }
}

// EpochMillis on numeric: the value rounded toward negative infinity to a whole number, because
// users_sync casts the key's text to bigint. No exponent: numeric's output never has one.
void append_numeric_floor(std::string& out, std::string_view text) {
    text = trim(text, kPgWhitespace);
    NumberParts parts;
    if (!split_number(text, parts) || !parts.exp_digits.empty()) {
        throw MappingError("invalid numeric text for epoch_millis (not a finite decimal number)");
    }
    std::int64_t magnitude = 0;
    if (!parts.int_digits.empty()) {
        const char* first = parts.int_digits.data();
        const char* last = first + parts.int_digits.size();
        auto res = std::from_chars(first, last, magnitude);
        if (res.ec != std::errc() || res.ptr != last) {
            throw MappingError("numeric value out of range for epoch_millis");
        }
    }
    const bool has_fraction = parts.frac_digits.find_first_not_of('0') != std::string_view::npos;
    if (parts.negative && has_fraction) {
        if (magnitude == std::numeric_limits<std::int64_t>::max())
            throw MappingError("numeric value out of range for epoch_millis");
        ++magnitude;
    }
    append_int64(out, parts.negative ? -magnitude : magnitude);
}

// ---- dates and times -------------------------------------------------------------------------

constexpr std::int64_t kSecondsPerDay = 86'400;

enum class TimeKind { Date, Timestamp, Timestamptz };

struct TimeValue {
    int infinite = 0;  // +1 infinity, -1 -infinity
    CivilDate date{0, 1, 1};
    std::int64_t unix_seconds = 0;  // UTC, floor
    std::int32_t micros = 0;        // [0, 1e6)
};

class TimeCursor {
public:
    explicit TimeCursor(std::string_view s) : s_(s) {}
    bool done() const { return i_ == s_.size(); }
    bool eat(char c) {
        if (i_ < s_.size() && s_[i_] == c) {
            ++i_;
            return true;
        }
        return false;
    }
    char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
    void skip_spaces() {
        while (i_ < s_.size() && s_[i_] == ' ') ++i_;
    }
    std::string_view rest() const { return s_.substr(i_); }
    // Between min and max digits (as many as there are, up to max).
    bool number(std::size_t min, std::size_t max, std::int64_t& value) {
        std::size_t n = 0;
        value = 0;
        while (i_ < s_.size() && n < max && is_digit(s_[i_])) {
            value = value * 10 + (s_[i_] - '0');
            ++i_;
            ++n;
        }
        return n >= min;
    }
    // Fraction digits after '.': the first six as microseconds, the rest dropped (floor).
    bool fraction(std::int32_t& micros) {
        std::size_t n = 0;
        std::int32_t v = 0;
        while (i_ < s_.size() && is_digit(s_[i_])) {
            if (n < 6) v = v * 10 + (s_[i_] - '0');
            ++i_;
            ++n;
        }
        for (std::size_t k = n; k < 6; ++k) v *= 10;
        micros = v;
        return n > 0;
    }

private:
    std::string_view s_;
    std::size_t i_ = 0;
};

// PostgreSQL's ISO output: `YYYY-MM-DD[ HH:MM:SS[.ffffff][+HH[:MM[:SS]]]][ BC]`, or infinity.
// Also accepted: 'T' between date and time, 'Z', an offset without colons, an offset on a
// timestamp without time zone (applied). Returns false on anything else.
bool parse_time(std::string_view text, TimeKind kind, TimeValue& out) {
    text = trim(text, kPgWhitespace);
    if (iequals_ascii(text, "infinity") || iequals_ascii(text, "+infinity")) {
        out.infinite = 1;
        return true;
    }
    if (iequals_ascii(text, "-infinity")) {
        out.infinite = -1;
        return true;
    }
    TimeCursor c(text);
    std::int64_t year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    std::int32_t micros = 0;
    std::int64_t offset = 0;
    if (!c.number(1, 7, year) || !c.eat('-') || !c.number(1, 2, month) || !c.eat('-') ||
        !c.number(1, 2, day)) {
        return false;
    }
    if (kind != TimeKind::Date) {
        if (!c.eat(' ') && !c.eat('T')) return false;
        if (!c.number(1, 2, hour) || !c.eat(':') || !c.number(2, 2, minute) || !c.eat(':') ||
            !c.number(2, 2, second)) {
            return false;
        }
        if (c.eat('.') && !c.fraction(micros)) return false;
        if (c.eat('Z') || c.eat('z')) {
            offset = 0;
        } else if (c.peek() == '+' || c.peek() == '-') {
            const int sign = c.peek() == '-' ? -1 : 1;
            c.eat(c.peek());
            std::int64_t oh = 0, om = 0, os = 0;
            if (!c.number(2, 2, oh)) return false;
            // Minutes and seconds are optional, with or without a colon: +05, +05:30, +0530.
            auto optional_part = [&c](std::int64_t& v) {
                if (c.eat(':')) return c.number(2, 2, v);
                return !is_digit(c.peek()) || c.number(2, 2, v);
            };
            if (!optional_part(om) || !optional_part(os)) return false;
            if (oh > 15 || om > 59 || os > 59) return false;
            offset = sign * (oh * 3600 + om * 60 + os);
        }
    }
    c.skip_spaces();
    bool bc = false;
    if (!c.done()) {
        if (iequals_ascii(c.rest(), "bc")) {
            bc = true;
        } else if (!iequals_ascii(c.rest(), "ad")) {
            return false;
        }
    }
    if (year == 0) return false;  // there is no year 0 in PostgreSQL's (and the calendar's) terms
    if (bc) year = 1 - year;
    if (month < 1 || month > 12) return false;
    const auto m = static_cast<unsigned>(month);
    if (day < 1 || day > days_in_month(year, m)) return false;
    if (hour > 23 || minute > 59 || second > 59) return false;
    const auto d = static_cast<unsigned>(day);
    out.date = CivilDate{year, m, d};
    out.unix_seconds =
        days_from_civil(out.date) * kSecondsPerDay + hour * 3600 + minute * 60 + second - offset;
    out.micros = micros;
    return true;
}

void append_2(std::string& out, unsigned v) {
    out += static_cast<char>('0' + v / 10);
    out += static_cast<char>('0' + v % 10);
}

void append_padded(std::string& out, std::int64_t v, int width) {
    char buf[24];
    auto res = std::to_chars(buf, buf + sizeof buf, v);
    for (auto len = res.ptr - buf; len < width; ++len) out += '0';
    out.append(buf, res.ptr);
}

// 0000-9999 as four digits; otherwise ECMAScript's expanded years, "+010000" / "-000043".
void append_iso_date(std::string& out, const CivilDate& c) {
    if (c.year >= 0 && c.year <= 9999) {
        append_padded(out, c.year, 4);
    } else {
        out += c.year < 0 ? '-' : '+';
        append_padded(out, c.year < 0 ? -c.year : c.year, 6);
    }
    out += '-';
    append_2(out, c.month);
    out += '-';
    append_2(out, c.day);
}

void append_iso_timestamp(std::string& out, std::int64_t unix_seconds, std::int32_t micros) {
    const std::int64_t days = floor_div(unix_seconds, kSecondsPerDay);
    const auto sod = static_cast<unsigned>(unix_seconds - days * kSecondsPerDay);
    out += '"';
    append_iso_date(out, civil_from_days(days));
    out += 'T';
    append_2(out, sod / 3600);
    out += ':';
    append_2(out, sod / 60 % 60);
    out += ':';
    append_2(out, sod % 60);
    if (micros != 0) {
        out += '.';
        append_padded(out, micros, 6);
    }
    out += "Z\"";
}

void append_time(std::string& out, std::string_view text, TypeId type_id, Conversion as) {
    const TimeKind kind = type_id == kDateOid        ? TimeKind::Date
                          : type_id == kTimestampOid ? TimeKind::Timestamp
                                                     : TimeKind::Timestamptz;
    TimeValue t;
    if (!parse_time(text, kind, t)) invalid_text(type_id);
    if (t.infinite != 0) {
        if (as == Conversion::EpochMillis) {
            throw MappingError(
                fmt::format("{} infinity has no epoch_millis value", builtin_type_name(type_id)));
        }
        out += t.infinite > 0 ? "\"infinity\"" : "\"-infinity\"";
        return;
    }
    if (as == Conversion::EpochMillis) {
        // Seconds first: PostgreSQL's largest timestamps overflow int64 microseconds since 1970.
        append_int64(out, t.unix_seconds * 1000 + t.micros / 1000);
    } else if (kind == TimeKind::Date) {
        out += '"';
        append_iso_date(out, t.date);
        out += '"';
    } else {
        append_iso_timestamp(out, t.unix_seconds, t.micros);
    }
}

void append_column_json(std::string& out, std::string_view text, TypeId type_id, Conversion as) {
    if (as == Conversion::Text) {
        append_json_string(out, text);
        return;
    }
    if (as == Conversion::EpochMillis) {
        switch (type_id) {
            case kInt2Oid:
            case kInt4Oid:
            case kInt8Oid: append_integer(out, text, type_id); return;
            case kNumericOid: append_numeric_floor(out, text); return;
            case kDateOid:
            case kTimestampOid:
            case kTimestamptzOid: append_time(out, text, type_id, as); return;
            default:
                throw MappingError(
                    fmt::format("epoch_millis does not apply to {}", describe_type(type_id)));
        }
    }
    switch (type_id) {
        case kBoolOid: {
            const std::string_view t = trim(text, kPgWhitespace);
            if (t == "t") {
                out += "true";
            } else if (t == "f") {
                out += "false";
            } else {
                throw MappingError("invalid bool text (expected t or f)");
            }
            return;
        }
        case kInt2Oid:
        case kInt4Oid:
        case kInt8Oid:
        case kOidOid: append_integer(out, text, type_id); return;
        case kNumericOid:
        case kFloat4Oid:
        case kFloat8Oid: append_decimal(out, text, type_id); return;
        case kJsonOid:
        case kJsonbOid: {
            // Trusted: PostgreSQL validated it on input and prints valid JSON.
            const std::string_view t = trim(text, kPgWhitespace);
            if (t.empty()) invalid_text(type_id);
            out.append(t);
            return;
        }
        case kDateOid:
        case kTimestampOid:
        case kTimestamptzOid: append_time(out, text, type_id, as); return;
        default: append_json_string(out, text);
    }
}

std::string column_list(const pgoutput::Relation& relation) {
    std::string out;
    for (const auto& c : relation.columns) {
        if (!out.empty()) out += ", ";
        out += c.name;
    }
    return out;
}

int find_column(const pgoutput::Relation& relation, const std::string& name) {
    for (std::size_t i = 0; i < relation.columns.size(); ++i) {
        if (relation.columns[i].name == name) return static_cast<int>(i);
    }
    return -1;
}

const char* kind_name(ColumnKind kind) {
    switch (kind) {
        case ColumnKind::Null: return "null";
        case ColumnKind::UnchangedToast: return "unchanged TOAST";
        case ColumnKind::Text: return "text";
        case ColumnKind::Binary: return "binary";
    }
    return "unknown";
}

}  // namespace

// ---- RowImage --------------------------------------------------------------------------------

std::string& RowImage::begin_value(std::string_view quoted) {
    if (json_.empty()) {
        json_ += '{';
    } else {
        json_.back() = ',';  // the closing brace of the fields before
    }
    const auto key_begin = static_cast<std::uint32_t>(json_.size());
    json_ += quoted;
    json_ += ':';
    fields_.push_back(Field{key_begin, static_cast<std::uint32_t>(json_.size()), 0});
    return json_;
}

void RowImage::end_value() {
    // Offsets are 32-bit: an image past 4 GiB (memory would run out first) is refused, never
    // read back wrong.
    if (json_.size() >= std::numeric_limits<std::uint32_t>::max()) {
        throw MappingError("a row image larger than 4 GiB");
    }
    fields_.back().value_end = static_cast<std::uint32_t>(json_.size());
    json_ += '}';
}

void RowImage::add(std::string_view json_key, std::string_view value) {
    add_quoted(json_quote(json_key), value);
}

void RowImage::add_quoted(std::string_view quoted_key, std::string_view value) {
    begin_value(quoted_key) += value;
    end_value();
}

const RowImage::Field* RowImage::find(std::string_view quoted) const {
    for (const auto& f : fields_) {
        if (quoted_key(f) == quoted) return &f;
    }
    return nullptr;
}

std::optional<std::string_view> RowImage::value_of(std::string_view json_key) const {
    if (const auto* f = find(json_quote(json_key))) return value(*f);
    return std::nullopt;
}

void RowImage::merge_from(const RowImage& newer) {
    if (&newer == this) return;
    // Keys are escaped the same way in both images, so their quoted forms compare.
    RowImage merged;
    merged.json_.reserve(json_.size() + newer.json_.size());
    merged.fields_.reserve(fields_.size() + newer.fields_.size());
    for (const auto& f : fields_) {
        const auto* n = newer.find(quoted_key(f));
        merged.add_quoted(quoted_key(f), n ? newer.value(*n) : value(f));
    }
    for (const auto& n : newer.fields_) {
        if (find(newer.quoted_key(n)) != nullptr) continue;
        merged.add_quoted(newer.quoted_key(n), newer.value(n));
    }
    json_ = std::move(merged.json_);
    fields_ = std::move(merged.fields_);
    // Full if either side is: a full older image supplies what a partial newer one left out, a
    // full newer one has every key. Two partial images may together cover every key, but the
    // image cannot know the rule's keys, so it stays partial: merging over the stored row is
    // correct either way, replacing it with an incomplete image would not be.
    partial = partial && newer.partial;
    key = newer.key;
}

// ---- BoundMapping ----------------------------------------------------------------------------

BoundMapping BoundMapping::bind(const MappingRule& rule, const pgoutput::Relation& relation) {
    BoundMapping m;
    m.rule_ = rule;
    m.relation_name_ = pgoutput::qualified_name(relation);
    m.column_count_ = relation.columns.size();
    const std::string& name = m.relation_name_;

    if (rule.source_name() != name) {
        throw MappingError(
            fmt::format("mapping {}: cannot bind to relation {}", rule.source_name(), name));
    }
    if (rule.key_columns.empty()) {
        throw MappingError(fmt::format("mapping {}: no key columns", name));
    }
    for (const auto& column : rule.key_columns) {
        const int pos = find_column(relation, column);
        if (pos < 0) {
            throw MappingError(fmt::format(
                "mapping {}: key column \"{}\" not found in the relation's columns ({})", name,
                column, column_list(relation)));
        }
        m.key_positions_.push_back(pos);
    }

    m.fields_.reserve(rule.fields.size());
    for (std::size_t i = 0; i < rule.fields.size(); ++i) {
        const FieldRule& f = rule.fields[i];
        for (std::size_t j = 0; j < i; ++j) {
            if (rule.fields[j].json_key == f.json_key) {
                throw MappingError(fmt::format("mapping {}: raw_json key \"{}\" is mapped twice",
                                               name, f.json_key));
            }
        }
        const int pos = find_column(relation, f.column);
        if (pos < 0) {
            throw MappingError(fmt::format(
                "mapping {}: column \"{}\" (raw_json key \"{}\") not found in the relation's "
                "columns ({}) (hint: if the table has it, the publication's column list leaves it "
                "out: add it with ALTER PUBLICATION ... SET TABLE; `authsync check` names it)",
                name, f.column, f.json_key, column_list(relation)));
        }
        const TypeId type_id = relation.columns[static_cast<std::size_t>(pos)].type_id;
        if (f.as == Conversion::EpochMillis && !epoch_millis_applies(type_id)) {
            throw MappingError(fmt::format(
                "mapping {}: column \"{}\" (raw_json key \"{}\") has {}; epoch_millis applies "
                "only to timestamptz, timestamp, date, int2, int4, int8 and numeric columns",
                name, f.column, f.json_key, describe_type(type_id)));
        }
        const bool is_key = std::find(m.key_positions_.begin(), m.key_positions_.end(), pos) !=
                            m.key_positions_.end();
        if (f.json_key == "id") {
            // users_sync.id is generated from raw_json->>'id', so the two must agree.
            if (rule.key_columns.size() != 1 || f.column != rule.key_columns[0]) {
                throw MappingError(fmt::format(
                    "mapping {}: raw_json key \"id\" must come from the single key column (it "
                    "maps column \"{}\", the key is ({}))",
                    name, f.column, fmt::join(rule.key_columns, ", ")));
            }
            m.has_id_field_ = true;
        }
        m.fields_.push_back(
            BoundField{f.json_key, json_quote(f.json_key), pos, type_id, f.as, is_key});
    }
    return m;
}

void BoundMapping::check_width(const TupleData& tuple, const char* which) const {
    if (tuple.size() != column_count_) {
        throw MappingError(fmt::format(
            "mapping {}: {} has {} columns but the bound relation has {} (rebind after each "
            "Relation message)",
            relation_name_, which, tuple.size(), column_count_));
    }
}

const TupleColumn& BoundMapping::new_key_column(std::size_t i, const TupleData& tuple,
                                                const TupleData* old_tuple) const {
    const auto pos = static_cast<std::size_t>(key_positions_[i]);
    const TupleColumn& col = tuple[pos];
    switch (col.kind) {
        case ColumnKind::Text: return col;
        case ColumnKind::Null:
            throw MappingError(fmt::format("mapping {}: key column \"{}\" is null", relation_name_,
                                           rule_.key_columns[i]));
        case ColumnKind::UnchangedToast:
            // The value did not change, so the old tuple's copy, when sent, is the same value.
            if (old_tuple != nullptr && (*old_tuple)[pos].kind == ColumnKind::Text) {
                return (*old_tuple)[pos];
            }
            throw MappingError(fmt::format(
                "mapping {}: key column \"{}\" is unchanged TOAST and no old tuple carries it",
                relation_name_, rule_.key_columns[i]));
        case ColumnKind::Binary: break;
    }
    throw MappingError(fmt::format(
        "mapping {}: key column \"{}\" is in binary format (authsync reads text format only)",
        relation_name_, rule_.key_columns[i]));
}

void BoundMapping::append_field(std::string& out, std::size_t i, std::string_view text) const {
    const BoundField& f = fields_[i];
    try {
        append_column_json(out, text, f.type_id, f.as);
    } catch (const MappingError& e) {
        throw MappingError(fmt::format("mapping {}: column \"{}\" (raw_json key \"{}\", {}): {}",
                                       relation_name_, rule_.fields[i].column, f.json_key,
                                       describe_type(f.type_id), e.what()));
    }
}

RowImage BoundMapping::map_new(const TupleData& tuple, const TupleData* old_tuple) const {
    check_width(tuple, "the new tuple");
    // An Update without an old tuple may come as an empty one.
    if (old_tuple != nullptr && old_tuple->empty()) old_tuple = nullptr;
    if (old_tuple != nullptr) check_width(*old_tuple, "the old tuple");

    RowImage image;
    if (key_positions_.size() == 1) {
        image.key = new_key_column(0, tuple, old_tuple).value;
    } else {
        for (std::size_t i = 0; i < key_positions_.size(); ++i) {
            append_key_part(image.key, i, new_key_column(i, tuple, old_tuple).value);
        }
    }

    std::size_t estimate = 2 + (has_id_field_ ? 0 : image.key.size() + 8);
    for (const auto& f : fields_) {
        estimate +=
            f.quoted_key.size() + tuple[static_cast<std::size_t>(f.column)].value.size() + 4;
    }
    image.reserve(estimate);
    if (!has_id_field_) {
        append_json_string(image.begin_value(R"("id")"), image.key);
        image.end_value();
    }
    for (std::size_t i = 0; i < fields_.size(); ++i) {
        const BoundField& f = fields_[i];
        const auto pos = static_cast<std::size_t>(f.column);
        const TupleColumn* col = &tuple[pos];
        if (col->kind == ColumnKind::UnchangedToast && f.is_key && old_tuple != nullptr &&
            (*old_tuple)[pos].kind == ColumnKind::Text) {
            col = &(*old_tuple)[pos];  // as for the key itself
        }
        switch (col->kind) {
            case ColumnKind::Null: image.add_quoted(f.quoted_key, "null"); break;
            case ColumnKind::UnchangedToast:
                // Not NULL and not a default: the writer keeps the stored value for this key.
                image.partial = true;
                break;
            case ColumnKind::Text: {
                append_field(image.begin_value(f.quoted_key), i, col->value);
                image.end_value();
                break;
            }
            case ColumnKind::Binary:
                throw MappingError(fmt::format(
                    "mapping {}: column \"{}\" (raw_json key \"{}\") is in binary format "
                    "(authsync reads text format only)",
                    relation_name_, rule_.fields[i].column, f.json_key));
        }
    }
    return image;
}

std::string BoundMapping::key_of_old(const TupleData& old_tuple) const {
    check_width(old_tuple, "the old tuple");
    std::string key;
    for (std::size_t i = 0; i < key_positions_.size(); ++i) {
        const TupleColumn& col = old_tuple[static_cast<std::size_t>(key_positions_[i])];
        if (col.kind != ColumnKind::Text) {
            if (col.kind == ColumnKind::Null) {
                throw MappingError(fmt::format(
                    "mapping {}: key column \"{}\" is null in the old tuple: it is not part of "
                    "the replica identity (hint: make it the primary key, or set REPLICA "
                    "IDENTITY USING INDEX on a unique index over it, or REPLICA IDENTITY FULL)",
                    relation_name_, rule_.key_columns[i]));
            }
            throw MappingError(fmt::format("mapping {}: key column \"{}\" is {} in the old tuple",
                                           relation_name_, rule_.key_columns[i],
                                           kind_name(col.kind)));
        }
        if (key_positions_.size() == 1) return col.value;
        append_key_part(key, i, col.value);
    }
    return key;
}

// ---- free functions --------------------------------------------------------------------------

void append_key_part(std::string& key, std::size_t index, std::string_view part) {
    // Joined with ':'; a ':' or a backslash inside a part gets a backslash before it, so that
    // ("a:b", "c") and ("a", "b:c") stay two ids. Parts with neither read as they always did.
    if (index != 0) key += ':';
    for (char c : part) {
        if (c == ':' || c == '\\') key += '\\';
        key += c;
    }
}

std::string column_to_json(std::string_view text, TypeId type_id, Conversion as) {
    std::string out;
    out.reserve(text.size() + 2);
    append_column_json(out, text, type_id, as);
    return out;
}

std::string json_quote(std::string_view text) {
    std::string out;
    append_json_string(out, text);
    return out;
}

}  // namespace authsync::mapping
