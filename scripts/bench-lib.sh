# Shared by the load benchmarks (sourced): timing, server CPU and one wrk measurement.
# The caller declares the associative arrays `pid` (server key -> process id) and `rps`,
# `p50`, `p99`, `cpu` (results by "server,concurrency"), and sets DURATION.
# shellcheck shell=bash
now_ns() { date +%s%N; }

# Waits for the first 200 from $1; prints milliseconds since $2 (ns).
first_ok_ms() {
  until curl -sf -o /dev/null "$1"; do sleep 0.001; done
  echo $(( ($(now_ns) - $2) / 1000000 ))
}

# CPU time (user + system) a process has used, in microseconds.
cpu_us() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f", ($14 + $15) * 1000000 / hz }' "/proc/$1/stat"; }
# measure KEY URL CONCURRENCY THREADS [CPU-PREFIX]: one measured wrk run after a warm-up.
measure() {
  local key=$1 u=$2 c=$3 t=$4 client=${5:-} before out requests
  local server=${key%%,*}
  # shellcheck disable=SC2086 # $client is a command prefix
  $client wrk -t"$t" -c"$c" -d3s "$u" >/dev/null 2>&1   # warm up
  before=$(cpu_us "${pid[$server]}")
  # shellcheck disable=SC2086
  out=$($client wrk -t"$t" -c"$c" -d"$DURATION" --latency "$u")
  if echo "$out" | grep -q "Non-2xx"; then echo "$key returned errors:" >&2; echo "$out" >&2; exit 1; fi
  requests=$(echo "$out" | awk '/requests in/ { print $1 }')
  cpu[$key]=$(awk -v a="$before" -v b="$(cpu_us "${pid[$server]}")" -v n="$requests" 'BEGIN { printf "%.1f", (b - a) / n }')
  rps[$key]=$(echo "$out" | awk '/Requests\/sec/ { printf "%.0f", $2 }')
  p50[$key]=$(to_ms "$(echo "$out" | awk '$1 == "50%" { print $2 }')")
  p99[$key]=$(to_ms "$(echo "$out" | awk '$1 == "99%" { print $2 }')")
}
to_ms() { # wrk latency like 1.23ms, 456.00us, 1.20s -> milliseconds
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.3f", n }'
}
