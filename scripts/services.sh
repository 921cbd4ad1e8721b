#!/usr/bin/env bash
# Dev/test services on loopback: PostgreSQL, Redis, an SMTP server (maildev), S3 (s3s-fs) and moto (S3 bucket configuration), each on a free port with its data in a
# temp dir. Sourced by scripts/test (and usable by hand: `source scripts/services.sh; services_start`).
# Also a private D-Bus session with GNOME Keyring (the OS keychain the console uses).
# Installs what is missing from Debian's packages. Exports AIRWAVE_TEST_PG_URL,
# AIRWAVE_TEST_REDIS_URL, AIRWAVE_TEST_SMTP_URL, AIRWAVE_TEST_MAILDEV_URL, AIRWAVE_TEST_S3_*, DBUS_SESSION_BUS_ADDRESS and AIRWAVE_TEST_KEYCHAIN; services_stop stops
# what services_start started.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

apt_updated=0
apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "services: need $* but not root; install them with: sudo apt-get install -y $*" >&2
    return 1
  fi
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# The desktop console's build needs GTK/WebKitGTK headers (Tauri on Linux) and a virtual display
# for running it headless. Installs them when missing (Debian/Ubuntu), else names them.
CONSOLE_PACKAGES=(libwebkit2gtk-4.1-dev libayatana-appindicator3-dev librsvg2-dev build-essential pkg-config xvfb xauth)
console_deps() {
  if pkg-config --exists webkit2gtk-4.1 ayatana-appindicator3-0.1 2>/dev/null && command -v Xvfb >/dev/null; then
    return 0
  fi
  if ! command -v apt-get >/dev/null; then
    echo "console: install the GTK 3 / WebKitGTK 4.1 development packages (Debian names: ${CONSOLE_PACKAGES[*]})" >&2
    return 1
  fi
  apt_install "${CONSOLE_PACKAGES[@]}"
}

# The console's UI (ui/): installs its npm packages when package-lock.json changed, then builds
# ui/dist, which the console binary embeds. Needs Node.js 20+ and npm.
ui_build() {
  if ! command -v npm >/dev/null; then
    echo "console: the UI needs Node.js 20+ and npm (Debian: apt-get install nodejs npm)" >&2
    return 1
  fi
  if ! cmp -s ui/package-lock.json ui/node_modules/.airwave-installed-lock; then
    (cd ui && npm ci --no-audit --no-fund --loglevel=error) || return 1
    cp ui/package-lock.json ui/node_modules/.airwave-installed-lock
  fi
  (cd ui && npm run --silent build -- --logLevel warn)
}

# The console's end-to-end test: WebKitWebDriver, a notification server and dbus-monitor from
# Debian, and tauri-driver built from crates.io once into ~/.cache/airwave-tools.
TOOLS_DIR="${AIRWAVE_TOOLS_DIR:-$HOME/.cache/airwave-tools}"
e2e_deps() {
  command -v WebKitWebDriver >/dev/null && command -v dunst >/dev/null && command -v dbus-monitor >/dev/null \
    || apt_install webkit2gtk-driver dunst dbus-bin || return 1
  if [ ! -x "$TOOLS_DIR/bin/tauri-driver" ]; then
    cargo install tauri-driver --version 2.0.6 --locked --root "$TOOLS_DIR" --quiet || return 1
  fi
  export TAURI_DRIVER="$TOOLS_DIR/bin/tauri-driver"
}

# Cargo's target dir as an absolute path (CARGO_TARGET_DIR may be relative, or unset: ./target).
target_dir() {
  local d="${CARGO_TARGET_DIR:-target}"
  case "$d" in /*) echo "$d" ;; *) echo "$PWD/$d" ;; esac
}

# A virtual display (Xvfb) on a free display number; exports DISPLAY, sets XVFB_PID.
xvfb_start() {
  local n
  for n in $(seq 90 130); do
    [ -e "/tmp/.X11-unix/X$n" ] || [ -e "/tmp/.X$n-lock" ] || break
  done
  Xvfb ":$n" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
  XVFB_PID=$!
  for _ in $(seq 50); do [ -e "/tmp/.X11-unix/X$n" ] && break; sleep 0.1; done
  [ -e "/tmp/.X11-unix/X$n" ] || { echo "Xvfb did not start on :$n" >&2; return 1; }
  export DISPLAY=":$n"
}

pg_bindir() {
  # Prefer a complete server install (initdb + pg_ctl + postgres side by side).
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ] && { echo "$d"; return 0; }
  done
  local i; i=$(command -v initdb 2>/dev/null) || return 1
  dirname "$(readlink -f "$i")"
}

# An OS keychain: a private D-Bus session bus with GNOME Keyring's Secret Service, unlocked from
# stdin (an empty stdin would create no login keyring). For the console's keychain tests and for
# running the console on a machine without a desktop session. Sets DBUS_PID.
keychain_start() {
  local dir=${1:-$SERVICES_DIR}
  { command -v dbus-daemon >/dev/null && command -v gnome-keyring-daemon >/dev/null; } \
    || apt_install dbus-daemon gnome-keyring || { echo "services: no keychain" >&2; return 1; }
  mkdir -p -m 700 "$dir/xdg-run" "$dir/xdg-data"
  export XDG_RUNTIME_DIR="$dir/xdg-run" XDG_DATA_HOME="$dir/xdg-data"
  local bus
  bus=$(dbus-daemon --session --fork --nosyslog --print-address=1 --print-pid=1) \
    || { echo "services: cannot start a D-Bus session bus" >&2; return 1; }
  export DBUS_SESSION_BUS_ADDRESS=$(echo "$bus" | sed -n 1p)
  DBUS_PID=$(echo "$bus" | sed -n 2p)
  echo "airwave-test-keyring" | gnome-keyring-daemon --unlock --components=secrets >/dev/null \
    || { echo "services: gnome-keyring-daemon did not start" >&2; return 1; }
  # Ours is the newest; stopping only it leaves other sessions' keychains alone.
  KEYRING_PID=$(pgrep -n -f "gnome-keyring-daemon --unlock --components=secrets" || true)
}

services_start() {
  SERVICES_DIR=$(mktemp -d /tmp/airwave-services.XXXXXX)
  chmod 755 "$SERVICES_DIR"
  export SERVICES_DIR

  # --- PostgreSQL (refuses to run as root: run it as the unprivileged `postgres` user) ---
  local bin
  bin=$(pg_bindir) || { apt_install postgresql && bin=$(pg_bindir); } || { echo "services: no PostgreSQL" >&2; return 1; }
  local runas=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
    runas=(runuser -u postgres --)
    install -d -o postgres -g postgres -m 700 "$SERVICES_DIR/pg"
    install -d -o postgres -g postgres -m 755 "$SERVICES_DIR/pgsock"
    install -o postgres -g postgres -m 644 /dev/null "$SERVICES_DIR/pg.log"
  else
    mkdir -p -m 700 "$SERVICES_DIR/pg"; mkdir -p "$SERVICES_DIR/pgsock"; : > "$SERVICES_DIR/pg.log"
  fi
  PG_PORT=$(free_port)
  "${runas[@]}" "$bin/initdb" -D "$SERVICES_DIR/pg" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$SERVICES_DIR/initdb.log" 2>&1 \
    || { cat "$SERVICES_DIR/initdb.log" >&2; return 1; }
  # pg_stat_statements (part of the server package) is loaded, so a test can install it in its
  # database and see /api/ops/db/slow-queries read it; a database without it gets the slow log.
  local preload=""
  [ -e "$bin/../lib/pg_stat_statements.so" ] && preload="-c shared_preload_libraries=pg_stat_statements"
  "${runas[@]}" "$bin/pg_ctl" -D "$SERVICES_DIR/pg" -l "$SERVICES_DIR/pg.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $SERVICES_DIR/pgsock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 $preload" \
    start >/dev/null || { cat "$SERVICES_DIR/pg.log" >&2; return 1; }
  PG_STOP=("${runas[@]}" "$bin/pg_ctl" -D "$SERVICES_DIR/pg" -m fast -w stop)
  export AIRWAVE_TEST_PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
  echo "services: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"

  # --- Redis ---
  command -v redis-server >/dev/null || apt_install redis-server redis-tools || { echo "services: no Redis" >&2; return 1; }
  REDIS_PORT=$(free_port)
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no --dir "$SERVICES_DIR" \
    --logfile "$SERVICES_DIR/redis.log" --daemonize yes --pidfile "$SERVICES_DIR/redis.pid" >/dev/null
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$REDIS_PORT" ping >/dev/null || { cat "$SERVICES_DIR/redis.log" >&2; return 1; }
  export AIRWAVE_TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  echo "services: Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2) on 127.0.0.1:$REDIS_PORT"

  maildev_start || return 1

  s3s_start || return 1

  moto_start || return 1

  keychain_start || return 1
  export AIRWAVE_TEST_KEYCHAIN=1
  echo "services: keychain (GNOME Keyring Secret Service) on a private D-Bus session"
}

# An SMTP server with an HTTP API for the mail it received: maildev from the npm registry,
# installed once into the tools cache. Exports AIRWAVE_TEST_SMTP_URL and AIRWAVE_TEST_MAILDEV_URL.
MAILDEV_VERSION=3.0.0
maildev_start() {
  local dir="$TOOLS_DIR/maildev-$MAILDEV_VERSION"
  if [ ! -x "$dir/node_modules/.bin/maildev" ]; then
    command -v npm >/dev/null || { echo "services: maildev needs Node.js 20+ and npm" >&2; return 1; }
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-audit --no-fund --loglevel=error "maildev@$MAILDEV_VERSION" >/dev/null \
      || { echo "services: npm install maildev failed" >&2; return 1; }
  fi
  local smtp web
  smtp=$(free_port); web=$(free_port)
  mkdir -p "$SERVICES_DIR/maildev"
  "$dir/node_modules/.bin/maildev" --smtp "$smtp" --web "$web" --ip 127.0.0.1 --web-ip 127.0.0.1 \
    --mail-directory "$SERVICES_DIR/maildev" >"$SERVICES_DIR/maildev.log" 2>&1 &
  MAILDEV_PID=$!
  # Node can take a while to start on a busy machine (a 10 s wait once timed out in CI).
  for _ in $(seq 600); do curl -fs "http://127.0.0.1:$web/api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$web/api/healthz" >/dev/null \
    || { echo "services: maildev did not answer on 127.0.0.1:$web within 60 s; its log:" >&2; cat "$SERVICES_DIR/maildev.log" >&2; return 1; }
  export AIRWAVE_TEST_SMTP_URL="smtp://127.0.0.1:$smtp" AIRWAVE_TEST_MAILDEV_URL="http://127.0.0.1:$web"
  echo "services: maildev $MAILDEV_VERSION (SMTP 127.0.0.1:$smtp, HTTP API 127.0.0.1:$web)"
}

# An S3-compatible server that checks request signatures (SigV4, presigned URLs): s3s-fs from
# crates.io, built once into the tools cache (a few minutes). Exports AIRWAVE_TEST_S3_URL,
# AIRWAVE_TEST_S3_KEY and AIRWAVE_TEST_S3_SECRET (fresh per run).
S3S_VERSION=0.14.1
s3s_start() {
  local root="$TOOLS_DIR/s3s-fs-$S3S_VERSION"
  if [ ! -x "$root/bin/s3s-fs" ]; then
    echo "services: building s3s-fs $S3S_VERSION into $root (once)"
    # Its own temp target dir: the release build is thrown away, only the binary is kept.
    env -u CARGO_TARGET_DIR cargo install s3s-fs --version "$S3S_VERSION" --features binary --locked \
      --root "$root" --quiet || { echo "services: cargo install s3s-fs failed" >&2; return 1; }
  fi
  local port key secret
  port=$(free_port)
  key="airwave-$(python3 -c 'import secrets; print(secrets.token_hex(4))')"
  secret=$(python3 -c 'import secrets; print(secrets.token_hex(20))')
  mkdir -p "$SERVICES_DIR/s3"
  "$root/bin/s3s-fs" --host 127.0.0.1 --port "$port" --access-key "$key" --secret-key "$secret" \
    "$SERVICES_DIR/s3" >"$SERVICES_DIR/s3s.log" 2>&1 &
  S3S_PID=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  curl -s -o /dev/null "http://127.0.0.1:$port/" || { cat "$SERVICES_DIR/s3s.log" >&2; return 1; }
  export AIRWAVE_TEST_S3_URL="http://127.0.0.1:$port" AIRWAVE_TEST_S3_KEY="$key" AIRWAVE_TEST_S3_SECRET="$secret"
  echo "services: s3s-fs $S3S_VERSION (S3 with signature checks) on 127.0.0.1:$port"
}

services_stop() {
  [ -n "${SERVICES_DIR:-}" ] || return 0
  [ -n "${PG_STOP:-}" ] && "${PG_STOP[@]}" >/dev/null 2>&1
  [ -f "$SERVICES_DIR/redis.pid" ] && kill "$(cat "$SERVICES_DIR/redis.pid")" 2>/dev/null
  [ -n "${MAILDEV_PID:-}" ] && kill "$MAILDEV_PID" 2>/dev/null
  [ -n "${S3S_PID:-}" ] && kill "$S3S_PID" 2>/dev/null
  [ -n "${MOTO_PID:-}" ] && kill "$MOTO_PID" 2>/dev/null
  [ -n "${XVFB_PID:-}" ] && kill "$XVFB_PID" 2>/dev/null
  # GNOME Keyring leaves with its bus.
  [ -n "${DBUS_PID:-}" ] && kill "$DBUS_PID" 2>/dev/null
  [ -n "${KEYRING_PID:-}" ] && kill "$KEYRING_PID" 2>/dev/null
  rm -rf "$SERVICES_DIR"
  SERVICES_DIR=
  return 0
}

# moto's S3 server, for the bucket-configuration APIs s3s-fs does not have (lifecycle rules, CORS,
# the public access block) that `airwave-server storage setup` applies. It accepts any signature,
# so the data path is tested on s3s-fs; this is only for the set-up. From PyPI into a venv in the
# tools cache, once (≈ 30 s). Exports AIRWAVE_TEST_MOTO_URL.
MOTO_VERSION=5.2.5
moto_start() {
  local venv="$TOOLS_DIR/moto-$MOTO_VERSION"
  if [ ! -x "$venv/bin/moto_server" ]; then
    echo "services: installing moto $MOTO_VERSION into $venv (once)"
    rm -rf "$venv"
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" \
      || { rm -rf "$venv"; echo "services: pip install moto failed" >&2; return 1; }
  fi
  local port
  port=$(free_port)
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$SERVICES_DIR/moto.log" 2>&1 &
  MOTO_PID=$!
  for _ in $(seq 300); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
  curl -s -o /dev/null "http://127.0.0.1:$port/" || { cat "$SERVICES_DIR/moto.log" >&2; return 1; }
  export AIRWAVE_TEST_MOTO_URL="http://127.0.0.1:$port"
  echo "services: moto $MOTO_VERSION (S3 bucket configuration, no signature checks) on 127.0.0.1:$port"
}
