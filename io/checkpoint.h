/* A HF checkpoint directory: config.json plus one model.safetensors or several shards listed in
 * model.safetensors.index.json. Tensors are looked up by name across shards; every shard is
 * mapped read-only and nothing is loaded until asked for. */
#ifndef ROTQ_IO_CHECKPOINT_H
#define ROTQ_IO_CHECKPOINT_H

#include "io/model_config.h"
#include "io/quantized.h"
#include "io/safetensors.h"

typedef struct checkpoint {
  char *dir;
  model_config config;
  st_file *shards;
  size_t shard_count;
  size_t tensor_count;
  const st_tensor **tensors; /* every tensor, sorted by name (binary search): a quantized tensor once,
                                with its scales (io/quantized.h), its scale tensors not listed */
  st_tensor *quantized;      /* the quantized tensors (owned), quantized_count of them */
  size_t quantized_count;
} checkpoint;

/* Opens dir: reads config.json, the index (if any; every shard and tensor it names must exist,
 * and every tensor of a shard must be listed), maps the shards, pairs quantized tensors with their
 * scales (quantized_pair). */
int checkpoint_open(const char *dir, checkpoint *ck, rotq_error *err);
void checkpoint_close(checkpoint *ck);
const st_tensor *checkpoint_find(const checkpoint *ck, const char *name);
/* The path of the shard holding t (a tensor of ck), for messages. */
const char *checkpoint_path_of(const checkpoint *ck, const st_tensor *t);
/* Returns every mapped page of the shards to the kernel (st_release of each whole mapping): the
 * pages read so far stop counting in this process's memory; later reads map them again. */
void checkpoint_release(const checkpoint *ck);
/* Drops the whole pages of [data, data + nbytes) (bytes of one shard's mapping, e.g. a tensor
 * read for the last time) from the page cache (POSIX_FADV_DONTNEED); pages it shares with
 * neighbouring bytes stay. The freed memory serves the next reads and writes: a one-pass job then
 * cycles through a little memory instead of filling the page cache. */
void checkpoint_forget(const checkpoint *ck, const void *data, size_t nbytes);
/* The tensor as newly malloc'd doubles / floats (dequantized: st_to_f64); error if missing. expected_numel: 0 = any,
 * else must match (error names the tensor and both sizes). */
int checkpoint_read_f64(const checkpoint *ck, const char *name, size_t expected_numel, double **out, rotq_error *err);
int checkpoint_read_f32(const checkpoint *ck, const char *name, size_t expected_numel, float **out, rotq_error *err);

#endif
