#!/usr/bin/env bash
# Serves every function locally with `cargo lambda watch` (function-URL emulation), in the
# background, PID recorded so `make down` stops exactly it.
#   infra/serve.sh start [port]   build, start, wait until the functions answer
#   infra/serve.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${MECAPY_RUN_DIR:-$PWD/.run}
PID_FILE=$RUN_DIR/pids/watch.pid
LOG=$RUN_DIR/logs/watch.log
mkdir -p "$RUN_DIR/pids" "$RUN_DIR/logs"

running() { [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

case "${1:-}" in
start)
  port=${2:-9000}
  if running; then
    echo "cargo lambda watch already running (pid $(cat "$PID_FILE")), port $port"
    exit 0
  fi
  command -v cargo-lambda >/dev/null || { echo "cargo-lambda is not on PATH: run infra/services.sh up" >&2; exit 1; }
  echo "building and serving the functions with cargo lambda watch on 127.0.0.1:$port (log: $LOG)"
  # Its own session, so stop can end it and the function processes it spawned, and nothing else.
  setsid cargo lambda watch --invoke-address 127.0.0.1 --invoke-port "$port" >"$LOG" 2>&1 < /dev/null &
  echo $! >"$PID_FILE"
  for _ in $(seq 1 900); do
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'content-type: application/json' -d '{}' \
      "http://127.0.0.1:$port/lambda-url/login/auth/login" || true)
    if [[ $code == 200 ]]; then echo "functions are answering on http://127.0.0.1:$port/lambda-url/<function>/"; exit 0; fi
    running || { echo "cargo lambda watch exited; see $LOG" >&2; tail -n 30 "$LOG" >&2; exit 1; }
    sleep 1
  done
  echo "functions did not answer within 15 minutes; see $LOG" >&2
  tail -n 30 "$LOG" >&2
  exit 1
  ;;
stop)
  if running; then
    pid=$(cat "$PID_FILE")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "stopped cargo lambda watch (pid $pid)"
  fi
  rm -f "$PID_FILE"
  ;;
*)
  echo "usage: $0 start [port] | stop" >&2
  exit 2
  ;;
esac
