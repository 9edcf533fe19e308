#!/usr/bin/env bash
# Schema-driven HTTP fuzzing: schemathesis reads latchkey's own GET /openapi.json
# and sends generated requests (valid and invalid) to a running latchkey. Any
# 5xx, or any response that contradicts the description (status, content type,
# body schema, headers), fails the run. It runs once with the fixed seed (the
# same inputs every time) and once with each of ST_RANDOM_SEEDS random seeds
# (3 unless set; new inputs every run), each against a fresh latchkey and
# database; a failure names its seed, to replay it with ST_SEED. Called by
# .ci/run; runs alone too:
#
#   bash .ci/schemathesis.sh
#   ST_MAX_EXAMPLES=200 ST_SEED=7 ST_RANDOM_SEEDS=0 bash .ci/schemathesis.sh    # one seed, longer
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")

SCHEMATHESIS_VERSION=4.32.5
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-50}
SEED=${ST_SEED:-20261122}
RANDOM_SEEDS=${ST_RANDOM_SEEDS:-3}
VENV=$TARGET/schemathesis-venv
ST="$VENV/bin/schemathesis"

if [ "$("$ST" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
  if ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "== installing python3-venv"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
  fi
  echo "== installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

echo "== building latchkey"
cargo build --locked --quiet --bin latchkey
BIN=$TARGET/debug/latchkey

WORK=$(mktemp -d)
SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Fixed test secrets, cheap hashing, open sign-up, and limits far above what a
# run sends, so that 429s do not hide everything else. Access tokens outlive
# the run.
export APP_ENV=development
export JWT_SECRET=schemathesis-access-secret-0123456789abcdef
export JWT_REFRESH_SECRET=schemathesis-refresh-secret-0123456789abcdef
export JWT_EXPIRATION=3600
export BCRYPT_COST=4
export REGISTRATION_OPEN=true
export THROTTLE_LOGIN_PAIR=1000000
export THROTTLE_LOGIN_ADDRESS=1000000
export THROTTLE_LOGIN_ACCOUNT=1000000
export THROTTLE_REGISTER_ADDRESS=1000000
export MAX_REFRESHES_PER_MINUTE=1000000
export SHUTDOWN_TIMEOUT=2
# DELETE /me runs in the last run (see `run_seed` below), long after the login
# checked the password: it is refused (401 insufficient_user_authentication)
# rather than deleting the fuzzer's account.
export REAUTH_MAX_AGE=1
export RUST_LOG=latchkey=warn

PASSWORD=schemathesis-password-7c1e
status=0
total_generated=0
total_found=0
total_failures=0

# One run of schemathesis over the operations its arguments pick, from the
# scratch directory (it keeps a cache in the current one); adds its counts.
fuzz() {
  local name=$1 log="$WORK/schemathesis-$1.log" run_status=0
  shift
  (cd "$WORK" && "$ST" --config-file "$ROOT/.ci/schemathesis.toml" run "$BASE/openapi.json" \
    --checks all \
    --header "Authorization: Bearer $TOKEN" \
    --max-examples "$MAX_EXAMPLES" \
    --seed "$RUN_SEED" \
    --generation-database none \
    --request-timeout 10 \
    --no-color "$@") >"$log" 2>&1 || run_status=$?
  cat "$log"
  # "N generated, N passed" or "N generated, F found ...".
  local summary generated found failures
  summary=$(grep -E '^ +[0-9]+ generated' "$log" | tail -n 1 || true)
  generated=$(sed -nE 's/^ *([0-9]+) generated.*/\1/p' <<<"$summary")
  found=$(sed -nE 's/.* ([0-9]+) found .*/\1/p' <<<"$summary")
  failures=$(sed -nE 's/.* found ([0-9]+) unique failures?.*/\1/p' <<<"$summary")
  failures=${failures:-0}
  if [ "$run_status" -ne 0 ] && [ "$failures" -eq 0 ]; then
    failures=1 # an error without a counted failure: the run itself broke
  fi
  total_generated=$((total_generated + ${generated:-0}))
  total_found=$((total_found + ${found:-0}))
  total_failures=$((total_failures + failures))
  if [ "$run_status" -ne 0 ]; then
    status=$run_status
    echo "== seed $RUN_SEED failed; replay it: ST_SEED=$RUN_SEED ST_RANDOM_SEEDS=0 bash .ci/schemathesis.sh"
  fi
}

# Every operation with the seed `$1`, against a fresh latchkey on a fresh
# database, signed in as a seeded user.
run_seed() {
  RUN_SEED=$1
  local dir="$WORK/seed-$RUN_SEED" before=$status
  mkdir -p "$dir"
  # A free port: bind port 0 and let the kernel choose.
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  BASE=http://127.0.0.1:$PORT
  export DATABASE_URL="sqlite://$dir/latchkey.db"
  export BIND=127.0.0.1:$PORT
  # Mail from sign-ups with an address goes to files, in the scratch folder.
  export MAIL_OUTBOX_DIR=$dir/outbox
  echo "$PASSWORD" | "$BIN" user add fuzzer >/dev/null

  "$BIN" >"$dir/server.log" 2>&1 &
  SERVER_PID=$!

  # Wait for /healthz, then sign in as the seeded user for the Bearer endpoints.
  TOKEN=$(BASE=$BASE PASSWORD=$PASSWORD python3 - <<'EOF'
import json, os, sys, time, urllib.request

base = os.environ["BASE"]
for _ in range(100):
    try:
        urllib.request.urlopen(base + "/healthz", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("latchkey did not answer on " + base)
body = json.dumps({"username": "fuzzer", "password": os.environ["PASSWORD"]}).encode()
request = urllib.request.Request(base + "/login", body, {"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(request, timeout=5))["access_token"])
EOF
  ) || {
    echo "latchkey did not start or refused the seeded user:" >&2
    cat "$dir/server.log" >&2
    exit 1
  }

  echo "== schemathesis $SCHEMATHESIS_VERSION against $BASE/openapi.json (seed $RUN_SEED, $MAX_EXAMPLES examples per operation)"
  # The operations that end the fuzzer's own session (log out everywhere,
  # delete the account) go last, in a run of their own: before them, every
  # account endpoint has a live session to work with.
  local endings=(revoke_all delete_me)
  fuzz "main-$RUN_SEED" "${endings[@]/#/--exclude-operation-id=}"
  # Without the stateful phase: the links it follows lead elsewhere.
  fuzz "endings-$RUN_SEED" "${endings[@]/#/--include-operation-id=}" --phases=examples,coverage,fuzzing
  stop_server

  if grep -q "panicked" "$dir/server.log"; then
    echo "latchkey panicked during the run with seed $RUN_SEED:" >&2
    grep -A5 "panicked" "$dir/server.log" >&2
    status=1
    total_failures=$((total_failures + 1))
  fi
  if [ "$status" -ne "$before" ]; then
    echo "== latchkey's log with seed $RUN_SEED (last 40 lines)"
    tail -n 40 "$dir/server.log"
  fi
}

SEEDS=("$SEED")
for _ in $(seq 1 "$RANDOM_SEEDS"); do
  SEEDS+=("$(python3 -c 'import secrets; print(secrets.randbelow(2**31))')")
done
echo "== seeds: ${SEEDS[*]} (the first fixed, the others random)"
for seed in "${SEEDS[@]}"; do
  run_seed "$seed"
done

# One plain line to end on.
echo "schemathesis: $((total_generated - total_found)) passed, $total_failures failed"
exit "$status"
