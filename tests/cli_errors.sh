#!/usr/bin/env bash
# The error catalogue of docs/reliability.md: each broken checkpoint or bad output location makes
# rotq exit with status 1 (never a crash: no status >= 128) and a message naming the file and the
# tensor or field at fault. rotate additionally leaves no output directory (nor a partial one)
# and its input unchanged (content and mtime of every file). Broken checkpoints are copies of the
# bundled model edited by tests/support/checkpoint_surgery.py, under a scratch directory.
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_errors
SURGERY=$ROOT/tests/support/checkpoint_surgery.py

surgery() { python3 "$SURGERY" "$@" || fail "checkpoint_surgery.py $*"; }

# A fresh copy of the bundled model at $SCRATCH/NAME; prints its path.
copy_model() {
  rm -rf "${SCRATCH:?}/$1"
  cp -r "$MODEL" "$SCRATCH/$1"
  echo "$SCRATCH/$1"
}

# Type, size, mode, mtime and content hash of everything under a directory.
snapshot() {
  [ -d "$1" ] || return 0
  (cd "$1" && find . -printf '%p %y %s %m %T@\n' | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum)
}

# expect_error PATTERN -- command...: exit status 1 and a message matching PATTERN.
expect_error() { expect 1 "$@"; }

# Fails if anything named after the output OUT (OUT itself, .OUT.rotq-partial-*) is in $SCRATCH.
expect_no_output() {
  local left
  left=$(cd "$SCRATCH" && ls -A | grep -E "^(\.)?$1(\.rotq-partial-[0-9]+)?\$")
  [ -z "$left" ] || fail "output '$1': left behind: $left"
}

# rotate_fails MODEL PATTERN [options...]: rotq rotate into $SCRATCH/out fails with PATTERN,
# leaves no output and does not change MODEL.
rotate_fails() {
  local model=$1 pattern=$2
  shift 2
  local before
  before=$(snapshot "$model")
  expect_error "^rotq rotate: .*$pattern" -- "$ROTQ" rotate --model "$model" --output "$SCRATCH/out" --quiet "$@"
  expect_no_output out
  [ "$(snapshot "$model")" = "$before" ] || fail "rotate changed its input $model"
  rm -rf "${SCRATCH:?}/out"
}

# checkpoint_fails MODEL PATTERN: info (headers only), generate (loads the model) and rotate
# all reject MODEL with a message matching PATTERN.
checkpoint_fails() {
  expect_error "^rotq info: .*$2" -- "$ROTQ" info --model "$1"
  model_fails "$1" "$2"
}

# model_fails MODEL PATTERN: generate and rotate reject MODEL (info may accept it: it reads
# only config.json and the headers).
model_fails() {
  expect_error "^rotq generate: .*$2" -- "$ROTQ" generate --model "$1" --max-new 1
  rotate_fails "$1" "$2"
}

# --- the checkpoint directory ---
checkpoint_fails "$SCRATCH/no-such-model" "no-such-model/config.json: cannot open"
m=$(copy_model no-config) && rm "$m/config.json"
checkpoint_fails "$m" "no-config/config.json: cannot open"
m=$(copy_model no-weights) && rm "$m/model.safetensors"
checkpoint_fails "$m" "no-weights: no model.safetensors"

# --- one safetensors file ---
m=$(copy_model truncated) && truncate -s 600000 "$m/model.safetensors"
checkpoint_fails "$m" "truncated/model.safetensors: tensor '[^']+': data_offsets \[[0-9]+, [0-9]+\] lie outside the data section"
m=$(copy_model header-length) && surgery header "$m/model.safetensors" length 2000000
checkpoint_fails "$m" "header-length/model.safetensors: header length 2000000 exceeds"
m=$(copy_model header-text) && surgery header "$m/model.safetensors" text '{"model.norm.weight": {"dtype": "F32",, }}'
checkpoint_fails "$m" "header-text/model.safetensors: header is not valid JSON"
m=$(copy_model duplicate) &&
  surgery header "$m/model.safetensors" rename model.layers.1.self_attn.k_proj.weight model.layers.1.self_attn.q_proj.weight
checkpoint_fails "$m" "duplicate/model.safetensors: tensor 'model.layers.1.self_attn.q_proj.weight' appears twice"
m=$(copy_model dtype) && surgery header "$m/model.safetensors" set model.norm.weight dtype '"I7"'
checkpoint_fails "$m" "dtype/model.safetensors: tensor 'model.norm.weight': unsupported dtype 'I7'"
m=$(copy_model span) && surgery header "$m/model.safetensors" set model.norm.weight shape '[65]'
checkpoint_fails "$m" "span/model.safetensors: tensor 'model.norm.weight': shape \[65\] × F32 is 260 bytes but data_offsets span 256"
m=$(copy_model overlap) && surgery header "$m/model.safetensors" set model.norm.weight data_offsets '[1039868, 1040124]'
checkpoint_fails "$m" "overlap/model.safetensors: tensors '[^']+' \[[0-9]+, [0-9]+\] and '[^']+' \[[0-9]+, [0-9]+\] overlap"

# --- sharded checkpoints: the index against the shards ---
m=$(copy_model index-shard) && surgery shard "$m" &&
  sed -i 's/model-00002-of-00002/model-00003-of-00003/' "$m/model.safetensors.index.json"
checkpoint_fails "$m" "index-shard/model.safetensors.index.json: names shard model-00003-of-00003.safetensors, which is not a file"
m=$(copy_model index-tensor) && surgery shard "$m" &&
  sed -i 's/"weight_map": {/"weight_map": {\n    "model.layers.9.mlp.up_proj.weight": "model-00001-of-00002.safetensors",/' \
    "$m/model.safetensors.index.json"
checkpoint_fails "$m" "index-tensor/model.safetensors.index.json: weight_map puts tensor 'model.layers.9.mlp.up_proj.weight' in model-00001-of-00002.safetensors, which has no such tensor"

# --- the checkpoint against config.json and the architecture ---
m=$(copy_model hidden-size) && sed -i 's/"hidden_size": 64/"hidden_size": 128/' "$m/config.json"
model_fails "$m" "tensor 'model\.embed_tokens\.weight'"
m=$(copy_model hidden-size-divisor) && sed -i 's/"hidden_size": 64/"hidden_size": 32/' "$m/config.json"
model_fails "$m" "hidden-size-divisor: tensor 'model\.embed_tokens\.weight': shape \[512, 64\] does not match config.json \(expected \[512, 32\]\)"
rotate_fails "$m" "tensor 'model\.embed_tokens\.weight'.*config.json" --no-verify
m=$(copy_model missing-tensor) && surgery header "$m/model.safetensors" delete model.layers.2.self_attn.k_proj.weight
model_fails "$m" "'model.layers.2.self_attn.k_proj.weight'"
m=$(copy_model architecture) && sed -i 's/"LlamaForCausalLM"/"FooForCausalLM"/' "$m/config.json"
model_fails "$m" "architecture/config.json: .*'FooForCausalLM'"
for value in nan inf; do
  m=$(copy_model "$value") && surgery poke "$m/model.safetensors" model.layers.1.mlp.down_proj.weight 5 "$value"
  rotate_fails "$m" "$value/model.safetensors: tensor 'model.layers.1.mlp.down_proj.weight'.*(NaN|Inf|inf|nan|finite)"
done

# --- the output location ---
mkdir "$SCRATCH/out" && touch "$SCRATCH/out/keep"
expect_error "^rotq rotate: output '$SCRATCH/out' already exists \(use --force to replace it\)" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out" --quiet
[ -e "$SCRATCH/out/keep" ] || fail "a refused rotate touched the existing output"
expect 0 "" -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out" --force --quiet --no-verify
[ -f "$SCRATCH/out/config.json" ] && [ ! -e "$SCRATCH/out/keep" ] || fail "--force did not replace the output"
rm -rf "${SCRATCH:?}/out"

m=$(copy_model inside)
rotate_fails "$m" "output '$m/rotated' is inside the input directory" --output "$m/rotated"
rotate_fails "$m" "output '$SCRATCH' contains the input directory" --output "$SCRATCH" --force

# Read-only parent directory. root ignores permissions, so as root the run drops to nobody.
mkdir "$SCRATCH/read-only" && chmod 555 "$SCRATCH/read-only"
if [ "$(id -u)" -ne 0 ]; then
  as_user=()
elif command -v setpriv >/dev/null; then
  chmod 711 "$SCRATCH"
  as_user=(setpriv --reuid=65534 --regid=65534 --clear-groups --)
else
  as_user=(skip)
  echo "SKIP: read-only output location (running as root without setpriv)" >&2
fi
if [ "${as_user[0]:-}" != skip ] &&
  ! "${as_user[@]}" test -x "$ROTQ" -a -r "$MODEL/model.safetensors" -a -d "$SCRATCH/read-only"; then
  as_user=(skip)
  echo "SKIP: read-only output location (the unprivileged user cannot reach $ROTQ, $MODEL or $SCRATCH)" >&2
fi
if [ "${as_user[0]:-}" != skip ]; then
  expect_error "^rotq rotate: output '$SCRATCH/read-only/out': cannot write in '[^']*read-only': Permission denied" -- \
    "${as_user[@]}" "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/read-only/out" --quiet
  [ -z "$(ls -A "$SCRATCH/read-only")" ] || fail "read-only: left $(ls -A "$SCRATCH/read-only")"
fi

# No space left: RLIMIT_FSIZE (64 KiB) makes writes fail with EFBIG once SIGXFSZ is ignored.
before=$(snapshot "$MODEL")
expect_error "^rotq rotate: .*/\.out\.rotq-partial-[0-9]+/model\.safetensors: .*File too large" -- \
  bash -c 'trap "" XFSZ; ulimit -f 64; exec "$0" "$@"' "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out" --quiet
expect_no_output out
[ "$(snapshot "$MODEL")" = "$before" ] || fail "rotate changed the bundled model"

# --- interrupted runs, on a larger synthetic model (so the run is still going when signalled) ---
big=$SCRATCH/big
surgery synth "$big" 24 512 1024
big_before=$(snapshot "$big")

# Starts rotq rotate of the big model into $SCRATCH/$1 in the background, waits until it writes
# its shard into the partial directory (its signal handlers are installed by then), sets PID.
start_rotate() {
  "$ROTQ" rotate --model "$big" --output "$SCRATCH/$1" --quiet --no-verify >"$SCRATCH/$1.log" 2>&1 &
  PID=$!
  local partial="$SCRATCH/.$1.rotq-partial-$PID"
  for _ in $(seq 1000); do
    [ -e "$partial/model.safetensors" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.01
  done
  fail "rotate into $1 never wrote $partial/model.safetensors: $(cat "$SCRATCH/$1.log")"
}

for signal in INT TERM; do
  start_rotate "out-$signal"
  kill -s "$signal" "$PID"
  wait "$PID"
  status=$?
  [ "$status" -eq 1 ] || fail "SIG$signal: rotate exited $status, expected 1: $(cat "$SCRATCH/out-$signal.log")"
  grep -Eq "^rotq rotate: interrupted by signal [0-9]+; the partial output was removed" "$SCRATCH/out-$signal.log" ||
    fail "SIG$signal: message: $(cat "$SCRATCH/out-$signal.log")"
  expect_no_output "out-$signal"
done

start_rotate out-kill
kill -s KILL "$PID"
{ wait "$PID"; } 2>/dev/null
left=$(cd "$SCRATCH" && ls -A | grep -E '^\.?out-kill($|\.rotq)')
[ "$left" = ".out-kill.rotq-partial-$PID" ] || fail "SIGKILL: expected only .out-kill.rotq-partial-$PID, found: $left"
expect 0 "^rotq: removing the partial output of an interrupted run: .*/\.out-kill\.rotq-partial-$PID\$" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out-kill" --quiet --no-verify
[ ! -e "$SCRATCH/.out-kill.rotq-partial-$PID" ] || fail "the next run did not remove .out-kill.rotq-partial-$PID"
[ -f "$SCRATCH/out-kill/config.json" ] || fail "the run after SIGKILL did not write its output"
[ "$(snapshot "$big")" = "$big_before" ] || fail "interrupted runs changed their input"

# --- usage errors: status 2 ---
expect 2 "^rotq rotate: --model and --output are required" -- "$ROTQ" rotate --model "$MODEL"
expect 2 "^rotq info: unknown option '--modle'" -- "$ROTQ" info --modle "$MODEL"

finish
