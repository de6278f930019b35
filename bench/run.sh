#!/usr/bin/env bash
# Runs the benchmarks and writes their figures into BENCHMARKS.md.
#
#   bench/run.sh                 every section, in order
#   bench/run.sh raft_core store only these sections (the machine section always runs)
#   BENCH_OUT=/tmp/b.md bench/run.sh   write to another file (created from BENCHMARKS.md)
#
# Each section is one function `section_<name>` that prints Markdown on stdout. Its
# output replaces what lies between the markers
#   <!-- bench:<name>:begin --> ... <!-- bench:<name>:end -->
# in the output file (the markers are appended at the end when missing), so the prose
# around the markers is hand-written and kept. To add a section: write
# `section_<name>`, add `<name>` to SECTIONS, and place its markers where the figures
# belong in BENCHMARKS.md.
#
# The machine is shared: every section notes the load average when it starts and ends,
# and the comparisons inside a section are measured in the same run (interleaved where
# the bench supports it) so background load hits both sides.
set -euo pipefail
cd "$(dirname "$0")/.."

SECTIONS=(machine raft_core store e2e batch scaling memory)
OUT=${BENCH_OUT:-BENCHMARKS.md}
LOG_DIR=${BENCH_LOG_DIR:-target/bench-logs}
mkdir -p "$LOG_DIR"
if [ "$OUT" != BENCHMARKS.md ] && [ ! -e "$OUT" ]; then
  cp BENCHMARKS.md "$OUT"
fi

stamp() { echo "== [$(date +%H:%M:%S)] $*" >&2; }

# The 1, 5 and 15 minute load averages.
load_avg() { cut -d' ' -f1-3 /proc/loadavg; }

# A line for the top of each section: what ran, on which commit, under which load.
# Usage: section_header "<command>" "<load at start>"
section_header() {
  local dirty=""
  # The output file itself is being rewritten: it does not count as a change.
  git diff --quiet HEAD -- . ":(exclude)$OUT" 2>/dev/null || dirty=" (with uncommitted changes)"
  echo "Command: \`$1\` on \`$(git rev-parse --short HEAD 2>/dev/null || echo unknown)\`$dirty,"
  echo "$(date -u +%Y-%m-%d) UTC. Load average (1/5/15 min) at the start: $2; at the end: $(load_avg)."
  echo
}

# Markdown lines of a bench's stdout: the tables and the caption line before each.
markdown_only() { awk '/^\|/ || /^[A-Z][^|]*:/ || /^$/'; }

# ----- sections --------------------------------------------------------------------

section_machine() {
  local model mem
  model=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal/{printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
  echo "- CPUs: $(nproc) ($model)"
  echo "- Memory: $mem"
  echo "- Kernel: $(uname -sr)"
  echo "- Rust: $(rustc --version)"
  echo "- Load average (1/5/15 min) when \`bench/run.sh\` started: $START_LOAD"
  echo "  (other builds share the machine; each section notes its own load)"
}

section_raft_core() {
  local cmd="REPLICATION_SUMMARY_ONLY=1 cargo bench -p raft-core --bench replication"
  local load log="$LOG_DIR/raft_core.log"
  load=$(load_avg)
  stamp "raft-core vs raft-rs: $cmd"
  REPLICATION_SUMMARY_ONLY=1 cargo bench -p raft-core --bench replication >"$log"
  section_header "$cmd" "$load"
  markdown_only <"$log"
}

section_store() {
  local cmd="cargo bench -p raft-store --bench store_ops"
  local load log="$LOG_DIR/store.log"
  load=$(load_avg)
  stamp "store level: $cmd"
  cargo bench -p raft-store --bench store_ops >"$log"
  section_header "$cmd" "$load"
  markdown_only <"$log"
}

# The release binaries the cluster sections run: the server (with the heed engine), the
# CLI and the fsync probe. Built once per run.
RELEASE_BUILT=""
build_release() {
  [ -n "$RELEASE_BUILT" ] && return
  stamp "release build of raftkv-server, raftkv and fsync_floor"
  cargo build --release -p raftkv-examples --features heed --bins --example fsync_floor >&2
  RELEASE_BUILT=1
}

# A section run by bench/cluster_bench.py on 3-node raftkv-server clusters on loopback.
cluster_section() {
  local name=$1 cmd="python3 bench/cluster_bench.py $1"
  local load log="$LOG_DIR/$name.log"
  build_release
  load=$(load_avg)
  stamp "cluster bench: $cmd"
  python3 bench/cluster_bench.py "$name" >"$log"
  section_header "$cmd" "$load"
  cat "$log"
}

section_e2e() { cluster_section e2e; }
section_scaling() { cluster_section scaling; }
section_memory() { cluster_section memory; }
section_batch() { cluster_section batch; }

# ----- writing ---------------------------------------------------------------------

# Replaces the text between section NAME's markers in $OUT with the file CONTENT.
splice() {
  local name=$1 content=$2
  local begin="<!-- bench:$name:begin -->" end="<!-- bench:$name:end -->"
  if ! grep -qxF "$begin" "$OUT"; then
    printf '\n%s\n%s\n' "$begin" "$end" >>"$OUT"
  fi
  awk -v b="$begin" -v e="$end" -v f="$content" '
    $0 == b { print; while ((getline line < f) > 0) print line; close(f); skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }
  ' "$OUT" >"$OUT.tmp"
  mv "$OUT.tmp" "$OUT"
}

run_section() {
  local name=$1 tmp
  if ! declare -F "section_$name" >/dev/null; then
    echo "unknown section '$name' (known: ${SECTIONS[*]})" >&2
    exit 2
  fi
  tmp=$(mktemp)
  # Runs of blank lines squeezed to one.
  "section_$name" | cat -s >"$tmp"
  splice "$name" "$tmp"
  rm -f "$tmp"
  stamp "wrote section '$name' into $OUT"
}

START_LOAD=$(load_avg)
wanted=("$@")
[ ${#wanted[@]} -eq 0 ] && wanted=("${SECTIONS[@]}")
run_section machine
for name in "${wanted[@]}"; do
  [ "$name" = machine ] || run_section "$name"
done
