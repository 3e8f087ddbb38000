#!/usr/bin/env bash
# Benchmark: the authenticated path of samlsp's gateway mode against
# oauth2-proxy, on this machine, in one run.
#
# Every contender answers the same authenticated GET (a session cookie got
# by a scripted login) by sending it to the same upstream (deploy/bench/backend,
# a 64-byte answer). wrk (loopback, bounded duration, fixed connections)
# measures requests/s, p50 and p99 latency and errors for:
#   direct          wrk -> backend (no authentication: the ceiling)
#   samlsp-memory   samlsp --upstream, sessions in its memory (--store memory)
#   samlsp-redis    samlsp --upstream, sessions in Redis (--store redis),
#                   default flags: a session read from Redis is served from
#                   memory, dropped the moment any replica ends it (pub/sub)
#   samlsp-redis-nocache  the same with --session-cache-ttl 0: every request
#                   reads the session from Redis
#   oauth2-proxy    oauth2-proxy v7.15.6, --session-store-type redis, OIDC
#                   login at mockoidc (deploy/bench/mockoidc)
# and prints each as a ratio to oauth2-proxy, with the proxy process's CPU
# time per request. Each contender runs ROUNDS times, interleaved with the
# others, and the median round is reported.
#
# CPU pinning (2 cores): each proxy runs alone on core $PROXY_CPU with
# GOMAXPROCS=1; the backend, Redis (one private redis-server for both
# Redis contenders, on 127.0.0.1:25379), the IdPs and wrk (one thread) share
# core $LOAD_CPU.
#
# oauth2-proxy is installed with `go install` from the Go module proxy into
# a temporary GOBIN (set OAUTH2_PROXY=path to reuse a binary); wrk, redis-server
# and taskset must be installed. Ports 25080-25110 and 25379 must be free.
# Usage: deploy/bench/gateway.sh            (DURATION=10s CONNS=64 ROUNDS=3)
set -euo pipefail

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNS=${CONNS:-64}
ROUNDS=${ROUNDS:-3}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
CONTENDERS=${CONTENDERS:-"direct samlsp-memory samlsp-redis samlsp-redis-nocache oauth2-proxy"}
O2P_VERSION=v7.15.6

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
bench_init gateway-

for tool in wrk redis-server taskset go; do
	command -v "$tool" >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
for port in 25081 25082 25083 25090 25100 25101 25379; do
	if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
		echo "port $port is in use; the benchmark needs 25081-25083, 25090, 25100, 25101 and 25379" >&2
		exit 1
	fi
done

echo "building samlsp, devidp, the backend, mockoidc and benchlogin" >&2
(cd "$top" && for p in samlsp devidp; do go build -o "$work/$p" ./cmd/$p; done &&
	for p in backend mockoidc benchlogin; do go build -o "$work/$p" ./deploy/bench/$p; done)
o2p=${OAUTH2_PROXY:-}
if [ -z "$o2p" ]; then
	echo "installing oauth2-proxy $O2P_VERSION (go install, into $work/bin)" >&2
	GOBIN="$work/bin" go install "github.com/oauth2-proxy/oauth2-proxy/v7@$O2P_VERSION"
	o2p="$work/bin/oauth2-proxy"
fi

wait_port() {
	for _ in $(seq 200); do
		(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "nothing listens on $1" >&2
	return 1
}

# Started directly (not through a shell function), so that $! is the
# program itself and cleanup stops it.
taskset -c "$LOAD_CPU" env GOMAXPROCS=1 "$work/backend" --listen 127.0.0.1:25101 --instance-id upstream & pids+=($!)
taskset -c "$LOAD_CPU" redis-server --port 25379 --bind 127.0.0.1 --save "" --appendonly no >"$out/redis.log" 2>&1 & pids+=($!)
"$work/samlsp" keygen --dir "$work/keys" >/dev/null
taskset -c "$LOAD_CPU" env GOMAXPROCS=1 "$work/devidp" --listen 127.0.0.1:25100 --public-url http://127.0.0.1:25100 --data-dir "$work/idp" \
	--sp-metadata http://127.0.0.1:25081/saml/metadata --sp-metadata http://127.0.0.1:25082/saml/metadata \
	--register-timeout 0 --log-level warn 2>"$out/devidp.log" & pids+=($!)
taskset -c "$LOAD_CPU" env GOMAXPROCS=1 "$work/mockoidc" --listen 127.0.0.1:25090 >"$work/oidc.env" 2>"$out/mockoidc.log" & pids+=($!)
wait_port 25101
wait_port 25379
wait_port 25100
wait_port 25090
for _ in $(seq 100); do grep -q OIDC_CLIENT_SECRET "$work/oidc.env" && break; sleep 0.05; done
# shellcheck disable=SC1091
. "$work/oidc.env"

cookie_secret=$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=' | head -c 32)
start_proxy() { # name -> url and cookie; starts the process, records its pid in proxy_pid
	cookie=""
	case "$1" in
	direct)
		proxy_pid=""
		url=http://127.0.0.1:25101/
		return ;;
	samlsp-memory | samlsp-redis | samlsp-redis-nocache)
		local port=25081 store=(--store memory)
		[ "$1" != samlsp-memory ] && port=25082 && store=(--store redis --store-url redis://127.0.0.1:25379/0)
		[ "$1" = samlsp-redis-nocache ] && store+=(--session-cache-ttl 0)
		taskset -c "$PROXY_CPU" env GOMAXPROCS=1 "$work/samlsp" --instance-id bench --listen 127.0.0.1:$port \
			--root-url http://127.0.0.1:$port --idp-metadata-url http://127.0.0.1:25100/metadata \
			--sp-key "$work/keys/sp.key" --sp-cert "$work/keys/sp.crt" "${store[@]}" \
			--upstream http://127.0.0.1:25101 --pass-attribute mail=X-Email --log-level warn 2>>"$out/$1.log" &
		proxy_pid=$!
		url=http://127.0.0.1:$port/
		wait_port $port
		for _ in $(seq 200); do curl -fs -o /dev/null http://127.0.0.1:$port/readyz && break; sleep 0.05; done
		# The IdP registers the SP from its metadata; wait for that.
		for _ in $(seq 200); do curl -fs -o /dev/null http://127.0.0.1:25100/readyz && break; sleep 0.1; done
		cookie=$(taskset -c "$LOAD_CPU" "$work/benchlogin" --url "$url" --user alice) ;;
	oauth2-proxy)
		taskset -c "$PROXY_CPU" env GOMAXPROCS=1 "$o2p" --http-address 127.0.0.1:25083 \
			--provider oidc --oidc-issuer-url "$OIDC_ISSUER" --client-id "$OIDC_CLIENT_ID" --client-secret "$OIDC_CLIENT_SECRET" \
			--redirect-url http://127.0.0.1:25083/oauth2/callback --upstream http://127.0.0.1:25101/ \
			--cookie-secret "$cookie_secret" --cookie-secure=false --email-domain '*' --skip-provider-button \
			--session-store-type redis --redis-connection-url redis://127.0.0.1:25379/1 \
			--request-logging=false --auth-logging=false --standard-logging=false >>"$out/$1.log" 2>&1 &
		proxy_pid=$!
		url=http://127.0.0.1:25083/
		wait_port 25083
		cookie=$(taskset -c "$LOAD_CPU" "$work/benchlogin" --url "$url") ;;
	esac
}

stop_proxy() {
	if [ -n "$proxy_pid" ]; then
		kill "$proxy_pid" 2>/dev/null || true
		wait "$proxy_pid" 2>/dev/null || true
	fi
}


run_wrk() { # name round
	local f="$out/$1.$2.txt" hdr=()
	[ -n "$cookie" ] && hdr=(-H "Cookie: $cookie")
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$WARMUP" "${hdr[@]}" "$url" >/dev/null 2>&1 || true
	local ticks0 rps p50 p99 errs us
	ticks0=$(cpu_ticks "$proxy_pid")
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"$DURATION" --latency "${hdr[@]}" "$url" >"$f" 2>&1
	# Any non-2xx (a redirect to log in, a 401) counts as an error: the
	# session must hold for the whole round.
	read -r rps p50 p99 errs us <<<"$(wrk_stats "$f" $(($(cpu_ticks "$proxy_pid") - ticks0)))"
	echo "$1 $2 $rps $p50 $p99 $errs $us" >>"$out/rounds.txt"
}

echo "wrk: $CONNS connections, ${DURATION} per round after ${WARMUP} warm-up, $ROUNDS rounds; proxy on CPU $PROXY_CPU, the rest on CPU $LOAD_CPU" >&2
for round in $(seq "$ROUNDS"); do
	for c in $CONTENDERS; do
		echo "round $round: $c" >&2
		start_proxy "$c"
		run_wrk "$c" "$round"
		stop_proxy
	done
done

ref=oauth2-proxy
summary=$(awk -v order="$CONTENDERS" -v ref="$ref" '
	function median(arr, n,    i, j, t) {
		for (i = 2; i <= n; i++) for (j = i; j > 1 && arr[j - 1] > arr[j]; j--) { t = arr[j]; arr[j] = arr[j - 1]; arr[j - 1] = t }
		return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
	}
	{ rps[$1, $2] = $3; p50[$1, $2] = $4; p99[$1, $2] = $5; err[$1] += $6; us[$1, $2] = $7; rounds[$2] = 1 }
	END {
		nc = split(order, cs, " ")
		for (c = 1; c <= nc; c++) {
			name = cs[c]; n = 0
			for (r in rounds) {
				n++; a[n] = rps[name, r]; b[n] = p50[name, r]; d[n] = p99[name, r]; cu[n] = us[name, r]
				rr[n] = rps[ref, r] > 0 ? rps[name, r] / rps[ref, r] : 0
				pr[n] = p99[ref, r] > 0 ? p99[name, r] / p99[ref, r] : 0
				dr[n] = rps["direct", r] > 0 ? rps[name, r] / rps["direct", r] : 0
			}
			printf "%s %.0f %.2f %.2f %d %.2f %.2f %.2f %.1f\n", name, median(a, n), median(b, n), median(d, n), err[name] + 0, median(rr, n), median(pr, n), median(dr, n), median(cu, n)
		}
	}' "$out/rounds.txt")
echo "$summary" >"$out/summary.txt"
echo
# The version the binary was built from (go install leaves no version flag).
O2P_VERSION=$(go version -m "$o2p" 2>/dev/null | awk '$1 == "mod" {print $3; exit}')
echo "gateway benchmark, $(nproc) CPUs ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), oauth2-proxy $O2P_VERSION, $(redis-server --version | awk '{print $1, $3}')"
echo "wrk -t1 -c$CONNS -d$DURATION, $ROUNDS interleaved rounds, medians; proxy pinned to CPU $PROXY_CPU (GOMAXPROCS=1), backend, Redis, IdPs and wrk to CPU $LOAD_CPU"
echo "ratios are per round; us/req: the proxy process's CPU time per request (Redis's own CPU not included)"
printf '%-19s %9s %8s %8s %7s %9s %9s %9s %8s\n' contender "req/s" "p50 ms" "p99 ms" errors "rps/o2p" "p99/o2p" "rps/dir" "us/req"
while read -r name rps p50 p99 errs rr pr dr cu; do
	[ "$name" = direct ] && cu=-
	printf '%-19s %9s %8s %8s %7s %8sx %8sx %8sx %8s\n' "$name" "$rps" "$p50" "$p99" "$errs" "$rr" "$pr" "$dr" "$cu"
done <<<"$summary"
echo
echo "raw wrk output and every round: $out" >&2
