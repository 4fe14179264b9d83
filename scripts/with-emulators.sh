#!/usr/bin/env bash
# Runs a command with local S3 (moto) and GCS (fake-gcs-server) emulators on 127.0.0.1:
#   scripts/with-emulators.sh CMD [ARGS...]
# Exports MARSH_S3_ENDPOINT and MARSH_GCS_ENDPOINT for CMD, exits with CMD's status, and always stops both emulators
# (on success, failure, Ctrl-C or TERM), failing loudly if one of them survives. Logs go to a temp dir, shown on failure.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.tools/bin"
say() { printf 'with-emulators: %s\n' "$*" >&2; }

[ "$#" -gt 0 ] || { say "usage: scripts/with-emulators.sh CMD [ARGS...]"; exit 2; }
for tool in moto_server fake-gcs-server; do
  [ -x "$bin/$tool" ] || { say "$bin/$tool is missing: run scripts/setup.sh first"; exit 1; }
done

logs="$(mktemp -d "${TMPDIR:-/tmp}/marsh-emulators.XXXXXX")"
pids=()

show_logs() {
  for log in "$logs"/*.log; do
    [ -f "$log" ] || continue
    say "---- $(basename "$log") (last 40 lines) ----"
    tail -n 40 "$log" >&2 || true
  done
}

# Each emulator runs in its own process group (setsid), so stopping the group also stops anything it spawned.
stop_emulators() {
  local pid survivors=""
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    for _ in $(seq 50); do
      pgrep -g "$pid" >/dev/null 2>&1 || break
      sleep 0.1
    done
    if pgrep -g "$pid" >/dev/null 2>&1; then
      say "process group $pid ignored TERM for 5s: killing it"
      kill -KILL -- "-$pid" 2>/dev/null || true
      sleep 0.2
    fi
    wait "$pid" 2>/dev/null || true
    if kill -0 "$pid" 2>/dev/null || pgrep -g "$pid" >/dev/null 2>&1; then
      survivors="$survivors $pid"
    fi
  done
  pids=()
  if [ -n "$survivors" ]; then
    say "ERROR: emulator process group(s) still running after stop:$survivors (logs kept in $logs)"
    return 1
  fi
  rm -rf "$logs"
}

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  stop_emulators || status=1
  exit "$status"
}
# On INT/TERM, stop the command first (it runs in the background so that `wait` returns as soon as a signal arrives).
command_pid=""
on_signal() {
  if [ -n "$command_pid" ]; then
    kill -TERM "$command_pid" 2>/dev/null || true
    wait "$command_pid" 2>/dev/null || true
  fi
  exit "$1"
}
trap cleanup EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

free_port() {
  python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# start NAME COMMAND...: starts COMMAND in a new session, output to $logs/NAME.log; its pid (= process group) is kept.
start() {
  local name="$1"
  shift
  setsid "$@" >"$logs/$name.log" 2>&1 </dev/null &
  pids+=("$!")
}

# wait_ready NAME PID URL: polls URL until it answers HTTP 200, for at most 30s, failing early if the process died.
wait_ready() {
  local name="$1" pid="$2" url="$3"
  for _ in $(seq 300); do
    if curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      say "$name exited before answering on $url"
      show_logs
      return 1
    fi
    sleep 0.1
  done
  say "$name did not answer on $url within 30s"
  show_logs
  return 1
}

s3_port="$(free_port)"
gcs_port="$(free_port)"
while [ "$gcs_port" = "$s3_port" ]; do gcs_port="$(free_port)"; done

start moto "$bin/moto_server" -H 127.0.0.1 -p "$s3_port"
start fake-gcs "$bin/fake-gcs-server" -scheme http -host 127.0.0.1 -port "$gcs_port" -backend memory -log-level warn
wait_ready "moto_server" "${pids[0]}" "http://127.0.0.1:$s3_port/"
wait_ready "fake-gcs-server" "${pids[1]}" "http://127.0.0.1:$gcs_port/storage/v1/b"

export MARSH_S3_ENDPOINT="http://127.0.0.1:$s3_port"
export MARSH_GCS_ENDPOINT="http://127.0.0.1:$gcs_port"
say "S3 (moto) at $MARSH_S3_ENDPOINT, GCS (fake-gcs-server) at $MARSH_GCS_ENDPOINT; logs in $logs"

"$@" <&0 &
command_pid=$!
set +e
wait "$command_pid"
status=$?
set -e
command_pid=""
exit "$status"
