#!/usr/bin/env bash
# Benchmark: stickyproxy against HAProxy and Caddy, on this machine, in one run.
#
# Measures with wrk (loopback, bounded duration, fixed connections) requests/s,
# p50 and p99 latency and errors for:
#   direct                 wrk -> backend sp-1
#   stickyproxy            --stickiness duration, access log off (the default engine "fast")
#   stickyproxy+log        the same with --access-log all, written to a file
#   stickyproxy-rp         --engine reverseproxy: a tuned httputil.ReverseProxy, for comparison
#   stickyproxy-base       stickyproxy built from $BASE_REV (only with BASE_REV)
#   haproxy                cookie SRV insert indirect nocache (deploy/bench/haproxy.cfg)
#   caddy                  lb_policy cookie (deploy/bench/Caddyfile)
# and prints each as a ratio to HAProxy. Each contender runs ROUNDS times,
# interleaved with the others, and the median round is reported.
#
# CPU pinning (2 cores): every proxy runs alone on core $PROXY_CPU (Go
# proxies with GOMAXPROCS=1, HAProxy with nbthread 1), the two backends and wrk
# (one thread) share core $LOAD_CPU. The proxy's core is the one measured; the
# other core is the same for every contender.
#
# Installs haproxy, caddy and wrk from Debian's packages if missing.
# Usage: deploy/bench/run.sh            (DURATION=10s CONNS=256 ROUNDS=3)
# BASE_REV=<git revision> adds the contender stickyproxy-base: stickyproxy
# built from that revision, run as stickyproxy is, to compare a change with
# its base side by side in the same rounds.
# Ports: PORT_BASE (default 20100) + 1 and + 2 for the backends, + 80, + 81
# and + 82 for stickyproxy, HAProxy and Caddy (20101, 20102, 20180-20182 by
# default); give two runs on one machine different PORT_BASEs.
# Also prints the machine's load average before and after, since other work
# on the machine moves every figure.
set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-256}
ROUNDS=${ROUNDS:-3}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CONTENDERS=${CONTENDERS:-"direct stickyproxy stickyproxy+log stickyproxy-rp haproxy caddy"}
BASE_REV=${BASE_REV:-}
if [ -n "$BASE_REV" ] && [[ " $CONTENDERS " != *" stickyproxy-base "* ]]; then
	CONTENDERS="${CONTENDERS/stickyproxy /stickyproxy stickyproxy-base }"
	[[ " $CONTENDERS " == *" stickyproxy-base "* ]] || CONTENDERS="$CONTENDERS stickyproxy-base"
fi
PORT_BASE=${PORT_BASE:-20100}
case "$PORT_BASE" in
'' | *[!0-9]*) echo "PORT_BASE must be a number" >&2; exit 2 ;;
esac
if [ "$PORT_BASE" -lt 1024 ] || [ "$PORT_BASE" -gt 65400 ]; then
	echo "PORT_BASE must be between 1024 and 65400" >&2
	exit 2
fi
port_sp1=$((PORT_BASE + 1)) port_sp2=$((PORT_BASE + 2))
port_sticky=$((PORT_BASE + 80)) port_haproxy=$((PORT_BASE + 81)) port_caddy=$((PORT_BASE + 82))

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
bench_init ""

missing=()
for tool in haproxy caddy wrk taskset; do
	command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing ${missing[*]} from Debian's packages" >&2
	pkgs=("${missing[@]/taskset/util-linux}")
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi

for port in $port_sp1 $port_sp2 $port_sticky $port_haproxy $port_caddy; do
	if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
		echo "port $port is in use; the benchmark needs $port_sp1, $port_sp2, $port_sticky-$port_caddy (set PORT_BASE to move them)" >&2
		exit 1
	fi
done

# The reference configs name the default ports: rewrite them for PORT_BASE.
ports_sed=(-e "s/127\.0\.0\.1:20101/127.0.0.1:$port_sp1/g" -e "s/127\.0\.0\.1:20102/127.0.0.1:$port_sp2/g"
	-e "s/127\.0\.0\.1:20181/127.0.0.1:$port_haproxy/g" -e "s/127\.0\.0\.1:20182/127.0.0.1:$port_caddy/g")
sed "${ports_sed[@]}" "$here/haproxy.cfg" >"$work/haproxy.cfg"
sed "${ports_sed[@]}" "$here/Caddyfile" >"$work/Caddyfile"

echo "building stickyproxy and the backend" >&2
(cd "$top" && go build -o "$work/stickyproxy" ./cmd/stickyproxy && go build -o "$work/backend" ./deploy/bench/backend)
if [ -n "$BASE_REV" ]; then
	echo "building stickyproxy at $BASE_REV ($(git -C "$top" rev-parse --short "$BASE_REV"))" >&2
	mkdir "$work/base"
	git -C "$top" archive "$BASE_REV" | tar -x -C "$work/base"
	(cd "$work/base" && go build -o "$work/stickyproxy-base" ./cmd/stickyproxy)
fi

wait_port() {
	for _ in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listens on $1" >&2
	return 1
}

taskset -c "$LOAD_CPU" env GOMAXPROCS=1 "$work/backend" --listen 127.0.0.1:$port_sp1 --instance-id sp-1 & pids+=($!)
taskset -c "$LOAD_CPU" env GOMAXPROCS=1 "$work/backend" --listen 127.0.0.1:$port_sp2 --instance-id sp-2 & pids+=($!)
wait_port $port_sp1
wait_port $port_sp2

key=$(head -c 32 /dev/urandom | base64)
start_proxy() { # name -> url, starts the process, records its pid in proxy_pid
	case "$1" in
	direct) proxy_pid=""; url=http://127.0.0.1:$port_sp1/ ;;
	stickyproxy | stickyproxy+log | stickyproxy-rp | stickyproxy-base)
		local extra=(--access-log off) log=/dev/null bin="$work/stickyproxy"
		[ "$1" = stickyproxy-base ] && bin="$work/stickyproxy-base"
		[ "$1" = stickyproxy+log ] && extra=(--access-log all) && log="$out/access.log"
		[ "$1" = stickyproxy-rp ] && extra=(--access-log off --engine reverseproxy)
		# wrk's connections all come from one address: its share of
		# connections and requests in flight must hold all of them.
		taskset -c "$PROXY_CPU" env GOMAXPROCS=1 "$bin" --listen 127.0.0.1:$port_sticky --admin-listen "" \
			--target sp-1=http://127.0.0.1:$port_sp1 --target sp-2=http://127.0.0.1:$port_sp2 \
			--max-conns-per-client $((CONNS > 512 ? CONNS : 512)) --max-in-flight-per-client $((CONNS > 256 ? CONNS : 256)) \
			--stickiness duration --cookie-key "$key" --log-format json "${extra[@]}" 2>"$log" &
		proxy_pid=$!
		url=http://127.0.0.1:$port_sticky/
		wait_port $port_sticky ;;
	haproxy)
		taskset -c "$PROXY_CPU" haproxy -f "$work/haproxy.cfg" >/dev/null 2>&1 &
		proxy_pid=$!
		url=http://127.0.0.1:$port_haproxy/
		wait_port $port_haproxy ;;
	caddy)
		taskset -c "$PROXY_CPU" env GOMAXPROCS=1 HOME="$work" XDG_DATA_HOME="$work" XDG_CONFIG_HOME="$work" \
			caddy run --config "$work/Caddyfile" --adapter caddyfile >/dev/null 2>&1 &
		proxy_pid=$!
		url=http://127.0.0.1:$port_caddy/
		wait_port $port_caddy ;;
	esac
}

stop_proxy() {
	if [ -n "$proxy_pid" ]; then
		kill "$proxy_pid" 2>/dev/null || true
		wait "$proxy_pid" 2>/dev/null || true
	fi
}

# cpu_busy CPU SECONDS: how busy (percent) CPU was over the next SECONDS.
cpu_busy() {
	local a b
	a=$(grep "^cpu$1 " /proc/stat)
	sleep "$2"
	b=$(grep "^cpu$1 " /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN {
		n = split(a, x); split(b, y); t = 0
		for (i = 2; i <= n; i++) t += y[i] - x[i]
		idle = (y[5] - x[5]) + (y[6] - x[6])
		printf "%.0f", (t > 0 ? 100 * (1 - idle / t) : 0) }'
}

run_wrk() { # name round
	local f="$out/$1.$2.txt"
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP" "$url" >/dev/null 2>&1 || true
	local ticks0
	ticks0=$(cpu_ticks "$proxy_pid")
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "$url" >"$f" 2>&1 &
	local wrk_pid=$! secs=${DURATION%s}
	local busy
	sleep 1
	busy=$(cpu_busy "$PROXY_CPU" $((secs > 3 ? secs - 2 : 1)))
	wait "$wrk_pid"
	# CPU time the proxy process used per request (user + system, all
	# threads): its cost, whatever else runs on the machine.
	local rps p50 p99 errs us
	read -r rps p50 p99 errs us <<<"$(wrk_stats "$f" $(($(cpu_ticks "$proxy_pid") - ticks0)))"
	echo "$1 $2 $rps $p50 $p99 $errs $busy $us" >>"$out/rounds.txt"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "wrk: $CONNS connections, ${DURATION} per round after ${WARMUP} warm-up, $ROUNDS rounds; proxy on CPU $PROXY_CPU, backends and wrk on CPU $LOAD_CPU" >&2
for round in $(seq "$ROUNDS"); do
	for c in $CONTENDERS; do
		echo "round $round: $c" >&2
		start_proxy "$c"
		run_wrk "$c" "$round"
		stop_proxy
	done
done

# Per contender: the median over rounds of requests/s, p50, p99 and proxy-CPU
# busy, the sum of errors, and the median over rounds of the ratio to HAProxy
# in the same round (rounds are interleaved, so a ratio compares runs made
# under the same background load).
summary=$(awk -v order="$CONTENDERS" '
	function median(arr, n,    i, j, t) {
		for (i = 2; i <= n; i++) for (j = i; j > 1 && arr[j - 1] > arr[j]; j--) { t = arr[j]; arr[j] = arr[j - 1]; arr[j - 1] = t }
		return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
	}
	{ rps[$1, $2] = $3; p50[$1, $2] = $4; p99[$1, $2] = $5; err[$1] += $6; busy[$1, $2] = $7; us[$1, $2] = $8; rounds[$2] = 1 }
	END {
		nc = split(order, cs, " ")
		for (c = 1; c <= nc; c++) {
			name = cs[c]; n = 0
			for (r in rounds) {
				n++; a[n] = rps[name, r]; b[n] = p50[name, r]; d[n] = p99[name, r]; u[n] = busy[name, r]; cu[n] = us[name, r]
				er[n] = us[name, r] > 0 ? us["haproxy", r] / us[name, r] : 0
				rr[n] = rps["haproxy", r] > 0 ? rps[name, r] / rps["haproxy", r] : 0
				pr[n] = p99["haproxy", r] > 0 ? p99[name, r] / p99["haproxy", r] : 0
			}
			printf "%s %.0f %.2f %.2f %d %.0f %.2f %.2f %.1f %.2f\n", name, median(a, n), median(b, n), median(d, n), err[name] + 0, median(u, n), median(rr, n), median(pr, n), median(cu, n), median(er, n)
		}
	}' "$out/rounds.txt")
echo "$summary" >"$out/summary.txt"
echo
echo "stickyproxy benchmark, $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(haproxy -v | head -1 | awk '{print "HAProxy", $3}'), Caddy $(caddy version | awk '{print $1}')"
echo "wrk -t1 -c$CONNS -d$DURATION, $ROUNDS interleaved rounds, medians; proxy pinned to CPU $PROXY_CPU, backends and wrk to CPU $LOAD_CPU"
echo "load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "cpu$PROXY_CPU%: how busy the proxy's CPU was (for direct nothing of ours runs there); us/req: the proxy process's CPU time per request;"
echo "ratios are per round, to HAProxy; eff/HAP is HAProxy's CPU per request over the contender's (1.00x = as frugal as HAProxy)"
printf '%-16s %9s %8s %8s %7s %6s %8s %8s %8s %8s\n' contender "req/s" "p50 ms" "p99 ms" errors "cpu${PROXY_CPU}%" "rps/HAP" "p99/HAP" "us/req" "eff/HAP"
while read -r name rps p50 p99 errs busy rr pr cu er; do
	er="${er}x"
	[ "$name" = direct ] && cu=- && er=-
	printf '%-16s %9s %8s %8s %7s %6s %7sx %7sx %8s %8s\n' "$name" "$rps" "$p50" "$p99" "$errs" "$busy" "$rr" "$pr" "$cu" "$er"
done <<<"$summary"
echo
echo "raw wrk output and every round: $out" >&2
