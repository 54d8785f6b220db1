/* A streaming, sharded safetensors writer. The caller first declares every tensor (name, dtype,
 * shape) in output order; the writer lays them out in shards of at most max_shard_bytes (HF's
 * naming: model.safetensors, or model-0000i-of-0000N.safetensors + model.safetensors.index.json),
 * writes each header up front (with __metadata__ {"format":"pt"}, data 8-byte aligned), then
 * accepts tensors (whole or in parts) in any order, written with pwrite at their place; the
 * writeback of each write starts at once (sync_file_range), so dirty pages never pile up. Memory
 * use is independent of the model size. */
#ifndef ROTQ_IO_SAFETENSORS_WRITER_H
#define ROTQ_IO_SAFETENSORS_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "io/dtype.h"
#include "io/safetensors.h"

typedef struct st_spec {
  const char *name;
  dtype dtype;
  int ndim;
  int64_t shape[ST_MAX_DIMS];
} st_spec;

typedef struct st_writer st_writer;

#define ST_DEFAULT_MAX_SHARD_BYTES ((size_t)5000000000ULL)

/* Creates the shard files in dir (which must exist). max_shard_bytes 0 = default (5 GB). */
st_writer *st_writer_open(const char *dir, const st_spec *specs, size_t count, size_t max_shard_bytes, rotq_error *err);
/* st_writer_open where tensor i may be of a storage-only type rotq writes but never reads as
 * numbers (quantized checkpoints): stored_dtypes[i] NULL keeps specs[i].dtype, else it is "I64",
 * "I32", "F32", "I8", "U8" or "F8_E4M3" (specs[i].dtype is then ignored; "F32" as raw bytes). stored_dtypes may be
 * NULL. */
st_writer *st_writer_open_stored(const char *dir, const st_spec *specs, const char *const *stored_dtypes, size_t count,
                                 size_t max_shard_bytes, rotq_error *err);
/* Writes tensor number index (of the specs) from data (nbytes of the declared dtype/shape).
 * Thread-safe for distinct indices. */
int st_writer_write(st_writer *w, size_t index, const void *data, rotq_error *err);
/* Writes bytes [byte_offset, byte_offset + nbytes) of tensor number index from data. Thread-safe,
 * also for disjoint parts of one tensor. The tensor is complete once its parts add up to its size;
 * a part outside the tensor, or bytes beyond its size, are errors. */
int st_writer_write_part(st_writer *w, size_t index, size_t byte_offset, const void *data, size_t nbytes,
                         rotq_error *err);
/* Drops the bytes already on the disk from the page cache (POSIX_FADV_DONTNEED; pages still
 * being written stay), so that writing a large model cycles through a little memory. Thread-safe
 * with writes; not with st_writer_finish. */
void st_writer_drop_cache(st_writer *w);
/* Where tensor number index lies: its shard file and the absolute offset of its data there
 * (for reading back what was written, e.g. by the in-stream verification). */
void st_writer_location(const st_writer *w, size_t index, const char **path, uint64_t *offset);
/* Drops tensor number index's written bytes from the page cache (as st_writer_drop_cache, for one
 * tensor). */
void st_writer_drop_tensor(st_writer *w, size_t index);
/* Index of the tensor called name, or -1. */
long st_writer_index(const st_writer *w, const char *name);
/* Checks every tensor was written, fsyncs the shards, writes the index (when > 1 shard), frees w. */
int st_writer_finish(st_writer *w, rotq_error *err);
/* Frees w after an error, leaving files to the caller's cleanup. */
void st_writer_abort(st_writer *w);

#endif
