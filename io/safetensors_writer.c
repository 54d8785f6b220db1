/* Streaming safetensors writer. Opening plans the whole layout (tensors in the given order, cut
 * greedily into shards of at most max_shard_bytes of data), creates every shard with its final
 * size reserved (on tmpfs: sized, the free space checked) and its header written; tensors then land at their planned
 * offsets with pwrite, so they may arrive in any order, whole or in parts, and from several threads. */
#include "io/safetensors_writer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>
#include <linux/magic.h>

#include "io/json_file.h"

#define INDEX_NAME "model.safetensors.index.json"
/* Largest shape extent stored: JSON numbers are exact integers up to 2^53. */
#define MAX_EXTENT ((int64_t)1 << 53)

/* A declared tensor and its place in the output. */
typedef struct planned {
  char *name;
  const char *dtype_name; /* the safetensors dtype */
  size_t element_size;
  int ndim;
  int64_t shape[ST_MAX_DIMS];
  size_t nbytes;
  size_t shard;                /* index into w->shards */
  uint64_t begin;              /* data_offsets begin, relative to the shard's data section */
  uint64_t offset;             /* absolute file offset of the data */
  atomic_bool begun;           /* a write of it was made (zero-byte tensors need one too) */
  atomic_size_t written_bytes; /* complete when it reaches nbytes */
} planned;

typedef struct shard {
  char *path;
  int fd;               /* -1 once closed */
  uint64_t size;        /* final file size */
  pthread_mutex_t lock; /* one write at a time: waiting writers sleep (in ext4 they would spin) */
} shard;

struct st_writer {
  char *dir;
  planned *tensors;
  size_t count;
  planned **by_name; /* the tensors sorted by name */
  shard *shards;
  size_t shard_count;
};

/* The safetensors name and element size of a spec's type: its dtype, or a storage-only type
 * (st_spec.stored_dtype); -1 when that is unknown. */
static int spec_type(const st_spec *s, const char *stored_dtype, const char **name, size_t *size) {
  static const struct {
    const char *name;
    size_t size;
  } stored[] = {{"I64", 8}, {"I32", 4}, {"F32", 4}, {"I8", 1}, {"U8", 1}, {"F8_E4M3", 1}};
  if (!stored_dtype) {
    *name = dtype_name(s->dtype);
    *size = dtype_size(s->dtype);
    return 0;
  }
  for (size_t i = 0; i < sizeof stored / sizeof stored[0]; i++)
    if (strcmp(stored_dtype, stored[i].name) == 0) {
      *name = stored[i].name;
      *size = stored[i].size;
      return 0;
    }
  return -1;
}

/* Copies and checks the specs into w->tensors (names unique, shapes valid). */
static int declare_tensors(st_writer *w, const st_spec *specs, const char *const *stored_dtypes, size_t count,
                           rotq_error *err) {
  w->tensors = calloc(count ? count : 1, sizeof *w->tensors);
  if (!w->tensors) return rotq_fail(err, "%s: out of memory", w->dir);
  for (size_t i = 0; i < count; i++) {
    const st_spec *s = &specs[i];
    planned *t = &w->tensors[i];
    if (!s->name || !s->name[0] || strcmp(s->name, "__metadata__") == 0)
      return rotq_fail(err, "%s: tensor %zu: invalid name '%s'", w->dir, i, s->name ? s->name : "(null)");
    if (!(t->name = strdup(s->name))) return rotq_fail(err, "%s: out of memory", w->dir);
    w->count++;
    if (s->ndim < 0 || s->ndim > ST_MAX_DIMS)
      return rotq_fail(err, "%s: tensor '%s': %d dimensions (0 to %d supported)", w->dir, s->name, s->ndim,
                       ST_MAX_DIMS);
    const char *stored = stored_dtypes ? stored_dtypes[i] : NULL;
    if (spec_type(s, stored, &t->dtype_name, &t->element_size) < 0)
      return rotq_fail(err, "%s: tensor '%s': unknown stored dtype '%s'", w->dir, s->name, stored);
    t->ndim = s->ndim;
    size_t numel = 1;
    for (int d = 0; d < s->ndim; d++) {
      if (s->shape[d] < 0 || s->shape[d] > MAX_EXTENT || __builtin_mul_overflow(numel, (size_t)s->shape[d], &numel))
        return rotq_fail(err, "%s: tensor '%s': invalid shape (dimension %d is %lld)", w->dir, s->name, d,
                         (long long)s->shape[d]);
      t->shape[d] = s->shape[d];
    }
    if (__builtin_mul_overflow(numel, t->element_size, &t->nbytes))
      return rotq_fail(err, "%s: tensor '%s': too large", w->dir, s->name);
    atomic_init(&t->begun, false);
    atomic_init(&t->written_bytes, 0);
  }
  return 0;
}

static int compare_by_name(const void *a, const void *b) {
  return strcmp((*(planned *const *)a)->name, (*(planned *const *)b)->name);
}

/* Fills w->by_name; a name declared twice is an error. */
static int sort_names(st_writer *w, rotq_error *err) {
  w->by_name = malloc((w->count ? w->count : 1) * sizeof *w->by_name);
  if (!w->by_name) return rotq_fail(err, "%s: out of memory", w->dir);
  for (size_t i = 0; i < w->count; i++) w->by_name[i] = &w->tensors[i];
  qsort(w->by_name, w->count, sizeof *w->by_name, compare_by_name);
  for (size_t i = 1; i < w->count; i++)
    if (strcmp(w->by_name[i - 1]->name, w->by_name[i]->name) == 0)
      return rotq_fail(err, "%s: tensor '%s' declared twice", w->dir, w->by_name[i]->name);
  return 0;
}

/* Assigns each tensor its shard and data offset: greedy in declaration order, a new shard when
 * the next tensor would push a non-empty shard past max_shard_bytes. */
static int plan_shards(st_writer *w, size_t max_shard_bytes, rotq_error *err) {
  size_t shard = 0, used = 0;
  for (size_t i = 0; i < w->count; i++) {
    planned *t = &w->tensors[i];
    if (used > 0 && (used >= max_shard_bytes || t->nbytes > max_shard_bytes - used)) {
      shard++;
      used = 0;
    }
    t->shard = shard;
    t->begin = used;
    used += t->nbytes;
  }
  const size_t count = shard + 1;
  w->shards = calloc(count, sizeof *w->shards);
  if (!w->shards) return rotq_fail(err, "%s: out of memory", w->dir);
  for (size_t s = 0; s < count; s++) { /* shard_count: the shards initialised (writer_free) */
    w->shards[s].fd = -1;
    pthread_mutex_init(&w->shards[s].lock, NULL);
    w->shard_count = s + 1;
    char name[64];
    if (count == 1)
      snprintf(name, sizeof name, "model.safetensors");
    else
      snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", s + 1, count);
    size_t size = strlen(w->dir) + strlen(name) + 2;
    if (!(w->shards[s].path = malloc(size))) return rotq_fail(err, "%s: out of memory", w->dir);
    snprintf(w->shards[s].path, size, "%s/%s", w->dir, name);
  }
  return 0;
}

/* The header of shard s: its length prefix, then JSON ("__metadata__" first, tensors in order)
 * padded with spaces so the data section starts 8-byte aligned. Caller frees; *size its bytes. */
static char *shard_header(const st_writer *w, size_t s, size_t *size) {
  cJSON *root = cJSON_CreateObject();
  cJSON *metadata = cJSON_AddObjectToObject(root, "__metadata__");
  bool ok = metadata && cJSON_AddStringToObject(metadata, "format", "pt");
  for (size_t i = 0; ok && i < w->count; i++) {
    const planned *t = &w->tensors[i];
    if (t->shard != s) continue;
    cJSON *entry = cJSON_AddObjectToObject(root, t->name);
    cJSON *shape = entry ? cJSON_AddArrayToObject(entry, "shape") : NULL;
    cJSON *offsets = shape ? cJSON_AddArrayToObject(entry, "data_offsets") : NULL;
    ok = offsets && cJSON_AddStringToObject(entry, "dtype", t->dtype_name);
    for (int d = 0; ok && d < t->ndim; d++) ok = json_add_to_array(shape, cJSON_CreateNumber((double)t->shape[d]));
    ok = ok && json_add_to_array(offsets, cJSON_CreateNumber((double)t->begin)) &&
         json_add_to_array(offsets, cJSON_CreateNumber((double)(t->begin + t->nbytes)));
  }
  char *json = ok ? cJSON_PrintUnformatted(root) : NULL;
  cJSON_Delete(root);
  if (!json) return NULL;
  size_t length = strlen(json);
  size_t padded = (length + 7) / 8 * 8; /* 8 + padded is then a multiple of 8 */
  char *header = malloc(8 + padded);
  if (header) {
    for (int i = 0; i < 8; i++) header[i] = (char)((uint64_t)padded >> (8 * i) & 0xff);
    memcpy(header + 8, json, length);
    memset(header + 8 + length, ' ', padded - length);
    *size = 8 + padded;
  }
  free(json);
  return header;
}

/* pwrite of all n bytes at offset, through short writes and EINTR; 0 or an errno value. */
static int write_fully(int fd, const void *data, size_t n, uint64_t offset) {
  const char *p = data;
  while (n > 0) {
    size_t chunk = n < ((size_t)1 << 30) ? n : (size_t)1 << 30;
    ssize_t written = pwrite(fd, p, chunk, (off_t)offset);
    if (written < 0 && errno == EINTR) continue;
    if (written < 0) return errno;
    if (written == 0) return EIO;
    p += written;
    n -= (size_t)written;
    offset += (uint64_t)written;
  }
  return 0;
}

/* Is fd's file on a file system held in memory (tmpfs, ramfs) with room for size more bytes now? */
static bool memory_fs_with_room(int fd, size_t size) {
  struct statfs fs;
  if (!st_fd_in_memory(fd) || fstatfs(fd, &fs) != 0) return false;
  return fs.f_type == RAMFS_MAGIC || (unsigned long long)fs.f_bavail * (unsigned long long)fs.f_bsize >= size;
}

/* Sizes fd's file to size bytes, reserving them where the file system can (ENOSPC now rather
 * than mid-write): 0 or an errno value. On tmpfs, where a reservation allocates (and zeroes) every
 * page at once, on one thread, before any work starts, the free space is checked instead and the
 * pages come with the writes (a write that still finds no room fails with ENOSPC, as pwrite
 * reports it: the output is then not completed). */
static int reserve_space(int fd, size_t size) {
  int code = memory_fs_with_room(fd, size) ? EOPNOTSUPP : posix_fallocate(fd, 0, (off_t)size);
  if (code == EOPNOTSUPP || code == EINVAL) /* the file system cannot reserve: just size it */
    code = ftruncate(fd, (off_t)size) == 0 ? 0 : errno;
  return code;
}

/* Creates shard s (a new file), reserves its final size and writes its header. */
static int create_shard(st_writer *w, size_t s, rotq_error *err) {
  shard *sh = &w->shards[s];
  size_t header_size;
  char *header = shard_header(w, s, &header_size);
  if (!header) return rotq_fail(err, "%s: out of memory for the header", sh->path);
  sh->size = header_size;
  for (size_t i = 0; i < w->count; i++)
    if (w->tensors[i].shard == s) {
      w->tensors[i].offset = header_size + w->tensors[i].begin;
      sh->size += w->tensors[i].nbytes;
    }
  sh->fd = open(sh->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (sh->fd < 0) {
    free(header);
    return rotq_fail(err, "%s: cannot create: %s", sh->path, strerror(errno));
  }
  int code = reserve_space(sh->fd, sh->size);
  if (code != 0) {
    free(header);
    return rotq_fail(err, "%s: cannot reserve %llu bytes: %s", sh->path, (unsigned long long)sh->size, strerror(code));
  }
  code = write_fully(sh->fd, header, header_size, 0);
  free(header);
  if (code != 0) return rotq_fail(err, "%s: cannot write the header: %s", sh->path, strerror(code));
  return 0;
}

/* Closes the shards still open and frees w. If remove_files, deletes the shards created. */
static void writer_free(st_writer *w, bool remove_files) {
  for (size_t s = 0; s < w->shard_count; s++) {
    if (w->shards[s].fd >= 0) {
      close(w->shards[s].fd);
      if (remove_files) unlink(w->shards[s].path);
    }
    free(w->shards[s].path);
    pthread_mutex_destroy(&w->shards[s].lock);
  }
  for (size_t i = 0; i < w->count; i++) free(w->tensors[i].name);
  free(w->shards);
  free(w->tensors);
  free(w->by_name);
  free(w->dir);
  free(w);
}

st_writer *st_writer_open(const char *dir, const st_spec *specs, size_t count, size_t max_shard_bytes,
                          rotq_error *err) {
  return st_writer_open_stored(dir, specs, NULL, count, max_shard_bytes, err);
}

static st_writer *open_writer(const char *dir, const st_spec *specs, const char *const *stored_dtypes, size_t count,
                              size_t max_shard_bytes, rotq_error *err) {
  st_writer *w = calloc(1, sizeof *w);
  if (!w || !(w->dir = strdup(dir))) {
    free(w);
    rotq_fail(err, "%s: out of memory", dir);
    return NULL;
  }
  if (max_shard_bytes == 0) max_shard_bytes = ST_DEFAULT_MAX_SHARD_BYTES;
  if (declare_tensors(w, specs, stored_dtypes, count, err) != 0 || sort_names(w, err) != 0 ||
      plan_shards(w, max_shard_bytes, err) != 0)
    goto fail;
  for (size_t s = 0; s < w->shard_count; s++)
    if (create_shard(w, s, err) != 0) goto fail;
  return w;
fail:
  writer_free(w, true);
  return NULL;
}

st_writer *st_writer_open_stored(const char *dir, const st_spec *specs, const char *const *stored_dtypes, size_t count,
                                 size_t max_shard_bytes, rotq_error *err) {
  return open_writer(dir, specs, stored_dtypes, count, max_shard_bytes, err);
}

void st_writer_location(const st_writer *w, size_t index, const char **path, uint64_t *offset) {
  const planned *t = &w->tensors[index];
  *path = w->shards[t->shard].path;
  *offset = t->offset;
}

long st_writer_index(const st_writer *w, const char *name) {
  size_t low = 0, high = w->count;
  while (low < high) {
    size_t middle = low + (high - low) / 2;
    int order = strcmp(name, w->by_name[middle]->name);
    if (order == 0) return (long)(w->by_name[middle] - w->tensors);
    if (order < 0)
      high = middle;
    else
      low = middle + 1;
  }
  return -1;
}

/* Starts the kernel's writeback of bytes just written, so that dirty pages never pile up and the
 * final fsync has little left to do. A hint: failures surface at fsync. */
static void start_writeback(int fd, uint64_t offset, size_t n) {
  sync_file_range(fd, (off_t)offset, (off_t)n, SYNC_FILE_RANGE_WRITE);
}

int st_writer_write_part(st_writer *w, size_t index, size_t byte_offset, const void *data, size_t nbytes,
                         rotq_error *err) {
  if (index >= w->count)
    return rotq_fail(err, "%s: tensor index %zu out of range (%zu declared)", w->dir, index, w->count);
  planned *t = &w->tensors[index];
  shard *sh = &w->shards[t->shard];
  if (byte_offset > t->nbytes || nbytes > t->nbytes - byte_offset)
    return rotq_fail(err, "%s: tensor '%s': part [%zu, +%zu) lies outside its %zu bytes", sh->path, t->name,
                     byte_offset, nbytes, t->nbytes);
  atomic_store(&t->begun, true);
  if (atomic_fetch_add(&t->written_bytes, nbytes) + nbytes > t->nbytes)
    return rotq_fail(err, "%s: tensor '%s' written twice (more than its %zu bytes)", sh->path, t->name, t->nbytes);
  pthread_mutex_lock(&sh->lock);
  int code = write_fully(sh->fd, data, nbytes, t->offset + byte_offset);
  pthread_mutex_unlock(&sh->lock);
  if (code != 0)
    return rotq_fail(err, "%s: tensor '%s': cannot write %zu bytes: %s", sh->path, t->name, nbytes, strerror(code));
  if (nbytes > 0) start_writeback(sh->fd, t->offset + byte_offset, nbytes);
  return 0;
}

void st_writer_drop_cache(st_writer *w) {
  for (size_t s = 0; s < w->shard_count; s++) posix_fadvise(w->shards[s].fd, 0, 0, POSIX_FADV_DONTNEED);
}

void st_writer_drop_tensor(st_writer *w, size_t index) {
  const planned *t = &w->tensors[index];
  if (w->shards[t->shard].fd >= 0 && t->nbytes)
    posix_fadvise(w->shards[t->shard].fd, (off_t)t->offset, (off_t)t->nbytes, POSIX_FADV_DONTNEED);
}

int st_writer_write(st_writer *w, size_t index, const void *data, rotq_error *err) {
  if (index >= w->count)
    return rotq_fail(err, "%s: tensor index %zu out of range (%zu declared)", w->dir, index, w->count);
  planned *t = &w->tensors[index];
  if (atomic_exchange(&t->begun, true))
    return rotq_fail(err, "%s: tensor '%s' written twice", w->shards[t->shard].path, t->name);
  return st_writer_write_part(w, index, 0, data, t->nbytes, err);
}

/* model.safetensors.index.json: total data bytes and each tensor's shard, names sorted. */
static int write_index(const st_writer *w, rotq_error *err) {
  size_t size = strlen(w->dir) + sizeof INDEX_NAME + 1;
  char *path = malloc(size);
  cJSON *root = cJSON_CreateObject();
  cJSON *metadata = cJSON_AddObjectToObject(root, "metadata");
  cJSON *map = cJSON_AddObjectToObject(root, "weight_map");
  uint64_t total = 0;
  for (size_t i = 0; i < w->count; i++) total += w->tensors[i].nbytes;
  bool ok = path && map && cJSON_AddNumberToObject(metadata, "total_size", (double)total);
  for (size_t i = 0; ok && i < w->count; i++) {
    const planned *t = w->by_name[i];
    const char *file = strrchr(w->shards[t->shard].path, '/') + 1;
    ok = cJSON_AddStringToObject(map, t->name, file) != NULL;
  }
  int status = ok ? 0 : rotq_fail(err, "%s: out of memory for %s", w->dir, INDEX_NAME);
  if (ok) {
    snprintf(path, size, "%s/%s", w->dir, INDEX_NAME);
    status = json_file_write(path, root, err);
  }
  cJSON_Delete(root);
  free(path);
  return status;
}

/* fsync of the directory, so the new entries in it are durable too. */
static int sync_directory(const char *dir, rotq_error *err) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return rotq_fail(err, "%s: cannot open: %s", dir, strerror(errno));
  int status = fsync(fd) == 0 ? 0 : rotq_fail(err, "%s: fsync: %s", dir, strerror(errno));
  close(fd);
  return status;
}

int st_writer_finish(st_writer *w, rotq_error *err) {
  int status = 0;
  size_t missing = 0;
  const char *first_missing = NULL;
  for (size_t i = 0; i < w->count; i++)
    if ((!atomic_load(&w->tensors[i].begun) || atomic_load(&w->tensors[i].written_bytes) != w->tensors[i].nbytes) &&
        missing++ == 0)
      first_missing = w->tensors[i].name;
  if (missing)
    status = rotq_fail(err, "%s: tensor '%s' was never written (%zu of %zu tensors missing)", w->dir, first_missing,
                       missing, w->count);
  for (size_t s = 0; status == 0 && s < w->shard_count; s++) {
    shard *sh = &w->shards[s];
    if (fsync(sh->fd) != 0) status = rotq_fail(err, "%s: fsync: %s", sh->path, strerror(errno));
    int closed = close(sh->fd);
    sh->fd = -1;
    if (closed != 0 && status == 0) status = rotq_fail(err, "%s: close: %s", sh->path, strerror(errno));
  }
  if (status == 0 && w->shard_count > 1) status = write_index(w, err);
  if (status == 0) status = sync_directory(w->dir, err);
  writer_free(w, false);
  return status;
}

void st_writer_abort(st_writer *w) {
  if (w) writer_free(w, false);
}
