#!/usr/bin/env bash
# Fuzz the HTTP API from its own /openapi.json with schemathesis against a real `hitline serve` (embedded
# mode, a scratch data dir): no answer may be a 5xx, every answer must match the documented schema.
# Bounded: a few examples per operation (~1-2 min on 2 cores). Usage: .ci/schemathesis.sh [max-examples]
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES="${1:-15}"
PORT="${HITLINE_FUZZ_PORT:-18765}"
DIR="$(mktemp -d)"
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DIR"' EXIT
(
  for k in $(env | grep -o '^HITLINE_[A-Z_]*' | grep -v '^HITLINE_TEST_'); do unset "$k"; done
  export HITLINE_DATA_DIR="$DIR/data" HITLINE_PROVIDER=local HITLINE_QUALITY_GATE=0
  python -c "from pathlib import Path; from hitline.demo.sampledata import generate_demo; generate_demo(Path('$DIR'))"
  hitline token create fuzz | grep -o 'hl_[A-Za-z0-9_-]*' | head -1 > "$DIR/token"
  exec hitline serve --port "$PORT" > "$DIR/serve.log" 2>&1
) &
SERVER=$!
for _ in $(seq 1 90); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 1
done
TOKEN="$(cat "$DIR/token")"
status=0
schemathesis run "http://127.0.0.1:$PORT/openapi.json" -H "Authorization: Bearer $TOKEN" \
  --checks not_a_server_error,response_schema_conformance --max-examples "$EXAMPLES" \
  --phases examples,coverage,fuzzing --generation-deterministic --workers 1 --request-timeout 30 \
  --seed 21 || status=$?
if [ "$status" -ne 0 ]; then
  echo "== hitline serve log"; tail -50 "$DIR/serve.log"
fi
exit "$status"
