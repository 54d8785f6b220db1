#!/usr/bin/env bash
# rotq info / generate / eval / compare on the bundled stories260K model.
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_model

# info
expect 0 'architecture +LlamaForCausalLM' -- "$ROTQ" info --model "$MODEL"
info=$("$ROTQ" info --model "$MODEL")
for line in 'model_type +llama' 'hidden_size +64' 'intermediate_size +172' 'layers +5' \
    'attention_heads +8' 'kv_heads +4' 'head_dim +8' 'vocab_size +512' 'tie_word_embeddings +true' \
    'dtypes +F32 \(47 tensors\)' 'tensors +47' 'parameters +260032' 'shards +1' 'rotation.json +absent'; do
  echo "$info" | grep -Eq "^$line\$" || fail "info lacks /$line/: $info"
done
expect 0 'usage: rotq info' -- "$ROTQ" info --help

# generate: the greedy tokens of HF transformers (tests/data/stories260K_golden.json)
golden=$(tr -d ' \n' < "$ROOT/tests/data/stories260K_golden.json" | sed -E 's/.*"tokens":\[([0-9,]*)\].*"text".*/\1/' | tr ',' ' ')
generated=$("$ROTQ" generate --model "$MODEL")
[ "$generated" = "$golden" ] || fail "generate: got '$generated', expected '$golden'"
expect 0 '^1 403 407 261 378$' -- "$ROTQ" generate --model "$MODEL" --max-new 4 --f32
expect 0 '^1 403 407 261$' -- "$ROTQ" generate --model "$MODEL" --prompt-tokens 1,403 --max-new 2
expect 1 'token id 600' -- "$ROTQ" generate --model "$MODEL" --prompt-tokens 1,600
expect 2 'comma-separated' -- "$ROTQ" generate --model "$MODEL" --prompt-tokens 1,x

# eval: the first 20 segments (the whole file is tested in test_model_golden)
expect 0 '^nll 1\.[0-9]{6} ppl [0-9.]+ tokens [0-9]+ segments 20$' -- \
  "$ROTQ" eval --model "$MODEL" --tokens "$TOKENS" --segments 20
printf '\001\000\003' > "$SCRATCH/odd3.u16"   # 3 bytes: not a whole number of uint16 ids
expect 1 "rotq eval: .*odd3.u16: 3 bytes" -- "$ROTQ" eval --model "$MODEL" --tokens "$SCRATCH/odd3.u16"
expect 2 'required' -- "$ROTQ" eval --model "$MODEL"

# compare: a model against itself agrees exactly
expect 0 'relative +0\.000e\+00' -- "$ROTQ" compare --a "$MODEL" --b "$MODEL" --tokens "$TOKENS" --n 32
expect 0 'argmax agreement +100\.00% \(64/64\)' -- "$ROTQ" compare --a "$MODEL" --b "$MODEL"

# compare: a perturbed copy (same weights, rms_norm_eps 1e-2) exceeds the tolerance: exit status 1
mkdir "$SCRATCH/perturbed"
cp "$MODEL/model.safetensors" "$SCRATCH/perturbed/"
sed 's/"rms_norm_eps": 1e-05/"rms_norm_eps": 0.01/' "$MODEL/config.json" > "$SCRATCH/perturbed/config.json"
expect 1 'exceeds the tolerance' -- "$ROTQ" compare --a "$MODEL" --b "$SCRATCH/perturbed"

# bad input → 1 with a message naming it; usage errors → 2
expect 1 "rotq info: .*$SCRATCH/missing" -- "$ROTQ" info --model "$SCRATCH/missing"
expect 1 "rotq generate: .*$SCRATCH/missing" -- "$ROTQ" generate --model "$SCRATCH/missing"
expect 1 "rotq eval: .*$SCRATCH/missing.u16" -- "$ROTQ" eval --model "$MODEL" --tokens "$SCRATCH/missing.u16"
expect 1 "rotq compare: .*$SCRATCH/missing" -- "$ROTQ" compare --a "$MODEL" --b "$SCRATCH/missing"
for cmd in info generate eval compare; do
  expect 2 "unknown option '--bogus'" -- "$ROTQ" "$cmd" --bogus
  expect 0 "usage: rotq $cmd" -- "$ROTQ" "$cmd" --help
done
expect 2 'wants an integer' -- "$ROTQ" generate --model "$MODEL" --max-new many

finish
