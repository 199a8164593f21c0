#include "authsync/pg/error_class.hpp"

#include <algorithm>
#include <boost/system/system_error.hpp>

#include "authsync/core/error.hpp"
#include "authsync/pg/connection.hpp"

namespace authsync::pg {

namespace {

// Retrying later can succeed: the server or the network recovers, the other holder lets go.
constexpr std::string_view kTransientClasses[] = {
    "08",  // connection exception
    "53",  // insufficient resources: disk full, out of memory, too many connections
};
constexpr std::string_view kTransientStates[] = {
    "40001",  // serialization_failure
    "40P01",  // deadlock_detected
    "55006",  // object_in_use: the slot is read by another process
    "55P03",  // lock_not_available
    "57014",  // query_canceled
    "57P01",  // admin_shutdown
    "57P02",  // crash_shutdown
    "57P03",  // cannot_connect_now
};

// One change's values are at fault: the same change would fail again, the next may not.
constexpr std::string_view kRowClasses[] = {
    "22",  // data exception
    "23",  // integrity constraint violation
};
constexpr std::string_view kRowStates[] = {
    "P0001",  // raise_exception: a trigger's RAISE EXCEPTION
};

bool in(std::string_view sqlstate, const auto& classes, const auto& states) {
    // A SQLSTATE is five characters; anything else is not one, and matches nothing.
    if (sqlstate.size() != 5) return false;
    return std::any_of(std::begin(classes), std::end(classes),
                       [&](std::string_view c) { return sqlstate.starts_with(c); }) ||
           std::find(std::begin(states), std::end(states), sqlstate) != std::end(states);
}

}  // namespace

ErrorClass classify_sqlstate(std::string_view sqlstate) {
    if (in(sqlstate, kTransientClasses, kTransientStates)) return ErrorClass::Transient;
    if (in(sqlstate, kRowClasses, kRowStates)) return ErrorClass::Row;
    return ErrorClass::Permanent;
}

ErrorClass classify(const std::exception& e) {
    if (const auto* pg = dynamic_cast<const PgError*>(&e)) {
        if (pg->sqlstate().empty() && pg->is_connection_loss()) return ErrorClass::Transient;
        return classify_sqlstate(pg->sqlstate());
    }
    if (dynamic_cast<const SlotBusyError*>(&e)) return ErrorClass::Transient;
    if (const auto* service = dynamic_cast<const ServiceError*>(&e)) {
        return service->transient() ? ErrorClass::Transient : ErrorClass::Permanent;
    }
    if (dynamic_cast<const ProtocolError*>(&e)) return ErrorClass::Protocol;
    // The event loop's waits on a connection's socket fail this way when the peer is gone.
    if (dynamic_cast<const boost::system::system_error*>(&e)) return ErrorClass::Transient;
    return ErrorClass::Permanent;
}

}  // namespace authsync::pg
