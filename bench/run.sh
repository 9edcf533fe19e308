#!/usr/bin/env bash
# latchkey's benchmark (README, "The benchmark"): builds the server, the ceiling and the load
# generator in release mode, pins the servers to one CPU and the load
# generator to another (with the slow clients' process, which inherits its
# pinning), and writes the results table to bench/results.md. `protected` is
# measured once per access-token algorithm (HS256, EdDSA, ES256), latchkey
# against a ceiling checking the same one; the other scenarios run on HS256.
# Beside them, one check of each algorithm alone, timed in the load generator.
#
#   bash bench/run.sh                 # everything, about five and a half minutes
#   bash bench/run.sh --no-postgres   # without a PostgreSQL server
#   bash bench/run.sh --algorithms HS256,EdDSA   # `protected` with these only (HS256 is needed)
#   bash bench/run.sh --only protected --algorithms EdDSA,ES256
#                                     # `protected` and the checks only, printed
#   bash bench/run.sh --only login-flood --duration 5   # one scenario, printed only
#   bash bench/run.sh --only metrics  # protected with metrics on and off, printed
#   bash bench/run.sh --only refresh  # refresh on SQLite and PostgreSQL against the ceiling, printed
#   bash bench/run.sh --only tls      # protected and refresh over TLS and plain, printed
#   bash bench/run.sh --only scale    # refresh with 1,000,000 stored sessions against 10,000, printed
#   bash bench/run.sh --only cost     # CPU and heap allocations per answer (examples/counted.rs), printed
#   bash bench/run.sh --slow-clients-only --rounds 2 --duration 4
#                                     # only `slow clients` (1,000 slowloris
#                                     # connections), printed, not written
#   bash bench/run.sh --help          # durations, connections, cost, CPUs
#
# BENCH_SERVER_CPU / BENCH_CLIENT_CPU choose the CPUs (default 0 and 1).
set -euo pipefail
cd "$(dirname "$0")/.."

command -v taskset >/dev/null || { echo "taskset (util-linux) is required" >&2; exit 1; }
cargo build --release --locked --bin latchkey --example ceiling --example counted --example bench
target="${CARGO_TARGET_DIR:-target}"

exec taskset --cpu-list "${BENCH_CLIENT_CPU:-1}" "$target/release/examples/bench" \
  --server-cpu "${BENCH_SERVER_CPU:-0}" --out bench/results.md "$@"
