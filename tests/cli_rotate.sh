#!/usr/bin/env bash
# rotq rotate / rotq config on the bundled stories260K model: the output is a complete HF
# checkpoint, computes the same function (logits, perplexity to 4 digits), and the input is untouched.
set -u
. "${ROTQ_SOURCE_DIR:?ROTQ_SOURCE_DIR is not set}/tests/support/cli_test.sh" cli_rotate

before=$(cd "$MODEL" && sha256sum ./* && stat -c '%n %Y' ./*)
OUT=$SCRATCH/rotated
expect 0 'verify: .*argmax 16/16' -- "$ROTQ" rotate --model "$MODEL" --output "$OUT" --verify --seed 3
after=$(cd "$MODEL" && sha256sum ./* && stat -c '%n %Y' ./*)
[ "$before" = "$after" ] || fail "the input directory changed"
for f in config.json model.safetensors rotation.json tokenizer.model tokenizer_config.json tok512.bin; do
  [ -f "$OUT/$f" ] || fail "output lacks $f"
done
ls -a "$SCRATCH" | grep -q rotq-partial && fail "a partial directory was left behind"
grep -Eq '"tie_word_embeddings":[[:space:]]*false' "$OUT/config.json" || fail "config.json still ties the embeddings"
grep -q '"seed":[[:space:]]*"3"' "$OUT/rotation.json" || fail "rotation.json lacks the seed"
grep -q '"construction"' "$OUT/rotation.json" || fail "rotation.json lacks the constructions"
expect 0 'argmax agreement +100' -- "$ROTQ" compare --a "$MODEL" --b "$OUT" --tokens "$TOKENS" --n 64 --tolerance 1e-5

# perplexity equal to 4 digits on 40 segments
ppl_a=$("$ROTQ" eval --model "$MODEL" --tokens "$TOKENS" --segments 40 | sed -E 's/.*ppl ([0-9.]+).*/\1/')
ppl_b=$("$ROTQ" eval --model "$OUT" --tokens "$TOKENS" --segments 40 | sed -E 's/.*ppl ([0-9.]+).*/\1/')
[ -n "$ppl_a" ] && [ "$(printf %.4f "$ppl_a")" = "$(printf %.4f "$ppl_b")" ] || fail "perplexity $ppl_a vs rotated $ppl_b"

# same seed, same bytes; another seed, other bytes
expect 0 '^' -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/again" --seed 3 --quiet --no-verify
cmp -s "$OUT/model.safetensors" "$SCRATCH/again/model.safetensors" || fail "same seed gave different bytes"
expect 0 '^' -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/other" --seed 4 --quiet --no-verify
cmp -s "$OUT/model.safetensors" "$SCRATCH/other/model.safetensors" && fail "another seed gave the same bytes"

# every 64-bit seed: 2^53 + 1 (not a double) is recorded exactly and, passed again, gives the same
# bytes; 2^53 gives others; 2^64 - 1 is taken, 2^64 and -1 are refused
expect 0 '^' -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/big" --seed 9007199254740993 --quiet --no-verify
recorded=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['seed'])" "$SCRATCH/big/rotation.json")
[ "$recorded" = 9007199254740993 ] || fail "rotation.json records seed 2^53+1 as '$recorded'"
expect 0 '^' -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/big-again" --seed "$recorded" --quiet --no-verify
cmp -s "$SCRATCH/big/model.safetensors" "$SCRATCH/big-again/model.safetensors" || fail "the recorded seed gave other bytes"
expect 0 '^' -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/big-double" --seed 9007199254740992 --quiet --no-verify
cmp -s "$SCRATCH/big/model.safetensors" "$SCRATCH/big-double/model.safetensors" && fail "seeds 2^53 and 2^53+1 gave the same bytes"
expect 0 '^' -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/max" --seed 18446744073709551615 --quiet --no-verify
grep -q '"seed":[[:space:]]*"18446744073709551615"' "$SCRATCH/max/rotation.json" || fail "seed 2^64-1 not recorded"
expect 2 "option '--seed': 18446744073709551616 is out of range \(0 to 18446744073709551615\)" -- \
  "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/over" --seed 18446744073709551616
expect 2 "option '--seed': -1 is out of range" -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/over" --seed -1
rm -rf "${SCRATCH:?}"/big* "${SCRATCH:?}/max"

# each mode through a built-in or edited config
"$ROTQ" config show transformer_universal | sed 's/mode: hadamard /mode: orthogonal /' > "$SCRATCH/ortho.yaml"
expect 0 'argmax 16/16' -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/ortho" --config "$SCRATCH/ortho.yaml" --verify
grep -q '"mode":[[:space:]]*"orthogonal"' "$SCRATCH/ortho/rotation.json" || fail "the orthogonal config was not used"

# sharding: a small max shard size gives several shards and an index
expect 0 'wrote' -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/sharded" --max-shard-size 300000 --verify
[ -f "$SCRATCH/sharded/model.safetensors.index.json" ] || fail "no index for a sharded output"
ls "$SCRATCH/sharded" | grep -q 'model-00001-of-0000[2-9].safetensors' || fail "shards not named like HF's"

# config subcommands
expect 0 '^transformer_universal' -- "$ROTQ" config list
expect 0 'rotation_matrices' -- "$ROTQ" config show transformer_universal
expect 1 "no built-in config 'nope'" -- "$ROTQ" config show nope
expect 0 '2 matrices, 9 rotation rules' -- "$ROTQ" config check transformer_universal
expect 0 '^usage: rotq config' -- "$ROTQ" config show --help
expect 0 '^usage: rotq config' -- "$ROTQ" config check --help
expect 0 '^usage: rotq config' -- "$ROTQ" config list -h

# refusals: existing output, unknown config, missing options
expect 1 'already exists \(use --force' -- "$ROTQ" rotate --model "$MODEL" --output "$OUT"
expect 0 '^' -- "$ROTQ" rotate --model "$MODEL" --output "$OUT" --force --quiet
expect 1 "config 'nope.yaml': not a built-in config" -- "$ROTQ" rotate --model "$MODEL" --output "$SCRATCH/x" --config nope.yaml
expect 2 'required' -- "$ROTQ" rotate --model "$MODEL"
expect 0 'usage: rotq rotate' -- "$ROTQ" rotate --help
[ -e "$SCRATCH/x" ] && fail "a failed run left its output"

finish
