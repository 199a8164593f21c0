// `authsync decode`: hex-encoded pgoutput messages in (one per line), JSON out (one per line).
//
// Input is the `data` column of pg_logical_slot_peek_binary_changes, with or without `\x`, or,
// with `copydata`, whole CopyData frames of the streaming protocol ('w' XLogData / 'k'
// keepalive). Blank lines are ignored. The first malformed line stops the run with an error
// that names the line; nothing is skipped.
#pragma once

#include <iosfwd>

#include "authsync/pgoutput/decoder.hpp"

namespace authsync::cli {

struct DecodeOptions {
    pgoutput::DecoderOptions decoder;
    bool copydata = false;
};

// Returns the process exit code: 0 when every line decoded, 1 on the first error (reported
// on `err`).
int run_decode(std::istream& in, std::ostream& out, std::ostream& err,
               const DecodeOptions& options);

}  // namespace authsync::cli
