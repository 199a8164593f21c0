// Apply lanes: which writer owns a target key.
//
// Every change to one target key goes to the same lane, so per-key order holds while lanes
// apply in parallel. The lane is computed from the key's text alike in authsync and in SQL (a
// TRUNCATE is applied by every lane to the rows it owns): the first 32 bits of the key's MD5,
// modulo the number of lanes. MD5 here spreads keys evenly; it protects nothing. Pure.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "authsync/core/lsn.hpp"

namespace authsync::pipeline {

// The MD5 digest of `data` (RFC 1321), as PostgreSQL's md5() computes it (there in hex).
std::array<std::uint8_t, 16> md5(std::string_view data);

// The lane of a target key among `lanes` (at least 1).
std::size_t lane_of(std::string_view key, std::size_t lanes);

// An SQL condition, true for the rows whose key (the text expression `key_sql`) belongs to
// `lane`; empty when there is one lane (every key is its).
std::string lane_condition(std::string_view key_sql, std::size_t lane, std::size_t lanes);

// Where each of `lanes` lanes starts, from the checkpoint rows stored by lane (empty: none).
// When the rows are those of another lane count, keys would move between lanes: that is safe
// only if every stored row is at one position (a clean stop or an idle moment leaves them so);
// otherwise throws ConfigError naming both counts and the way out.
std::vector<Lsn> lane_start_positions(const std::map<std::size_t, Lsn>& stored, std::size_t lanes);

}  // namespace authsync::pipeline
