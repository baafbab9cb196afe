#!/usr/bin/env bash
# MecaPy local stack: Docker engine, PostgreSQL 15, an image registry, LocalStack, cargo-lambda,
# local OIDC provider, moto (the ECS API).
#
#   infra/services.sh up     [service...]   install what is missing, start what is not healthy
#   infra/services.sh down   [service...]   stop exactly what `up` started (PID files in .run/pids)
#   infra/services.sh status [service...]   one line per service; exit 1 if any is unhealthy
#
# Services: docker postgresql registry localstack cargo-lambda oidc moto (default: all, in this
# order). moto is the ECS API the contract tests of the ECS runtime talk to (it runs no container).
# Configuration: infra/local.env. Runtime files: ${MECAPY_RUN_DIR:-<repo>/.run} (logs/, pids/).
# Tool installs are shared by every clone: ${MECAPY_HOME:-/var/lib/mecapy}.
# Runs as root, non-interactively, on Debian 12. Development use only.

set -Eeuo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
INFRA_DIR=$REPO_DIR/infra

set -a
# shellcheck disable=SC1091
. "$INFRA_DIR/local.env"
set +a

RUN_DIR=${MECAPY_RUN_DIR:-$REPO_DIR/.run}
MECAPY_HOME=${MECAPY_HOME:-/var/lib/mecapy}
export MECAPY_RUN_DIR=$RUN_DIR MECAPY_HOME
LOG_DIR=$RUN_DIR/logs
PID_DIR=$RUN_DIR/pids

ALL_SERVICES=(docker postgresql registry localstack cargo-lambda oidc moto)

# Pinned tool versions.
UV_VERSION=0.13.9
LOCALSTACK_VERSION=4.9.2
LOCALSTACK_EXCLUDE_NEWER=2025-10-15
CARGO_LAMBDA_VERSION=1.9.2
MOTO_VERSION=5.2.5
MOTO_EXCLUDE_NEWER=2026-11-20
PG_VERSION=15
PG_CLUSTER=main

UV_DIR=$MECAPY_HOME/uv-$UV_VERSION
UV=$UV_DIR/bin/uv
LOCALSTACK_VENV=$MECAPY_HOME/localstack-$LOCALSTACK_VERSION
CARGO_LAMBDA_VENV=$MECAPY_HOME/cargo-lambda-$CARGO_LAMBDA_VERSION
MOTO_VENV=$MECAPY_HOME/moto-$MOTO_VERSION
BIN_DIR=$MECAPY_HOME/bin
export UV_CACHE_DIR=${UV_CACHE_DIR:-$MECAPY_HOME/cache/uv}
export UV_NO_PROGRESS=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never

LOCALSTACK_URL=http://127.0.0.1:4566
BRIDGE_IP=172.17.0.1
# The local image registry LocalStack pulls the Lambda runtime image from (nothing is pulled from
# a public registry). The image is built and pushed by infra/lambda-runtime.sh.
REGISTRY_ADDR=${MECAPY_REGISTRY_ADDR:-127.0.0.1:5000}
REGISTRY_URL=http://$REGISTRY_ADDR
REGISTRY_STORAGE=$MECAPY_HOME/registry
LAMBDA_RUNTIME_IMAGE=${MECAPY_LAMBDA_RUNTIME_IMAGE:-localhost:5000/mecapy/provided:al2023}
OIDC_DIR=$INFRA_DIR/oidc
OIDC_DISCOVERY=$OIDC_ISSUER/.well-known/openid-configuration

# Timeouts (seconds).
DOCKER_TIMEOUT=90
PG_TIMEOUT=60
LOCALSTACK_TIMEOUT=180
REGISTRY_TIMEOUT=30
OIDC_TIMEOUT=30
MOTO_TIMEOUT=30

export DEBIAN_FRONTEND=noninteractive

# ---------------------------------------------------------------------------- helpers

SCRIPT_START=$SECONDS
say() { printf '[services] %s\n' "$*"; }
warn() { printf '[services] WARNING: %s\n' "$*" >&2; }
die() {
  printf '[services] ERROR: %s\n' "$*" >&2
  exit 1
}

# fail_service NAME LOGFILE MESSAGE: explain, show the end of the log, exit non-zero.
fail_service() {
  local name=$1 logfile=$2 msg=$3
  printf '\n[services] ERROR: %s: %s\n[services] log file: %s\n' "$name" "$msg" "$logfile" >&2
  if [[ -e $logfile ]]; then
    printf -- '----- last lines of %s -----\n' "$logfile" >&2
    tail -n 40 "$logfile" >&2 || true
    printf -- '-----\n' >&2
  fi
  exit 1
}

have() { command -v "$1" >/dev/null 2>&1; }

pkg_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

APT_UPDATED=0
# apt_install PKG...: install the packages that are missing (apt-get update first, once).
apt_install() {
  local missing=() p
  for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  if ((APT_UPDATED == 0)); then
    say "apt-get update"
    apt-get -o DPkg::Lock::Timeout=600 update -qq </dev/null 8>&- 9>&- || die "apt-get update failed"
    APT_UPDATED=1
  fi
  say "apt-get install ${missing[*]}"
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" \
    >"$LOG_DIR/apt-install.log" 2>&1 </dev/null 8>&- 9>&- ||
    fail_service apt "$LOG_DIR/apt-install.log" "apt-get install ${missing[*]} failed"
}

# Serialize installs into MECAPY_HOME between clones running `up` at the same time.
HOME_LOCKED=0
lock_home() {
  ((HOME_LOCKED)) && return 0
  mkdir -p "$MECAPY_HOME"
  exec 8>"$MECAPY_HOME/.install.lock"
  flock 8
  HOME_LOCKED=1
}

pidfile() { printf '%s/%s.pid' "$PID_DIR" "$1"; }

# recorded_pid NAME PATTERN: print the recorded PID if that process is alive and its command
# line contains PATTERN; remove a stale PID file. Returns 1 if nothing valid is recorded.
recorded_pid() {
  local name=$1 pattern=$2 f pid cmdline=
  f=$(pidfile "$name")
  [[ -f $f ]] || return 1
  pid=$(head -n1 "$f" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] && cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
  if [[ -n $cmdline && $cmdline == *"$pattern"* ]]; then
    printf '%s' "$pid"
    return 0
  fi
  rm -f "$f"
  return 1
}

# wait_until TIMEOUT PID CHECK...: poll CHECK until it succeeds; fail early if PID dies.
wait_until() {
  local timeout=$1 pid=$2
  shift 2
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then return 2; fi
    sleep 0.5
  done
  "$@" >/dev/null 2>&1
}

# start_bg NAME LOGFILE CMD...: start CMD in its own session, log to LOGFILE, record its PID.
STARTED_PID=
start_bg() {
  local name=$1 logfile=$2
  shift 2
  : >"$logfile"
  # fds 8 and 9 hold this script's locks: long-running children must not inherit them.
  setsid "$@" >>"$logfile" 2>&1 </dev/null 8>&- 9>&- &
  STARTED_PID=$!
  printf '%s\n' "$STARTED_PID" >"$(pidfile "$name")"
}

# stop_pid NAME PID GRACE [GROUP]: SIGTERM (the process group if GROUP=1), wait GRACE s, SIGKILL.
stop_pid() {
  local name=$1 pid=$2 grace=$3 group=${4:-0} target
  target=$pid
  ((group)) && target=-$pid
  say "stopping $name (pid $pid)"
  kill -TERM -- "$target" 2>/dev/null || true
  local deadline=$((SECONDS + grace))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.25; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name did not exit within ${grace}s: SIGKILL"
    kill -KILL -- "$target" 2>/dev/null || true
    sleep 0.5
  elif ((group)); then
    # The leader is gone; make sure nothing else of its group survives.
    kill -KILL -- "$target" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
}

step_timer() { STEP_START=$SECONDS; }
step_done() { say "$1 ($((SECONDS - STEP_START)) s)"; }

# say_running NAME PATTERN: NAME is already up; say whether this script started it.
say_running() {
  say "$1: already running$(recorded_pid "$1" "$2" >/dev/null && echo ' (started by services.sh)' || true)"
}

# await_healthy NAME PID TIMEOUT LOGFILE WHAT EXITED CHECK...: poll CHECK (wait_until); on a
# timeout, or when PID exits (EXITED says more), fail_service with WHAT (what was checked).
await_healthy() {
  local name=$1 pid=$2 timeout=$3 logfile=$4 what=$5 exited=$6 rc=0
  shift 6
  wait_until "$timeout" "$pid" "$@" || rc=$?
  ((rc == 0)) || fail_service "$name" "$logfile" "$what within ${timeout}s$( ((rc == 2)) && echo ": the process exited$exited")"
}

# report_status CHECK MESSAGE: print MESSAGE when CHECK passes, else DOWN and return 1.
report_status() {
  if "$1"; then
    echo "$2"
  else
    echo "DOWN"
    return 1
  fi
}

# stop_recorded NAME PATTERN GRACE WHAT: stop the process this script recorded for NAME (stop_pid),
# or say that no WHAT was recorded.
stop_recorded() {
  local pid
  if pid=$(recorded_pid "$1" "$2"); then
    stop_pid "$1" "$pid" "$3"
  else
    say "$1: no $4 recorded by services.sh, nothing stopped"
  fi
}

python311() {
  local p
  for p in python3.11 /usr/bin/python3.11; do
    if have "$p" && "$p" -c 'import sys, venv, ensurepip; assert sys.version_info[:2] == (3, 11)' >/dev/null 2>&1; then
      "$p" -c 'import sys; print(sys.executable)'
      return 0
    fi
  done
  return 1
}

DOCKER_BIN=/usr/bin/docker
docker_cli() {
  if [[ -x $DOCKER_BIN ]]; then "$DOCKER_BIN" "$@"; else docker "$@"; fi
}

# ---------------------------------------------------------------------------- docker

docker_healthy() {
  [[ -S /var/run/docker.sock ]] && docker_cli info >/dev/null 2>&1 && bridge_up
}

bridge_up() {
  [[ $(ip -4 -o addr show 2>/dev/null) == *"inet $BRIDGE_IP/"* ]]
}

up_docker() {
  step_timer
  if docker_healthy; then
    say_running docker dockerd
    return 0
  fi
  if docker_cli info >/dev/null 2>&1; then
    die "docker: an engine is running but the bridge address $BRIDGE_IP does not exist; containers must reach the host there (start dockerd with --bip $BRIDGE_IP/16)"
  fi
  have ip || apt_install iproute2
  if ! have dockerd || ! [[ -x /usr/bin/docker ]]; then
    apt_install docker.io
  fi
  local logfile=$LOG_DIR/dockerd.log pid
  if pid=$(recorded_pid docker dockerd); then
    say "docker: dockerd (pid $pid) is starting, waiting"
  else
    local args=()
    # Containers reach the host at 172.17.0.1: pin the default bridge unless configured.
    if ! grep -qs '"bip"' /etc/docker/daemon.json; then args+=(--bip "$BRIDGE_IP/16"); fi
    say "docker: starting dockerd"
    start_bg docker "$logfile" dockerd "${args[@]}"
    pid=$STARTED_PID
  fi
  await_healthy docker "$pid" "$DOCKER_TIMEOUT" "$logfile" "dockerd did not become ready (docker info)" "" docker_cli info
  wait_until 30 "$pid" bridge_up ||
    fail_service docker "$logfile" "docker is up but the bridge address $BRIDGE_IP does not exist (docker0)"
  step_done "docker: ready (pid $pid)"
}

status_docker() {
  if docker_healthy; then
    echo "healthy $(docker_cli version --format 'engine {{.Server.Version}}' 2>/dev/null || true), bridge $BRIDGE_IP"
  else
    echo "DOWN"
    return 1
  fi
}

down_docker() { stop_recorded docker dockerd 30 dockerd; }

# ---------------------------------------------------------------------------- postgresql

PG_CONF_DIR=/etc/postgresql/$PG_VERSION/$PG_CLUSTER
PG_DATA=/var/lib/postgresql/$PG_VERSION/$PG_CLUSTER
PG_USER=mecapy PG_PASSWORD=mecapy PG_DB=mecapy
if [[ ${DATABASE_URL:-} =~ ^postgres(ql)?://([^:/@]+):([^@]*)@[^/]+/([^?]+) ]]; then
  PG_USER=${BASH_REMATCH[2]} PG_PASSWORD=${BASH_REMATCH[3]} PG_DB=${BASH_REMATCH[4]}
fi
PG_PORT=${PGPORT:-5432}
# TLS: a development CA and the server's certificate signed by it, made here once and shared by
# every clone. infra/local.env names the CA (PGSSLROOTCERT, libpq's variable): it is a fixed path.
PG_TLS_CA=${PGSSLROOTCERT:-$MECAPY_HOME/pg-tls/ca.crt}
PG_TLS_DIR=$(dirname "$PG_TLS_CA")
PG_TLS_CA_KEY=$PG_TLS_DIR/ca.key
PG_TLS_CERT=$PG_TLS_DIR/server.crt
PG_TLS_KEY=$PG_TLS_DIR/server.key
PG_TLS_SANS="DNS:localhost,IP:127.0.0.1,IP:$BRIDGE_IP"
PG_TLS_CHANGED=0

pg_psql() { # ADDRESS SSLMODE SQL: one value, as the application role
  PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=3 PGSSLMODE=$2 PGSSLROOTCERT=$PG_TLS_CA \
    psql -w -X -A -t -q -h "$1" -p "$PG_PORT" -U "$PG_USER" -d "$PG_DB" -c "$3" 2>/dev/null
}

pg_login() { # ADDRESS: a plain login as the application role, check CREATEDB
  [[ $(pg_psql "$1" disable 'SELECT rolcreatedb FROM pg_roles WHERE rolname = current_user') == t ]]
}

pg_tls_login() { # ADDRESS: a login over TLS, the certificate checked against the CA and ADDRESS
  [[ $(pg_psql "$1" verify-full 'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()') == t ]]
}

# Plain and verified TLS logins both work, on both addresses.
pg_healthy() {
  have pg_isready && pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && pg_isready -q -h "$BRIDGE_IP" -p "$PG_PORT" &&
    pg_login 127.0.0.1 && pg_login "$BRIDGE_IP" && pg_tls_login 127.0.0.1 && pg_tls_login "$BRIDGE_IP"
}

# The server certificate chains to the CA, names every address clients use, matches its key and
# stays valid 30 more days.
pg_tls_cert_ok() {
  [[ -s $PG_TLS_CA && -s $PG_TLS_CA_KEY && -s $PG_TLS_CERT && -s $PG_TLS_KEY ]] || return 1
  openssl verify -CAfile "$PG_TLS_CA" "$PG_TLS_CERT" >/dev/null 2>&1 || return 1
  openssl x509 -in "$PG_TLS_CERT" -noout -checkend 2592000 >/dev/null 2>&1 || return 1
  local sans
  sans=$(openssl x509 -in "$PG_TLS_CERT" -noout -ext subjectAltName 2>/dev/null) || return 1
  [[ $sans == *"DNS:localhost"* && $sans == *"IP Address:127.0.0.1"* && $sans == *"IP Address:$BRIDGE_IP"* ]] || return 1
  [[ $(openssl pkey -in "$PG_TLS_KEY" -pubout 2>/dev/null) == "$(openssl x509 -in "$PG_TLS_CERT" -noout -pubkey 2>/dev/null)" ]]
}

# Create the CA (once: the deployed stack carries it) and the server certificate when missing or
# no longer right; sets PG_TLS_CHANGED=1 when it wrote one. ECDSA P-256 keeps the CA short enough
# for a Lambda environment variable.
pg_tls_files() {
  have openssl || apt_install openssl
  if ! pg_tls_cert_ok; then
    lock_home
  fi
  if ! pg_tls_cert_ok; then
    local log=$LOG_DIR/pg-tls.log tmp
    mkdir -p "$PG_TLS_DIR"
    chmod 755 "$PG_TLS_DIR"
    tmp=$(mktemp -d "$PG_TLS_DIR/.new.XXXXXX")
    : >"$log"
    if ! [[ -s $PG_TLS_CA && -s $PG_TLS_CA_KEY ]] ||
      ! openssl x509 -in "$PG_TLS_CA" -noout -checkend 2592000 >/dev/null 2>&1; then
      say "postgresql: creating the development CA $PG_TLS_CA"
      printf '%s\n' '[req]' 'distinguished_name = dn' 'prompt = no' 'x509_extensions = ca' \
        '[dn]' 'CN = MecaPy local development CA' \
        '[ca]' 'basicConstraints = critical, CA:TRUE' 'keyUsage = critical, keyCertSign, cRLSign' \
        'subjectKeyIdentifier = hash' >"$tmp/ca.cnf"
      openssl req -x509 -new -config "$tmp/ca.cnf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -days 3650 -keyout "$tmp/ca.key" -out "$tmp/ca.crt" >>"$log" 2>&1 ||
        fail_service postgresql "$log" "openssl could not create the CA"
      chmod 600 "$tmp/ca.key"
      chmod 644 "$tmp/ca.crt"
      mv -f "$tmp/ca.key" "$PG_TLS_CA_KEY"
      mv -f "$tmp/ca.crt" "$PG_TLS_CA"
    fi
    say "postgresql: issuing the server certificate ($PG_TLS_SANS) signed by $PG_TLS_CA"
    printf '%s\n' '[req]' 'distinguished_name = dn' 'prompt = no' '[dn]' 'CN = localhost' \
      '[server]' 'basicConstraints = critical, CA:FALSE' 'keyUsage = critical, digitalSignature' \
      'extendedKeyUsage = serverAuth' "subjectAltName = $PG_TLS_SANS" \
      'subjectKeyIdentifier = hash' 'authorityKeyIdentifier = keyid' >"$tmp/server.cnf"
    { openssl req -new -config "$tmp/server.cnf" -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$tmp/server.key" -out "$tmp/server.csr" &&
      openssl x509 -req -in "$tmp/server.csr" -CA "$PG_TLS_CA" -CAkey "$PG_TLS_CA_KEY" -set_serial "0x$(openssl rand -hex 16)" \
        -days 825 -extfile "$tmp/server.cnf" -extensions server -out "$tmp/server.crt"; } >>"$log" 2>&1 ||
      fail_service postgresql "$log" "openssl could not issue the server certificate"
    # PostgreSQL refuses a key that others can read; it runs as postgres.
    chown postgres:postgres "$tmp/server.key" "$tmp/server.crt"
    chmod 600 "$tmp/server.key"
    chmod 644 "$tmp/server.crt"
    mv -f "$tmp/server.key" "$PG_TLS_KEY"
    mv -f "$tmp/server.crt" "$PG_TLS_CERT"
    rm -rf "$tmp"
    pg_tls_cert_ok || fail_service postgresql "$log" "the new server certificate does not verify against $PG_TLS_CA"
    PG_TLS_CHANGED=1
  fi
}

# ssl settings in their own file: PostgreSQL applies them on a reload, no restart. The host lines
# of pg_hba.conf match TLS and plain connections alike: both stay accepted.
pg_configure_tls() {
  local conf=$PG_CONF_DIR/conf.d/mecapy-tls.conf want
  want=$(printf '%s\n' \
    "# Written by infra/services.sh (MecaPy local stack). Development only." \
    "# TLS with a certificate of the development CA $PG_TLS_CA; plain connections still work." \
    "ssl = on" \
    "ssl_cert_file = '$PG_TLS_CERT'" \
    "ssl_key_file = '$PG_TLS_KEY'")
  if [[ ! -f $conf ]] || [[ $(cat "$conf") != "$want" ]]; then
    printf '%s\n' "$want" >"$conf"
    chown postgres:postgres "$conf"
    PG_TLS_CHANGED=1
  fi
}

pg_online() {
  pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c && $4 ~ /^online/ { ok = 1 } END { exit !ok }'
}

pg_postmaster_pid() { head -n1 "$PG_DATA/postmaster.pid" 2>/dev/null; }

# Run as the postgres superuser over the local socket (peer auth), ignoring local.env's PG*.
as_postgres() { (cd / && env -u PGHOST -u PGPORT -u PGUSER -u PGPASSWORD -u PGDATABASE runuser -u postgres -- "$@"); }

# Write the cluster configuration; prints "changed" when something was rewritten.
pg_configure() {
  local conf=$PG_CONF_DIR/conf.d/mecapy.conf hba=$PG_CONF_DIR/pg_hba.conf
  local want
  want=$(printf '%s\n' \
    "# Written by infra/services.sh (MecaPy local stack). Development only." \
    "listen_addresses = '127.0.0.1,$BRIDGE_IP'" \
    "port = $PG_PORT")
  mkdir -p "$PG_CONF_DIR/conf.d"
  if [[ ! -f $conf ]] || [[ $(cat "$conf") != "$want" ]]; then
    printf '%s\n' "$want" >"$conf"
    chown postgres:postgres "$conf"
    echo changed
  fi
  # Password logins from the host and from containers. "samehost" is needed too: Docker's
  # MASQUERADE rule rewrites the source of host -> 172.17.0.1 connections to the host's own
  # primary address.
  local line hba_changed=0
  for line in \
    "# mecapy-local-stack (infra/services.sh): password logins from the host and from containers" \
    "host    all             all             127.0.0.1/32            md5" \
    "host    all             all             172.17.0.0/16           md5" \
    "host    all             all             samehost                md5"; do
    if ! grep -qxF -- "$line" "$hba"; then
      printf '%s\n' "$line" >>"$hba"
      hba_changed=1
    fi
  done
  ((hba_changed == 0)) || echo changed
}

pg_ensure_role_db() {
  as_postgres psql -w -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres \
    -v user="$PG_USER" -v pass="$PG_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'user', :'pass')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB PASSWORD %L', :'user', :'pass') \gexec
SQL
  if [[ $(as_postgres psql -w -X -A -t -q -p "$PG_PORT" -d postgres -v db="$PG_DB" \
    -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'") != 1 ]]; then
    as_postgres createdb -w -p "$PG_PORT" -O "$PG_USER" "$PG_DB"
  fi
}

up_postgresql() {
  step_timer
  if pg_healthy && pg_tls_cert_ok; then
    say "postgresql: already running, TLS on$(recorded_pid postgresql postgres >/dev/null && echo ' (started by services.sh)' || true)"
    return 0
  fi
  if [[ ! -x /usr/lib/postgresql/$PG_VERSION/bin/postgres ]] || ! have pg_isready; then
    apt_install "postgresql-$PG_VERSION" "postgresql-client-$PG_VERSION"
  fi
  if ! pg_lsclusters -h 2>/dev/null | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { ok = 1 } END { exit !ok }'; then
    say "postgresql: creating cluster $PG_VERSION/$PG_CLUSTER"
    pg_createcluster "$PG_VERSION" "$PG_CLUSTER" >/dev/null
  fi
  local changed logfile=$LOG_DIR/postgresql.log cluster_log
  changed=$(pg_configure)
  pg_tls_files
  pg_configure_tls
  cluster_log=$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1 == v && $2 == c { print $7 }')
  # pg_ctlcluster writes the server log to the cluster's own log file: link it under .run/logs.
  [[ -n $cluster_log ]] && ln -sfn "$cluster_log" "$logfile"
  if pg_online; then
    # Restart when the configuration changed, or when the cluster was started before the
    # bridge address existed (then it listens on 127.0.0.1 only).
    if [[ -n $changed ]] || ! pg_isready -q -h "$BRIDGE_IP" -p "$PG_PORT"; then
      say "postgresql: configuration changed or not listening on $BRIDGE_IP, restarting cluster $PG_VERSION/$PG_CLUSTER"
      pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" restart -m fast </dev/null 8>&- 9>&- ||
        fail_service postgresql "$logfile" "pg_ctlcluster $PG_VERSION $PG_CLUSTER restart failed"
      pg_postmaster_pid >"$(pidfile postgresql)"
    elif ((PG_TLS_CHANGED)) || ! pg_tls_login 127.0.0.1; then
      say "postgresql: TLS settings or certificate changed, reloading cluster $PG_VERSION/$PG_CLUSTER"
      pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" reload </dev/null 8>&- 9>&- ||
        fail_service postgresql "$logfile" "pg_ctlcluster $PG_VERSION $PG_CLUSTER reload failed"
    fi
  else
    say "postgresql: starting cluster $PG_VERSION/$PG_CLUSTER"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start </dev/null 8>&- 9>&- ||
      fail_service postgresql "$logfile" "pg_ctlcluster $PG_VERSION $PG_CLUSTER start failed"
    pg_postmaster_pid >"$(pidfile postgresql)"
  fi
  wait_until "$PG_TIMEOUT" "" pg_isready -q -h 127.0.0.1 -p "$PG_PORT" ||
    fail_service postgresql "$logfile" "not accepting connections on 127.0.0.1:$PG_PORT"
  pg_ensure_role_db >/dev/null || fail_service postgresql "$logfile" "could not create role/database $PG_USER/$PG_DB"
  wait_until 15 "" pg_healthy ||
    fail_service postgresql "$logfile" "cannot log in as $PG_USER on 127.0.0.1 and $BRIDGE_IP:$PG_PORT, in plain and over TLS checked against $PG_TLS_CA (listen_addresses / pg_hba.conf / $PG_CONF_DIR/conf.d/mecapy-tls.conf)"
  step_done "postgresql: ready (pid $(pg_postmaster_pid))"
}

status_postgresql() {
  if pg_healthy; then
    echo "healthy, $PG_USER@127.0.0.1:$PG_PORT and $PG_USER@$BRIDGE_IP:$PG_PORT, TLS (CA $PG_TLS_CA) and plain"
  else
    echo "DOWN"
    return 1
  fi
}

down_postgresql() {
  local pid
  if pid=$(recorded_pid postgresql postgres) && [[ $pid == "$(pg_postmaster_pid)" ]]; then
    say "stopping postgresql cluster $PG_VERSION/$PG_CLUSTER (pid $pid)"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop -m fast || warn "pg_ctlcluster stop failed"
    rm -f "$(pidfile postgresql)"
  else
    rm -f "$(pidfile postgresql)"
    say "postgresql: cluster not started by services.sh, nothing stopped"
  fi
}

# ---------------------------------------------------------------------------- python tools (uv)

ensure_uv() {
  [[ -x $UV && -f $UV_DIR/.mecapy-ok ]] && return 0
  lock_home
  [[ -x $UV && -f $UV_DIR/.mecapy-ok ]] && return 0
  local py
  if ! py=$(python311); then
    apt_install python3 python3-venv
    py=$(python311) || die "no usable Python 3.11 (with venv/ensurepip) found"
  fi
  say "installing uv $UV_VERSION into $UV_DIR"
  rm -rf "$UV_DIR"
  if ! { "$py" -m venv "$UV_DIR" && "$UV_DIR/bin/python" -m pip install -q "uv==$UV_VERSION"; } \
    >"$LOG_DIR/uv-install.log" 2>&1; then
    fail_service uv "$LOG_DIR/uv-install.log" "could not install uv"
  fi
  touch "$UV_DIR/.mecapy-ok"
}

# uv_venv DIR MARKER REQUIREMENT...: (re)create a venv in DIR with the requirements, unless its
# marker file already says so.
uv_venv() {
  local dir=$1 marker=$2
  shift 2
  [[ -f $dir/.mecapy-ok && $(cat "$dir/.mecapy-ok") == "$marker" ]] && return 0
  lock_home
  [[ -f $dir/.mecapy-ok && $(cat "$dir/.mecapy-ok") == "$marker" ]] && return 0
  ensure_uv
  local py name logfile
  name=$(basename "$dir")
  logfile=$LOG_DIR/install-$name.log
  py=$(python311) || die "no usable Python 3.11 found"
  say "installing $name into $dir (log $logfile)"
  rm -rf "$dir"
  {
    "$UV" venv -q -p "$py" "$dir" &&
      VIRTUAL_ENV=$dir "$UV" pip install "$@"
  } >"$logfile" 2>&1 || fail_service "$name" "$logfile" "install failed"
  printf '%s' "$marker" >"$dir/.mecapy-ok"
}

# ---------------------------------------------------------------------------- registry

registry_healthy() {
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$REGISTRY_URL/v2/") == 200 ]]
}

# The packaged service (systemd) would listen on :5000 with an htpasswd config that does not
# exist: when the package is installed here, keep it stopped so the port stays ours.
disable_packaged_registry() {
  if [[ -d /run/systemd/system ]] && have systemctl; then
    systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
  fi
}

registry_config() {
  local config=$RUN_DIR/registry.yml
  mkdir -p "$REGISTRY_STORAGE"
  cat >"$config" <<EOF
# Written by infra/services.sh (MecaPy local stack): a plain HTTP registry on loopback, no auth.
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $REGISTRY_STORAGE
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: $REGISTRY_ADDR
  secret: mecapy-local-registry
health:
  storagedriver:
    enabled: false
EOF
  printf '%s' "$config"
}

up_registry() {
  step_timer
  if registry_healthy; then
    say_running registry docker-registry
    return 0
  fi
  if ! have docker-registry; then
    apt_install docker-registry
    disable_packaged_registry
  fi
  local logfile=$LOG_DIR/registry.log pid config
  if pid=$(recorded_pid registry docker-registry); then
    say "registry: pid $pid is starting, waiting"
  else
    config=$(registry_config)
    say "registry: starting docker-registry on $REGISTRY_ADDR (storage $REGISTRY_STORAGE)"
    start_bg registry "$logfile" docker-registry serve "$config"
    pid=$STARTED_PID
  fi
  await_healthy registry "$pid" "$REGISTRY_TIMEOUT" "$logfile" "not healthy ($REGISTRY_URL/v2/)" " (is the port taken?)" registry_healthy
  step_done "registry: ready (pid $pid)"
}

status_registry() { report_status registry_healthy "healthy, $REGISTRY_URL (storage $REGISTRY_STORAGE)"; }

down_registry() { stop_recorded registry docker-registry 5 registry; }

# ---------------------------------------------------------------------------- localstack

localstack_healthy() {
  local body
  body=$(curl -sf --max-time 5 "$LOCALSTACK_URL/_localstack/health") || return 1
  printf '%s' "$body" | python3 -c '
import json, sys
services = json.load(sys.stdin).get("services", {})
sys.exit(0 if all(services.get(s) in ("available", "running") for s in ("s3", "sqs")) else 1)'
}

# s3 METHOD PATH [curl args...]: a SigV4-signed request to LocalStack's S3 with the env credentials.
s3_request() {
  local method=$1 path=$2
  shift 2
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$method" \
    --aws-sigv4 "aws:amz:${AWS_REGION:-us-east-1}:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    "$@" "$LOCALSTACK_URL$path"
}

ensure_bucket() {
  local code
  code=$(s3_request HEAD "/$UPLOAD_BUCKET" -I) || true
  if [[ $code == 200 ]]; then
    say "localstack: bucket $UPLOAD_BUCKET exists"
    return 0
  fi
  local body=()
  if [[ ${AWS_REGION:-us-east-1} != us-east-1 ]]; then
    body=(--data "<CreateBucketConfiguration><LocationConstraint>$AWS_REGION</LocationConstraint></CreateBucketConfiguration>")
  fi
  code=$(s3_request PUT "/$UPLOAD_BUCKET" "${body[@]}") || true
  [[ $code == 200 ]] || fail_service localstack "$LOG_DIR/localstack.log" "could not create bucket $UPLOAD_BUCKET (HTTP $code)"
  say "localstack: bucket $UPLOAD_BUCKET created"
}

# The environment LocalStack is started with, one KEY=VALUE per line. Its hash is recorded beside
# the PID file: `up` restarts a LocalStack that was started with other settings.
#
# Lambda functions run in containers of the Docker engine (see infra/lambda-init/README.md):
# - provided.al2023 (and .al2) use the runtime image built here by infra/lambda-runtime.sh and
#   "pulled" from the local registry, whatever architecture the function declares;
# - functions reach LocalStack (AWS_ENDPOINT_URL), PostgreSQL and the OIDC provider at the bridge
#   address, and the Docker engine through its mounted socket (compute-dispatch starts the
#   compute containers); the label lets `down` find leftover containers;
# - the SQS event source polls again 0.1 s after a batch (LocalStack's default waits 1 s) and at
#   most 1 s after empty polls (default: up to 10 s), as AWS's continuous pollers do: a burst of
#   jobs is not held in the queue by the emulator;
# - an idle function keeps its warm container 5 minutes; a cold start may take up to 60 s on a
#   busy machine before LocalStack gives up; stopped containers are removed;
# - CloudFormation runs on LocalStack's legacy engine: 4.9.2's default (v2) engine fails to
#   update a SAM stack (its change set cannot resolve `${Function.Arn}` in the API's Fn::Sub),
#   so a redeploy would not update the stack in place.
localstack_settings() {
  local workdir=$1
  local mapping
  mapping=$(printf '{"provided.al2023": "%s", "provided.al2": "%s"}' "$LAMBDA_RUNTIME_IMAGE" "$LAMBDA_RUNTIME_IMAGE")
  printf '%s\n' \
    "SERVICES=s3,sqs,lambda,apigateway,cloudformation,iam,sts,logs,events" \
    "GATEWAY_LISTEN=0.0.0.0:4566" \
    "LOCALSTACK_VOLUME_DIR=$workdir/volume" \
    "DOCKER_CMD=/usr/bin/docker" \
    "DISABLE_EVENTS=1" \
    "SKIP_SSL_CERT_DOWNLOAD=1" \
    "DNS_ADDRESS=0" \
    "LAMBDA_RUNTIME_IMAGE_MAPPING=${LAMBDA_RUNTIME_IMAGE_MAPPING:-$mapping}" \
    "LAMBDA_IGNORE_ARCHITECTURE=${LAMBDA_IGNORE_ARCHITECTURE:-1}" \
    "HOSTNAME_FROM_LAMBDA=${HOSTNAME_FROM_LAMBDA:-$BRIDGE_IP}" \
    "LAMBDA_DOCKER_FLAGS=${LAMBDA_DOCKER_FLAGS:--v /var/run/docker.sock:/var/run/docker.sock --add-host host.docker.internal:$BRIDGE_IP -l org.mecapy.localstack-lambda=1}" \
    "LAMBDA_KEEPALIVE_MS=${LAMBDA_KEEPALIVE_MS:-300000}" \
    "LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT=${LAMBDA_RUNTIME_ENVIRONMENT_TIMEOUT:-60}" \
    "LAMBDA_REMOVE_CONTAINERS=${LAMBDA_REMOVE_CONTAINERS:-1}" \
    "LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC=${LAMBDA_EVENT_SOURCE_MAPPING_POLL_INTERVAL_SEC:-0.1}" \
    "LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC=${LAMBDA_EVENT_SOURCE_MAPPING_MAX_BACKOFF_ON_EMPTY_POLL_SEC:-1}" \
    "PROVIDER_OVERRIDE_CLOUDFORMATION=${PROVIDER_OVERRIDE_CLOUDFORMATION:-engine-legacy}"
}

settings_file() { printf '%s/localstack.settings' "$PID_DIR"; }

up_localstack() {
  step_timer
  local workdir=$RUN_DIR/localstack settings=() hash line pid
  while IFS= read -r line; do settings+=("$line"); done < <(localstack_settings "$workdir")
  hash=$(printf '%s\n' "${settings[@]}" | sha256sum | cut -d' ' -f1)
  if localstack_healthy; then
    if pid=$(recorded_pid localstack localstack.runtime.main); then
      if [[ $(cat "$(settings_file)" 2>/dev/null) == "$hash" ]]; then
        say "localstack: already running (started by services.sh)"
        ensure_bucket
        return 0
      fi
      say "localstack: running with other settings (Lambda runtime image, Docker flags, ...): restarting"
      down_localstack
    else
      warn "localstack: running but not started by services.sh: its Lambda settings are unknown (see localstack_settings in $0)"
      ensure_bucket
      return 0
    fi
  fi
  uv_venv "$LOCALSTACK_VENV" "localstack-core[runtime]==$LOCALSTACK_VERSION aws-sam-translator exclude-newer=$LOCALSTACK_EXCLUDE_NEWER" \
    --exclude-newer "$LOCALSTACK_EXCLUDE_NEWER" "localstack-core[runtime]==$LOCALSTACK_VERSION" aws-sam-translator
  local logfile=$LOG_DIR/localstack.log pid
  if pid=$(recorded_pid localstack localstack.runtime.main) && [[ $(cat "$(settings_file)" 2>/dev/null) == "$hash" ]]; then
    say "localstack: pid $pid is starting, waiting"
  else
    # Started earlier with other settings and not healthy yet: start it again.
    [[ -n ${pid:-} ]] && down_localstack
    mkdir -p "$workdir/volume"
    say "localstack: starting $LOCALSTACK_VERSION"
    # Other LocalStack settings (DEBUG, ...) are passed through from the caller's environment.
    start_bg localstack "$logfile" env -C "$workdir" "${settings[@]}" \
      "$LOCALSTACK_VENV/bin/python" -m localstack.runtime.main
    pid=$STARTED_PID
    printf '%s\n' "$hash" >"$(settings_file)"
  fi
  await_healthy localstack "$pid" "$LOCALSTACK_TIMEOUT" "$logfile" \
    "not healthy ($LOCALSTACK_URL/_localstack/health, s3 and sqs)" "" localstack_healthy
  ensure_bucket
  step_done "localstack: ready (pid $pid)"
}

status_localstack() {
  if localstack_healthy; then
    local code
    code=$(s3_request HEAD "/$UPLOAD_BUCKET" -I) || true
    echo "healthy, bucket $UPLOAD_BUCKET $([[ $code == 200 ]] && echo present || echo MISSING)"
  else
    echo "DOWN"
    return 1
  fi
}

down_localstack() {
  local pid
  if pid=$(recorded_pid localstack localstack.runtime.main); then
    # LocalStack on the host may not exit on SIGTERM while Lambda containers run.
    stop_pid localstack "$pid" 10 1
    rm -f "$(settings_file)"
  else
    say "localstack: no LocalStack recorded by services.sh, nothing stopped"
  fi
  if docker_cli info >/dev/null 2>&1; then
    local ids
    # Named <main container name>-lambda-<function>-<id>; ours also carry the label.
    ids=$({
      docker_cli ps -aq --filter 'label=org.mecapy.localstack-lambda' 2>/dev/null
      docker_cli ps -aq --filter 'name=^/?localstack(-main)?-lambda-' 2>/dev/null
    } | sort -u || true)
    if [[ -n $ids ]]; then
      say "removing leftover Lambda containers: $(echo "$ids" | tr '\n' ' ')"
      # shellcheck disable=SC2086
      docker_cli rm -f $ids >/dev/null 2>&1 || warn "could not remove some Lambda containers"
    fi
  fi
}

# ---------------------------------------------------------------------------- cargo-lambda

cargo_lambda_ok() {
  [[ -x $BIN_DIR/cargo-lambda ]] && PATH=$BIN_DIR:$PATH cargo lambda --version >/dev/null 2>&1
}

up_cargo_lambda() {
  step_timer
  uv_venv "$CARGO_LAMBDA_VENV" "cargo-lambda==$CARGO_LAMBDA_VERSION" "cargo-lambda==$CARGO_LAMBDA_VERSION"
  mkdir -p "$BIN_DIR"
  ln -sfn "$CARGO_LAMBDA_VENV/bin/cargo-lambda" "$BIN_DIR/cargo-lambda"
  # cargo-lambda cross-compiles with Zig: expose the ziglang wheel's binary (if installed) as `zig`.
  local zig
  zig=$(compgen -G "$CARGO_LAMBDA_VENV/lib/python3*/site-packages/ziglang/zig" | head -n1 || true)
  [[ -n $zig ]] && ln -sfn "$zig" "$BIN_DIR/zig"
  if have cargo; then
    PATH=$BIN_DIR:$PATH cargo lambda --version >/dev/null 2>&1 ||
      fail_service cargo-lambda "$LOG_DIR/install-$(basename "$CARGO_LAMBDA_VENV").log" "\`cargo lambda --version\` failed"
  else
    warn "cargo is not installed: checked cargo-lambda alone"
    "$BIN_DIR/cargo-lambda" lambda --version >/dev/null 2>&1 || "$BIN_DIR/cargo-lambda" --version >/dev/null 2>&1 ||
      fail_service cargo-lambda "$LOG_DIR/install-$(basename "$CARGO_LAMBDA_VENV").log" "cargo-lambda --version failed"
  fi
  step_done "cargo-lambda: $("$BIN_DIR/cargo-lambda" lambda --version 2>/dev/null | head -n1); put $BIN_DIR on PATH"
}

status_cargo_lambda() {
  if cargo_lambda_ok; then
    echo "installed: $(PATH=$BIN_DIR:$PATH cargo lambda --version 2>/dev/null | head -n1) (PATH+=$BIN_DIR)"
  else
    echo "NOT INSTALLED"
    return 1
  fi
}

down_cargo_lambda() { :; }

# ---------------------------------------------------------------------------- oidc

oidc_healthy() {
  local body
  body=$(curl -sf --max-time 5 "$OIDC_DISCOVERY") || return 1
  [[ $body == *"\"issuer\":\"$OIDC_ISSUER\""* ]] || return 1
  curl -sf --max-time 5 "$OIDC_ADMIN_URL/admin/health" >/dev/null
}

# npm ci when node_modules is missing or was installed from another package-lock.json.
ensure_oidc_deps() {
  local stamp=$OIDC_DIR/node_modules/.mecapy-lock-sha256 sum
  sum=$(sha256sum "$OIDC_DIR/package-lock.json" | cut -d' ' -f1)
  [[ -f $stamp && $(cat "$stamp") == "$sum" ]] && return 0
  if ! have node || ! have npm; then
    apt_install nodejs npm
  fi
  say "oidc: npm ci (log $LOG_DIR/oidc-npm.log)"
  (cd "$OIDC_DIR" && npm ci --no-audit --no-fund --loglevel=error) >"$LOG_DIR/oidc-npm.log" 2>&1 ||
    fail_service oidc "$LOG_DIR/oidc-npm.log" "npm ci failed in $OIDC_DIR"
  printf '%s' "$sum" >"$stamp"
}

# The client's redirect URIs, post-logout redirect URIs and CORS origins: the development
# defaults (a front end on port 3000) and the web console's (CONSOLE_URL, infra/local.env: the
# local stack's console bucket website, a deterministic name).
OIDC_REDIRECT_URIS="http://localhost:3000/auth/callback,http://127.0.0.1:3000/auth/callback${CONSOLE_URL:+,$CONSOLE_URL/}"
OIDC_POST_LOGOUT_REDIRECT_URIS="http://localhost:3000/,http://127.0.0.1:3000/${CONSOLE_URL:+,$CONSOLE_URL/}"
OIDC_WEB_ORIGINS="http://localhost:3000,http://127.0.0.1:3000${CONSOLE_URL:+,$CONSOLE_URL}"

up_oidc() {
  step_timer
  if oidc_healthy; then
    say_running oidc server.js
    # A provider started before the console existed refuses its redirect URI: say how to restart it.
    if [[ -n ${CONSOLE_URL:-} && $(curl -sf --max-time 5 "$OIDC_ADMIN_URL/admin/health") != *"\"$CONSOLE_URL/\""* ]]; then
      warn "oidc: the running provider does not accept the web console's redirect URI $CONSOLE_URL/: restart it with \`$0 down oidc && $0 up oidc\`"
    fi
    return 0
  fi
  ensure_oidc_deps
  bridge_up || die "oidc: the docker bridge address $BRIDGE_IP does not exist (start docker first: $0 up docker)"
  local logfile=$LOG_DIR/oidc.log pid
  if pid=$(recorded_pid oidc server.js); then
    say "oidc: pid $pid is starting, waiting"
  else
    mkdir -p "$RUN_DIR/oidc"
    say "oidc: starting node server.js"
    start_bg oidc "$logfile" env -C "$OIDC_DIR" OIDC_REDIRECT_URIS="$OIDC_REDIRECT_URIS" \
      OIDC_POST_LOGOUT_REDIRECT_URIS="$OIDC_POST_LOGOUT_REDIRECT_URIS" OIDC_WEB_ORIGINS="$OIDC_WEB_ORIGINS" node server.js
    pid=$STARTED_PID
  fi
  await_healthy oidc "$pid" "$OIDC_TIMEOUT" "$logfile" "not healthy ($OIDC_DISCOVERY, $OIDC_ADMIN_URL/admin/health)" "" oidc_healthy
  step_done "oidc: ready (pid $pid)"
}

status_oidc() { report_status oidc_healthy "healthy, issuer $OIDC_ISSUER, admin $OIDC_ADMIN_URL"; }

down_oidc() { stop_recorded oidc server.js 5 "OIDC provider"; }

# ---------------------------------------------------------------------------- moto

# moto's own API answers once the server is up; its ECS API is what the tests use.
moto_healthy() {
  [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 3 "$MOTO_URL/moto-api/data.json") == 200 ]]
}

up_moto() {
  step_timer
  if moto_healthy; then
    say_running moto moto_server
    return 0
  fi
  uv_venv "$MOTO_VENV" "moto[server]==$MOTO_VERSION exclude-newer=$MOTO_EXCLUDE_NEWER" \
    --exclude-newer "$MOTO_EXCLUDE_NEWER" "moto[server]==$MOTO_VERSION"
  local logfile=$LOG_DIR/moto.log pid hostport=${MOTO_URL#http://}
  if pid=$(recorded_pid moto moto_server); then
    say "moto: pid $pid is starting, waiting"
  else
    say "moto: starting moto_server $MOTO_VERSION on $hostport"
    start_bg moto "$logfile" "$MOTO_VENV/bin/moto_server" -H "${hostport%:*}" -p "${hostport##*:}"
    pid=$STARTED_PID
  fi
  await_healthy moto "$pid" "$MOTO_TIMEOUT" "$logfile" "not healthy ($MOTO_URL/moto-api/data.json)" " (is the port taken?)" moto_healthy
  step_done "moto: ready (pid $pid)"
}

status_moto() { report_status moto_healthy "healthy, $MOTO_URL (ECS API, no containers run)"; }

down_moto() { stop_recorded moto moto_server 5 "moto server"; }

# ---------------------------------------------------------------------------- commands

fn_name() { printf '%s' "${1//-/_}"; }

summary() { # SERVICE...
  local s
  printf '\n%-13s %-58s %s\n' SERVICE ADDRESS LOG
  for s in "$@"; do
    case $s in
    docker) printf '%-13s %-58s %s\n' docker "unix:///var/run/docker.sock, bridge $BRIDGE_IP" "$LOG_DIR/dockerd.log" ;;
    postgresql)
      printf '%-13s %-58s %s\n' postgresql "127.0.0.1:$PG_PORT, $BRIDGE_IP:$PG_PORT ($PG_USER/$PG_DB)" "$LOG_DIR/postgresql.log"
      printf '%-13s %-58s %s\n' postgresql-ca "$PG_TLS_CA (TLS; plain accepted too)" "$LOG_DIR/pg-tls.log"
      ;;
    registry) printf '%-13s %-58s %s\n' registry "$REGISTRY_URL (storage $REGISTRY_STORAGE)" "$LOG_DIR/registry.log" ;;
    localstack) printf '%-13s %-58s %s\n' localstack "$LOCALSTACK_URL (0.0.0.0:4566), bucket $UPLOAD_BUCKET" "$LOG_DIR/localstack.log" ;;
    cargo-lambda) printf '%-13s %-58s %s\n' cargo-lambda "PATH+=$BIN_DIR" "$LOG_DIR/install-$(basename "$CARGO_LAMBDA_VENV").log" ;;
    oidc)
      printf '%-13s %-58s %s\n' oidc "$OIDC_ISSUER" "$LOG_DIR/oidc.log"
      printf '%-13s %-58s %s\n' oidc-admin "$OIDC_ADMIN_URL (loopback only)" "$LOG_DIR/oidc.log"
      ;;
    moto) printf '%-13s %-58s %s\n' moto "$MOTO_URL (ECS API)" "$LOG_DIR/moto.log" ;;
    esac
  done
}

usage() {
  echo "usage: $0 up|down|status [${ALL_SERVICES[*]}]" >&2
  exit 2
}

main() {
  [[ $# -ge 1 ]] || usage
  local cmd=$1
  shift
  local services=("$@") s
  ((${#services[@]})) || services=("${ALL_SERVICES[@]}")
  for s in "${services[@]}"; do
    [[ " ${ALL_SERVICES[*]} " == *" $s "* ]] || usage
  done
  # Keep the canonical order (down: reversed).
  local ordered=()
  for s in "${ALL_SERVICES[@]}"; do
    [[ " ${services[*]} " == *" $s "* ]] && ordered+=("$s")
  done

  case $cmd in
  up | down)
    [[ $(id -u) == 0 ]] || die "must run as root (installs packages, starts dockerd and PostgreSQL)"
    mkdir -p "$LOG_DIR" "$PID_DIR"
    exec 9>"$RUN_DIR/.services.lock"
    flock 9
    ;;
  status) ;;
  *) usage ;;
  esac

  case $cmd in
  up)
    for s in "${ordered[@]}"; do "up_$(fn_name "$s")"; done
    summary "${ordered[@]}"
    say "up: done in $((SECONDS - SCRIPT_START)) s"
    ;;
  down)
    local i
    for ((i = ${#ordered[@]} - 1; i >= 0; i--)); do "down_$(fn_name "${ordered[i]}")"; done
    say "down: done"
    ;;
  status)
    local rc=0 line
    for s in "${ordered[@]}"; do
      line=$("status_$(fn_name "$s")") || rc=1
      printf '%-13s %s\n' "$s" "$line"
    done
    return $rc
    ;;
  esac
}

main "$@"
