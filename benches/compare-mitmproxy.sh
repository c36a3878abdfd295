#!/usr/bin/env bash
# Side-by-side benchmark, all rows in one run against the same local HTTPS
# upstream under the same load: going direct (no proxy), mitmproxy running
# an equivalent policy addon, a hudsucker-based proxy doing allowlist +
# header injection only (benches/hudsucker-peer, no DLP), and bb-egress.
# See benches/compare/README.md. Everything stays on 127.0.0.1 and every
# step is bounded in time; all processes started here are stopped on exit.
#
# Knobs (environment):
#   DURATION_S=10      measured seconds per scenario
#   WARMUP_S=1         unmeasured seconds before each measurement
#   CONNECTIONS=20     concurrent keep-alive connections (post-1m uses
#                      CONNECTIONS_1M=4)
#   SCENARIOS="get-small post-64k post-1m get-new-conn"
#   PROXIES="direct mitmproxy hudsucker bb-egress"
#   UPSTREAM=nginx     nginx (with its njs module; installed with apt-get
#                      when missing and run as root) or loadgen (bb-loadgen
#                      upstream, hyper)
#   CARGO_TARGET_DIR   where the binaries and the work folder go (default target/)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
COMPARE=$ROOT/benches/compare
VENV=$ROOT/benches/.venv
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=$TARGET_DIR/compare-mitmproxy
RESULTS=$WORK/results

DURATION_S=${DURATION_S:-10}
WARMUP_S=${WARMUP_S:-1}
CONNECTIONS=${CONNECTIONS:-20}
CONNECTIONS_1M=${CONNECTIONS_1M:-4}
SCENARIOS=${SCENARIOS:-"get-small post-64k post-1m get-new-conn"}
PROXIES=${PROXIES:-"direct mitmproxy hudsucker bb-egress"}
UPSTREAM=${UPSTREAM:-nginx}
MITMPROXY_SPEC=${MITMPROXY_SPEC:-mitmproxy}
NGINX_MODULES=${NGINX_MODULES:-/usr/lib/nginx/modules}

# Not a real credential: the token both proxies inject and the upstream checks.
export EGRESS_TOKEN_BENCH="bench-token-$RANDOM$RANDOM"

log() { printf '[compare] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop PID: SIGTERM, then SIGKILL after 5 s.
stop() {
	local pid=$1 i
	kill "$pid" 2>/dev/null || return 0
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	forget "$pid"
}

# forget PID: drop a reaped process from PIDS, so the exit trap never
# signals a recycled PID.
forget() {
	local keep=() p
	for p in "${PIDS[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT PID WHAT: until 127.0.0.1:PORT accepts, at most 60 s.
wait_port() {
	local port=$1 pid=$2 what=$3 i
	for i in $(seq 600); do
		kill -0 "$pid" 2>/dev/null || return 1
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	log "$what did not listen on 127.0.0.1:$port within 60 s"
	return 1
}

# wait_file FILE PID: until FILE exists, at most 60 s.
wait_file() {
	local f=$1 pid=$2 i
	for i in $(seq 600); do
		[[ -s $f ]] && return 0
		kill -0 "$pid" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

# Peak resident set (VmHWM) in KiB, and CPU seconds (user + system) so far.
peak_rss_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
cpu_seconds() {
	# Fields 14 and 15 of /proc/PID/stat, counted after the ")" that closes
	# the command name (which may contain spaces).
	local stat
	stat=$(cat "/proc/$1/stat")
	stat=${stat##*) }
	awk -v tck="$(getconf CLK_TCK)" '{ printf "%.3f", ($12 + $13) / tck }' <<<"$stat"
}

# CPU seconds of PID and its children (nginx's workers), so far.
tree_cpu_seconds() {
	local total=0 pid
	for pid in "$1" $(pgrep -P "$1" || true); do
		total=$(awk -v a="$total" -v b="$(cpu_seconds "$pid" 2>/dev/null || echo 0)" 'BEGIN { printf "%.3f", a + b }')
	done
	echo "$total"
}

# scenario NAME: loadgen flags for it.
scenario_flags() {
	case $1 in
		get-small) echo "--method GET" ;;
		post-64k) echo "--method POST --body-size 64KiB" ;;
		post-1m) echo "--method POST --body-size 1MiB" ;;
		get-new-conn) echo "--method GET --new-connection-per-request" ;;
		*) die "unknown scenario $1" ;;
	esac
}

# scenario_connections NAME: concurrent connections for it.
scenario_connections() {
	case $1 in
		post-1m) echo "$CONNECTIONS_1M" ;;
		*) echo "$CONNECTIONS" ;;
	esac
}

# ---- setup ---------------------------------------------------------------

command -v python3 >/dev/null || die "python3 is needed (for the mitmproxy venv)"
mkdir -p "$WORK"
rm -rf "$RESULTS"
mkdir -p "$RESULTS"
echo "$SCENARIOS" >"$RESULTS/scenarios.txt"
echo "$PROXIES" >"$RESULTS/proxies.txt"

if [[ " $PROXIES " == *" mitmproxy "* ]]; then
	if [[ ! -x $VENV/bin/mitmdump ]]; then
		log "installing $MITMPROXY_SPEC into $VENV"
		python3 -m venv "$VENV"
		"$VENV/bin/pip" install --quiet "$MITMPROXY_SPEC"
	fi
	log "mitmproxy $("$VENV/bin/mitmdump" --version | awk '/^Mitmproxy:/ { print $2 }')"
fi

HUDSUCKER=$TARGET_DIR/hudsucker-peer/release/bb-hudsucker-peer
if [[ " $PROXIES " == *" hudsucker "* ]]; then
	log "building bb-hudsucker-peer (release; its own workspace under benches/hudsucker-peer)"
	if ! (cd "$ROOT/benches/hudsucker-peer" && CARGO_TARGET_DIR=$TARGET_DIR/hudsucker-peer cargo build --quiet --release); then
		log "SKIP hudsucker: it did not build"
		PROXIES=${PROXIES//hudsucker/}
	fi
fi

if [[ $UPSTREAM == nginx && ! -e $NGINX_MODULES/ngx_http_js_module.so ]]; then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		log "installing nginx-light and its njs module (apt-get)"
		# The package's service must not start: the bench runs its own.
		DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 apt-get install -y -qq nginx-light libnginx-mod-http-js >"$WORK/apt.log" 2>&1 ||
			die "apt-get install nginx-light libnginx-mod-http-js failed: $(tail -n 5 "$WORK/apt.log")"
	else
		die "UPSTREAM=nginx needs nginx and $NGINX_MODULES/ngx_http_js_module.so (Debian: nginx-light libnginx-mod-http-js); or set UPSTREAM=loadgen"
	fi
fi

log "building bb-loadgen (release)"
(cd "$ROOT" && cargo build --quiet --release -p bb-loadgen) || die "bb-loadgen did not build"
LOADGEN=$TARGET_DIR/release/bb-loadgen

BB_EGRESS=$TARGET_DIR/release/bb-egress
if [[ " $PROXIES " == *" bb-egress "* ]]; then
	log "building bb-egress (release)"
	if ! (cd "$ROOT" && cargo build --quiet --release -p bb-egress); then
		log "SKIP bb-egress: it did not build"
		PROXIES=${PROXIES//bb-egress/}
	elif ! "$BB_EGRESS" --help 2>&1 | grep -q -- '--routes'; then
		log "SKIP bb-egress: this build has no proxy server yet ('bb-egress --help' does not list --routes)"
		PROXIES=${PROXIES//bb-egress/}
	fi
fi

log "starting the upstream ($UPSTREAM)"
case $UPSTREAM in
	loadgen)
		"$LOADGEN" upstream --listen 127.0.0.1:0 --cert-dir "$WORK/upstream" \
			--expect-bearer-env EGRESS_TOKEN_BENCH --max-lifetime 30m \
			>"$WORK/upstream.log" 2>&1 &
		UPSTREAM_PID=$!
		PIDS+=("$UPSTREAM_PID")
		for _ in $(seq 300); do
			grep -q '^listening ' "$WORK/upstream.log" && break
			kill -0 "$UPSTREAM_PID" 2>/dev/null || die "upstream exited: $(cat "$WORK/upstream.log")"
			sleep 0.1
		done
		UPSTREAM_ADDR=$(awk '/^listening / { print $2; exit }' "$WORK/upstream.log")
		[[ -n $UPSTREAM_ADDR ]] || die "upstream did not start"
		UPSTREAM_PORT=${UPSTREAM_ADDR##*:}
		UPSTREAM_CA=$WORK/upstream/ca.crt
		;;
	nginx)
		NGINX_DIR=$WORK/nginx
		rm -rf "$NGINX_DIR"
		mkdir -p "$NGINX_DIR"
		"$LOADGEN" cert "$NGINX_DIR" || die "bb-loadgen cert failed"
		cp "$COMPARE/bench.js" "$NGINX_DIR/bench.js"
		UPSTREAM_PORT=$(free_port)
		sed -e "s|@WORK@|$WORK|g" -e "s|@PORT@|$UPSTREAM_PORT|g" -e "s|@MODULES@|$NGINX_MODULES|g" \
			"$COMPARE/nginx.conf.in" >"$NGINX_DIR/nginx.conf"
		nginx -c "$NGINX_DIR/nginx.conf" -p "$NGINX_DIR" >"$WORK/upstream.log" 2>&1 &
		UPSTREAM_PID=$!
		PIDS+=("$UPSTREAM_PID")
		wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID" nginx ||
			die "nginx did not start: $(cat "$WORK/upstream.log" "$NGINX_DIR/error.log" 2>/dev/null)"
		UPSTREAM_ADDR=127.0.0.1:$UPSTREAM_PORT
		UPSTREAM_CA=$NGINX_DIR/ca.crt
		log "$(nginx -v 2>&1)"
		;;
	*) die "UPSTREAM=$UPSTREAM: nginx or loadgen" ;;
esac
URL="https://localhost:$UPSTREAM_PORT/bench/echo"
log "upstream on $UPSTREAM_ADDR"

# Both proxies read the same routes, pointed at the upstream's port.
ROUTES=$WORK/routes.yaml
sed "s/\\b18443\\b/$UPSTREAM_PORT/" "$COMPARE/routes.yaml" >"$ROUTES"

# ---- the proxies ----------------------------------------------------------

# start_PROXY PORT LOGFILE: starts it in the background, sets PROXY_PID and
# PROXY_CA (the CA file clients must trust).
start_mitmproxy() {
	local port=$1 logfile=$2
	"$VENV/bin/mitmdump" \
		--listen-host 127.0.0.1 --listen-port "$port" \
		--set confdir="$WORK/mitmproxy-conf" \
		--set ssl_verify_upstream_trusted_ca="$UPSTREAM_CA" \
		--set flow_detail=0 --set termlog_verbosity=warn \
		-s "$COMPARE/addon.py" --set bb_routes="$ROUTES" \
		>"$logfile" 2>&1 &
	PROXY_PID=$!
	PROXY_CA=$WORK/mitmproxy-conf/mitmproxy-ca-cert.pem
}

start_hudsucker() {
	local port=$1 logfile=$2
	PROXY_CA=$WORK/hudsucker-ca.crt
	rm -f "$PROXY_CA"
	"$HUDSUCKER" --listen "127.0.0.1:$port" --ca-out "$PROXY_CA" \
		--upstream-ca "$UPSTREAM_CA" --allow "localhost:$UPSTREAM_PORT" \
		--token-env EGRESS_TOKEN_BENCH >"$logfile" 2>&1 &
	PROXY_PID=$!
}

start_bb_egress() {
	local port=$1 logfile=$2
	"$BB_EGRESS" --routes "$ROUTES" --listen "127.0.0.1:$port" \
		--ca "$WORK/bb-egress-ca" --upstream-ca "$UPSTREAM_CA" \
		>"$logfile" 2>&1 &
	PROXY_PID=$!
}

bb_egress_ca_init() {
	rm -rf "$WORK/bb-egress-ca"
	if ! "$BB_EGRESS" ca init "$WORK/bb-egress-ca" >"$WORK/bb-egress-ca-init.log" 2>&1; then
		log "bb-egress ca init failed: $(cat "$WORK/bb-egress-ca-init.log")"
		return 1
	fi
	local f
	for f in ca.crt ca.pem ca-cert.pem cert.pem; do
		if [[ -s $WORK/bb-egress-ca/$f ]]; then
			PROXY_CA=$WORK/bb-egress-ca/$f
			return
		fi
	done
	f=$(find "$WORK/bb-egress-ca" -maxdepth 1 \( -name '*.crt' -o -name '*cert*.pem' \) | head -n1)
	if [[ -z $f ]]; then
		log "bb-egress ca init wrote no certificate file into $WORK/bb-egress-ca"
		return 1
	fi
	PROXY_CA=$f
}

run_proxy() {
	local proxy=$1 scenario port logfile out rss cpu0 cpu1 up0 up1 loadgen conns target auth
	mkdir -p "$RESULTS/$proxy"
	if [[ $proxy == bb-egress ]]; then
		bb_egress_ca_init || return 1
	fi
	for scenario in $SCENARIOS; do
		conns=$(scenario_connections "$scenario")
		logfile=$WORK/$proxy-$scenario.log
		if [[ $proxy == direct ]]; then
			# No proxy: the load generator sends the real token itself
			# (read from the environment, never from argv).
			target=direct
			auth=(--bearer-env EGRESS_TOKEN_BENCH)
			PROXY_CA=$UPSTREAM_CA
			PROXY_PID=$UPSTREAM_PID
		else
			# A fresh proxy per scenario, so its peak RSS is this scenario's.
			port=$(free_port)
			case $proxy in
				mitmproxy) start_mitmproxy "$port" "$logfile" ;;
				hudsucker) start_hudsucker "$port" "$logfile" ;;
				bb-egress) start_bb_egress "$port" "$logfile" ;;
				*) die "unknown proxy $proxy" ;;
			esac
			PIDS+=("$PROXY_PID")
			target=http://127.0.0.1:$port
			auth=()
			if ! wait_port "$port" "$PROXY_PID" "$proxy" || ! wait_file "$PROXY_CA" "$PROXY_PID"; then
				log "$proxy did not start (or wrote no CA at $PROXY_CA); skipping it. Last lines of $logfile:"
				tail -n 20 "$logfile" >&2 || true
				stop "$PROXY_PID"
				return 1
			fi
		fi
		# One request end to end first: a proxy that blocks, or fails to reach
		# the upstream, is reported here rather than as a table of errors.
		# shellcheck disable=SC2046 # word splitting of the flags is intended
		if ! timeout 30 "$LOADGEN" load --proxy "$target" --url "$URL" "${auth[@]}" \
			--ca "$PROXY_CA" --connections 1 --duration 200ms \
			$(scenario_flags "$scenario") >"$WORK/$proxy-$scenario.probe.json" 2>&1; then
			log "$proxy: the probe request failed; skipping $proxy: $(cat "$WORK/$proxy-$scenario.probe.json")"
			tail -n 20 "$logfile" >&2 || true
			[[ $proxy == direct ]] || stop "$PROXY_PID"
			return 1
		fi
		log "$proxy: $scenario (${WARMUP_S}s warm-up + ${DURATION_S}s, $conns connections)"
		out=$RESULTS/$proxy/$scenario.json
		# shellcheck disable=SC2046 # word splitting of the flags is intended
		timeout $((WARMUP_S + DURATION_S + 60)) "$LOADGEN" load \
			--proxy "$target" --url "$URL" "${auth[@]}" --ca "$PROXY_CA" \
			--connections "$conns" --duration "${DURATION_S}s" --warmup "${WARMUP_S}s" \
			$(scenario_flags "$scenario") >"$out.raw" 2>"$WORK/$proxy-$scenario.loadgen.log" &
		loadgen=$!
		PIDS+=("$loadgen")
		# The proxy's CPU time is sampled over the measured window only.
		sleep "$WARMUP_S"
		cpu0=$(cpu_seconds "$PROXY_PID" 2>/dev/null || echo 0)
		up0=$(tree_cpu_seconds "$UPSTREAM_PID")
		if ! wait "$loadgen"; then
			log "$proxy $scenario: load generator failed: $(tail -n 5 "$WORK/$proxy-$scenario.loadgen.log") $(cat "$out.raw")"
		fi
		forget "$loadgen"
		if ! kill -0 "$PROXY_PID" 2>/dev/null; then
			log "$proxy exited during $scenario; skipping it. Last lines of $logfile:"
			tail -n 20 "$logfile" >&2 || true
			stop "$PROXY_PID"
			rm -f "$out.raw"
			return 1
		fi
		cpu1=$(cpu_seconds "$PROXY_PID")
		up1=$(tree_cpu_seconds "$UPSTREAM_PID")
		rss=$(peak_rss_kib "$PROXY_PID")
		[[ $proxy == direct ]] || stop "$PROXY_PID"
		if [[ -s $out.raw ]]; then
			# For the direct row there is no proxy: its CPU and RSS columns
			# are left empty (the upstream's would mislead). The upstream's
			# CPU (nginx's workers included) and the load generator's own
			# (it reports clock ticks) are kept for every row: together with
			# the proxy's they show whether the row was CPU-bound.
			python3 -c 'import json, sys
r = json.loads(open(sys.argv[1]).read())
if sys.argv[5] != "direct":
    r["peak_rss_kib"] = int(sys.argv[2])
    r["proxy_cpu_s"] = round(float(sys.argv[4]) - float(sys.argv[3]), 3)
r["upstream_cpu_s"] = round(float(sys.argv[7]) - float(sys.argv[6]), 3)
ticks = r.pop("loadgen_cpu_ticks", None)
if ticks is not None:
    r["loadgen_cpu_s"] = round(ticks / float(sys.argv[8]), 3)
print(json.dumps(r))' "$out.raw" "$rss" "$cpu0" "$cpu1" "$proxy" "$up0" "$up1" "$(getconf CLK_TCK)" >"$out"
			log "$proxy $scenario: $(cat "$out")"
		fi
		rm -f "$out.raw"
	done
}

for proxy in $PROXIES; do
	run_proxy "$proxy" || log "SKIP the rest of $proxy"
done

stop "$UPSTREAM_PID"
echo
echo "side by side ($PROXIES) against $UPSTREAM: ${CONNECTIONS} connections (post-1m: ${CONNECTIONS_1M}), ${DURATION_S}s per scenario, $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(results and logs in $WORK)"
echo
python3 "$COMPARE/report.py" "$RESULTS"
