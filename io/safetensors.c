/* safetensors reader: an 8-byte little-endian header length N, N bytes of JSON
 * {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
 * data section, which offsets are relative to. The file is mapped read-only and the header,
 * untrusted, is checked field by field as it is read. */
#include "io/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <unistd.h>

/* Headers above this are refused (the reference implementation's limit too). */
#define ST_MAX_HEADER_BYTES ((uint64_t)100000000)

size_t st_numel(const st_tensor *t) {
  size_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
  return n;
}

/* Writes "[a, b, c]" into buf. */
static const char *shape_text(const st_tensor *t, char *buf, size_t size) {
  size_t used = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < t->ndim && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

/* A JSON number that is an integer in [0, 2^53] (exactly representable), as *value. */
static int json_count(const cJSON *item, uint64_t *value) {
  if (!cJSON_IsNumber(item)) return -1;
  double d = item->valuedouble;
  if (!(d >= 0 && d <= 9007199254740992.0) || d != floor(d)) return -1;
  *value = (uint64_t)d;
  return 0;
}

/* Parses the "shape" of tensor t (dims, element count and byte size). */
static int parse_shape(const char *path, const cJSON *entry, st_tensor *t, rotq_error *err) {
  const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
  if (!cJSON_IsArray(shape))
    return rotq_fail(err, "%s: tensor '%s': \"shape\" is missing or not an array", path, t->name);
  int ndim = cJSON_GetArraySize(shape);
  if (ndim > ST_MAX_DIMS)
    return rotq_fail(err, "%s: tensor '%s': shape has %d dimensions (at most %d supported)", path, t->name, ndim,
                     ST_MAX_DIMS);
  t->ndim = 0;
  size_t numel = 1;
  const cJSON *dim;
  cJSON_ArrayForEach(dim, shape) {
    uint64_t extent;
    if (json_count(dim, &extent) != 0)
      return rotq_fail(err, "%s: tensor '%s': shape dimension %d is not a non-negative integer", path, t->name,
                       t->ndim);
    t->shape[t->ndim++] = (int64_t)extent;
    if (__builtin_mul_overflow(numel, (size_t)extent, &numel))
      return rotq_fail(err, "%s: tensor '%s': shape has too many elements", path, t->name);
  }
  if (__builtin_mul_overflow(numel, dtype_size(t->dtype), &t->nbytes))
    return rotq_fail(err, "%s: tensor '%s': shape is too large for %s", path, t->name, dtype_name(t->dtype));
  return 0;
}

/* Parses one tensor entry; begin and end get its data_offsets, checked against the data section. */
static int parse_tensor(const char *path, const cJSON *entry, size_t data_size, st_tensor *t, uint64_t *begin,
                        uint64_t *end, rotq_error *err) {
  if (!cJSON_IsObject(entry)) return rotq_fail(err, "%s: tensor '%s': entry is not an object", path, t->name);
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
  if (!cJSON_IsString(type))
    return rotq_fail(err, "%s: tensor '%s': \"dtype\" is missing or not a string", path, t->name);
  if (dtype_parse(type->valuestring, &t->dtype) != 0)
    return rotq_fail(
        err, "%s: tensor '%s': unsupported dtype '%.32s' (F64, F32, F16, BF16, F8_E4M3, F8_E5M2, U8, I8, I32, I64 are)",
        path, t->name, type->valuestring);
  if (parse_shape(path, entry, t, err) != 0) return -1;
  const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
  if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
      json_count(cJSON_GetArrayItem(offsets, 0), begin) != 0 || json_count(cJSON_GetArrayItem(offsets, 1), end) != 0)
    return rotq_fail(err, "%s: tensor '%s': \"data_offsets\" is not [begin, end] of non-negative integers", path,
                     t->name);
  if (*begin > *end)
    return rotq_fail(err, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, t->name,
                     (unsigned long long)*begin, (unsigned long long)*end);
  if (*end > data_size)
    return rotq_fail(err, "%s: tensor '%s': data_offsets [%llu, %llu] lie outside the data section (%zu bytes)", path,
                     t->name, (unsigned long long)*begin, (unsigned long long)*end, data_size);
  if (*end - *begin != t->nbytes) {
    char shape[256];
    return rotq_fail(err, "%s: tensor '%s': shape %s × %s is %zu bytes but data_offsets span %llu", path, t->name,
                     shape_text(t, shape, sizeof shape), dtype_name(t->dtype), t->nbytes,
                     (unsigned long long)(*end - *begin));
  }
  return 0;
}

/* Checks "__metadata__" is an object of strings and keeps it as JSON text. */
static int parse_metadata(const char *path, const cJSON *metadata, st_file *f, rotq_error *err) {
  if (f->metadata_json) return rotq_fail(err, "%s: \"__metadata__\" appears twice", path);
  if (!cJSON_IsObject(metadata)) return rotq_fail(err, "%s: \"__metadata__\" is not an object", path);
  const cJSON *field;
  cJSON_ArrayForEach(field, metadata) {
    if (!cJSON_IsString(field))
      return rotq_fail(err, "%s: \"__metadata__\" field '%s' is not a string", path, field->string);
  }
  f->metadata_json = cJSON_PrintUnformatted(metadata);
  if (!f->metadata_json) return rotq_fail(err, "%s: out of memory", path);
  return 0;
}

typedef struct span {
  uint64_t begin, end;
  const char *name;
} span;

static int compare_span(const void *a, const void *b) {
  const span *x = a, *y = b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static int compare_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Checks no two tensors share a name and no two byte spans overlap. */
static int check_layout(const char *path, span *spans, size_t count, rotq_error *err) {
  const char **names = malloc((count ? count : 1) * sizeof *names);
  if (!names) return rotq_fail(err, "%s: out of memory", path);
  for (size_t i = 0; i < count; i++) names[i] = spans[i].name;
  qsort(names, count, sizeof *names, compare_name);
  for (size_t i = 1; i < count; i++)
    if (strcmp(names[i - 1], names[i]) == 0) {
      rotq_fail(err, "%s: tensor '%s' appears twice in the header", path, names[i]);
      free(names);
      return -1;
    }
  free(names);
  qsort(spans, count, sizeof *spans, compare_span);
  for (size_t i = 1; i < count; i++)
    if (spans[i].begin < spans[i - 1].end)
      return rotq_fail(err, "%s: tensors '%s' [%llu, %llu] and '%s' [%llu, %llu] overlap", path, spans[i - 1].name,
                       (unsigned long long)spans[i - 1].begin, (unsigned long long)spans[i - 1].end, spans[i].name,
                       (unsigned long long)spans[i].begin, (unsigned long long)spans[i].end);
  return 0;
}

/* Parses and checks the header JSON (f->map, f->size already set). */
static int parse_header(st_file *f, const char *json, size_t header_size, rotq_error *err) {
  const char *path = f->path;
  const char *data = json + header_size;
  size_t data_size = f->size - 8 - header_size;
  const char *parse_end = NULL;
  cJSON *root = cJSON_ParseWithLengthOpts(json, header_size, &parse_end, 0);
  if (!root)
    return rotq_fail(err, "%s: header is not valid JSON (error at byte %td of %zu)", path,
                     parse_end ? parse_end - json : (ptrdiff_t)0, header_size);
  int status = -1;
  span *spans = NULL;
  for (const char *p = parse_end; p < data; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
      rotq_fail(err, "%s: header has bytes after its JSON object (at byte %td of %zu)", path, p - json, header_size);
      goto done;
    }
  if (!cJSON_IsObject(root)) {
    rotq_fail(err, "%s: header is not a JSON object", path);
    goto done;
  }
  size_t entries = (size_t)cJSON_GetArraySize(root);
  f->tensors = calloc(entries ? entries : 1, sizeof *f->tensors);
  spans = malloc((entries ? entries : 1) * sizeof *spans);
  if (!f->tensors || !spans) {
    rotq_fail(err, "%s: out of memory", path);
    goto done;
  }
  const cJSON *entry;
  cJSON_ArrayForEach(entry, root) {
    if (strcmp(entry->string, "__metadata__") == 0) {
      if (parse_metadata(path, entry, f, err) != 0) goto done;
      continue;
    }
    size_t name_length = strlen(entry->string);
    if (name_length > ST_NAME_MAX) {
      rotq_fail(err, "%s: tensor '%.60s...': the name is %zu bytes long (at most %d)", path, entry->string, name_length,
                ST_NAME_MAX);
      goto done;
    }
    st_tensor *t = &f->tensors[f->count];
    t->name = strdup(entry->string);
    if (!t->name) {
      rotq_fail(err, "%s: out of memory", path);
      goto done;
    }
    f->count++;
    span *s = &spans[f->count - 1];
    if (parse_tensor(path, entry, data_size, t, &s->begin, &s->end, err) != 0) goto done;
    s->name = t->name;
    t->data = data + s->begin;
  }
  status = check_layout(path, spans, f->count, err);
done:
  free(spans);
  cJSON_Delete(root);
  return status;
}

int st_open(const char *path, st_file *f, rotq_error *err) {
  memset(f, 0, sizeof *f);
  f->path = strdup(path);
  if (!f->path) return rotq_fail(err, "%s: out of memory", path);
  /* O_NONBLOCK: a FIFO must not block the open; it is refused below, as not a regular file */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    rotq_fail(err, "%s: cannot open: %s", path, strerror(errno));
    goto fail;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    rotq_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    close(fd);
    goto fail;
  }
  if (!S_ISREG(st.st_mode)) {
    rotq_fail(err, "%s: not a regular file", path);
    close(fd);
    goto fail;
  }
  if (st.st_size == 0) {
    rotq_fail(err, "%s: empty file (0 bytes), not a safetensors file", path);
    close(fd);
    goto fail;
  }
  if (st.st_size < 8) {
    rotq_fail(err, "%s: file is %lld bytes, too short for a safetensors header (8-byte length + JSON)", path,
              (long long)st.st_size);
    close(fd);
    goto fail;
  }
  f->size = (size_t)st.st_size;
  void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) {
    rotq_fail(err, "%s: cannot map %zu bytes: %s", path, f->size, strerror(errno));
    goto fail;
  }
  f->map = map;
  const unsigned char *bytes = map;
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; i--) header_size = header_size << 8 | bytes[i];
  if (header_size > f->size - 8) {
    rotq_fail(err, "%s: header length %llu exceeds the %zu bytes that follow it (truncated or not safetensors)", path,
              (unsigned long long)header_size, f->size - 8);
    goto fail;
  }
  if (header_size > ST_MAX_HEADER_BYTES) {
    rotq_fail(err, "%s: header length %llu exceeds the %llu-byte limit", path, (unsigned long long)header_size,
              (unsigned long long)ST_MAX_HEADER_BYTES);
    goto fail;
  }
  if (parse_header(f, (const char *)bytes + 8, (size_t)header_size, err) != 0) goto fail;
  return 0;
fail:
  st_close(f);
  return -1;
}

void st_close(st_file *f) {
  if (f->map) munmap(f->map, f->size);
  for (size_t i = 0; i < f->count; i++) free(f->tensors[i].name);
  free(f->tensors);
  free(f->metadata_json);
  free(f->path);
  memset(f, 0, sizeof *f);
}

/* The whole pages covering [data, data + nbytes), for madvise. */
static void page_span(const void *data, size_t nbytes, void **begin, size_t *length) {
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t first = (uintptr_t)data & ~(page - 1), end = ((uintptr_t)data + nbytes + page - 1) & ~(page - 1);
  *begin = (void *)first;
  *length = (size_t)(end - first);
}

/* Are all the pages of [begin, begin + length) (page-aligned) in the page cache already? Asked
 * MINCORE_PAGES at a time; false where mincore fails. */
#define MINCORE_PAGES 1024
static bool resident(void *begin, size_t length) {
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  unsigned char vec[MINCORE_PAGES];
  for (size_t done = 0; done < length;) {
    size_t chunk = length - done < MINCORE_PAGES * page ? length - done : MINCORE_PAGES * page;
    if (mincore((unsigned char *)begin + done, chunk, vec) != 0) return false;
    for (size_t i = 0; i < (chunk + page - 1) / page; i++)
      if (!(vec[i] & 1)) return false;
    done += chunk;
  }
  return true;
}

void st_prefetch(const void *data, size_t nbytes) {
  void *begin;
  size_t length;
  page_span(data, nbytes, &begin, &length);
  /* resident bytes (tmpfs, or a file read before) need no reading: populating their page table
   * entries only to drop them again would cost a pass and a TLB shootdown for nothing */
  if (!length || resident(begin, length)) return;
#ifdef MADV_POPULATE_READ
  if (madvise(begin, length, MADV_POPULATE_READ) != 0)
#endif
  {
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < length; i += (size_t)sysconf(_SC_PAGESIZE)) sink ^= ((const unsigned char *)begin)[i];
    (void)sink;
  }
  madvise(begin, length, MADV_DONTNEED);
}

void st_release(const void *data, size_t nbytes) {
  void *begin;
  size_t length;
  page_span(data, nbytes, &begin, &length);
  if (length) madvise(begin, length, MADV_DONTNEED);
}

bool st_fd_in_memory(int fd) {
  struct statfs fs;
  return fstatfs(fd, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
}

const st_tensor *st_find(const st_file *f, const char *name) {
  for (size_t i = 0; i < f->count; i++)
    if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
  return NULL;
}
