# shellcheck shell=bash
# Helpers for scripts/serve and scripts/test (sourced, not run): the virtualenv, and the local PostgreSQL,
# Redis and Chromium the test suite uses. Each step prints one short line; every wait is bounded.

say() { printf '%s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

as_root() {  # run a command as root: directly when we are root, through sudo otherwise
  if [[ $(id -u) -eq 0 ]]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else die "need root (or sudo) to run: $*"
  fi
}

APT_UPDATED=""
apt_install() {  # apt_install PACKAGE...: quiet install from Debian's packages; the full output goes to a log file
  local log="${TMPDIR:-/tmp}/therapy-apt.log"
  command -v apt-get >/dev/null || die "apt-get not found: install $* yourself"
  if [[ -z $APT_UPDATED ]]; then
    as_root apt-get update -q >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "apt-get update failed (log: $log)"; }
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$log" 2>&1 \
    || { tail -n 20 "$log" >&2; die "apt-get install $* failed (log: $log)"; }
}

wait_for() {  # wait_for WHAT SECONDS COMMAND...: poll until COMMAND succeeds, or fail after SECONDS
  local what=$1 seconds=$2 deadline
  shift 2
  deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$what did not come up within ${seconds}s"
    sleep 0.25
  done
}

# ------------------------------------------------------------------ the virtualenv

create_venv() {
  local py version
  if command -v python3.11 >/dev/null; then py=python3.11
  elif command -v python3 >/dev/null && python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then py=python3
  else die "Python 3.11 or newer is needed (python3.11 or python3 on PATH)"
  fi
  say "venv: creating .venv with $("$py" --version)"
  rm -rf .venv  # whatever is there has no working interpreter
  if ! "$py" -m venv .venv >/dev/null 2>&1; then
    # Debian ships venv's ensurepip in a package of its own (python3.11-venv)
    version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    rm -rf .venv
    say "venv: installing python$version-venv"
    apt_install "python$version-venv"
    "$py" -m venv .venv || die "could not create .venv with $py"
  fi
}

ensure_venv() {  # ensure_venv [EXTRA]: .venv with the project installed (pip install -e .[EXTRA]) for this pyproject.toml
  local extra=${1:-} target=. stamp=.venv/.pyproject.sha256 hash
  if [[ -n $extra ]]; then target=".[$extra]" stamp=".venv/.pyproject-$extra.sha256"; fi
  [[ -x .venv/bin/python ]] || create_venv
  hash=$(sha256sum pyproject.toml | cut -d' ' -f1)
  if [[ -f $stamp && $(<"$stamp") == "$hash" ]]; then
    say "venv: up to date"
    return
  fi
  say "venv: installing $target (pyproject.toml changed since the last install)"
  .venv/bin/python -m pip install -qq --disable-pip-version-check -e "$target" || die "pip install -e '$target' failed"
  echo "$hash" >"$stamp"
  [[ -z $extra ]] || echo "$hash" >.venv/.pyproject.sha256  # the extra's install includes the plain one
}

# ------------------------------------------------------------------ PostgreSQL on 127.0.0.1:5432

pg_up() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432 -t 2; }
# shellcheck disable=SC2012  # the names under /etc/postgresql are version numbers
pg_version() { ls /etc/postgresql | sort -V | tail -n 1; }
pg_cluster() { as_root pg_ctlcluster --skip-systemctl-redirect "$(pg_version)" main "$@"; }
pg_tcp() { PGCONNECT_TIMEOUT=5 psql -w -X -q -h 127.0.0.1 -p 5432 -U postgres "$@"; }

ensure_postgres() {
  if pg_up; then
    say "postgres: already running"
  elif command -v pg_ctlcluster >/dev/null && [[ -d /etc/postgresql/$(pg_version 2>/dev/null)/main ]]; then
    pg_cluster start >/dev/null || die "postgres: pg_ctlcluster $(pg_version) main start failed"
    wait_for "PostgreSQL" 30 pg_up
    say "postgres: started"
  else
    say "postgres: installing (apt-get install postgresql)"
    apt_install postgresql
    local hba
    hba="/etc/postgresql/$(pg_version)/main/pg_hba.conf"
    [[ -f $hba ]] || die "postgres: no cluster 'main' after the install ($hba missing)"
    # the tests connect as postgres over TCP without a password: trust loopback, ahead of the packaged rules
    as_root sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
    if pg_up; then pg_cluster reload >/dev/null; else pg_cluster start >/dev/null || die "postgres: the new cluster would not start"; fi
    wait_for "PostgreSQL" 30 pg_up
    say "postgres: installed and started"
  fi
  pg_tcp -d postgres -tAc 'SELECT 1' >/dev/null 2>&1 \
    || die "postgres: user postgres cannot connect to 127.0.0.1:5432 without a password (add 'host all all 127.0.0.1/32 trust' to pg_hba.conf)"
  if [[ $(pg_tcp -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'") != 1 ]]; then
    pg_tcp -d postgres -c 'CREATE DATABASE test' >/dev/null
    say "postgres: created database test"
  fi
}

# ------------------------------------------------------------------ Redis on 127.0.0.1:6379

redis_up() { command -v redis-cli >/dev/null && [[ $(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null) == PONG ]]; }

ensure_redis() {
  local how=started
  if redis_up; then
    say "redis: already running"
    return
  fi
  if ! command -v redis-server >/dev/null; then
    say "redis: installing (apt-get install redis-server)"
    apt_install redis-server
    how="installed and started"
    redis_up && { say "redis: $how"; return; }  # the package may have started it already
  fi
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no >/dev/null \
    || die "redis: redis-server would not start"
  wait_for "Redis" 30 redis_up
  say "redis: $how"
}

# ------------------------------------------------------------------ Chromium for the browser tests

ensure_chromium() {
  if [[ ${SKIP_BROWSER_INSTALL:-0} != 0 ]]; then
    say "chromium: skipped (SKIP_BROWSER_INSTALL=$SKIP_BROWSER_INSTALL)"
  elif [[ -x /usr/bin/chromium ]]; then
    say "chromium: already installed"
  else
    say "chromium: installing (apt-get install chromium)"
    apt_install chromium
    [[ -x /usr/bin/chromium ]] || die "chromium: /usr/bin/chromium is still missing after the install"
    say "chromium: installed"
  fi
}

# ------------------------------------------------------------------ the browser client's npm packages

ensure_node_modules() {  # npm ci when node_modules is missing or package-lock.json changed since the last install
  local stamp=node_modules/.package-lock.sha256 hash
  [[ -f package-lock.json ]] || return 0
  hash=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [[ -f $stamp && $(<"$stamp") == "$hash" ]]; then
    say "npm: up to date"
    return
  fi
  if ! command -v npm >/dev/null; then
    if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
      die "npm is missing and cannot be installed without root or sudo. It is needed once, to fetch the browser's Socket.IO client (npm ci). Install Node.js with npm (Debian: 'apt-get install npm' as root, or from https://nodejs.org), then run this again."
    fi
    say "npm: installing (apt-get install npm)"
    apt_install npm
  fi
  say "npm: installing the browser client's packages (npm ci)"
  local log="${TMPDIR:-/tmp}/therapy-npm.log"
  npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1 || { tail -n 20 "$log" >&2; die "npm ci failed (log: $log)"; }
  echo "$hash" >"$stamp"
}
