// The status page's lag chart (private to src/status): an inline SVG of the snapshot's lag
// history over the 15 minutes before `now`, or a note that there are no samples yet.
#pragma once

#include <string>

#include "authsync/status/snapshot.hpp"

namespace authsync::status::detail {

std::string lag_chart(const Snapshot& snapshot);

}  // namespace authsync::status::detail
