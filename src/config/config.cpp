#include "authsync/config/config.hpp"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <tuple>
#include <utility>

#include "authsync/core/error.hpp"
#include "authsync/core/host_port.hpp"

namespace authsync::config {

namespace {

using Keys = std::span<const std::string_view>;

constexpr std::string_view kTopKeys[] = {"source",      "target",    "targets", "status",
                                         "apply",       "reconnect", "fanout",  "mappings",
                                         "presets_dir", "transport"};
constexpr std::string_view kSourceKeys[] = {"dsn",
                                            "slot",
                                            "publication",
                                            "create_slot",
                                            "create_publication",
                                            "status_interval",
                                            "heartbeat_interval",
                                            "snapshot",
                                            "on_slot_lost"};
constexpr std::string_view kTargetKeys[] = {"dsn"};
constexpr std::string_view kNamedTargetKeys[] = {"name", "dsn", "mappings"};
constexpr std::string_view kStatusKeys[] = {"listen", "token", "max_ready_lag_seconds",
                                            "max_connections", "tls"};
constexpr std::string_view kStatusTlsKeys[] = {"certificate", "key"};
constexpr std::string_view kApplyKeys[] = {"batch_max_rows",     "batch_max_bytes",
                                           "batch_max_delay",    "on_error",
                                           "synchronous_commit", "lanes"};
constexpr std::string_view kReconnectKeys[] = {"initial_backoff", "max_backoff"};
constexpr std::string_view kFanoutKeys[] = {"max_target_lag"};
constexpr std::string_view kTargetLagKeys[] = {"seconds", "bytes"};
constexpr std::string_view kTransportKeys[] = {"kind",           "servers",          "stream",
                                               "subject_prefix", "replicas",         "max_bytes",
                                               "max_age",        "duplicate_window", "ack_wait"};
constexpr std::string_view kTransportKinds[] = {"in_process", "nats"};
constexpr std::string_view kMappingKeys[] = {"source", "target",    "key",
                                             "fields", "on_delete", "scope"};
constexpr std::string_view kFieldKeys[] = {"column", "as"};
constexpr std::string_view kPresetMappingKeys[] = {"preset", "preset_options"};
// A preset file (conf/presets/NAME.yaml).
constexpr std::string_view kPresetKeys[] = {"preset",  "description", "options",
                                            "lookups", "sources",     "targets"};
constexpr std::string_view kPresetOptionKeys[] = {"required", "default", "description", "kind"};
// literal: {{name}} in the preset's SQL becomes a quoted SQL literal; identifier: <<name>>
// anywhere in the preset file becomes the value itself (a table or column name).
constexpr std::string_view kOptionKinds[] = {"literal", "identifier"};
constexpr std::string_view kPresetSourceKeys[] = {
    "source",        "mirror",  "key",     "columns", "row_filter", "row_filter_columns",
    "mirror_filter", "indexes", "affects", "scope"};
constexpr std::string_view kPresetColumnKeys[] = {"type", "optional"};
constexpr std::string_view kPresetAffectsKeys[] = {"key", "join"};
constexpr std::string_view kPresetTargetKeys[] = {"name",    "table", "kind",     "key",    "group",
                                                  "columns", "ddl",   "all_keys", "compute"};
constexpr std::string_view kTargetKinds[] = {"users", "rows"};
constexpr std::string_view kConversions[] = {"auto", "epoch_millis", "text"};
constexpr std::string_view kOnError[] = {"stop", "dead_letter"};
constexpr std::string_view kSnapshot[] = {"initial", "never"};
constexpr std::string_view kOnSlotLost[] = {"stop", "resync"};
constexpr std::string_view kOnDelete[] = {"soft", "hard"};

// PostgreSQL's NAMEDATALEN - 1.
constexpr std::size_t kMaxIdentifierBytes = 63;

// Optimal string alignment distance: Levenshtein plus adjacent transpositions, so that the
// common typo "dns" for "dsn" counts as one edit.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
        for (std::size_t j = 1; j <= b.size(); ++j) {
            std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
            }
        }
    }
    return d[a.size()][b.size()];
}

// " (did you mean "x"?)" when a candidate is within two edits, else "".
std::string suggestion(std::string_view word, Keys candidates) {
    std::string_view best;
    std::size_t best_distance = 3;
    for (auto candidate : candidates) {
        auto distance = edit_distance(word, candidate);
        if (distance < best_distance) {
            best = candidate;
            best_distance = distance;
        }
    }
    if (best.empty()) return {};
    return fmt::format(" (did you mean \"{}\"?)", best);
}

std::string join(Keys words) {
    std::string out;
    for (auto word : words) {
        if (!out.empty()) out += ", ";
        out += word;
    }
    return out;
}

// A value between double quotes, with quotes, backslashes and control bytes escaped so that
// the message stays on one line.
std::string in_quotes(std::string_view text) {
    std::string out = "\"";
    for (char c : text) {
        auto u = static_cast<unsigned char>(c);
        if (c == '"' || c == '\\') {
            out += '\\';
            out += c;
        } else if (u < 0x20 || u == 0x7f) {
            out += fmt::format("\\x{:02x}", u);
        } else {
            out += c;
        }
    }
    out += '"';
    return out;
}

std::string describe(const YAML::Node& node) {
    switch (node.Type()) {
        case YAML::NodeType::Scalar: return "a string";
        case YAML::NodeType::Sequence: return "a list";
        case YAML::NodeType::Map: return "a mapping";
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined: break;
    }
    return "nothing";
}

std::string format_duration(std::chrono::milliseconds d) {
    auto ms = d.count();
    if (ms != 0 && ms % 3'600'000 == 0) return fmt::format("{}h", ms / 3'600'000);
    if (ms != 0 && ms % 60'000 == 0) return fmt::format("{}m", ms / 60'000);
    if (ms != 0 && ms % 1'000 == 0) return fmt::format("{}s", ms / 1'000);
    return fmt::format("{}ms", ms);
}

bool is_digits(std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Digits only (no sign, no spaces); nullopt on overflow.
std::optional<std::uint64_t> parse_unsigned(std::string_view s) {
    std::uint64_t v = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || ptr != s.data() + s.size()) return std::nullopt;
    return v;
}

// Reads a whole file into `text`; returns 0, or the errno of the failure.
int read_file(const std::string& path, std::string& text) {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                         &std::fclose);
    if (!file) return errno;
    char buf[8192];
    while (true) {
        std::size_t n = std::fread(buf, 1, sizeof buf, file.get());
        text.append(buf, n);
        if (n < sizeof buf) break;
    }
    return std::ferror(file.get()) ? (errno ? errno : EIO) : 0;
}

// One key/value pair of a YAML mapping, in document order.
struct Entry {
    std::string key;
    YAML::Mark key_mark;
    YAML::Node value;

    // An empty value's mark is wherever the next token happens to be; point at the key.
    YAML::Mark mark() const { return value.IsNull() ? key_mark : value.Mark(); }
};

// A YAML mapping whose keys were checked: all strings, no duplicates, all allowed.
struct Section {
    std::string path;  // "source", "mappings[0].fields"; empty for the top level
    YAML::Mark mark;   // where "missing key" errors point
    std::vector<Entry> entries;

    const Entry* find(std::string_view key) const {
        for (const auto& e : entries) {
            if (e.key == key) return &e;
        }
        return nullptr;
    }
    std::string key_path(std::string_view key) const {
        return path.empty() ? std::string(key) : path + "." + std::string(key);
    }
    std::string in() const { return path.empty() ? "at the top level" : "in " + path; }
};

// A preset file as written: its options, and its rule with {{option}} placeholders left in.
struct PresetOption {
    std::string name;
    bool required = false;
    bool identifier = false;  // kind: identifier (<<name>>)
    std::optional<std::string> default_value;
};
struct PresetFile {
    std::vector<PresetOption> options;
    mapping::CompositeRule rule;
};

class Parser {
public:
    // `expand_env`: false for preset files, whose SQL may hold "$" of its own.
    Parser(const std::string& name, const EnvLookup& env, bool expand_env = true)
        : name_(name), env_(env), expand_env_(expand_env) {}

    Config parse(std::string_view yaml);
    PresetFile parse_preset(std::string_view yaml);

private:
    [[noreturn]] void fail(const YAML::Mark& mark, const std::string& message) const {
        int line = mark.is_null() ? 0 : mark.line;
        int column = mark.is_null() ? 0 : mark.column;
        throw ConfigError(fmt::format("{}:{}:{}: {}", name_, line + 1, column + 1, message));
    }

    // `allowed` empty: any key (raw_json field names).
    Section section(const YAML::Node& node, const YAML::Mark& mark, std::string path,
                    Keys allowed) const;
    // The section under `key`, or an empty one when the key is absent or has no value.
    Section subsection(const Section& parent, std::string_view key, Keys allowed) const;

    std::string expand(const std::string& raw, const YAML::Mark& mark,
                       const std::string& path) const;
    // The scalar value of an entry, `${VAR}` expanded.
    std::string scalar(const Entry& e, const std::string& path) const;

    std::optional<std::string> get_string(const Section& s, std::string_view key) const;
    std::string require_string(const Section& s, std::string_view key) const;
    std::optional<bool> get_bool(const Section& s, std::string_view key) const;
    std::optional<std::chrono::milliseconds> get_duration(const Section& s,
                                                          std::string_view key) const;
    std::optional<std::size_t> get_size(const Section& s, std::string_view key) const;
    std::optional<std::size_t> get_count(const Section& s, std::string_view key) const;
    // The index of the value in `choices`.
    std::optional<std::size_t> get_choice(const Section& s, std::string_view key,
                                          Keys choices) const;

    void check_identifier(std::string_view id, const YAML::Mark& mark,
                          const std::string& path) const;
    std::pair<std::string, std::string> qualified_name(std::string_view text,
                                                       const YAML::Mark& mark,
                                                       const std::string& path) const;

    SourceConfig parse_source(const Section& top) const;
    TargetConfig parse_target(const Section& top) const;
    // The `targets:` list; `where` locates a target in messages (file:line:column).
    std::vector<NamedTarget> parse_targets(const Section& top) const;
    std::string where(const YAML::Mark& mark) const {
        return fmt::format("{}:{}:{}", name_, mark.line + 1, mark.column + 1);
    }
    StatusConfig parse_status(const Section& top) const;
    ApplyConfig parse_apply(const Section& top) const;
    ReconnectConfig parse_reconnect(const Section& top) const;
    FanoutConfig parse_fanout(const Section& top, const SourceConfig& source) const;
    TransportConfig parse_transport(const Section& top) const;
    // Why `text` is not host:port with a port 1-65535, or "" (status.listen, a NATS server).
    static std::string host_port_problem(std::string_view text);
    // The `mappings` list of section `s` (the top level, or one of `targets`).
    void parse_mappings(const Section& s, std::vector<mapping::MappingRule>& mappings,
                        std::vector<mapping::CompositeRule>& composites) const;
    // `source_mark`: where the mapping's source value is, for duplicate-mapping errors.
    mapping::MappingRule parse_mapping(const YAML::Node& node, const std::string& path,
                                       YAML::Mark& source_mark) const;
    void parse_key(const Entry& e, const std::string& path, mapping::MappingRule& rule) const;
    void parse_fields(const Entry& e, const std::string& path, mapping::MappingRule& rule) const;
    // `- preset: NAME` with its preset_options: the preset file read and filled in.
    mapping::CompositeRule parse_preset_mapping(const YAML::Node& node, const std::string& path,
                                                const std::vector<std::string>& search) const;
    // A scalar or a list of scalars (with where each is).
    std::vector<std::pair<std::string, YAML::Mark>> string_items(const Entry& e,
                                                                 const std::string& path) const;
    std::vector<std::string> string_list(const Entry& e, const std::string& path) const;
    std::vector<YAML::Node> parse_documents(std::string_view yaml) const;
    mapping::MirrorSource parse_preset_source(const YAML::Node& node,
                                              const std::string& path) const;
    mapping::ComposedTarget parse_preset_target(const YAML::Node& node,
                                                const std::string& path) const;

    const std::string& name_;
    const EnvLookup& env_;
    bool expand_env_ = true;
    std::string presets_dir_;  // the config's presets_dir, once read
};

Section Parser::section(const YAML::Node& node, const YAML::Mark& mark, std::string path,
                        Keys allowed) const {
    Section s{std::move(path), mark, {}};
    if (node.IsNull()) return s;
    if (!node.IsMap()) {
        fail(node.Mark(), fmt::format("{} must be a mapping, not {}",
                                      s.path.empty() ? "the top level" : s.path, describe(node)));
    }
    for (const auto& pair : node) {
        // Copies: the nodes are handles, and the pair is a proxy.
        const YAML::Node key = pair.first;
        if (!key.IsScalar()) {
            fail(key.Mark(), fmt::format("keys {} must be strings, not {}", s.in(), describe(key)));
        }
        std::string name = key.Scalar();
        if (const Entry* first = s.find(name)) {
            fail(key.Mark(), fmt::format("duplicate key {} {} (first at line {})", in_quotes(name),
                                         s.in(), first->key_mark.line + 1));
        }
        if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
            if (s.path.empty()) {
                fail(key.Mark(), fmt::format("unknown top-level key {}{}", in_quotes(name),
                                             suggestion(name, allowed)));
            }
            fail(key.Mark(), fmt::format("unknown key {} in {}{}", in_quotes(name), s.path,
                                         suggestion(name, allowed)));
        }
        s.entries.push_back(Entry{std::move(name), key.Mark(), pair.second});
    }
    return s;
}

Section Parser::subsection(const Section& parent, std::string_view key, Keys allowed) const {
    const Entry* e = parent.find(key);
    if (!e) return Section{parent.key_path(key), parent.mark, {}};
    return section(e->value, e->key_mark, parent.key_path(key), allowed);
}

std::string Parser::expand(const std::string& raw, const YAML::Mark& mark,
                           const std::string& path) const {
    if (!expand_env_) return raw;
    std::string out;
    out.reserve(raw.size());
    for (std::size_t i = 0; i < raw.size(); ++i) {
        char c = raw[i];
        char next = i + 1 < raw.size() ? raw[i + 1] : '\0';
        if (c != '$' || (next != '$' && next != '{')) {
            // A lone '$' is itself: passwords may contain one.
            out += c;
            continue;
        }
        if (next == '$') {
            out += '$';
            ++i;
            continue;
        }
        // The value is never quoted back: it may be a DSN with a password in it.
        auto close = raw.find('}', i + 2);
        if (close == std::string::npos) {
            fail(mark, fmt::format("unterminated \"${{\" in {} (write \"$$\" for a literal \"$\")",
                                   path));
        }
        std::string_view var(raw.data() + i + 2, close - i - 2);
        bool valid = !var.empty() && !(var[0] >= '0' && var[0] <= '9') &&
                     std::all_of(var.begin(), var.end(), [](char ch) {
                         return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                                (ch >= '0' && ch <= '9') || ch == '_';
                     });
        if (!valid) {
            fail(mark, fmt::format("invalid variable reference in {} (expected ${{NAME}} with NAME "
                                   "matching [A-Za-z_][A-Za-z0-9_]*)",
                                   path));
        }
        std::string name(var);
        std::optional<std::string> value = env_ ? env_(name) : std::nullopt;
        if (!value) {
            fail(mark, fmt::format("environment variable {} is not set (used in {})", name, path));
        }
        out += *value;
        i = close;
    }
    return out;
}

std::string Parser::scalar(const Entry& e, const std::string& path) const {
    if (!e.value.IsScalar()) {
        fail(e.mark(), fmt::format("{} must be a string, not {}", path, describe(e.value)));
    }
    return expand(e.value.Scalar(), e.mark(), path);
}

std::optional<std::string> Parser::get_string(const Section& s, std::string_view key) const {
    const Entry* e = s.find(key);
    if (!e) return std::nullopt;
    return scalar(*e, s.key_path(key));
}

std::string Parser::require_string(const Section& s, std::string_view key) const {
    auto value = get_string(s, key);
    if (!value) fail(s.mark, fmt::format("missing required key \"{}\" {}", key, s.in()));
    return *value;
}

std::optional<bool> Parser::get_bool(const Section& s, std::string_view key) const {
    auto text = get_string(s, key);
    if (!text) return std::nullopt;
    // The YAML 1.2 core schema's booleans only: yes/no/on/off (YAML 1.1) are rejected rather
    // than guessed at.
    if (*text == "true" || *text == "True" || *text == "TRUE") return true;
    if (*text == "false" || *text == "False" || *text == "FALSE") return false;
    fail(s.find(key)->mark(),
         fmt::format("{} must be true or false, not {} (YAML 1.2 booleans only)", s.key_path(key),
                     in_quotes(*text)));
}

std::optional<std::chrono::milliseconds> Parser::get_duration(const Section& s,
                                                              std::string_view key) const {
    auto text = get_string(s, key);
    if (!text) return std::nullopt;
    const Entry& e = *s.find(key);
    std::string path = s.key_path(key);
    std::string_view t = *text;
    auto unit_at =
        std::find_if(t.begin(), t.end(), [](char c) { return c < '0' || c > '9'; }) - t.begin();
    std::string_view digits = t.substr(0, static_cast<std::size_t>(unit_at));
    std::string_view unit = t.substr(static_cast<std::size_t>(unit_at));
    auto bad = [&](std::string_view why) {
        return fmt::format(
            "{} {} is not a valid duration: {} (expected an integer with a unit "
            "ms, s, m or h, e.g. 500ms, 10s, 2m)",
            path, in_quotes(t), why);
    };
    if (digits.empty()) fail(e.mark(), bad("it does not start with a digit"));
    auto value = parse_unsigned(digits);
    std::int64_t factor = 0;
    if (unit == "ms") {
        factor = 1;
    } else if (unit == "s") {
        factor = 1'000;
    } else if (unit == "m") {
        factor = 60'000;
    } else if (unit == "h") {
        factor = 3'600'000;
    } else if (unit.empty()) {
        // A bare 0 means the same in every unit.
        if (value && *value == 0) return std::chrono::milliseconds{0};
        fail(e.mark(), bad("it has no unit"));
    } else {
        fail(e.mark(), bad(fmt::format("unknown unit {}", in_quotes(unit))));
    }
    constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (!value || *value > kMax / static_cast<std::uint64_t>(factor)) {
        fail(e.mark(), bad("it is too large"));
    }
    return std::chrono::milliseconds{static_cast<std::int64_t>(*value) * factor};
}

std::optional<std::size_t> Parser::get_size(const Section& s, std::string_view key) const {
    auto text = get_string(s, key);
    if (!text) return std::nullopt;
    const Entry& e = *s.find(key);
    std::string path = s.key_path(key);
    std::string_view t = *text;
    auto unit_at =
        std::find_if(t.begin(), t.end(), [](char c) { return c < '0' || c > '9'; }) - t.begin();
    std::string_view digits = t.substr(0, static_cast<std::size_t>(unit_at));
    std::string_view unit = t.substr(static_cast<std::size_t>(unit_at));
    auto bad = [&](std::string_view why) {
        return fmt::format(
            "{} {} is not a valid size: {} (expected an integer with an optional "
            "unit B, kB, KB, MB or GB, e.g. 16MB)",
            path, in_quotes(t), why);
    };
    if (digits.empty()) fail(e.mark(), bad("it does not start with a digit"));
    auto value = parse_unsigned(digits);
    std::uint64_t factor = 0;
    if (unit.empty() || unit == "B") {
        factor = 1;
    } else if (unit == "kB" || unit == "KB") {
        factor = 1ull << 10;
    } else if (unit == "MB") {
        factor = 1ull << 20;
    } else if (unit == "GB") {
        factor = 1ull << 30;
    } else {
        fail(e.mark(), bad(fmt::format("unknown unit {}", in_quotes(unit))));
    }
    if (!value || *value > std::numeric_limits<std::size_t>::max() / factor) {
        fail(e.mark(), bad("it is too large"));
    }
    if (*value == 0) fail(e.mark(), fmt::format("{} must be greater than 0", path));
    return static_cast<std::size_t>(*value * factor);
}

std::optional<std::size_t> Parser::get_count(const Section& s, std::string_view key) const {
    auto text = get_string(s, key);
    if (!text) return std::nullopt;
    const Entry& e = *s.find(key);
    std::string path = s.key_path(key);
    auto value = is_digits(*text) ? parse_unsigned(*text) : std::nullopt;
    if (!value || *value == 0 || *value > std::numeric_limits<std::size_t>::max()) {
        fail(e.mark(),
             fmt::format("{} must be a positive integer, not {}", path, in_quotes(*text)));
    }
    return static_cast<std::size_t>(*value);
}

std::optional<std::size_t> Parser::get_choice(const Section& s, std::string_view key,
                                              Keys choices) const {
    auto text = get_string(s, key);
    if (!text) return std::nullopt;
    auto it = std::find(choices.begin(), choices.end(), *text);
    if (it == choices.end()) {
        fail(s.find(key)->mark(),
             fmt::format("{} {} is not one of {}{}", s.key_path(key), in_quotes(*text),
                         join(choices), suggestion(*text, choices)));
    }
    return static_cast<std::size_t>(it - choices.begin());
}

void Parser::check_identifier(std::string_view id, const YAML::Mark& mark,
                              const std::string& path) const {
    if (id.empty()) fail(mark, fmt::format("{}: empty identifier", path));
    if (id.find('\0') != std::string_view::npos) {
        fail(mark, fmt::format("{}: identifier {} contains a NUL byte", path, in_quotes(id)));
    }
    if (id.size() > kMaxIdentifierBytes) {
        fail(mark, fmt::format("{}: identifier {} is {} bytes long (at most {})", path,
                               in_quotes(id), id.size(), kMaxIdentifierBytes));
    }
}

// "schema.table" or "table" (schema public); either part may be double-quoted, with "" for a
// quote inside. Unquoted parts are checked rather than folded to lower case: PostgreSQL would
// fold "Users" to users, and a mapping that silently never matches is worse than an error.
std::pair<std::string, std::string> Parser::qualified_name(std::string_view text,
                                                           const YAML::Mark& mark,
                                                           const std::string& path) const {
    std::vector<std::string> parts;
    std::size_t pos = 0;
    while (true) {
        std::string part;
        if (pos < text.size() && text[pos] == '"') {
            ++pos;
            bool closed = false;
            while (pos < text.size()) {
                if (text[pos] == '"') {
                    if (pos + 1 < text.size() && text[pos + 1] == '"') {
                        part += '"';
                        pos += 2;
                        continue;
                    }
                    ++pos;
                    closed = true;
                    break;
                }
                part += text[pos++];
            }
            if (!closed) {
                fail(mark, fmt::format("{}: unterminated quoted identifier in {}", path,
                                       in_quotes(text)));
            }
            check_identifier(part, mark, path);
        } else {
            auto end = text.find('.', pos);
            if (end == std::string_view::npos) end = text.size();
            part = std::string(text.substr(pos, end - pos));
            pos = end;
            check_identifier(part, mark, path);
            for (char c : part) {
                if (c >= 'A' && c <= 'Z') {
                    std::string lower = part;
                    for (auto& l : lower) {
                        if (l >= 'A' && l <= 'Z') l = static_cast<char>(l - 'A' + 'a');
                    }
                    fail(mark, fmt::format("{}: unquoted identifier {} has upper-case letters "
                                           "(write '\"{}\"' for that exact name, or {})",
                                           path, in_quotes(part), part, in_quotes(lower)));
                }
                bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                          c == '$' || static_cast<unsigned char>(c) >= 0x80;
                if (!ok) {
                    fail(mark, fmt::format("{}: unquoted identifier {} may contain only "
                                           "[a-z0-9_$] (double-quote it otherwise)",
                                           path, in_quotes(part)));
                }
            }
            if ((part[0] >= '0' && part[0] <= '9') || part[0] == '$') {
                fail(mark, fmt::format("{}: unquoted identifier {} must not start with a digit "
                                       "or \"$\"",
                                       path, in_quotes(part)));
            }
        }
        parts.push_back(std::move(part));
        if (pos == text.size()) break;
        if (text[pos] != '.') {
            fail(mark, fmt::format("{}: expected \".\" after a quoted identifier in {}", path,
                                   in_quotes(text)));
        }
        ++pos;
    }
    if (parts.size() > 2) {
        fail(mark, fmt::format("{}: {} has {} parts (expected \"schema.table\" or \"table\")", path,
                               in_quotes(text), parts.size()));
    }
    if (parts.size() == 1) return {"public", std::move(parts[0])};
    return {std::move(parts[0]), std::move(parts[1])};
}

SourceConfig Parser::parse_source(const Section& top) const {
    if (!top.find("source")) fail(top.mark, "missing required key \"source\" at the top level");
    Section s = subsection(top, "source", kSourceKeys);
    SourceConfig c;
    c.dsn = require_string(s, "dsn");
    if (c.dsn.empty()) fail(s.find("dsn")->mark(), "source.dsn must not be empty");
    if (auto slot = get_string(s, "slot")) {
        bool valid = !slot->empty() && slot->size() <= kMaxIdentifierBytes &&
                     std::all_of(slot->begin(), slot->end(), [](char ch) {
                         return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
                     });
        if (!valid) {
            fail(s.find("slot")->mark(),
                 fmt::format("source.slot {} is not a valid replication slot name (1-63 "
                             "characters from [a-z0-9_])",
                             in_quotes(*slot)));
        }
        c.slot = std::move(*slot);
    }
    if (auto publication = get_string(s, "publication")) {
        check_identifier(*publication, s.find("publication")->mark(), "source.publication");
        c.publication = std::move(*publication);
    }
    if (auto v = get_bool(s, "create_slot")) c.create_slot = *v;
    if (auto v = get_bool(s, "create_publication")) c.create_publication = *v;
    if (auto v = get_duration(s, "status_interval")) {
        if (v->count() == 0) {
            fail(s.find("status_interval")->mark(),
                 "source.status_interval must be greater than 0");
        }
        c.status_interval = *v;
    }
    if (auto v = get_duration(s, "heartbeat_interval")) c.heartbeat_interval = *v;
    if (auto v = get_choice(s, "snapshot", kSnapshot)) {
        c.snapshot = *v == 0 ? Snapshot::Initial : Snapshot::Never;
    }
    if (auto v = get_choice(s, "on_slot_lost", kOnSlotLost)) {
        c.on_slot_lost = *v == 0 ? OnSlotLost::Stop : OnSlotLost::Resync;
    }
    return c;
}

TargetConfig Parser::parse_target(const Section& top) const {
    if (!top.find("target")) fail(top.mark, "missing required key \"target\" at the top level");
    Section s = subsection(top, "target", kTargetKeys);
    TargetConfig c;
    c.dsn = require_string(s, "dsn");
    if (c.dsn.empty()) fail(s.find("dsn")->mark(), "target.dsn must not be empty");
    return c;
}

std::vector<NamedTarget> Parser::parse_targets(const Section& top) const {
    const Entry* e = top.find("targets");
    if (!e->value.IsNull() && !e->value.IsSequence()) {
        fail(e->mark(), fmt::format("targets must be a list, not {}", describe(e->value)));
    }
    if (e->value.IsNull() || e->value.size() == 0) fail(e->mark(), "targets must not be empty");
    std::vector<NamedTarget> out;
    std::map<std::string, int> names;  // name -> line
    std::size_t index = 0;
    for (const auto& item : e->value) {
        const std::string path = fmt::format("targets[{}]", index++);
        if (!item.IsMap()) {
            fail(item.Mark(), fmt::format("{} must be a mapping with name, dsn and mappings, "
                                          "not {}",
                                          path, describe(item)));
        }
        Section s = section(item, item.Mark(), path, kNamedTargetKeys);
        NamedTarget t;
        t.location = where(item.Mark());
        t.name = require_string(s, "name");
        const auto name_mark = s.find("name")->mark();
        // A target's name labels metrics and status, and later names its stream subject.
        const bool valid = !t.name.empty() && t.name.size() <= 63 &&
                           std::isalnum(static_cast<unsigned char>(t.name.front())) &&
                           std::all_of(t.name.begin(), t.name.end(), [](char ch) {
                               return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                                      ch == '_' || ch == '-';
                           });
        if (!valid) {
            fail(name_mark, fmt::format("{}.name must be 1 to 63 lowercase letters, digits, _ "
                                        "or -, starting with a letter or digit",
                                        path));
        }
        auto [it, inserted] = names.try_emplace(t.name, name_mark.line + 1);
        if (!inserted) {
            fail(name_mark, fmt::format("{}: duplicate target name \"{}\" (first at line {})", path,
                                        t.name, it->second));
        }
        t.target.dsn = require_string(s, "dsn");
        if (t.target.dsn.empty()) {
            fail(s.find("dsn")->mark(), fmt::format("{}.dsn must not be empty", path));
        }
        parse_mappings(s, t.mappings, t.composites);
        out.push_back(std::move(t));
    }
    return out;
}

StatusConfig Parser::parse_status(const Section& top) const {
    Section s = subsection(top, "status", kStatusKeys);
    StatusConfig c;
    if (auto token = get_string(s, "token")) {
        if (token->empty()) {
            fail(s.find("token")->mark(),
                 "status.token must not be empty (leave the key out for an open endpoint)");
        }
        c.token = std::move(*token);
    }
    if (auto v = get_count(s, "max_ready_lag_seconds")) {
        c.max_ready_lag_seconds = static_cast<double>(*v);
    }
    if (auto v = get_count(s, "max_connections")) c.max_connections = *v;
    if (const Entry* tls = s.find("tls")) {
        if (!tls->value.IsMap()) {
            fail(tls->mark(), fmt::format("status.tls must be a mapping with certificate and key, "
                                          "not {}",
                                          describe(tls->value)));
        }
        Section t = subsection(s, "tls", kStatusTlsKeys);
        StatusTlsConfig files;
        files.certificate = require_string(t, "certificate");
        files.key = require_string(t, "key");
        if (files.certificate.empty() || files.key.empty()) {
            fail(tls->mark(), "status.tls: certificate and key must not be empty");
        }
        c.tls = std::move(files);
    }
    auto listen = get_string(s, "listen");
    if (!listen) return c;
    c.listen = *listen;
    if (c.listen.empty()) return c;
    if (const auto why = host_port_problem(c.listen); !why.empty()) {
        fail(s.find("listen")->mark(),
             fmt::format("status.listen {} {} (expected host:port, [ipv6]:port, or \"\" to "
                         "disable)",
                         in_quotes(c.listen), why));
    }
    return c;
}

std::string Parser::host_port_problem(std::string_view text) {
    const HostPort hp = split_host_port(text);
    if (!hp.problem.empty()) return std::string(hp.problem);
    if (!hp.port) return "has no port";
    if (hp.host.empty()) return "has no host";
    auto p = is_digits(*hp.port) ? parse_unsigned(*hp.port) : std::nullopt;
    if (!p || *p < 1 || *p > 65535) return "has an invalid port (1-65535)";
    return "";
}

TransportConfig Parser::parse_transport(const Section& top) const {
    Section s = subsection(top, "transport", kTransportKeys);
    TransportConfig c;
    if (auto v = get_choice(s, "kind", kTransportKinds)) {
        c.kind = *v == 0 ? TransportKind::InProcess : TransportKind::Nats;
    }
    const Entry* servers = s.find("servers");
    if (!c.nats()) {
        // Settings for a transport that is not used would be silently ignored.
        for (const auto key : kTransportKeys) {
            if (key == "kind") continue;
            if (const Entry* e = s.find(key)) {
                fail(e->key_mark, fmt::format("transport.{} is for transport.kind: nats", key));
            }
        }
        return c;
    }
    if (!servers) {
        const Entry* kind = s.find("kind");
        fail(kind->mark(), "transport.kind: nats needs transport.servers (nats://host:port, ...)");
    }
    for (const auto& [url, mark] : string_items(*servers, "transport.servers")) {
        auto bad = [&](std::string_view why) {
            fail(mark, fmt::format("transport.servers: {} {} (expected nats://host:port or "
                                   "tls://host:port)",
                                   in_quotes(url), why));
        };
        const auto scheme = url.find("://");
        if (scheme == std::string::npos) bad("has no scheme");
        const auto name = url.substr(0, scheme);
        if (name != "nats" && name != "tls") bad("has another scheme");
        const auto rest = std::string_view(url).substr(scheme + 3);
        if (rest.find('@') != std::string_view::npos) {
            // A user or token in the URL would be logged with it.
            fail(mark, "transport.servers: credentials do not belong in a server URL");
        }
        if (const auto why = host_port_problem(rest); !why.empty()) bad(why);
        c.servers.push_back(url);
    }
    if (c.servers.empty()) fail(servers->mark(), "transport.servers must not be empty");
    if (auto v = get_string(s, "stream")) {
        const bool ok =
            !v->empty() && v->size() <= 64 && std::all_of(v->begin(), v->end(), [](char ch) {
                return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
            });
        if (!ok) {
            fail(s.find("stream")->mark(),
                 fmt::format("transport.stream {} must be 1 to 64 of A-Z, a-z, 0-9, _ and -",
                             in_quotes(*v)));
        }
        c.stream = *v;
    }
    if (auto v = get_string(s, "subject_prefix")) {
        const bool ok = !v->empty() && v->front() != '.' && v->back() != '.' &&
                        v->find("..") == std::string::npos &&
                        std::all_of(v->begin(), v->end(), [](char ch) {
                            return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' ||
                                   ch == '-' || ch == '.';
                        });
        if (!ok) {
            fail(s.find("subject_prefix")->mark(),
                 fmt::format("transport.subject_prefix {} must be tokens of A-Z, a-z, 0-9, _ "
                             "and - separated by dots",
                             in_quotes(*v)));
        }
        c.subject_prefix = *v;
    }
    c.replicas = c.servers.size() >= 3 ? 3 : 1;
    if (auto v = get_count(s, "replicas")) {
        if (*v < 1 || *v > 5) fail(s.find("replicas")->mark(), "transport.replicas must be 1 to 5");
        c.replicas = static_cast<int>(*v);
        if (static_cast<std::size_t>(c.replicas) > c.servers.size()) {
            fail(s.find("replicas")->mark(),
                 fmt::format("transport.replicas ({}) cannot exceed the servers listed ({})",
                             c.replicas, c.servers.size()));
        }
    }
    if (auto v = get_size(s, "max_bytes")) c.max_bytes = static_cast<std::int64_t>(*v);
    auto seconds = [&](std::string_view key) -> std::optional<std::chrono::seconds> {
        auto v = get_duration(s, key);
        if (!v) return std::nullopt;
        if (*v < std::chrono::seconds(1)) {
            fail(s.find(key)->mark(), fmt::format("transport.{} must be at least 1s", key));
        }
        return std::chrono::duration_cast<std::chrono::seconds>(*v);
    };
    c.max_age = seconds("max_age");
    if (auto v = seconds("duplicate_window")) c.duplicate_window = *v;
    if (auto v = seconds("ack_wait")) c.ack_wait = *v;
    if (c.max_age && *c.max_age < c.duplicate_window) {
        fail(s.find("max_age")->mark(),
             fmt::format("transport.max_age ({}s) must be at least transport.duplicate_window "
                         "({}s)",
                         c.max_age->count(), c.duplicate_window.count()));
    }
    return c;
}

ApplyConfig Parser::parse_apply(const Section& top) const {
    Section s = subsection(top, "apply", kApplyKeys);
    ApplyConfig c;
    if (auto v = get_count(s, "batch_max_rows")) c.batch_max_rows = *v;
    if (auto v = get_size(s, "batch_max_bytes")) c.batch_max_bytes = *v;
    if (auto v = get_duration(s, "batch_max_delay")) c.batch_max_delay = *v;
    if (auto v = get_choice(s, "on_error", kOnError)) {
        c.on_error = *v == 0 ? OnError::Stop : OnError::DeadLetter;
    }
    if (auto v = get_bool(s, "synchronous_commit")) c.synchronous_commit = *v;
    if (auto v = get_count(s, "lanes")) {
        if (*v < 1 || *v > kMaxLanes) {
            fail(s.find("lanes")->mark(),
                 fmt::format("apply.lanes must be between 1 and {}", kMaxLanes));
        }
        c.lanes = *v;
    }
    return c;
}

ReconnectConfig Parser::parse_reconnect(const Section& top) const {
    Section s = subsection(top, "reconnect", kReconnectKeys);
    ReconnectConfig c;
    if (auto v = get_duration(s, "initial_backoff")) {
        if (v->count() == 0) {
            fail(s.find("initial_backoff")->mark(),
                 "reconnect.initial_backoff must be greater than 0");
        }
        c.initial_backoff = *v;
    }
    if (auto v = get_duration(s, "max_backoff")) c.max_backoff = *v;
    if (c.max_backoff < c.initial_backoff) {
        const Entry* e = s.find("max_backoff");
        if (!e) e = s.find("initial_backoff");
        fail(e->mark(),
             fmt::format("reconnect.max_backoff ({}) must be at least "
                         "reconnect.initial_backoff ({})",
                         format_duration(c.max_backoff), format_duration(c.initial_backoff)));
    }
    return c;
}

FanoutConfig Parser::parse_fanout(const Section& top, const SourceConfig& source) const {
    Section s = subsection(top, "fanout", kFanoutKeys);
    Section lag = subsection(s, "max_target_lag", kTargetLagKeys);
    FanoutConfig c;
    if (auto v = get_count(lag, "seconds")) c.max_target_lag_seconds = std::chrono::seconds(*v);
    if (auto v = get_size(lag, "bytes")) c.max_target_lag_bytes = *v;
    if (const Entry* e = s.find("max_target_lag"); e && !c.detaches()) {
        fail(e->mark(), "fanout.max_target_lag needs seconds, bytes or both");
    }
    if (c.detaches() && source.snapshot == Snapshot::Never) {
        // A detached target misses what the slot no longer holds: only a copy brings it back.
        fail(s.find("max_target_lag")->mark(),
             "fanout.max_target_lag cannot be used with source.snapshot: never (a detached "
             "target is copied again to re-attach)");
    }
    return c;
}

void Parser::parse_key(const Entry& e, const std::string& path, mapping::MappingRule& rule) const {
    if (!e.value.IsScalar() && !e.value.IsSequence()) {
        fail(e.mark(), fmt::format("{} must be a column name or a list of column names, not {}",
                                   path, describe(e.value)));
    }
    for (auto& [column, mark] : string_items(e, path)) {
        check_identifier(column, mark, path);
        if (std::find(rule.key_columns.begin(), rule.key_columns.end(), column) !=
            rule.key_columns.end()) {
            fail(mark, fmt::format("{}: column {} is listed twice", path, in_quotes(column)));
        }
        rule.key_columns.push_back(std::move(column));
    }
}

void Parser::parse_fields(const Entry& e, const std::string& path,
                          mapping::MappingRule& rule) const {
    if (!e.value.IsMap()) {
        fail(e.mark(), fmt::format("{} must be a mapping of raw_json keys to columns, not {}", path,
                                   describe(e.value)));
    }
    Section fields = section(e.value, e.key_mark, path, {});
    if (fields.entries.empty()) fail(e.mark(), fmt::format("{} must not be empty", path));
    for (const auto& f : fields.entries) {
        std::string field_path = fields.key_path(f.key);
        if (f.key.empty()) fail(f.key_mark, fmt::format("{}: empty raw_json key", path));
        mapping::FieldRule rule_field;
        rule_field.json_key = f.key;
        YAML::Mark column_mark = f.mark();
        if (f.value.IsMap()) {
            Section s = section(f.value, f.key_mark, field_path, kFieldKeys);
            rule_field.column = require_string(s, "column");
            column_mark = s.find("column")->mark();
            if (auto as = get_choice(s, "as", kConversions)) {
                constexpr mapping::Conversion kAs[] = {mapping::Conversion::Auto,
                                                       mapping::Conversion::EpochMillis,
                                                       mapping::Conversion::Text};
                rule_field.as = kAs[*as];
            }
        } else if (f.value.IsScalar()) {
            rule_field.column = scalar(f, field_path);
        } else {
            fail(f.mark(), fmt::format("{} must be a column name or {{column: C, as: CONVERSION}}, "
                                       "not {}",
                                       field_path, describe(f.value)));
        }
        check_identifier(rule_field.column, column_mark, field_path);
        if (f.key == "id") {
            // raw_json.id is users_sync.id: it has to be the key.
            if (rule.key_columns.size() > 1) {
                fail(f.key_mark, fmt::format("{} is not allowed with a composite key (raw_json.id "
                                             "is the key columns joined with \":\")",
                                             field_path));
            }
            if (rule_field.column != rule.key_columns.front()) {
                fail(column_mark,
                     fmt::format("{} maps column {}, but the key is column {} (a field "
                                 "named \"id\" must map the key column)",
                                 field_path, in_quotes(rule_field.column),
                                 in_quotes(rule.key_columns.front())));
            }
        }
        rule.fields.push_back(std::move(rule_field));
    }
}

mapping::MappingRule Parser::parse_mapping(const YAML::Node& node, const std::string& path,
                                           YAML::Mark& source_mark) const {
    if (!node.IsMap()) {
        fail(node.Mark(), fmt::format("{} must be a mapping, not {}", path, describe(node)));
    }
    Section s = section(node, node.Mark(), path, kMappingKeys);
    mapping::MappingRule rule;

    std::string source = require_string(s, "source");
    source_mark = s.find("source")->mark();
    std::tie(rule.source_schema, rule.source_table) =
        qualified_name(source, source_mark, s.key_path("source"));
    if (auto target = get_string(s, "target")) {
        std::tie(rule.target_schema, rule.target_table) =
            qualified_name(*target, s.find("target")->mark(), s.key_path("target"));
    }

    const Entry* key = s.find("key");
    if (!key) fail(s.mark, fmt::format("missing required key \"key\" in {}", path));
    parse_key(*key, s.key_path("key"), rule);

    const Entry* fields = s.find("fields");
    if (!fields) fail(s.mark, fmt::format("missing required key \"fields\" in {}", path));
    parse_fields(*fields, s.key_path("fields"), rule);

    if (auto v = get_choice(s, "on_delete", kOnDelete)) {
        rule.on_delete = *v == 0 ? mapping::OnDelete::Soft : mapping::OnDelete::Hard;
    }
    // column -> the text value this target's rows have (fan-out: a tenant's rows).
    const Section scope = subsection(s, "scope", {});
    for (const auto& e : scope.entries) {
        const auto path_of = scope.key_path(e.key);
        check_identifier(e.key, e.key_mark, path_of);
        if (!e.value.IsScalar()) {
            fail(e.mark(), fmt::format("{} must be a value, not {}", path_of, describe(e.value)));
        }
        rule.scope.emplace_back(e.key, scalar(e, path_of));
    }
    return rule;
}

void Parser::parse_mappings(const Section& top, std::vector<mapping::MappingRule>& mappings,
                            std::vector<mapping::CompositeRule>& composites) const {
    const Entry* e = top.find("mappings");
    const std::string list = top.key_path("mappings");
    if (!e) fail(top.mark, fmt::format("missing required key \"mappings\" {}", top.in()));
    if (!e->value.IsNull() && !e->value.IsSequence()) {
        fail(e->mark(), fmt::format("{} must be a list, not {}", list, describe(e->value)));
    }
    if (e->value.IsNull() || e->value.size() == 0) {
        fail(e->mark(), fmt::format("{} must not be empty", list));
    }

    const std::vector<std::string> search{
        presets_directory(presets_dir_, env_, running_executable())};
    std::map<std::pair<std::string, std::string>, int> seen;  // source table -> line
    auto claim = [&](const std::string& schema, const std::string& table, const YAML::Mark& mark,
                     const std::string& path) {
        auto [it, inserted] = seen.try_emplace({schema, table}, mark.line + 1);
        if (!inserted) {
            fail(mark, fmt::format("{}: duplicate mapping for source table {}.{} (first at line "
                                   "{})",
                                   path, schema, table, it->second));
        }
    };
    std::size_t index = 0;
    for (const auto& item : e->value) {
        std::string path = fmt::format("{}[{}]", list, index++);
        if (item.IsMap() && item["preset"]) {
            auto rule = parse_preset_mapping(item, path, search);
            for (const auto& source : rule.sources) {
                claim(source.source_schema, source.source_table, item.Mark(), path);
            }
            for (const auto& other : composites) {
                for (const auto& t : other.targets) {
                    for (const auto& mine : rule.targets) {
                        if (t.target_name() == mine.target_name()) {
                            fail(item.Mark(), fmt::format("{}: target {} is also written by "
                                                          "preset {}",
                                                          path, t.target_name(), other.preset));
                        }
                    }
                }
            }
            composites.push_back(std::move(rule));
            continue;
        }
        YAML::Mark source_mark;
        auto rule = parse_mapping(item, path, source_mark);
        claim(rule.source_schema, rule.source_table, source_mark, path);
        mappings.push_back(std::move(rule));
    }
    for (const auto& rule : mappings) {
        for (const auto& composite : composites) {
            for (const auto& t : composite.targets) {
                if (t.target_name() == rule.target_name()) {
                    fail(e->mark(),
                         fmt::format("target {} is written both by preset {} and by "
                                     "the mapping of {}",
                                     t.target_name(), composite.preset, rule.source_name()));
                }
            }
        }
    }
}

std::vector<std::pair<std::string, YAML::Mark>> Parser::string_items(
    const Entry& e, const std::string& path) const {
    std::vector<std::pair<std::string, YAML::Mark>> out;
    if (e.value.IsScalar()) {
        out.emplace_back(scalar(e, path), e.mark());
    } else if (e.value.IsSequence()) {
        std::size_t i = 0;
        for (const auto& item : e.value) {
            std::string item_path = fmt::format("{}[{}]", path, i++);
            Entry item_entry{item_path, item.IsNull() ? e.mark() : item.Mark(), item};
            out.emplace_back(scalar(item_entry, item_path), item_entry.mark());
        }
        if (out.empty()) fail(e.mark(), fmt::format("{} must not be an empty list", path));
    } else {
        fail(e.mark(), fmt::format("{} must be a string or a list of strings, not {}", path,
                                   describe(e.value)));
    }
    return out;
}

std::vector<std::string> Parser::string_list(const Entry& e, const std::string& path) const {
    std::vector<std::string> out;
    for (auto& item : string_items(e, path)) out.push_back(std::move(item.first));
    return out;
}

mapping::MirrorSource Parser::parse_preset_source(const YAML::Node& node,
                                                  const std::string& path) const {
    Section s = section(node, node.Mark(), path, kPresetSourceKeys);
    mapping::MirrorSource src;
    const auto source = require_string(s, "source");
    std::tie(src.source_schema, src.source_table) =
        qualified_name(source, s.find("source")->mark(), s.key_path("source"));
    src.mirror_table = require_string(s, "mirror");
    check_identifier(src.mirror_table, s.find("mirror")->mark(), s.key_path("mirror"));
    const Entry* key = s.find("key");
    if (!key) fail(s.mark, fmt::format("missing required key \"key\" in {}", path));
    src.key_columns = string_list(*key, s.key_path("key"));

    const Entry* columns = s.find("columns");
    if (!columns) fail(s.mark, fmt::format("missing required key \"columns\" in {}", path));
    Section cols = section(columns->value, columns->key_mark, s.key_path("columns"), {});
    for (const auto& c : cols.entries) {
        mapping::MirrorColumn column;
        column.name = c.key;
        check_identifier(column.name, c.key_mark, cols.key_path(c.key));
        if (c.value.IsMap()) {
            Section cs = section(c.value, c.key_mark, cols.key_path(c.key), kPresetColumnKeys);
            column.type = require_string(cs, "type");
            column.optional = get_bool(cs, "optional").value_or(false);
        } else {
            column.type = scalar(c, cols.key_path(c.key));
        }
        src.columns.push_back(std::move(column));
    }
    for (const auto& k : src.key_columns) {
        const auto* c = src.column(k);
        if (!c)
            fail(key->mark(),
                 fmt::format("{}: key column {} is not among the columns", path, in_quotes(k)));
        if (c->optional)
            fail(key->mark(), fmt::format("{}: key column {} is optional", path, in_quotes(k)));
    }
    src.row_filter = get_string(s, "row_filter").value_or("");
    if (const Entry* rc = s.find("row_filter_columns")) {
        src.row_filter_columns = string_list(*rc, s.key_path("row_filter_columns"));
        for (const auto& c : src.row_filter_columns) {
            if (!src.column(c)) {
                fail(rc->mark(), fmt::format("{}: row filter column {} is not a mirrored column",
                                             path, in_quotes(c)));
            }
        }
    }
    src.mirror_filter = get_string(s, "mirror_filter").value_or("");
    if (!src.mirror_filter.empty() && src.row_filter.empty()) {
        // The initial copy reads with the row filter: without one it would copy rows the
        // stream then drops.
        fail(s.find("mirror_filter")->mark(),
             fmt::format("{}: a mirror_filter needs the row_filter it stands in for", path));
    }
    if (!src.row_filter.empty() && src.row_filter_columns.empty()) {
        fail(s.find("row_filter")->mark(),
             fmt::format("{}: a row_filter needs row_filter_columns (the columns it reads)", path));
    }
    // column -> the lookup or option whose value it must have (checked with the options).
    for (const auto& e : subsection(s, "scope", {}).entries) {
        if (!src.column(e.key)) {
            fail(e.key_mark, fmt::format("{}: scope column {} is not a mirrored column", path,
                                         in_quotes(e.key)));
        }
        src.scope.emplace_back(e.key, scalar(e, s.key_path("scope") + "." + e.key));
    }
    if (const Entry* idx = s.find("indexes")) {
        if (!idx->value.IsSequence()) {
            fail(idx->mark(),
                 fmt::format("{} must be a list of column lists", s.key_path("indexes")));
        }
        std::size_t i = 0;
        for (const auto& item : idx->value) {
            std::string item_path = fmt::format("{}[{}]", s.key_path("indexes"), i++);
            Entry item_entry{item_path, item.IsNull() ? idx->mark() : item.Mark(), item};
            auto list = string_list(item_entry, item_path);
            for (const auto& c : list) {
                if (!src.column(c)) {
                    fail(item_entry.mark(),
                         fmt::format("{}: {} is not a mirrored column", item_path, in_quotes(c)));
                }
            }
            src.indexes.push_back(std::move(list));
        }
    }
    Section affects = subsection(s, "affects", {});
    for (const auto& a : affects.entries) {
        mapping::Affects affected;
        affected.target = a.key;
        if (a.value.IsMap()) {
            Section as = section(a.value, a.key_mark, affects.key_path(a.key), kPresetAffectsKeys);
            affected.key = require_string(as, "key");
            affected.join = get_string(as, "join").value_or("");
        } else {
            affected.key = scalar(a, affects.key_path(a.key));
        }
        src.affects.push_back(std::move(affected));
    }
    if (src.affects.empty())
        fail(s.mark, fmt::format("{}: affects must name at least one target", path));
    return src;
}

mapping::ComposedTarget Parser::parse_preset_target(const YAML::Node& node,
                                                    const std::string& path) const {
    Section s = section(node, node.Mark(), path, kPresetTargetKeys);
    mapping::ComposedTarget t;
    t.name = require_string(s, "name");
    std::tie(t.target_schema, t.target_table) =
        qualified_name(require_string(s, "table"), s.find("table")->mark(), s.key_path("table"));
    if (auto kind = get_choice(s, "kind", kTargetKinds)) {
        t.kind = *kind == 0 ? mapping::TargetKind::Users : mapping::TargetKind::Rows;
    } else {
        fail(s.mark, fmt::format("missing required key \"kind\" in {}", path));
    }
    t.compute = require_string(s, "compute");
    t.all_keys = require_string(s, "all_keys");
    if (t.kind == mapping::TargetKind::Users) {
        for (auto k : {"key", "group", "columns", "ddl"}) {
            if (s.find(k))
                fail(s.find(k)->key_mark, fmt::format("{}: {} is for kind rows only", path, k));
        }
        return t;
    }
    for (auto k : {"key", "group", "columns", "ddl"}) {
        if (!s.find(k))
            fail(s.mark, fmt::format("missing required key \"{}\" in {} (kind rows)", k, path));
    }
    t.key_columns = string_list(*s.find("key"), s.key_path("key"));
    t.group_column = require_string(s, "group");
    t.columns = string_list(*s.find("columns"), s.key_path("columns"));
    t.ddl = require_string(s, "ddl");
    for (const auto& k : t.key_columns) {
        if (std::find(t.columns.begin(), t.columns.end(), k) == t.columns.end()) {
            fail(s.find("key")->mark(),
                 fmt::format("{}: key column {} is not among the columns", path, in_quotes(k)));
        }
    }
    if (std::find(t.columns.begin(), t.columns.end(), t.group_column) == t.columns.end()) {
        fail(s.find("group")->mark(), fmt::format("{}: group column {} is not among the columns",
                                                  path, in_quotes(t.group_column)));
    }
    return t;
}

PresetFile Parser::parse_preset(std::string_view yaml) {
    auto docs = parse_documents(yaml);
    const YAML::Node& root = docs[0];
    Section top = section(root, root.Mark(), "", kPresetKeys);
    PresetFile file;
    file.rule.preset = require_string(top, "preset");
    file.rule.preset_file = name_;
    Section options = subsection(top, "options", {});
    for (const auto& o : options.entries) {
        PresetOption option;
        option.name = o.key;
        Section os = section(o.value, o.key_mark, options.key_path(o.key), kPresetOptionKeys);
        option.required = get_bool(os, "required").value_or(false);
        option.default_value = get_string(os, "default");
        option.identifier = get_choice(os, "kind", kOptionKinds).value_or(0) == 1;
        file.options.push_back(std::move(option));
    }
    Section lookups = subsection(top, "lookups", {});
    for (const auto& l : lookups.entries) {
        file.rule.lookups.emplace_back(l.key, scalar(l, lookups.key_path(l.key)));
    }
    for (const auto* list : {"sources", "targets"}) {
        const Entry* e = top.find(list);
        if (!e) fail(top.mark, fmt::format("missing required key \"{}\" at the top level", list));
        if (!e->value.IsSequence() || e->value.size() == 0) {
            fail(e->mark(), fmt::format("{} must be a non-empty list", list));
        }
        std::size_t i = 0;
        for (const auto& item : e->value) {
            std::string path = fmt::format("{}[{}]", list, i++);
            if (std::string_view(list) == "sources") {
                file.rule.sources.push_back(parse_preset_source(item, path));
            } else {
                file.rule.targets.push_back(parse_preset_target(item, path));
            }
        }
    }
    // A scope names a value the preset has.
    for (const auto& src : file.rule.sources) {
        for (const auto& [column, name] : src.scope) {
            const bool lookup = std::any_of(file.rule.lookups.begin(), file.rule.lookups.end(),
                                            [&](const auto& l) { return l.first == name; });
            const bool option = std::any_of(file.options.begin(), file.options.end(),
                                            [&](const auto& o) { return o.name == name; });
            if (!lookup && !option) {
                fail(top.find("sources")->mark(),
                     fmt::format("source {}: scope of {} names {}, which is neither a lookup nor "
                                 "an option",
                                 src.source_name(), in_quotes(column), in_quotes(name)));
            }
        }
    }
    // Affects name targets by their short name; the SQL names them by table.
    for (auto& src : file.rule.sources) {
        for (auto& a : src.affects) {
            const auto* t = file.rule.target(a.target);
            if (!t) {
                fail(top.find("sources")->mark(),
                     fmt::format("source {} affects {}, which is not a target", src.source_name(),
                                 in_quotes(a.target)));
            }
            a.target = t->target_name();
        }
    }
    return file;
}

mapping::CompositeRule Parser::parse_preset_mapping(const YAML::Node& node, const std::string& path,
                                                    const std::vector<std::string>& search) const {
    Section s = section(node, node.Mark(), path, kPresetMappingKeys);
    const auto name = require_string(s, "preset");
    const auto name_mark = s.find("preset")->mark();
    const bool valid = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    });
    if (!valid)
        fail(name_mark, fmt::format("{}.preset: {} is not a preset name ([a-z0-9_-]+)", path,
                                    in_quotes(name)));
    std::string file_path;
    for (const auto& dir : search) {
        std::error_code ec;
        if (std::filesystem::is_regular_file(dir + "/" + name + ".yaml", ec)) {
            file_path = dir + "/" + name + ".yaml";
            break;
        }
    }
    if (file_path.empty()) {
        std::string where;
        for (const auto& dir : search) where += (where.empty() ? "" : ", ") + dir;
        fail(name_mark, fmt::format("{}.preset: no preset {} (looked for {}.yaml in {})", path,
                                    in_quotes(name), name, where));
    }
    std::string text;
    if (int err = read_file(file_path, text)) {
        fail(name_mark,
             fmt::format("{}.preset: cannot read {}: {}", path, file_path, std::strerror(err)));
    }
    PresetFile file = Parser(file_path, env_, false).parse_preset(text);
    // Identifier options rename tables and columns: <<name>> is replaced in the file's text,
    // which is then read again. Their values are plain names, so they cannot change the
    // YAML's or the SQL's structure.
    bool renamed = false;
    for (const auto& o : file.options) {
        if (!o.identifier) continue;
        std::string value = o.default_value.value_or("");
        Section given = subsection(s, "preset_options", {});
        if (const Entry* e = given.find(o.name)) {
            value = scalar(*e, given.key_path(o.name));
        } else if (!o.default_value) {
            fail(s.mark, fmt::format("{}: preset {} needs preset_options.{}", path, name, o.name));
        }
        const bool plain = !value.empty() && value.size() <= kMaxIdentifierBytes &&
                           std::all_of(value.begin(), value.end(), [](char c) {
                               return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                      (c >= '0' && c <= '9') || c == '_' || c == '$';
                           });
        if (!plain) {
            fail(s.mark, fmt::format("{}: preset_options.{} must be a table or column name of "
                                     "[A-Za-z0-9_$] (1-63 characters)",
                                     path, o.name));
        }
        const std::string placeholder = "<<" + o.name + ">>";
        for (auto pos = text.find(placeholder); pos != std::string::npos;
             pos = text.find(placeholder, pos + value.size())) {
            text.replace(pos, placeholder.size(), value);
            renamed = true;
        }
    }
    if (renamed) file = Parser(file_path, env_, false).parse_preset(text);
    // Any <<name>> left names no identifier option (a typo would otherwise reach the SQL).
    for (std::size_t open = text.find("<<"); open != std::string::npos;
         open = text.find("<<", open + 2)) {
        std::size_t end = open + 2;
        while (end < text.size() &&
               (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_'))
            ++end;
        if (end > open + 2 && text.compare(end, 2, ">>") == 0) {
            fail(name_mark, fmt::format("{}: preset {} uses {}, which is not an identifier option",
                                        path, name, text.substr(open, end + 2 - open)));
        }
    }
    if (file.rule.preset != name) {
        fail(name_mark, fmt::format("{}.preset: {} says it is preset {}, not {}", path, file_path,
                                    in_quotes(file.rule.preset), in_quotes(name)));
    }

    // The options: each given one must be declared; required ones must be given.
    std::map<std::string, std::string> values;
    Section options = subsection(s, "preset_options", {});
    std::vector<std::string_view> declared;
    for (const auto& o : file.options) declared.push_back(o.name);
    for (const auto& o : options.entries) {
        if (std::find(declared.begin(), declared.end(), o.key) == declared.end()) {
            fail(o.key_mark, fmt::format("unknown option {} for preset {}{}", in_quotes(o.key),
                                         name, suggestion(o.key, declared)));
        }
        values[o.key] = scalar(o, options.key_path(o.key));
        if (values[o.key].find("{{") != std::string::npos) {
            fail(o.mark(), fmt::format("{}: \"{{{{\" is not allowed in an option's value",
                                       options.key_path(o.key)));
        }
    }
    for (const auto& o : file.options) {
        if (values.count(o.name)) continue;
        if (o.default_value) {
            values[o.name] = *o.default_value;
        } else if (o.required) {
            fail(s.mark, fmt::format("{}: preset {} needs preset_options.{}", path, name, o.name));
        }
    }
    auto& rule = file.rule;
    rule.options = values;
    for (const auto& o : file.options) {
        if (!o.identifier) continue;
        const Section given = subsection(s, "preset_options", {});
        if (const Entry* e = given.find(o.name)) {
            rule.options[o.name] = scalar(*e, given.key_path(o.name));
        } else if (o.default_value) {
            rule.options[o.name] = *o.default_value;
        }
    }
    for (auto& [lookup, sql] : rule.lookups) {
        sql = mapping::substitute(sql, values);
        if (auto left = mapping::first_placeholder(sql)) {
            fail(name_mark, fmt::format("{}: preset {} uses {{{{{}}}}} in lookup {}, which is not "
                                        "an option",
                                        path, name, *left, lookup));
        }
    }
    // Target DDL runs before lookups are made: options only there.
    for (auto& t : rule.targets) {
        t.ddl = mapping::substitute(t.ddl, values);
        if (auto left = mapping::first_placeholder(t.ddl)) {
            fail(name_mark, fmt::format("{}: preset {} uses {{{{{}}}}} in the ddl of {}, which may "
                                        "use options only",
                                        path, name, *left, t.name));
        }
    }
    // What is left must be a lookup, filled in at start.
    mapping::for_each_sql(rule, [&](std::string& sql) {
        sql = mapping::substitute(sql, values);
        if (auto left = mapping::first_placeholder(sql)) {
            const bool is_lookup = std::any_of(rule.lookups.begin(), rule.lookups.end(),
                                               [&](const auto& l) { return l.first == *left; });
            if (!is_lookup) {
                fail(name_mark, fmt::format("{}: preset {} uses {{{{{}}}}}, which is neither an "
                                            "option nor a lookup",
                                            path, name, *left));
            }
        }
    });
    return rule;
}

std::vector<YAML::Node> Parser::parse_documents(std::string_view yaml) const {
    std::vector<YAML::Node> docs;
    try {
        docs = YAML::LoadAll(std::string(yaml));
    } catch (const YAML::Exception& e) {
        // Syntax errors (ParserException) and the parser's nesting limit. A few of yaml-cpp's
        // messages end with a piece of the document ("unknown escape character: q"), which may
        // come from a password: only the fixed part before ": " is kept.
        fail(e.mark, e.msg.substr(0, e.msg.find(": ")));
    }
    // Empty documents ("---" with nothing after it) do not count.
    std::erase_if(docs, [](const YAML::Node& doc) { return doc.IsNull(); });
    if (docs.empty()) fail(YAML::Mark::null_mark(), "the config is empty");
    if (docs.size() > 1) {
        fail(docs[1].Mark(), fmt::format("expected one YAML document, found {}", docs.size()));
    }
    return docs;
}

Config Parser::parse(std::string_view yaml) {
    auto docs = parse_documents(yaml);
    const YAML::Node& root = docs[0];
    Section top = section(root, root.Mark(), "", kTopKeys);

    Config c;
    c.path = name_;
    c.source = parse_source(top);
    c.status = parse_status(top);
    c.apply = parse_apply(top);
    c.reconnect = parse_reconnect(top);
    c.fanout = parse_fanout(top, c.source);
    c.transport = parse_transport(top);
    c.presets_dir = get_string(top, "presets_dir").value_or("");
    presets_dir_ = c.presets_dir;
    if (const Entry* list = top.find("targets")) {
        // One form or the other: a `target:` beside `targets:` would leave it unclear which
        // database the top-level mappings are for.
        for (const char* key : {"target", "mappings"}) {
            if (const Entry* other = top.find(key)) {
                fail(other->key_mark,
                     fmt::format("\"{}\" cannot be used with \"targets\" (line {}): give each "
                                 "target its dsn and mappings inside targets",
                                 key, list->key_mark.line + 1));
            }
        }
        c.targets = parse_targets(top);
    } else {
        NamedTarget t;
        t.name = kDefaultTargetName;
        t.target = parse_target(top);
        parse_mappings(top, t.mappings, t.composites);
        t.location = where(top.find("target")->key_mark);
        c.targets.push_back(std::move(t));
    }
    for (const auto& t : c.targets) {
        if (!t.composites.empty() && c.source.snapshot == Snapshot::Never) {
            // A composite row needs every contributing row: mirrors must start from a copy.
            fail(top.find("source")->mark(),
                 fmt::format("source.snapshot: never cannot be used with preset {} (its mirrors "
                             "must start from a copy of the provider's tables)",
                             t.composites.front().preset));
        }
    }
    c.target = c.targets.front().target;
    c.mappings = c.targets.front().mappings;
    c.composites = c.targets.front().composites;
    return c;
}

}  // namespace

Config Config::for_target(std::size_t i) const {
    Config c;
    c.path = path;
    c.source = source;
    c.status = status;
    c.apply = apply;
    c.reconnect = reconnect;
    c.fanout = fanout;
    c.transport = transport;
    c.presets_dir = presets_dir;
    const auto& t = targets.at(i);
    c.target = t.target;
    c.mappings = t.mappings;
    c.composites = t.composites;
    c.targets = {t};
    return c;
}

Config Config::with_targets(const std::function<bool(const NamedTarget&)>& keep) const {
    Config c = *this;
    std::erase_if(c.targets, [&](const NamedTarget& t) { return !keep(t); });
    if (c.targets.empty()) throw ConfigError(path + ": no target left to run");
    c.target = c.targets.front().target;
    c.mappings = c.targets.front().mappings;
    c.composites = c.targets.front().composites;
    return c;
}

std::string presets_directory(const std::string& presets_dir, const EnvLookup& env,
                              const std::string& executable) {
    if (!presets_dir.empty()) return presets_dir;
    if (auto dir = env("AUTHSYNC_PRESETS_DIR"); dir && !dir->empty()) return *dir;
    // Compared as canonical paths, so that a symlinked build directory still counts and
    // `build/../elsewhere` does not.
    std::error_code ec;
    const auto build = std::filesystem::weakly_canonical(AUTHSYNC_BUILD_DIR, ec);
    const auto exe = executable.empty() ? std::filesystem::path()
                                        : std::filesystem::weakly_canonical(executable, ec);
    if (!ec && !exe.empty() && !build.empty()) {
        auto b = build.begin();
        auto e = exe.begin();
        for (; b != build.end() && e != exe.end() && *b == *e; ++b, ++e) {
        }
        if (b == build.end() && e != exe.end()) return AUTHSYNC_SOURCE_PRESETS_DIR;
    }
    return AUTHSYNC_INSTALLED_PRESETS_DIR;
}

std::string running_executable() {
    std::error_code ec;
    auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
    return ec ? std::string() : path.string();
}

EnvLookup process_env() {
    return [](const std::string& name) -> std::optional<std::string> {
        const char* value = std::getenv(name.c_str());
        if (!value) return std::nullopt;
        return std::string(value);
    };
}

Config parse_config(std::string_view yaml, const std::string& name, const EnvLookup& env) {
    return Parser(name, env).parse(yaml);
}

Config load_config(const std::string& path, const EnvLookup& env) {
    std::string text;
    if (int err = read_file(path, text)) {
        throw ConfigError(fmt::format("{}: cannot read config: {}", path, std::strerror(err)));
    }
    return parse_config(text, path, env);
}

}  // namespace authsync::config
