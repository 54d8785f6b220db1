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
# --force replaces only a checkpoint or an earlier rotq output, and says so
cp -r "$MODEL" "$SCRATCH/out-ckpt"
expect 0 "^rotq rotate: replaced $SCRATCH/out-ckpt, which was a checkpoint" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out-ckpt" --force --quiet --no-verify
expect 0 "^rotq rotate: replaced $SCRATCH/out-ckpt, which was an earlier rotq output" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out-ckpt" --force --quiet --no-verify
[ -f "$SCRATCH/out-ckpt/rotation.json" ] || fail "--force did not replace the output"
# force_refused NAME KIND: rotate --force into the existing $SCRATCH/NAME is refused as KIND and
# leaves it (and what it points to) as it was.
force_refused() {
  local before
  before=$(ls -la "$SCRATCH/$1" 2>&1; snapshot "$SCRATCH/$1/")
  expect_error "^rotq rotate: output '$SCRATCH/$1' exists and is $2" -- \
    timeout 60 "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/$1" --force --quiet --no-verify
  [ "$(ls -la "$SCRATCH/$1" 2>&1; snapshot "$SCRATCH/$1/")" = "$before" ] || fail "--force changed $1"
  [ -z "$(cd "$SCRATCH" && ls -A | grep -E "^\.$1\.rotq-")" ] || fail "--force into $1 left $(cd "$SCRATCH" && ls -A)"
}
force_refused out "a directory that is neither a checkpoint"
echo data >"$SCRATCH/a-file"
force_refused a-file "a regular file"
mkfifo "$SCRATCH/a-fifo"
force_refused a-fifo "a FIFO"
ln -s "$SCRATCH/out-ckpt" "$SCRATCH/a-link"
force_refused a-link "a symbolic link"
ln -s /dev/null "$SCRATCH/a-dev-link"
force_refused a-dev-link "a symbolic link"
if [ "$(id -u)" -eq 0 ] && mknod "$SCRATCH/a-device" c 1 3 2>/dev/null; then # a copy of /dev/null
  force_refused a-device "a character device"
else
  echo "SKIP: --force onto a device node (mknod needs root)" >&2
fi
[ -e "$SCRATCH/out/keep" ] || fail "a refused --force touched the existing output"
rm -rf "${SCRATCH:?}/out" "$SCRATCH/out-ckpt" "$SCRATCH"/a-*

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
# the lock file (.out-kill.rotq-lock) stays too: unlocked, it is reused and removed by the next run
left=$(cd "$SCRATCH" && ls -A | grep -E '^\.?out-kill($|\.rotq)' | grep -v '^\.out-kill\.rotq-lock$')
[ "$left" = ".out-kill.rotq-partial-$PID" ] || fail "SIGKILL: expected only .out-kill.rotq-partial-$PID, found: $left"
expect 0 "^rotq: removing the partial output of an interrupted run: .*/\.out-kill\.rotq-partial-$PID\$" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out-kill" --quiet --no-verify
[ ! -e "$SCRATCH/.out-kill.rotq-partial-$PID" ] || fail "the next run did not remove .out-kill.rotq-partial-$PID"
[ -f "$SCRATCH/out-kill/config.json" ] || fail "the run after SIGKILL did not write its output"
[ ! -e "$SCRATCH/.out-kill.rotq-lock" ] || fail "the run after SIGKILL left the lock file"
[ "$(snapshot "$big")" = "$big_before" ] || fail "interrupted runs changed their input"

# --- hostile inputs (issue 14) ---
# A tensor name of 256 bytes or more overflowed rotate's name buffers (SIGSEGV): refused by all.
m=$(copy_model long-name) && surgery header "$m/model.safetensors" rename model.layers.0.mlp.up_proj.weight \
  "model.layers.0.mlp.up_proj$(printf 'x%.0s' $(seq 300)).weight"
checkpoint_fails "$m" "long-name/model.safetensors: tensor 'model\.layers\.0\.mlp\.up_projx+\.\.\.': the name is 333 bytes long \(at most 200\)"

# Sizes in config.json are checked against the tensors before anything is allocated from them.
m=$(copy_model layers) && sed -i 's/"num_hidden_layers": [0-9]*/"num_hidden_layers": 100000/' "$m/config.json"
checkpoint_fails "$m" "layers/config.json: field 'num_hidden_layers': 100000 layers, but the checkpoint has only 47 tensors"
# A layer beyond num_hidden_layers (DeepSeek-V3 stores its multi-token-prediction layer so) was
# planned as a decoder layer; now refused, naming the tensor.
m=$(copy_model extra-layer) && sed -i 's/"num_hidden_layers": 5/"num_hidden_layers": 4/' "$m/config.json"
rotate_fails "$m" "tensor 'model\.layers\.4\.[a-z_.]*' belongs to layer 4, but config.json has num_hidden_layers 4: rotq rotates the decoder layers only"
m=$(copy_model head-dim) && sed -i 's/^{/{"head_dim": 4096,/' "$m/config.json"
expect_error "^rotq generate: .*head-dim/config.json: field 'head_dim': 4096 is larger than any dimension of any tensor in the checkpoint \(512\)" -- \
  "$ROTQ" generate --model "$m" --max-new 1
rotate_fails "$m" "rotation_matrices.r2: dim 4096 \(config.json field 'head_dim'\) is larger than any dimension of any tensor \(512\)"

# A FIFO where a file is expected: refused at once (no blocking open), not read forever.
m=$(copy_model fifo-config) && rm "$m/config.json" && mkfifo "$m/config.json"
expect_error "^rotq info: .*fifo-config/config.json: cannot open: not a regular file \(a FIFO\)" -- \
  timeout 20 "$ROTQ" info --model "$m"
expect_error "^rotq generate: .*fifo-config/config.json: cannot open: not a regular file \(a FIFO\)" -- \
  timeout 20 "$ROTQ" generate --model "$m" --max-new 1
m=$(copy_model fifo-shard) && rm "$m/model.safetensors" && mkfifo "$m/model.safetensors"
expect_error "^rotq info: .*fifo-shard/model.safetensors: not a regular file" -- timeout 20 "$ROTQ" info --model "$m"
expect_error "^rotq generate: .*fifo-shard/model.safetensors: not a regular file" -- \
  timeout 20 "$ROTQ" generate --model "$m" --max-new 1
mkfifo "$SCRATCH/tokens.fifo"
expect_error "^rotq eval: .*tokens.fifo: cannot open: not a regular file \(a FIFO\)" -- \
  timeout 20 "$ROTQ" eval --model "$MODEL" --tokens "$SCRATCH/tokens.fifo"
expect_error "^rotq rotate: config '.*config.fifo': .*not a regular file \(a FIFO\)" -- \
  bash -c 'mkfifo "$1" && exec timeout 20 "$0" rotate --model "$2" --output "$3" --config "$1"' \
  "$ROTQ" "$SCRATCH/config.fifo" "$MODEL" "$SCRATCH/out"
expect_no_output out

# YAML: size and nesting bounded before libyaml sees it (its time is quadratic in the depth).
python3 -c "print('rotation_matrices: ' + '[' * 40 + ']' * 40)" >"$SCRATCH/deep.yaml"
rotate_fails "$MODEL" "deep.yaml: line 1: nested 40 levels deep, more than a rotation config may be \(32\)" \
  --config "$SCRATCH/deep.yaml"
python3 -c "print('rotation_matrices: ' + '[' * 100000 + ']' * 100000)" >"$SCRATCH/huge.yaml"
SECONDS=0
rotate_fails "$MODEL" "huge.yaml: 200020 bytes, more than a rotation config may have \(65536\)" --config "$SCRATCH/huge.yaml"
[ "$SECONDS" -lt 10 ] || fail "a 200 KB nested YAML took $SECONDS s"
expect_error "^rotq config: .*huge.yaml: 200020 bytes" -- "$ROTQ" config check "$SCRATCH/huge.yaml"

# Weight files rotq does not rotate are not copied into the output (which would then also carry
# the unrotated weights); rotate names each one it skipped.
m=$(copy_model bin-weights)
printf 'PK\003\004 a torch.save zip' >"$m/pytorch_model.bin"
echo '{"weight_map": {}}' >"$m/pytorch_model.bin.index.json"
printf '\200\002 a pickle' >"$m/weights.pt"
expect 0 "rotq rotate: skipped .*bin-weights/pytorch_model.bin: weights in a format rotq does not rotate" -- \
  "$ROTQ" rotate --model "$m" --output "$SCRATCH/out-bin" --quiet --no-verify
for skipped in pytorch_model.bin pytorch_model.bin.index.json weights.pt; do
  grep -q "skipped .*/$skipped:" <<<"$OUTPUT" || fail "rotate did not say it skipped $skipped: $OUTPUT"
  [ ! -e "$SCRATCH/out-bin/$skipped" ] || fail "rotate copied the unrotated $skipped"
done
[ -f "$SCRATCH/out-bin/tok512.bin" ] || fail "rotate did not copy the tokenizer tok512.bin"
rm -rf "${SCRATCH:?}/out-bin"

# Parent directories a refused or failed rotate created are removed again.
m=$(copy_model nan-parents) && surgery poke "$m/model.safetensors" model.layers.1.mlp.down_proj.weight 5 nan
rotate_fails "$m" "nan-parents/model.safetensors: tensor" --output "$SCRATCH/new-parent/sub/out"
[ ! -e "$SCRATCH/new-parent" ] || fail "a failed rotate left the parents it created: $(find "$SCRATCH/new-parent")"
m=$(copy_model inside-parents)
rotate_fails "$m" "is inside the input directory" --output "$m/sub/dir/rotated"
[ ! -e "$m/sub" ] || fail "a refused rotate created parents inside its input"

# An over-long path: the message keeps its reason (the middle of the path is elided).
long=$SCRATCH/$(printf 'd/%.0s' $(seq 2500))model
expect_error "^rotq info: $SCRATCH/d/d/.* … .*d/d/model/config.json: cannot open: File name too long\$" -- \
  "$ROTQ" info --model "$long"
expect_error "^rotq rotate: output '$SCRATCH/d/.*/out': the path is [0-9]+ bytes long, longer than this system allows" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$long/out"

# <name>.rotq-old-<pid> (the previous output, left by a run killed between the two renames of
# --force) is never removed (docs/reliability.md); a complete output takes precedence.
expect 0 "" -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out-old" --quiet --no-verify
mkdir -p "$SCRATCH/out-old.rotq-old-999999999" && echo previous >"$SCRATCH/out-old.rotq-old-999999999/rotation.json"
expect 0 "" -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out-old" --force --quiet --no-verify
[ -f "$SCRATCH/out-old.rotq-old-999999999/rotation.json" ] || fail "rotate removed out-old.rotq-old-999999999"
rm -rf "${SCRATCH:?}"/out-old*

# Two rotations into the same output: the second fails at once (the output's lock), the first
# completes.
start_rotate out-lock
expect_error "^rotq rotate: output '$SCRATCH/out-lock' is being written by another rotq run \(it holds '.*/\.out-lock\.rotq-lock'\)" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out-lock" --quiet --no-verify
wait "$PID" || fail "the first rotation into out-lock failed: $(cat "$SCRATCH/out-lock.log")"
[ -f "$SCRATCH/out-lock/model.safetensors" ] || fail "the first rotation into out-lock wrote no output"
[ ! -e "$SCRATCH/.out-lock.rotq-lock" ] || fail "rotate left its lock file"
[ "$(snapshot "$big")" = "$big_before" ] || fail "rotate changed its input"
rm -rf "${SCRATCH:?}/out-lock"

# report and stats: scratch space beside the output, removed on SIGINT/SIGTERM, and a SIGKILLed
# run's found and removed by the next run.
mkdir "$SCRATCH/reports"
report_args=(report --model "$MODEL" --tokens "$TOKENS" --segments 8 --calib-n 2 --methods rtn --output "$SCRATCH/reports/r")
# start_scratch COMMAND...: starts it in the background, waits for its scratch directory; sets PID.
start_scratch() {
  "$ROTQ" "$@" >"$SCRATCH/scratch.log" 2>&1 &
  PID=$!
  for _ in $(seq 1000); do
    [ -n "$(ls -A "$SCRATCH/reports" | grep scratch)" ] && return 0
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.01
  done
  fail "$1 never created its scratch directory in $SCRATCH/reports: $(cat "$SCRATCH/scratch.log")"
}
for signal in INT TERM; do
  start_scratch "${report_args[@]}"
  # once it evaluates (the rotated copies are in the scratch directory; a signal during rotq_rotate
  # is rotate's, acted on between layers, and may come too late to stop it)
  for _ in $(seq 2000); do
    grep -q '\[1/' "$SCRATCH/scratch.log" && break
    kill -0 "$PID" 2>/dev/null || break
    sleep 0.01
  done
  kill -s "$signal" "$PID"
  wait "$PID"
  status=$?
  [ "$status" -eq 1 ] || fail "report, SIG$signal: exited $status, expected 1: $(cat "$SCRATCH/scratch.log")"
  grep -Eq "^rotq report: interrupted by signal [0-9]+" "$SCRATCH/scratch.log" ||
    fail "report, SIG$signal: message: $(cat "$SCRATCH/scratch.log")"
  [ -z "$(ls -A "$SCRATCH/reports")" ] || fail "report, SIG$signal: left $(ls -A "$SCRATCH/reports")"
done
start_scratch stats --model "$MODEL" --tokens "$TOKENS" --segments 2 --json "$SCRATCH/reports/s.json"
kill -s KILL "$PID"
{ wait "$PID"; } 2>/dev/null
[ -n "$(ls -A "$SCRATCH/reports" | grep '^\.rotq-stats-scratch-')" ] || fail "stats: SIGKILL left no scratch to find"
expect 0 "^rotq stats: removing the scratch directory of an interrupted run: .*/reports/\.rotq-stats-scratch-$PID" -- \
  "$ROTQ" stats --model "$MODEL" --tokens "$TOKENS" --segments 1 --json "$SCRATCH/reports/s.json"
[ "$(ls -A "$SCRATCH/reports")" = "s.json" ] || fail "stats: left $(ls -A "$SCRATCH/reports")"
[ -z "$(ls -A "${TMPDIR:-/tmp}" | grep -E "^rotq-(stats|report)-.{6}$")" ] || true # (no longer made in /tmp)

# --- usage errors: status 2 ---
expect 2 "^rotq rotate: --model and --output are required" -- "$ROTQ" rotate --model "$MODEL"
expect 2 "^rotq info: unknown option '--modle'" -- "$ROTQ" info --modle "$MODEL"
# option values: decimal only, never truncated; bits and groups checked the same way everywhere
expect 2 "^rotq rotate: option '--threads': 3000000000 is out of range" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out" --threads 3000000000
expect 2 "^rotq rotate: option '--seed' wants an integer, got '0x10' \(decimal digits only\)" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out" --seed 0x10
expect_no_output out
expect 0 "" -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/out-seed" --seed 010 --quiet --no-verify
grep -Eq '^\s*"seed":\s*"10",' "$SCRATCH/out-seed/rotation.json" || fail "--seed 010 was not read as 10"
rm -rf "${SCRATCH:?}/out-seed"
for bits in 0 1 9 17; do
  expect 2 "^rotq eval: --wbits takes 2 to 8 bits, or 16 for no quantization, not $bits" -- \
    "$ROTQ" eval --model "$MODEL" --tokens "$TOKENS" --wbits "$bits"
done
expect 2 "^rotq eval: --kvbits takes 2 to 8 bits" -- "$ROTQ" eval --model "$MODEL" --tokens "$TOKENS" --kvbits 1
expect_error "^rotq eval: weight group 7 does not divide the 64 input columns of layer 0's" -- \
  "$ROTQ" eval --model "$MODEL" --tokens "$TOKENS" --segments 1 --wbits 4 --w-group 7
expect_error "^rotq generate: .*config.json: 1 prompt tokens \+ --max-new 600 = 601 positions, beyond max_position_embeddings 512" -- \
  "$ROTQ" generate --model "$MODEL" --max-new 600
expect 0 "^usage: rotq config" -- "$ROTQ" config show --help

finish
