/* libFuzzer target: model.safetensors.index.json. A scratch checkpoint directory holds a valid
 * config.json and two small valid shards; each input becomes its index and checkpoint_open reads
 * the directory. Every checkpoint it accepts must find and read each of its tensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz/input_file.h"
#include "io/checkpoint.h"

static char dir[256];
static char index_path[300];

static const char config_json[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": 2,"
    " \"intermediate_size\": 4, \"num_hidden_layers\": 1, \"num_attention_heads\": 1,"
    " \"vocab_size\": 2, \"tie_word_embeddings\": false}\n";

/* Writes dir/name as a safetensors file: header (padded to 8 bytes with spaces), then data. */
static void write_shard(const char *name, const char *header, const void *data, size_t data_size) {
  size_t header_size = (strlen(header) + 7) / 8 * 8;
  size_t size = 8 + header_size + data_size;
  unsigned char *file = malloc(size);
  if (!file) abort();
  for (int i = 0; i < 8; i++) file[i] = (unsigned char)(header_size >> (8 * i));
  memset(file + 8, ' ', header_size);
  memcpy(file + 8, header, strlen(header));
  memcpy(file + 8 + header_size, data, data_size);
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  fuzz_write_file(path, file, size);
  free(file);
}

static void remove_directory(void) {
  const char *names[] = {"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                         "model.safetensors.index.json"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    unlink(path);
  }
  rmdir(dir);
}

/* The checkpoint without its index: config.json and the two shards the seeds' indexes name. */
static void create_directory(void) {
  const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
  snprintf(dir, sizeof dir, "%s/rotq-fuzz-index-XXXXXX", base);
  if (!mkdtemp(dir)) {
    perror(dir);
    abort();
  }
  atexit(remove_directory);
  char path[512];
  snprintf(path, sizeof path, "%s/config.json", dir);
  fuzz_write_file(path, config_json, strlen(config_json));
  const float first[6] = {1, 2, 3, 4, 5, 6};
  write_shard("model-00001-of-00002.safetensors",
              "{\"__metadata__\":{\"format\":\"pt\"},"
              "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
              "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[16,24]}}",
              first, sizeof first);
  const unsigned char second[8] = {0x80, 0x3f, 0x00, 0x40, 0x40, 0x40, 0x80, 0x40}; /* bf16 1..4 */
  write_shard("model-00002-of-00002.safetensors",
              "{\"lm_head.weight\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", second,
              sizeof second);
  snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!dir[0]) create_directory();
  fuzz_write_file(index_path, data, size);
  checkpoint ck;
  rotq_error err = {{0}};
  if (checkpoint_open(dir, &ck, &err) != 0) {
    if (!strstr(err.message, dir)) {
      fprintf(stderr, "error message does not name the checkpoint's files: %s\n", err.message);
      abort();
    }
    return 0;
  }
  for (size_t i = 0; i < ck.tensor_count; i++) {
    const char *name = ck.tensors[i]->name;
    if (checkpoint_find(&ck, name) != ck.tensors[i]) {
      fprintf(stderr, "%s: checkpoint_find does not find tensor '%s'\n", dir, name);
      abort();
    }
    double *values = NULL;
    if (checkpoint_read_f64(&ck, name, 0, &values, &err) != 0) {
      fprintf(stderr, "%s: cannot read tensor '%s' of an accepted checkpoint: %s\n", dir, name, err.message);
      abort();
    }
    free(values);
  }
  checkpoint_close(&ck);
  return 0;
}
