/* A safetensors file, mapped read-only. The header is untrusted input: st_open validates it
 * completely (header length vs file size, well-formed JSON, known dtypes, shape × dtype size ==
 * byte span, spans inside the data section and not overlapping, no duplicate names) and every
 * error names the file and the tensor or field. */
#ifndef ROTQ_IO_SAFETENSORS_H
#define ROTQ_IO_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"
#include "io/dtype.h"

#define ST_MAX_DIMS 8

/* The longest tensor name accepted: rotq's name buffers (TENSOR_NAME_MAX, 256 bytes) must hold
 * a name plus the suffixes it derives from it; real names are under 100 bytes. */
#define ST_NAME_MAX 200

/* How a quantized tensor's codes are scaled into its values (io/quantized.h: a checkpoint pairs
 * its quantized tensors with their scale tensors; st_open leaves every tensor ST_SCALE_NONE). */
typedef enum st_scaling {
  ST_SCALE_NONE,    /* the elements are the values */
  ST_SCALE_BLOCK,   /* FP8 code × scale[r / block_rows][c / block_cols] (weight_scale_inv) */
  ST_SCALE_CHANNEL, /* FP8 code × scale[r] (compressed-tensors, per output channel) */
  ST_SCALE_TENSOR,  /* FP8 code × scale[0] (compressed-tensors, per tensor) */
  ST_SCALE_MXFP4,   /* E2M1 code × 2^(scale[i / 32] − 127) (E8M0), i the flat index */
  ST_SCALE_GROUP,   /* compressed-tensors pack-quantized (I4 codes q, rows padded to block_rows bytes):
                       (q − zero[r][c / block_cols]) × scale[r][c / block_cols], zero = 0 without a
                       zero-point tensor */
} st_scaling;

typedef struct st_tensor {
  char *name;
  dtype dtype;
  int ndim;
  int64_t shape[ST_MAX_DIMS];
  size_t nbytes;    /* the bytes of data: shape product × dtype_size (F4_E2M1: half of it) */
  const void *data; /* inside the read-only mapping; may be unaligned for F64/F32 */
  st_scaling scaling;
  const struct st_tensor *scale; /* the scale tensor (scaling != ST_SCALE_NONE), else NULL */
  size_t block_rows, block_cols; /* ST_SCALE_BLOCK; ST_SCALE_GROUP: bytes per packed row, group */
  const struct st_tensor *zero;  /* ST_SCALE_GROUP: the packed zero points (I32), or NULL */
} st_tensor;

typedef struct st_file {
  char *path;
  void *map;           /* the whole file, PROT_READ, MAP_PRIVATE */
  size_t size;         /* file size in bytes */
  size_t count;        /* number of tensors */
  st_tensor *tensors;  /* in header order */
  char *metadata_json; /* the "__metadata__" object as JSON text, or NULL */
} st_file;

int st_open(const char *path, st_file *f, rotq_error *err);
void st_close(st_file *f);
/* The tensor called name, or NULL. */
const st_tensor *st_find(const st_file *f, const char *name);
/* Number of elements of a tensor (product of its shape; 1 for a scalar). */
size_t st_numel(const st_tensor *t);
/* Bytes [data, data + nbytes) of a file's mapping (a tensor's data, or part of it; widened to
 * whole pages). Prefetch reads them from the disk into the page cache now, waiting for them, without
 * keeping them in this process's memory (MADV_POPULATE_READ, or a read of each page where the
 * kernel lacks it; then MADV_DONTNEED); bytes already in the page cache (mincore) are left as
 * they are. Release returns them to the kernel (MADV_DONTNEED), so
 * bytes already used stop counting in this process's memory; reading them again maps them again
 * from the page cache. Only for bytes inside a st_file's mapping. */
void st_prefetch(const void *data, size_t nbytes);
void st_release(const void *data, size_t nbytes);
/* Is descriptor fd's file on a file system held in memory (tmpfs, ramfs), whose every byte is in
 * the page cache? */
bool st_fd_in_memory(int fd);

#endif
