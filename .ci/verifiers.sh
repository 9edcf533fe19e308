#!/usr/bin/env bash
# Access tokens checked by a verifier latchkey did not write: the README's
# PyJWT recipe ("Verifying tokens in other services"), taken from the README
# itself so the two cannot drift, run against a latchkey signing with EdDSA and
# then ES256. PyJWT verifies with the `cryptography` package, an implementation
# independent of the Rust crates latchkey signs with. Called by .ci/run; runs
# alone too: bash .ci/verifiers.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-target}")

PYJWT_VERSION=2.15.1
CRYPTOGRAPHY_VERSION=50.0.2
VENV=$TARGET/verifiers-venv
PY="$VENV/bin/python"

if ! "$PY" -c "import jwt, sys; sys.exit(jwt.__version__ != '$PYJWT_VERSION')" 2>/dev/null; then
  if ! python3 -c 'import ensurepip' 2>/dev/null; then
    echo "== installing python3-venv"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
  fi
  echo "== installing PyJWT $PYJWT_VERSION into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "pyjwt==$PYJWT_VERSION" "cryptography==$CRYPTOGRAPHY_VERSION"
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
trap 'stop_server; rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# The recipe, as the README gives it.
awk '/^#### Python: PyJWT/ {section = 1} section && /^```python/ {code = 1; next}
     code && /^```/ {exit} code {print}' README.md >"$WORK/recipe.py"
grep -q "def verify_access_token" "$WORK/recipe.py" || {
  echo "the README's PyJWT recipe was not found" >&2
  exit 1
}

for algorithm in EdDSA ES256; do
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export APP_ENV=development
  export DATABASE_URL="sqlite://$WORK/$algorithm.db"
  export BIND=127.0.0.1:$PORT
  export ACCESS_TOKEN_ALGORITHM=$algorithm
  export JWT_REFRESH_SECRET=verifiers-refresh-secret-0123456789abcdef
  export BCRYPT_COST=4
  export RUST_LOG=latchkey=warn
  echo "verifier-password-3d9a" | "$BIN" user add ann >/dev/null
  "$BIN" >"$WORK/server-$algorithm.log" 2>&1 &
  SERVER_PID=$!

  echo "== PyJWT $PYJWT_VERSION verifies latchkey's $algorithm access tokens"
  LATCHKEY_ORIGIN=http://127.0.0.1:$PORT JWT_ISSUER=latchkey JWT_ALGORITHM=$algorithm \
    RECIPE="$WORK/recipe.py" "$PY" - <<'EOF' || { cat "$WORK/server-$algorithm.log" >&2; exit 1; }
import base64, json, os, sys, time, urllib.request

origin = os.environ["LATCHKEY_ORIGIN"]
for _ in range(100):
    try:
        urllib.request.urlopen(origin + "/healthz", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("latchkey did not answer on " + origin)

recipe = {}
exec(open(os.environ["RECIPE"]).read(), recipe)
verify = recipe["verify_access_token"]
jwt = recipe["jwt"]

body = json.dumps({"username": "ann", "password": "verifier-password-3d9a"}).encode()
request = urllib.request.Request(origin + "/login", body, {"Content-Type": "application/json"})
token = json.load(urllib.request.urlopen(request, timeout=5))["access_token"]

claims = verify(token)
assert claims["username"] == "ann", claims
print("accepted:", {k: claims[k] for k in ("sub", "username", "role")})

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

header, payload, signature = token.split(".")
raised = json.loads(base64.urlsafe_b64decode(payload + "=="))
raised["role"] = "admin"
unsecured = b64(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
forgeries = {
    "changed claims": f"{header}.{b64(json.dumps(raised).encode())}.{signature}",
    "no signature": f"{header}.{payload}.",
    "alg none": f"{unsecured}.{payload}.",
}
for name, forgery in forgeries.items():
    try:
        verify(forgery)
    except jwt.PyJWTError:
        print("refused:", name)
    else:
        sys.exit("accepted a forgery: " + name)
EOF
  stop_server
done
echo "verifiers: PyJWT accepted latchkey's EdDSA and ES256 tokens and refused the forgeries"
