#include "values.hpp"

#include <fmt/format.h>

#include "text.hpp"

namespace authsync::status::detail {

Json encode(Lsn v) {
    return v.to_string();
}

Json encode(PgTimestamp v) {
    return v.to_iso8601();
}

Json encode(const MappingRows& v) {
    return Json{{"upserts", v.upserts}, {"deletes", v.deletes}};
}

Json encode(const CopyProgress& v) {
    return Json{{"rows_copied", v.copied}, {"rows_estimated", encode(v.estimated)}};
}

Json encode(const TargetProgress& v) {
    return Json{{"state", v.state},
                {"error", v.error.empty() ? Json() : Json(v.error)},
                {"durable_lsn", encode(v.durable_lsn)},
                {"lag_bytes", v.lag_bytes},
                {"checkpoint_commits", v.checkpoint_commits},
                {"rows_applied", encode(v.rows_applied)}};
}

bool decode(const Json& j, std::string& into) {
    if (!j.is_string()) return false;
    into = j.get<std::string>();
    return true;
}

bool decode(const Json& j, std::uint64_t& into) {
    if (!j.is_number_unsigned()) return false;
    into = j.get<std::uint64_t>();
    return true;
}

bool decode(const Json& j, std::int64_t& into) {
    if (!j.is_number_integer()) return false;
    // An unsigned value above INT64_MAX is not one of ours; it does not wrap into a negative.
    if (j.is_number_unsigned() && j.get<std::uint64_t>() > INT64_MAX) return false;
    into = j.get<std::int64_t>();
    return true;
}

bool decode(const Json& j, double& into) {
    if (j.is_null()) {
        into = std::nan("");
        return true;
    }
    if (!j.is_number()) return false;
    into = j.get<double>();
    return true;
}

bool decode(const Json& j, bool& into) {
    if (!j.is_boolean()) return false;
    into = j.get<bool>();
    return true;
}

bool decode(const Json& j, Lsn& into) {
    if (!j.is_string()) return false;
    const auto lsn = Lsn::parse(j.get_ref<const std::string&>());
    if (lsn) into = *lsn;
    return lsn.has_value();
}

bool decode(const Json& j, PgTimestamp& into) {
    if (!j.is_string()) return false;
    const auto t = PgTimestamp::parse_iso8601(j.get_ref<const std::string&>());
    if (t) into = *t;
    return t.has_value();
}

bool decode(const Json& j, MappingRows& into) {
    if (!j.is_object()) return false;
    decode_member(j, "upserts", into.upserts);
    decode_member(j, "deletes", into.deletes);
    return true;
}

bool decode(const Json& j, TargetProgress& into) {
    if (!j.is_object()) return false;
    decode_member(j, "state", into.state);
    decode_member(j, "error", into.error);  // null while streaming
    decode_member(j, "durable_lsn", into.durable_lsn);
    decode_member(j, "lag_bytes", into.lag_bytes);
    decode_member(j, "checkpoint_commits", into.checkpoint_commits);
    decode_member(j, "rows_applied", into.rows_applied);
    return true;
}

bool decode(const Json& j, CopyProgress& into) {
    if (!j.is_object()) return false;
    decode_member(j, "rows_copied", into.copied);
    decode_member(j, "rows_estimated", into.estimated);
    return true;
}

Samples one_sample(std::string value) {
    return {MetricSample{"", {}, std::move(value)}};
}

Samples samples_of(std::uint64_t v) {
    return one_sample(fmt::format("{}", v));
}

Samples samples_of(std::int64_t v) {
    return one_sample(fmt::format("{}", v));
}

Samples samples_of(double v) {
    return std::isnan(v) ? Samples{} : one_sample(prom_number(v));
}

Samples samples_of(Lsn v) {
    return samples_of(v.value);
}

Samples samples_of(PgTimestamp v) {
    return samples_of(static_cast<double>(v.unix_micros()) / 1e6);
}

}  // namespace authsync::status::detail
