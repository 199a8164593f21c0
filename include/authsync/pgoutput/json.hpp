// JSON rendering of decoded pgoutput messages, for `authsync decode` and `authsync peek`.
//
// Column values are shown as sent: text as a string, binary as hex, NULL as null, and an
// unchanged TOASTed value as kind "unchanged_toast" with no value. This is an inspection tool's
// view; it is never logged (values are users' data).
#pragma once

#include <nlohmann/json.hpp>

#include "authsync/pgoutput/messages.hpp"
#include "authsync/pgoutput/relation_cache.hpp"

namespace authsync::pgoutput {

// Renders one message. DML messages are resolved against `relations` for names; a DML message
// for an unknown relation, or with a column count that does not match, throws ProtocolError.
nlohmann::json to_json(const Message& message, const RelationCache& relations);

}  // namespace authsync::pgoutput
