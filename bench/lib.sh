# shellcheck shell=bash
# Shared by the benchmarks in bench/ (sourced, not run): throwaway local PostgreSQL 15
# clusters in a temp dir, run as the postgres OS user when root, on free loopback ports, and
# torn down by an EXIT trap; psql helpers; timing, port and /proc helpers.
#
# The sourcing script sets `set -euo pipefail` and cd's to the repository root. Typical use:
#
#   . bench/lib.sh
#   make_workdir                                  # $work, trap cleanup EXIT
#   pport=$(free_port); start_cluster provider "$pport"
#   tport=$(free_port); start_cluster target "$tport"
#   p -d postgres -c "SELECT 1"; t -d postgres -c "SELECT 1"

bindir=/usr/lib/postgresql/15/bin
work=""
authsync_pid=""   # an authsync process the script started: killed by cleanup
bench_pids=()     # any other background processes the script started: killed by cleanup
bench_clusters=() # data directories started by start_cluster: stopped by cleanup

as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A fresh temp dir in $work, readable by the postgres user, removed (with everything started
# in it) on exit.
make_workdir() {
  work=$(mktemp -d /tmp/authsync-bench.XXXXXX)
  chmod 755 "$work"
  if [ "$(id -u)" -eq 0 ]; then chown postgres: "$work"; fi
  trap cleanup EXIT
  # A signal (e.g. timeout's TERM) ends the script through its EXIT trap, servers included.
  trap 'exit 143' TERM
  trap 'exit 130' INT
}

cleanup() {
  [ -n "$authsync_pid" ] && kill -9 "$authsync_pid" 2>/dev/null || true
  local pid
  for pid in "${bench_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  local d
  for d in "${bench_clusters[@]}"; do
    [ -f "$d/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
  done
  [ -n "$work" ] && [ -z "${AUTHSYNC_BENCH_KEEP:-}" ] && rm -rf "$work"
  return 0
}

start_cluster() {  # name port [extra postgresql.conf line...]
  bench_clusters+=("$work/$1")
  as_pg "$bindir/initdb" -D "$work/$1" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  cat >>"$work/$1/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = '$work/$1'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
shared_buffers = 256MB
max_wal_size = 4GB
checkpoint_timeout = 30min
CONF
  local line
  for line in "${@:3}"; do echo "$line" >>"$work/$1/postgresql.conf"; done
  echo "host replication all 127.0.0.1/32 trust" >>"$work/$1/pg_hba.conf"
  as_pg "$bindir/pg_ctl" -D "$work/$1" -l "$work/$1.log" -w start >/dev/null
}

# psql on the provider ($pport) and on the target ($tport): quiet, unaligned, tuples only,
# stop on the first error. Pass -d DB and -c SQL (or -f FILE). The sourcing script sets the ports.
# shellcheck disable=SC2154
p() { psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$pport" -U postgres "$@"; }
# shellcheck disable=SC2154
t() { psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$tport" -U postgres "$@"; }

# Wall-clock seconds (fractional), and the difference of two of them.
now() { date +%s.%N; }
elapsed() { awk -v a="$2" -v b="$1" 'BEGIN { print a - b }'; }  # start end

# Peak resident set size (VmHWM) of a process in kB; 0 when it is gone.
vm_hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# Current resident set size (VmRSS) of a process in kB; 0 when it is gone.
vm_rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# CPU time (utime + stime) of a process in clock ticks; see `getconf CLK_TCK`. Fields counted
# after the command name, which is in parentheses and may contain spaces.
cpu_ticks() {
  local s
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return 0; }
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo $(( ${12} + ${13} ))
}
clk_tck=$(getconf CLK_TCK)
ticks_to_seconds() { awk -v t="$1" -v hz="$clk_tck" 'BEGIN { printf "%.2f", t / hz }'; }

# Polling the target until something is visible. The sourcing script sets poll_interval
# (seconds), drain_timeout (seconds), sleep_fd (a read end that never gets data, e.g. an
# opened FIFO) and defines fail().
# One persistent psql session on the target for polling, fed and read through two FIFOs.
poll_open() {  # db
  rm -f "$work/poll.in" "$work/poll.out"
  mkfifo "$work/poll.in" "$work/poll.out"
  psql -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$tport" -U postgres -d "$1" <"$work/poll.in" >"$work/poll.out" 2>&1 &
  poll_pid=$!
  bench_pids=("$poll_pid")
  exec {poll_in}>"$work/poll.in" {poll_out}<"$work/poll.out"
}
poll_query() {  # sql (one row) -> $poll_line
  printf '%s\n' "$1" >&"$poll_in" || fail "the polling session is gone"
  IFS= read -r -t 60 poll_line <&"$poll_out" || fail "the polling session did not answer"
}
poll_close() {
  printf '\\q\n' >&"$poll_in" || true
  exec {poll_in}>&- {poll_out}<&-
  wait "$poll_pid" 2>/dev/null || true
  bench_pids=()
}

# Polls the target every 20 ms with SQL returning "epoch|first visible (0/1)|last visible
# (0/1)" until the last is visible. Sets first_at, last_at; while authsync_pid is set, also
# tracks its VmHWM in peak_kb and fails if it exits. The loop forks nothing (builtins only),
# so that the poller costs the two cores as little as possible.
wait_visible() {  # db sql start
  local db=$1 sql=$2 deadline=$(( ${3%.*} + drain_timeout )) ts f l k v
  first_at="" last_at="" peak_kb=0
  poll_open "$db"
  while :; do
    poll_query "$sql"
    IFS='|' read -r ts f l <<<"$poll_line"
    [[ "$ts" =~ ^[0-9]+(\.[0-9]+)?$ ]] || fail "polling: $poll_line"
    if [ -z "$first_at" ] && [ "$f" = 1 ]; then first_at=$ts; fi
    if [ "$l" = 1 ]; then last_at=$ts; [ -n "$first_at" ] || first_at=$ts; break; fi
    if [ -n "$authsync_pid" ]; then
      if [ -r "/proc/$authsync_pid/status" ]; then
        while read -r k v _; do
          if [ "$k" = VmHWM: ]; then [ "$v" -gt "$peak_kb" ] && peak_kb=$v; break; fi
        done <"/proc/$authsync_pid/status" || true
      fi
      kill -0 "$authsync_pid" 2>/dev/null || { tail -5 "$work/authsync.log" >&2; fail "authsync exited"; }
    fi
    if [ "${ts%.*}" -gt "$deadline" ]; then tail -5 "$work/target.log" >&2; fail "nothing finished within ${drain_timeout}s ($db)"; fi
    read -r -t "$poll_interval" -u "$sleep_fd" _ || true  # sleeps: nothing ever arrives on this FIFO
  done
  poll_close
}
