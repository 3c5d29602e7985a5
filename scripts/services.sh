#!/usr/bin/env bash
# Provision and run the real services the integration tests use:
# PostgreSQL (Debian's package, a dedicated cluster) and Apache Kafka
# (the broker's jars from Maven Central, KRaft, one combined node), and on
# demand a Kafka Connect worker of the same version (standalone mode, its
# REST API on 127.0.0.1:8083 by default), for the tests of Connect connectors.
#
#   scripts/services.sh up|down|status|logs|env
#   scripts/services.sh kafka-start|kafka-stop|kafka-kill   (broker crash tests)
#   scripts/services.sh pg-crash|pg-start                    (database crash tests)
#   scripts/services.sh connect-up|connect-down|connect-env|connect-logs
#
# Idempotent: `up` on running services only checks they answer. Runs as root
# with no standard input. Everything it downloads or writes lives under
# $EVENTSOURCE_SERVICES_DIR (default ~/.cache/eventsource-services), not in git.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${EVENTSOURCE_SERVICES_DIR:-$HOME/.cache/eventsource-services}"

KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$ROOT/scripts/kafka/pom.xml")"
KAFKA_PORT="${EVENTSOURCE_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${EVENTSOURCE_KAFKA_CONTROLLER_PORT:-9093}"
# A second listener that asks for a SASL/PLAIN login, for the tests of secured
# brokers. The account exists on this local test broker only.
KAFKA_SASL_PORT="${EVENTSOURCE_KAFKA_SASL_PORT:-9094}"
KAFKA_SASL_USER="eventsource"
KAFKA_SASL_PASSWORD="eventsource-sasl-secret"
# And a third that speaks TLS, with a certificate from a test CA made here,
# and a fourth that also asks each client for a certificate from that CA.
KAFKA_SSL_PORT="${EVENTSOURCE_KAFKA_SSL_PORT:-9095}"
KAFKA_MTLS_PORT="${EVENTSOURCE_KAFKA_MTLS_PORT:-9096}"
KAFKA_TLS="$STATE/kafka-tls"
KAFKA_HOME="$STATE/kafka-$KAFKA_VERSION"
KAFKA_DATA="$STATE/kafka-data"
KAFKA_PID="$STATE/kafka.pid"
KAFKA_LOG="$STATE/kafka.log"

# Kafka Connect: Apache Kafka's own worker (connect-runtime, connect-json,
# connect-file from Maven Central), the broker's version, in standalone mode:
# its connectors' offsets live in a file, so it writes no internal topics and
# joins no group on the broker. The jars are cached once under $STATE; each
# worker keeps its configuration, pid, log and offsets in its own folder
# (EVENTSOURCE_CONNECT_DIR) and listens on its own port
# (EVENTSOURCE_CONNECT_PORT), so test runs side by side never share one.
# EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS, when set, is the broker it works with
# (default: the one this script runs). EVENTSOURCE_CONNECT_OWNER_PID, when
# set, is a process whose end stops the worker too (a test run killed
# before its clean-up leaves no JVM behind).
CONNECT_PORT="${EVENTSOURCE_CONNECT_PORT:-8083}"
CONNECT_HOME="$STATE/connect-$KAFKA_VERSION"
CONNECT_DIR="${EVENTSOURCE_CONNECT_DIR:-$STATE/connect}"
CONNECT_PID="$CONNECT_DIR/connect.pid"
CONNECT_LOG="$CONNECT_DIR/connect.log"
CONNECT_OWNER="${EVENTSOURCE_CONNECT_OWNER_PID:-}"

PG_CLUSTER="${EVENTSOURCE_PG_CLUSTER:-eventsource}"
PG_PORT="${EVENTSOURCE_PG_PORT:-5433}"
PG_USER="eventsource"
PG_PASSWORD="eventsource"
PG_DB="eventsource"

PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON="python3"

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_install() {
  log "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq </dev/null >/dev/null || true
  as_root apt-get install -y -qq --no-install-recommends "$@" </dev/null >/dev/null
}

# ---------------------------------------------------------------- PostgreSQL

pg_version() {
  ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1
}

pg_psql() {
  # The cluster's superuser is reached over the Unix socket with peer auth.
  as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" "$@" </dev/null
}

pg_up() {
  command -v pg_createcluster >/dev/null 2>&1 && [ -n "$(pg_version)" ] || apt_install postgresql
  local ver
  ver="$(pg_version)"
  if ! pg_lsclusters -h | awk '{print $2}' | grep -qx "$PG_CLUSTER"; then
    log "creating PostgreSQL $ver cluster '$PG_CLUSTER' on port $PG_PORT"
    as_root pg_createcluster "$ver" "$PG_CLUSTER" --port "$PG_PORT" -- --auth-local=peer --auth-host=scram-sha-256 >/dev/null
    cat <<EOF | as_root tee "/etc/postgresql/$ver/$PG_CLUSTER/conf.d/eventsource.conf" >/dev/null
# Room for the concurrency tests' writer processes and the workers.
listen_addresses = '127.0.0.1'
max_connections = 300
shared_buffers = 256MB
EOF
  fi
  if ! pg_lsclusters -h | awk -v c="$PG_CLUSTER" '$2==c {print $4}' | grep -qx online; then
    log "starting PostgreSQL cluster '$PG_CLUSTER'"
    as_root pg_ctlcluster "$ver" "$PG_CLUSTER" start
  fi
  for _ in $(seq 1 60); do
    pg_psql -c 'select 1' >/dev/null 2>&1 && break
    sleep 1
  done
  pg_psql -c 'select 1' >/dev/null || die "PostgreSQL did not answer on port $PG_PORT"
  if [ -z "$(pg_psql -tA -c "select 1 from pg_roles where rolname = '$PG_USER'")" ]; then
    pg_psql -c "create role $PG_USER login superuser password '$PG_PASSWORD'"
  fi
  if [ -z "$(pg_psql -tA -c "select 1 from pg_database where datname = '$PG_DB'")" ]; then
    pg_psql -c "create database $PG_DB owner $PG_USER"
  fi
  log "PostgreSQL $ver ready on 127.0.0.1:$PG_PORT"
}

pg_down() {
  local ver
  ver="$(pg_version)"
  if [ -n "$ver" ] && pg_lsclusters -h 2>/dev/null | awk -v c="$PG_CLUSTER" '$2==c {print $4}' | grep -qx online; then
    as_root pg_ctlcluster "$ver" "$PG_CLUSTER" stop -m fast
    log "PostgreSQL stopped"
  fi
}

# A crash, for the chaos tests: the server stops at once, as on a power cut
# (`-m immediate`: no checkpoint; it recovers from its WAL when started).
pg_crash() {
  as_root pg_ctlcluster "$(pg_version)" "$PG_CLUSTER" stop -m immediate
  log "PostgreSQL crash-stopped"
}

pg_start() {
  as_root pg_ctlcluster "$(pg_version)" "$PG_CLUSTER" start
  for _ in $(seq 1 60); do
    pg_psql -c 'select 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
  log "PostgreSQL started"
}

pg_status() {
  if pg_lsclusters -h 2>/dev/null | awk -v c="$PG_CLUSTER" '$2==c {print $4}' | grep -qx online; then
    echo "postgresql: running on 127.0.0.1:$PG_PORT (cluster $(pg_version)/$PG_CLUSTER)"
  else
    echo "postgresql: stopped"
  fi
}

# --------------------------------------------------------------------- Kafka

kafka_fetch() {
  [ -f "$KAFKA_HOME/.complete" ] && return 0
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
  log "resolving Apache Kafka $KAFKA_VERSION from Maven Central into $KAFKA_HOME"
  rm -rf "$KAFKA_HOME"
  mkdir -p "$STATE" "$KAFKA_HOME"
  mvn -B -q -Dstyle.color=never -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs" </dev/null >"$STATE/maven.log" 2>&1 ||
    die "Maven could not resolve Kafka $KAFKA_VERSION; see $STATE/maven.log"
  touch "$KAFKA_HOME/.complete"
}

kafka_tls() {
  [ -f "$KAFKA_TLS/keystore.pem" ] && [ -f "$KAFKA_TLS/client.pem" ] && return 0
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$KAFKA_TLS"
  if [ ! -f "$KAFKA_TLS/keystore.pem" ]; then
    log "making a test CA and the broker's TLS certificate in $KAFKA_TLS"
    (
      cd "$KAFKA_TLS"
      openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
        -subj "/CN=eventsource test CA" 2>/dev/null
      openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr \
        -subj "/CN=127.0.0.1" 2>/dev/null
      printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
      openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -out server.pem -days 3650 -extfile san.ext 2>/dev/null
      # Kafka reads a PEM keystore: the PKCS#8 key, then the certificate chain.
      openssl pkcs8 -topk8 -nocrypt -in server.key -out server.pk8
      cat server.pk8 server.pem ca.pem >keystore.pem.tmp
      mv keystore.pem.tmp keystore.pem
    ) || die "could not make the test TLS certificates in $KAFKA_TLS"
  fi
  log "making a client certificate from the test CA in $KAFKA_TLS"
  (
    cd "$KAFKA_TLS"
    openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr \
      -subj "/CN=eventsource test client" 2>/dev/null
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -out client.pem.tmp -days 3650 2>/dev/null
    mv client.pem.tmp client.pem
  ) || die "could not make the test client certificate in $KAFKA_TLS"
}

kafka_config() {
  kafka_tls
  mkdir -p "$STATE"
  cat >"$STATE/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,SSL://127.0.0.1:$KAFKA_SSL_PORT,MTLS://127.0.0.1:$KAFKA_MTLS_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL,MTLS:SSL,CONTROLLER:PLAINTEXT
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$KAFKA_TLS/keystore.pem
listener.name.ssl.ssl.client.auth=none
listener.name.mtls.ssl.keystore.type=PEM
listener.name.mtls.ssl.keystore.location=$KAFKA_TLS/keystore.pem
listener.name.mtls.ssl.truststore.type=PEM
listener.name.mtls.ssl.truststore.location=$KAFKA_TLS/ca.pem
listener.name.mtls.ssl.client.auth=required
inter.broker.listener.name=PLAINTEXT
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
log.dirs=$KAFKA_DATA
num.partitions=1
# A single node: internal topics, including the transaction state log that
# transactional producers need, cannot have more than one replica.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
# The certificates the TLS listeners load, so that new ones restart the broker:
# $(cat "$KAFKA_TLS/keystore.pem" "$KAFKA_TLS/ca.pem" | sha256sum | cut -c1-16)
EOF
  cat >"$STATE/log4j2.yaml" <<EOF
Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: WARN
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.server.KafkaRaftServer
        level: INFO
EOF
}

kafka_java() {
  java -Xms256m -Xmx1g -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$STATE/log4j2.yaml" \
    -cp "$KAFKA_HOME/libs/*" "$@"
}

kafka_running() {
  [ -f "$KAFKA_PID" ] && kill -0 "$(cat "$KAFKA_PID")" 2>/dev/null
}

kafka_answers() {
  if "$PYTHON" -c "import confluent_kafka" 2>/dev/null; then
    "$PYTHON" - "$KAFKA_PORT" <<'EOF' 2>/dev/null
import sys
from confluent_kafka.admin import AdminClient
admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{sys.argv[1]}"})
admin.list_topics(timeout=3)
EOF
  else
    # No client library yet (the project is not installed): the broker has
    # said it started and its port takes connections.
    grep -q "Kafka Server started" "$KAFKA_LOG" 2>/dev/null &&
      (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null
  fi
}

kafka_wait() {
  for _ in $(seq 1 120); do
    kafka_running || die "Kafka exited during start-up; see $KAFKA_LOG: $(tail -5 "$KAFKA_LOG")"
    kafka_answers && return 0
    sleep 1
  done
  die "Kafka did not answer on 127.0.0.1:$KAFKA_PORT within 120 s; see $KAFKA_LOG"
}

kafka_start() {
  kafka_fetch
  kafka_config
  if kafka_running; then
    if cmp -s "$STATE/server.properties" "$STATE/server.properties.running"; then
      kafka_wait
      return 0
    fi
    log "Kafka's configuration changed; restarting it"
    kafka_stop
  fi
  if [ ! -f "$KAFKA_DATA/meta.properties" ]; then
    log "formatting KRaft storage in $KAFKA_DATA"
    local cluster_id
    cluster_id="$(kafka_java kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    kafka_java kafka.tools.StorageTool format -t "$cluster_id" \
      -c "$STATE/server.properties" >/dev/null </dev/null
  fi
  log "starting Apache Kafka $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
  if [ -f "$KAFKA_LOG" ]; then mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"; fi
  # setsid: the broker must outlive the shell (and CI step) that started it.
  # (A background job of a non-interactive shell is no group leader, so setsid
  # execs in place and $! is the broker's own pid.)
  setsid java -Xms256m -Xmx1g -XX:+UseG1GC \
    -Dlog4j2.configurationFile="$STATE/log4j2.yaml" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$STATE/server.properties" \
    >>"$KAFKA_LOG" 2>&1 </dev/null &
  echo $! >"$KAFKA_PID"
  cp "$STATE/server.properties" "$STATE/server.properties.running"
  kafka_wait
  log "Kafka $KAFKA_VERSION ready on 127.0.0.1:$KAFKA_PORT"
}

kafka_stop() {
  local signal="${1:-TERM}"
  kafka_running || { rm -f "$KAFKA_PID"; return 0; }
  local pid
  pid="$(cat "$KAFKA_PID")"
  kill -"$signal" -- "-$pid" 2>/dev/null || kill -"$signal" "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$KAFKA_PID"
  log "Kafka stopped ($signal)"
}

kafka_status() {
  if kafka_running && kafka_answers; then
    echo "kafka: running on 127.0.0.1:$KAFKA_PORT, SASL/PLAIN on 127.0.0.1:$KAFKA_SASL_PORT, TLS on 127.0.0.1:$KAFKA_SSL_PORT, TLS with client certificates on 127.0.0.1:$KAFKA_MTLS_PORT (Apache Kafka $KAFKA_VERSION, KRaft, pid $(cat "$KAFKA_PID"))"
  elif kafka_running; then
    echo "kafka: starting or unresponsive (pid $(cat "$KAFKA_PID"))"
  else
    echo "kafka: stopped"
  fi
}

# ------------------------------------------------------------- Kafka Connect

connect_fetch() {
  [ -f "$CONNECT_HOME/.complete" ] && return 0
  mkdir -p "$STATE"
  # Workers of several test runs may start at once: one resolves the jars.
  exec 8>"$STATE/connect-fetch.lock"
  flock -w 600 8 || die "could not take $STATE/connect-fetch.lock"
  if [ ! -f "$CONNECT_HOME/.complete" ]; then
    command -v java >/dev/null || apt_install openjdk-17-jre-headless
    command -v mvn >/dev/null || apt_install maven
    log "resolving Kafka Connect $KAFKA_VERSION from Maven Central into $CONNECT_HOME"
    rm -rf "$CONNECT_HOME"
    mkdir -p "$CONNECT_HOME"
    mvn -B -q -Dstyle.color=never -f "$ROOT/scripts/connect/pom.xml" dependency:copy-dependencies \
      -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime \
      -DoutputDirectory="$CONNECT_HOME/libs" </dev/null >"$STATE/maven-connect.log" 2>&1 ||
      die "Maven could not resolve Kafka Connect $KAFKA_VERSION; see $STATE/maven-connect.log"
    touch "$CONNECT_HOME/.complete"
  fi
  exec 8>&-
}

connect_config() {
  local servers="${EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}"
  mkdir -p "$CONNECT_DIR"
  cat >"$CONNECT_DIR/connect.properties" <<EOF
bootstrap.servers=$servers
# Standalone: source connectors' offsets in a file of this worker's own.
offset.storage.file.filename=$CONNECT_DIR/offsets.dat
# Connectors say their own converters; these are the defaults for those that do not.
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=false
listeners=http://127.0.0.1:$CONNECT_PORT
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$CONNECT_PORT
# Connectors on the class path, found through their service manifests: no
# scan of every jar, which is most of a worker's start-up time otherwise.
plugin.discovery=service_load
# Sinks flush (the file sink writes its buffer) and commit every second, so
# that tests see their output soon; source offsets likewise.
offset.flush.interval.ms=1000
# Connectors may set their own client options (consumer.override.isolation.level).
connector.client.config.override.policy=All
EOF
  # Properties, not YAML: the worker's class path has no YAML parser.
  cat >"$CONNECT_DIR/connect-log4j2.properties" <<EOF
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
logger.connect.name=org.apache.kafka.connect.runtime.Connect
logger.connect.level=INFO
EOF
}

connect_running() {
  [ -f "$CONNECT_PID" ] && kill -0 "$(cat "$CONNECT_PID")" 2>/dev/null
}

# Ready: GET /health answers 200 once the worker has started (503 before).
connect_answers() {
  "$PYTHON" - "$CONNECT_PORT" <<'EOF' 2>/dev/null
import sys
import urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=5) as answer:
    sys.exit(0 if answer.status == 200 else 1)
EOF
}

connect_wait() {
  for _ in $(seq 1 240); do
    connect_running || die "Kafka Connect exited during start-up; see $CONNECT_LOG: $(tail -5 "$CONNECT_LOG")"
    connect_answers && return 0
    sleep 0.25
  done
  die "Kafka Connect did not become ready on 127.0.0.1:$CONNECT_PORT within 60 s; see $CONNECT_LOG"
}

# Stops the worker when its owner process ends. Its own session (setsid) and
# no inherited descriptors, so that it holds no lock and no test's pipes.
connect_watch() {
  local owner="$1" pid="$2"
  setsid bash -c '
    while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done
    if kill -0 "$2" 2>/dev/null; then
      kill -TERM -- "-$2" 2>/dev/null
      for _ in $(seq 1 40); do kill -0 "$2" 2>/dev/null || exit 0; sleep 0.25; done
      kill -KILL -- "-$2" 2>/dev/null
    fi' connect-watch "$owner" "$pid" </dev/null >/dev/null 2>&1 8>&- 9>&- &
}

connect_start() {
  connect_fetch
  mkdir -p "$CONNECT_DIR"
  # Two callers for one worker at the same moment: one starts it.
  exec 9>"$CONNECT_DIR/connect.lock"
  flock -w 300 9 || die "could not take $CONNECT_DIR/connect.lock"
  connect_config
  if connect_running; then
    if cmp -s "$CONNECT_DIR/connect.properties" "$CONNECT_DIR/connect.properties.running"; then
      connect_wait
      exec 9>&-
      return 0
    fi
    log "Kafka Connect's configuration changed; restarting it"
    connect_stop
  fi
  log "starting Kafka Connect $KAFKA_VERSION (standalone, $CONNECT_DIR) on 127.0.0.1:$CONNECT_PORT"
  if [ -f "$CONNECT_LOG" ]; then mv -f "$CONNECT_LOG" "$CONNECT_LOG.1"; fi
  local started=$SECONDS
  # As for the broker: setsid so that it outlives the shell that started it;
  # 9>&- so that it does not hold the start-up lock for its whole life.
  # TieredStopAtLevel=1 and SerialGC: a short-lived test worker starts
  # sooner with the quick compiler alone and one GC thread.
  setsid java -Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$CONNECT_DIR/connect-log4j2.properties" \
    -cp "$CONNECT_HOME/libs/*" org.apache.kafka.connect.cli.ConnectStandalone \
    "$CONNECT_DIR/connect.properties" >>"$CONNECT_LOG" 2>&1 </dev/null 9>&- &
  local pid=$!
  echo "$pid" >"$CONNECT_PID"
  cp "$CONNECT_DIR/connect.properties" "$CONNECT_DIR/connect.properties.running"
  if [ -n "$CONNECT_OWNER" ]; then connect_watch "$CONNECT_OWNER" "$pid"; fi
  connect_wait
  exec 9>&-
  log "Kafka Connect $KAFKA_VERSION ready on http://127.0.0.1:$CONNECT_PORT in $((SECONDS - started)) s"
}

connect_stop() {
  connect_running || { rm -f "$CONNECT_PID"; return 0; }
  local pid
  pid="$(cat "$CONNECT_PID")"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$CONNECT_PID"
  log "Kafka Connect stopped"
}

connect_status() {
  if connect_running && connect_answers; then
    echo "connect: running on http://127.0.0.1:$CONNECT_PORT (Kafka Connect $KAFKA_VERSION, standalone, $CONNECT_DIR, pid $(cat "$CONNECT_PID"))"
  elif connect_running; then
    echo "connect: starting or unresponsive (pid $(cat "$CONNECT_PID"))"
  else
    echo "connect: stopped (started on demand: scripts/services.sh connect-up)"
  fi
}

connect_env() {
  echo "export TEST_SERVICES_CONNECT_URL=\${TEST_SERVICES_CONNECT_URL:-http://127.0.0.1:$CONNECT_PORT}"
}

# ---------------------------------------------------------------------- main

print_env() {
  # Variables already set (services that run elsewhere) win over ours.
  echo "export EVENTSOURCE_DATABASE_URL=\${EVENTSOURCE_DATABASE_URL:-postgresql+psycopg://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB}"
  echo "export EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS=\${EVENTSOURCE_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:$KAFKA_PORT}"
  # The broker's SASL/PLAIN listener and its test account (tests/bus/test_secured_broker.py).
  echo "export TEST_SERVICES_KAFKA_SASL_SERVERS=\${TEST_SERVICES_KAFKA_SASL_SERVERS:-127.0.0.1:$KAFKA_SASL_PORT}"
  echo "export TEST_SERVICES_KAFKA_SASL_USERNAME=\${TEST_SERVICES_KAFKA_SASL_USERNAME:-$KAFKA_SASL_USER}"
  echo "export TEST_SERVICES_KAFKA_SASL_PASSWORD=\${TEST_SERVICES_KAFKA_SASL_PASSWORD:-$KAFKA_SASL_PASSWORD}"
  # Its TLS listener and the CA that signed its certificate (the same tests).
  echo "export TEST_SERVICES_KAFKA_SSL_SERVERS=\${TEST_SERVICES_KAFKA_SSL_SERVERS:-127.0.0.1:$KAFKA_SSL_PORT}"
  echo "export TEST_SERVICES_KAFKA_SSL_CA=\${TEST_SERVICES_KAFKA_SSL_CA:-$KAFKA_TLS/ca.pem}"
  # The listener that asks for a client certificate, and one that the CA signed.
  echo "export TEST_SERVICES_KAFKA_MTLS_SERVERS=\${TEST_SERVICES_KAFKA_MTLS_SERVERS:-127.0.0.1:$KAFKA_MTLS_PORT}"
  echo "export TEST_SERVICES_KAFKA_MTLS_CERT=\${TEST_SERVICES_KAFKA_MTLS_CERT:-$KAFKA_TLS/client.pem}"
  echo "export TEST_SERVICES_KAFKA_MTLS_KEY=\${TEST_SERVICES_KAFKA_MTLS_KEY:-$KAFKA_TLS/client.key}"
  # Kafka Connect's REST API (tests/connect start the worker on demand: connect-up).
  connect_env
}

ensure_tools() {
  command -v kcat >/dev/null 2>&1 || apt_install kcat
  # Headless Chromium for the dashboard's browser test (tests/dashboard/test_browser.py).
  [ -x /usr/bin/chromium ] || apt_install chromium
}

case "${1:-}" in
  up)
    mkdir -p "$STATE"
    ensure_tools
    pg_up
    kafka_start
    ;;
  down)
    connect_stop
    kafka_stop TERM
    pg_down
    ;;
  status)
    pg_status
    kafka_status
    connect_status
    ;;
  logs)
    tail -n "${2:-50}" "$KAFKA_LOG" 2>/dev/null || true
    ;;
  env)
    print_env
    ;;
  kafka-start) kafka_start ;;
  kafka-stop) kafka_stop TERM ;;
  kafka-kill) kafka_stop KILL ;;
  pg-crash) pg_crash ;;
  pg-start) pg_start ;;
  connect-up) connect_start ;;
  connect-down) connect_stop ;;
  connect-env) connect_env ;;
  connect-logs) tail -n "${2:-50}" "$CONNECT_LOG" 2>/dev/null || true ;;
  *)
    echo "usage: $0 up|down|status|logs|env|kafka-start|kafka-stop|kafka-kill|pg-crash|pg-start|connect-up|connect-down|connect-env|connect-logs" >&2
    exit 2
    ;;
esac
