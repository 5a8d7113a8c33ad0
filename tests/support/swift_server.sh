#!/usr/bin/env bash
# A throwaway OpenStack Swift (Debian packages) with the S3 API, on 127.0.0.1 only, for the storage tests.
#   tests/support/swift_server.sh start   write configs + rings under $SWIFT_ROOT, start memcached and the four servers
#   tests/support/swift_server.sh stop    kill the processes whose pids are in $SWIFT_ROOT/run/*.pid
# The caller waits for http://127.0.0.1:$SWIFT_PORT/healthcheck. S3 credentials: access key
# "$SWIFT_ACCOUNT:$SWIFT_USER", secret "$SWIFT_SECRET" (tempauth). Needs: swift-proxy swift-account
# swift-container swift-object memcached (Debian), which run on Debian's own python3, not the project venv.
set -eu
S=${SWIFT_ROOT:?set SWIFT_ROOT to an empty scratch folder}
P=${SWIFT_PORT:-8080}
MC=${SWIFT_MEMCACHE_PORT:-11211}
OBJ=${SWIFT_OBJECT_PORT:-6200}
CON=${SWIFT_CONTAINER_PORT:-6201}
ACC=${SWIFT_ACCOUNT_PORT:-6202}
ACCOUNT=${SWIFT_ACCOUNT:-r2}
USER_NAME=${SWIFT_USER:-uploader}
SECRET=${SWIFT_SECRET:-r2-secret-key}

stop() {
  for pidfile in "$S"/run/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

write_configs() {
  mkdir -p "$S"/etc "$S"/srv/node/d1 "$S"/run "$S"/log
  cd "$S/etc"
  printf '[swift-hash]\nswift_hash_path_suffix = test\nswift_hash_path_prefix = test\n[storage-policy:0]\nname = gold\ndefault = yes\n' > swift.conf
  for ring in object:$OBJ container:$CON account:$ACC; do
    name=${ring%%:*}; port=${ring##*:}
    swift-ring-builder "$name.builder" create 8 1 1 >/dev/null
    swift-ring-builder "$name.builder" add "r1z1-127.0.0.1:$port/d1" 100 >/dev/null
    swift-ring-builder "$name.builder" rebalance >/dev/null
    printf '[DEFAULT]\ndevices = %s/srv/node\nmount_check = false\ndisable_fallocate = true\nbind_ip = 127.0.0.1\nbind_port = %s\nworkers = 0\nswift_dir = %s/etc\n[pipeline:main]\npipeline = %s-server\n[app:%s-server]\nuse = egg:swift#%s\n' \
      "$S" "$port" "$S" "$name" "$name" "$name" > "$name-server.conf"
  done
  # s3api before tempauth: S3 SigV4 requests are checked against tempauth's users. cache needs memcached.
  cat > proxy-server.conf <<CONF
[DEFAULT]
bind_ip = 127.0.0.1
bind_port = $P
workers = 0
swift_dir = $S/etc
[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo versioned_writes proxy-logging proxy-server
[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
[filter:s3api]
use = egg:swift#s3api
location = auto
[filter:tempauth]
use = egg:swift#tempauth
user_${ACCOUNT}_${USER_NAME} = $SECRET .admin
[filter:cache]
use = egg:swift#memcache
memcache_servers = 127.0.0.1:$MC
[filter:catch_errors]
use = egg:swift#catch_errors
[filter:gatekeeper]
use = egg:swift#gatekeeper
[filter:healthcheck]
use = egg:swift#healthcheck
[filter:proxy-logging]
use = egg:swift#proxy_logging
[filter:listing_formats]
use = egg:swift#listing_formats
[filter:copy]
use = egg:swift#copy
[filter:slo]
use = egg:swift#slo
[filter:dlo]
use = egg:swift#dlo
[filter:versioned_writes]
use = egg:swift#versioned_writes
CONF
}

start() {
  write_configs
  as_root=()
  [ "$(id -u)" = 0 ] && as_root=(-u root)  # memcached refuses to run as root without -u
  memcached "${as_root[@]}" -l 127.0.0.1 -p "$MC" -m 64 >"$S/log/memcached.log" 2>&1 &
  echo $! > "$S/run/memcached.pid"
  for name in object container account proxy; do
    SWIFT_CONF_FILE="$S/etc/swift.conf" "swift-$name-server" "$S/etc/$name-server.conf" >"$S/log/$name.log" 2>&1 &
    echo $! > "$S/run/$name.pid"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: SWIFT_ROOT=DIR $0 start|stop" >&2; exit 2 ;;
esac
