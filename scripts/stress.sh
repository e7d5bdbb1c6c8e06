#!/usr/bin/env bash
# Runs every test binary of `cargo test --all-features` ROUNDS times with 16 test
# threads while two busy loops keep both cores loaded: a race that hides at two
# threads on an idle machine shows here. Prints each failure and a total.
#
#   scripts/stress.sh [ROUNDS]        (default 100)
set -uo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-100}
bins=$(cargo test --all-features --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])')
[ -n "$bins" ] || { echo "no test binaries found" >&2; exit 2; }
yes > /dev/null & busy1=$!
yes > /dev/null & busy2=$!
trap 'kill $busy1 $busy2 2>/dev/null' EXIT
failures=0
log=$(mktemp)
kept=$(mktemp -d)
for round in $(seq 1 "$rounds"); do
    for bin in $bins; do
        if ! "$bin" --test-threads=16 > "$log" 2>&1; then
            failures=$((failures + 1))
            echo "round $round: $(basename "$bin") failed:"
            grep -E "^test .* FAILED|panicked at" "$log" | head -5
            cp "$log" "$kept/round-$round-$(basename "$bin").log"
        fi
    done
    [ $((round % 10)) -eq 0 ] && echo "round $round done, $failures failures so far"
done
[ "$failures" -eq 0 ] || echo "full output of each failed run: $kept"
echo "$rounds rounds of $(echo "$bins" | wc -w) test binaries, --test-threads=16, both cores busy: $failures failures"
[ "$failures" -eq 0 ]
