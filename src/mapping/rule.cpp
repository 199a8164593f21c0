#include "authsync/mapping/rule.hpp"

#include "authsync/core/sql.hpp"

namespace authsync::mapping {

std::string MappingRule::scope_text() const {
    std::string out;
    for (const auto& [column, value] : scope) {
        out += (out.empty() ? "" : "; ") + column + "=" + value;
    }
    return out;
}

std::string scope_condition(const std::string& column, const std::string& value) {
    return quote_identifier(column) + " = " + quote_literal(value);
}

}  // namespace authsync::mapping
