/* rotq info: what a checkpoint holds, from config.json and the safetensors headers. */
#include <stdio.h>
#include <sys/stat.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "rotate/adapter.h"
#include "io/checkpoint.h"

static const char *help =
    "usage: rotq info --model DIR\n\n"
    "Prints a HF checkpoint's architecture, model_type, sizes (hidden, intermediate, layers,\n"
    "attention heads, kv heads, head_dim, vocab), tie_word_embeddings, the tensor dtypes with\n"
    "their counts, the tensor, parameter and shard counts, and whether a rotation.json (written\n"
    "by rotq rotate) is present, and the architectures rotq rotates (with the adapter family of this one).\n"
    "Reads only config.json and the safetensors headers.\n\n"
    "  --model DIR   checkpoint directory (config.json + *.safetensors)\n";

int cmd_info(int argc, char **argv) {
  const char *dir = NULL;
  const arg_spec specs[] = {{"model", ARG_STRING, &dir}};
  int parsed = args_parse("info", argc, argv, specs, 1);
  if (parsed == 1) {
    fputs(help, stdout);
    return 0;
  }
  if (parsed < 0) return 2;
  if (!dir) {
    fprintf(stderr, "rotq info: --model DIR is required (see rotq info --help)\n");
    return 2;
  }
  checkpoint ck;
  rotq_error err;
  if (checkpoint_open(dir, &ck, &err) != 0) {
    fprintf(stderr, "rotq info: %s\n", err.message);
    return 1;
  }
  const model_config *c = &ck.config;
  size_t per_dtype[DTYPE_COUNT] = {0};
  unsigned long long parameters = 0;
  for (size_t i = 0; i < ck.tensor_count; i++) {
    per_dtype[ck.tensors[i]->dtype]++;
    parameters += st_numel(ck.tensors[i]);
  }
  printf("architecture         %s\n", c->architecture[0] ? c->architecture : "(none)");
  printf("model_type           %s\n", c->model_type[0] ? c->model_type : "(none)");
  printf("hidden_size          %d\n", c->hidden_size);
  printf("intermediate_size    %d\n", c->intermediate_size);
  printf("layers               %d\n", c->num_hidden_layers);
  printf("attention_heads      %d\n", c->num_attention_heads);
  printf("kv_heads             %d\n", c->num_key_value_heads);
  printf("head_dim             %d\n", c->head_dim);
  printf("vocab_size           %d\n", c->vocab_size);
  printf("tie_word_embeddings  %s\n", c->tie_word_embeddings ? "true" : "false");
  printf("dtypes              ");
  for (int t = 0; t < DTYPE_COUNT; t++)
    if (per_dtype[t]) printf(" %s (%zu tensors)", dtype_name((dtype)t), per_dtype[t]);
  printf("\n");
  printf("tensors              %zu\n", ck.tensor_count);
  printf("parameters           %llu\n", parameters);
  printf("shards               %zu\n", ck.shard_count);
  char path[4096];
  struct stat st;
  snprintf(path, sizeof path, "%s/rotation.json", dir);
  printf("rotation.json        %s\n", stat(path, &st) == 0 ? "present" : "absent");
  rotq_error unsupported;
  const model_adapter *adapter = adapter_for(c, &unsupported);
  printf("adapter              %s\n", adapter ? adapter->family : "(none: architecture not supported)");
  printf("supported            %s\n", adapter_supported_list());
  checkpoint_close(&ck);
  return 0;
}
