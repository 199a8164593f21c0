// How each kind of value a status field holds is written (private to src/status): in the /status
// document and read back from it, and as Prometheus samples. With these, a field that shows a
// member as it is declares only where the member is (as_is, metric_of); fields.cpp declares the
// fields.
#pragma once

#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "authsync/status/fields.hpp"

namespace authsync::status::detail {

using Samples = std::vector<MetricSample>;

// In the document. A non-finite double is written as null, and so is an unknown value.
inline Json encode(const std::string& v) {
    return v;
}
inline Json encode(std::uint64_t v) {
    return v;
}
inline Json encode(std::int64_t v) {
    return v;
}
inline Json encode(double v) {
    return v;
}
inline Json encode(bool v) {
    return v;
}
Json encode(Lsn v);
Json encode(PgTimestamp v);
Json encode(const MappingRows& v);
Json encode(const CopyProgress& v);
Json encode(const TargetProgress& v);

template <typename T>
Json encode(const std::optional<T>& v) {
    return v ? encode(*v) : Json(nullptr);
}

template <typename T>
Json encode(const std::map<std::string, T>& by_name) {
    Json j = Json::object();
    for (const auto& [name, v] : by_name) j[name] = encode(v);
    return j;
}

// Read back: true when `j` holds a value of the type, which is then in `into`.
bool decode(const Json& j, std::string& into);
bool decode(const Json& j, std::uint64_t& into);
bool decode(const Json& j, std::int64_t& into);
bool decode(const Json& j, double& into);  // null reads as NaN, as a non-finite value is written
bool decode(const Json& j, bool& into);
bool decode(const Json& j, Lsn& into);
bool decode(const Json& j, PgTimestamp& into);
bool decode(const Json& j, MappingRows& into);
bool decode(const Json& j, CopyProgress& into);
bool decode(const Json& j, TargetProgress& into);

template <typename T>
bool decode(const Json& j, std::optional<T>& into) {
    if (j.is_null()) {
        into.reset();
        return true;
    }
    T value{};
    if (!decode(j, value)) return false;
    into = std::move(value);
    return true;
}

template <typename T>
bool decode(const Json& j, std::map<std::string, T>& into) {
    if (!j.is_object()) return false;
    for (const auto& [name, v] : j.items()) {
        T value{};
        if (decode(v, value)) into[name] = std::move(value);
    }
    return true;
}

// The member `key` of object `j` into `into`; false when absent or of another type.
template <typename T>
bool decode_member(const Json& j, const char* key, T& into) {
    const auto it = j.find(key);
    return it != j.end() && decode(*it, into);
}

// As Prometheus samples: one unlabelled sample, or none while the value is unknown.
Samples one_sample(std::string value);
Samples samples_of(std::uint64_t v);
Samples samples_of(std::int64_t v);
Samples samples_of(double v);  // NaN says nothing; an absent sample says the same and parses
Samples samples_of(Lsn v);
Samples samples_of(PgTimestamp v);  // Unix time, seconds

template <typename T>
Samples samples_of(const std::optional<T>& v) {
    return v ? samples_of(*v) : Samples{};
}

// Fields that show a member as it is. `where` is a pointer to a member of Snapshot, or a
// generic lambda that reaches one, as in `[](auto& s) -> auto& { return s.slot_health.x; }`.
template <typename Where, typename S>
decltype(auto) reach(const Where& where, S& snapshot) {
    if constexpr (std::is_member_object_pointer_v<Where>) {
        return (snapshot.*where);
    } else {
        return where(snapshot);
    }
}

template <typename Where>
JsonKey as_is(Where where, std::string_view group = {}) {
    return JsonKey{group, [where](const Report& r) { return encode(reach(where, r.snapshot)); },
                   [where](const Json& j, Report& r) { decode(j, reach(where, r.snapshot)); }};
}

template <typename Where>
Metric metric_of(std::string_view name, std::string_view type, std::string_view help, Where where) {
    return Metric{name, type, help,
                  [where](const Snapshot& s) { return samples_of(reach(where, s)); }};
}

}  // namespace authsync::status::detail
