# Shared by the benchmark scripts in deploy/bench (run.sh, gateway.sh):
# reading wrk's output and a process's CPU time. Source it; it runs nothing.

# to_ms 1.23ms|456.00us|1.2s -> milliseconds
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else printf "%s", v }'
}

# cpu_ticks PID: user + system clock ticks the process has used so far (0
# without a PID).
cpu_ticks() {
	if [ -n "$1" ]; then awk '{print $14 + $15}' "/proc/$1/stat"; else echo 0; fi
}

# wrk_stats FILE TICKS: "rps p50_ms p99_ms errors cpu_us_per_request" of one
# wrk --latency output, where TICKS is the proxy's CPU ticks over the round.
# Any non-2xx answer and any socket error counts as an error.
wrk_stats() {
	local f=$1 ticks=$2 rps p50 p99 errs reqs us
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$f")
	p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$f")")
	p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$f")")
	errs=$(awk '/Socket errors:/ {gsub(",", ""); s += $4 + $6 + $8 + $10} /Non-2xx/ {s += $NF} END {print s + 0}' "$f")
	reqs=$(awk '/requests in/ {print $1}' "$f")
	us=$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="${reqs:-0}" 'BEGIN { printf "%.1f", (n > 0 ? t / hz * 1e6 / n : 0) }')
	echo "$rps $p50 $p99 $errs $us"
}

# bench_init PREFIX: $out, the results folder (results/PREFIX<time>); $work,
# a scratch folder; $pids and $proxy_pid, the processes to stop. All three
# are cleaned up when the script exits, however it exits. Needs $here.
bench_init() {
	out="$here/results/$1$(date -u +%Y%m%dT%H%M%SZ)"
	mkdir -p "$out"
	work=$(mktemp -d)
	pids=()
	proxy_pid=""
	trap bench_cleanup EXIT
}

bench_cleanup() {
	for p in "${pids[@]}" $proxy_pid; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
