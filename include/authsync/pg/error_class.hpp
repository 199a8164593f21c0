// What a failure means for authsync, decided in this one place.
//
// Transient: worth a reconnect with backoff (the connection was lost, the server is shutting
// down, short of resources, or briefly holds a lock or the slot, a serialization failure).
// Row: one change's fault (a constraint violation, a data exception, a trigger's RAISE
// EXCEPTION), which apply.on_error may set aside as a dead letter. Permanent: anything else;
// the supervisor stops with a non-zero exit. Protocol: the replication stream broke its own
// rules; a stop too.
//
// The decision rests on the SQLSTATE the server reported and on the exception's type, never
// on its message. Nothing invents a SQLSTATE to steer it, and an error without one is never
// transient unless libpq reported the connection lost (PgError::is_connection_loss). Pure: no
// libpq calls here, so each rule is unit-tested.
#pragma once

#include <exception>
#include <string_view>

namespace authsync::pg {

enum class ErrorClass { Transient, Row, Permanent, Protocol };

// By SQLSTATE alone, for an error the server reported:
//   08xxx connection exception, 40001 serialization failure, 40P01 deadlock, 53xxx
//   insufficient resources, 55006 object in use (a slot another process reads), 55P03 lock
//   not available, 57014 query canceled, 57P01-57P03 admin shutdown, crash shutdown, cannot
//   connect now: Transient.
//   22xxx data exception, 23xxx integrity constraint violation, P0001 raise exception: Row.
//   Any other, and none: Permanent.
ErrorClass classify_sqlstate(std::string_view sqlstate);

// Any exception authsync may see: a PgError by its SQLSTATE (Transient when it carries none
// but libpq lost the connection), SlotBusyError Transient, ProtocolError Protocol, a socket
// error from the event loop (boost::system::system_error) Transient, anything else Permanent.
ErrorClass classify(const std::exception& e);

}  // namespace authsync::pg
