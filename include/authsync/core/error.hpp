// The one flat hierarchy of authsync's exceptions.
//
// Every failure that crosses a module boundary is one of these. The supervisor decides what is
// transient (reconnect) and what is permanent (stop); nothing else catches and carries on.
// PgError, which carries SQLSTATE, lives with the libpq shell and derives from Error too.
#pragma once

#include <stdexcept>
#include <string>

namespace authsync {

class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// A malformed or unexpected message from the replication wire.
class ProtocolError : public Error {
public:
    using Error::Error;
};

// A configuration file that is wrong: the message names the file, line and column.
class ConfigError : public Error {
public:
    using Error::Error;
};

// A source row that cannot be mapped to a target row.
class MappingError : public Error {
public:
    using Error::Error;
};

}  // namespace authsync
