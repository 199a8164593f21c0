// The one flat hierarchy of authsync's exceptions.
//
// Every failure that crosses a module boundary is one of these. What each means (reconnect,
// set the change aside, stop) is decided in one place, pg::classify (pg/error_class.hpp);
// nothing else catches and carries on. PgError, which carries SQLSTATE, lives with the libpq
// shell and derives from Error too.
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

// A replication slot that another process is reading, seen by authsync itself (the slot's
// `active` in pg_replication_slots) before it asks the server for the slot. Another instance
// may be letting go of it (a restart, a takeover), so it is worth waiting for. Its own type,
// not a PgError: the server did not report it, and no SQLSTATE is made up for it.
class SlotBusyError : public Error {
public:
    using Error::Error;
};

// A failure of a service other than PostgreSQL (NATS JetStream), which says itself whether
// trying again may help (a server or a stream leader away, a timeout).
class ServiceError : public Error {
public:
    ServiceError(const std::string& what, bool transient) : Error(what), transient_(transient) {}
    bool transient() const { return transient_; }

private:
    bool transient_;
};

}  // namespace authsync
