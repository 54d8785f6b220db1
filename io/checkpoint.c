/* A checkpoint directory: config.json plus its safetensors shards, found through
 * model.safetensors.index.json, else model.safetensors, else every *.safetensors file. The index
 * is checked both ways against the shards' own headers. */
#include "io/checkpoint.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/json_file.h"

#define INDEX_NAME "model.safetensors.index.json"

/* A tensor and the shard (index into ck->shards) holding it. */
typedef struct located {
  const st_tensor *tensor;
  size_t shard;
} located;

/* An entry of the index's weight_map. */
typedef struct listed {
  const char *name, *shard;
} listed;

/* dir/name in a new string (caller frees), NULL with an error. */
static char *path_join(const char *dir, const char *name, rotq_error *err) {
  size_t size = strlen(dir) + strlen(name) + 2;
  char *path = malloc(size);
  if (!path) {
    rotq_fail(err, "%s: out of memory", dir);
    return NULL;
  }
  snprintf(path, size, "%s/%s", dir, name);
  return path;
}

static int is_regular_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int compare_string(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int compare_located(const void *a, const void *b) {
  return strcmp(((const located *)a)->tensor->name, ((const located *)b)->tensor->name);
}

static int compare_listed(const void *a, const void *b) {
  return strcmp(((const listed *)a)->name, ((const listed *)b)->name);
}

/* Maps the shards named in files (count of them, relative to ck->dir) into ck->shards. */
static int open_shards(checkpoint *ck, char **files, size_t count, rotq_error *err) {
  ck->shards = calloc(count, sizeof *ck->shards);
  if (!ck->shards) return rotq_fail(err, "%s: out of memory", ck->dir);
  for (size_t i = 0; i < count; i++) {
    char *path = path_join(ck->dir, files[i], err);
    if (!path) return -1;
    int status = st_open(path, &ck->shards[i], err);
    free(path);
    if (status != 0) return -1;
    ck->shard_count++;
  }
  return 0;
}

/* Every tensor of every shard, sorted by name; a name in two shards is an error. */
static located *locate_tensors(checkpoint *ck, rotq_error *err) {
  size_t count = 0;
  for (size_t s = 0; s < ck->shard_count; s++) count += ck->shards[s].count;
  located *all = malloc((count ? count : 1) * sizeof *all);
  if (!all) {
    rotq_fail(err, "%s: out of memory", ck->dir);
    return NULL;
  }
  size_t n = 0;
  for (size_t s = 0; s < ck->shard_count; s++)
    for (size_t i = 0; i < ck->shards[s].count; i++) all[n++] = (located){&ck->shards[s].tensors[i], s};
  qsort(all, count, sizeof *all, compare_located);
  for (size_t i = 1; i < count; i++)
    if (strcmp(all[i - 1].tensor->name, all[i].tensor->name) == 0) {
      rotq_fail(err, "%s: tensor '%s' is in both %s and %s", ck->dir, all[i].tensor->name,
                ck->shards[all[i - 1].shard].path, ck->shards[all[i].shard].path);
      free(all);
      return NULL;
    }
  ck->tensor_count = count;
  return all;
}

/* The weight_map of the index, sorted by name, checked (string values naming plain files in
 * the directory, no name twice); *shards gets the distinct shard names, sorted. */
static listed *read_weight_map(const char *index_path, const cJSON *index, size_t *count, char ***shards,
                               size_t *shard_count, rotq_error *err) {
  const cJSON *map = cJSON_GetObjectItemCaseSensitive(index, "weight_map");
  if (!cJSON_IsObject(map)) {
    rotq_fail(err, "%s: \"weight_map\" is missing or not an object", index_path);
    return NULL;
  }
  size_t n = (size_t)cJSON_GetArraySize(map);
  listed *entries = malloc((n ? n : 1) * sizeof *entries);
  char **names = malloc((n ? n : 1) * sizeof *names);
  if (!entries || !names) {
    rotq_fail(err, "%s: out of memory", index_path);
    goto fail;
  }
  size_t i = 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, map) {
    if (!cJSON_IsString(item) || !item->valuestring[0] || strchr(item->valuestring, '/') ||
        strcmp(item->valuestring, ".") == 0 || strcmp(item->valuestring, "..") == 0) {
      rotq_fail(err, "%s: weight_map: tensor '%s' names no shard file in this directory", index_path, item->string);
      goto fail;
    }
    entries[i] = (listed){item->string, item->valuestring};
    names[i++] = item->valuestring;
  }
  qsort(entries, n, sizeof *entries, compare_listed);
  for (i = 1; i < n; i++)
    if (strcmp(entries[i - 1].name, entries[i].name) == 0) {
      rotq_fail(err, "%s: weight_map lists tensor '%s' twice", index_path, entries[i].name);
      goto fail;
    }
  qsort(names, n, sizeof *names, compare_string);
  size_t distinct = 0;
  for (i = 0; i < n; i++)
    if (distinct == 0 || strcmp(names[distinct - 1], names[i]) != 0) names[distinct++] = names[i];
  *count = n;
  *shards = names;
  *shard_count = distinct;
  return entries;
fail:
  free(entries);
  free(names);
  return NULL;
}

/* Walks the sorted weight_map and the sorted tensors together: both must name the same tensors,
 * each in the same shard. */
static int check_weight_map(const checkpoint *ck, const char *index_path, const listed *entries, size_t count,
                            const located *all, rotq_error *err) {
  size_t i = 0, j = 0;
  while (i < count || j < ck->tensor_count) {
    int order = i == count ? 1 : j == ck->tensor_count ? -1 : strcmp(entries[i].name, all[j].tensor->name);
    if (order < 0)
      return rotq_fail(err, "%s: weight_map puts tensor '%s' in %s, which has no such tensor", index_path,
                       entries[i].name, entries[i].shard);
    const char *path = ck->shards[all[j].shard].path;
    if (order > 0)
      return rotq_fail(err, "%s: tensor '%s' is not listed in the weight_map of %s", path, all[j].tensor->name,
                       index_path);
    const char *file = strrchr(path, '/') + 1;
    if (strcmp(entries[i].shard, file) != 0)
      return rotq_fail(err, "%s: weight_map puts tensor '%s' in %s, which has no such tensor (it is in %s)", index_path,
                       entries[i].name, entries[i].shard, file);
    i++;
    j++;
  }
  return 0;
}

/* Opens the shards an index names and checks the index against them; *all as locate_tensors. */
static int open_indexed(checkpoint *ck, const char *index_path, located **all, rotq_error *err) {
  cJSON *index = json_file_read(index_path, err);
  if (!index) return -1;
  int status = -1;
  size_t count = 0, shard_count = 0;
  char **shards = NULL;
  listed *entries = read_weight_map(index_path, index, &count, &shards, &shard_count, err);
  if (!entries) goto done;
  for (size_t s = 0; s < shard_count; s++) {
    char *path = path_join(ck->dir, shards[s], err);
    if (!path) goto done;
    int exists = is_regular_file(path);
    free(path);
    if (!exists) {
      rotq_fail(err, "%s: names shard %s, which is not a file in %s", index_path, shards[s], ck->dir);
      goto done;
    }
  }
  if (open_shards(ck, shards, shard_count, err) != 0) goto done;
  *all = locate_tensors(ck, err);
  if (!*all) goto done;
  status = check_weight_map(ck, index_path, entries, count, *all, err);
done:
  free(entries);
  free(shards);
  cJSON_Delete(index);
  return status;
}

/* The *.safetensors files of dir, sorted (caller frees each and the array). */
static char **list_safetensors(const char *dir, size_t *count, rotq_error *err) {
  DIR *d = opendir(dir);
  if (!d) {
    rotq_fail(err, "%s: cannot list: %s", dir, strerror(errno));
    return NULL;
  }
  size_t n = 0, capacity = 16;
  char **names = malloc(capacity * sizeof *names);
  struct dirent *entry = NULL;
  while (names && (entry = readdir(d))) {
    size_t length = strlen(entry->d_name);
    if (length <= 12 || strcmp(entry->d_name + length - 12, ".safetensors") != 0) continue;
    if (n == capacity) {
      char **bigger = realloc(names, (capacity *= 2) * sizeof *names);
      if (!bigger) break;
      names = bigger;
    }
    if (!(names[n] = strdup(entry->d_name))) break;
    n++;
  }
  closedir(d);
  if (!names || entry) { /* stopped early: out of memory */
    for (size_t i = 0; names && i < n; i++) free(names[i]);
    free(names);
    rotq_fail(err, "%s: out of memory", dir);
    return NULL;
  }
  qsort(names, n, sizeof *names, compare_string);
  *count = n;
  return names;
}

/* Opens model.safetensors, else every *.safetensors file of the directory. */
static int open_unindexed(checkpoint *ck, located **all, rotq_error *err) {
  char *single = path_join(ck->dir, "model.safetensors", err);
  if (!single) return -1;
  int has_single = is_regular_file(single);
  free(single);
  if (has_single) {
    char *files[] = {"model.safetensors"};
    if (open_shards(ck, files, 1, err) != 0) return -1;
  } else {
    size_t count = 0;
    char **files = list_safetensors(ck->dir, &count, err);
    if (!files) return -1;
    int status = count == 0 ? rotq_fail(err, "%s: no model.safetensors, %s or *.safetensors files", ck->dir, INDEX_NAME)
                            : open_shards(ck, files, count, err);
    for (size_t i = 0; i < count; i++) free(files[i]);
    free(files);
    if (status != 0) return -1;
  }
  *all = locate_tensors(ck, err);
  return *all ? 0 : -1;
}

/* The sizes of config.json against the tensors, before anything is allocated from them: a layer
 * count above the number of tensors cannot be right (and would make rotq build per-layer
 * matrices or caches for layers that are not there). Widths are bounded by the largest tensor
 * dimension, kept in config.max_tensor_extent for the code that allocates from them. */
static int check_config_sizes(checkpoint *ck, rotq_error *err) {
  const model_config *c = &ck->config;
  long extent = 0;
  for (size_t i = 0; i < ck->tensor_count; i++)
    for (int d = 0; d < ck->tensors[i]->ndim; d++)
      if (ck->tensors[i]->shape[d] > extent) extent = (long)ck->tensors[i]->shape[d];
  ck->config.max_tensor_extent = extent;
  if ((size_t)c->num_hidden_layers > ck->tensor_count)
    return rotq_fail(err, "%s: field 'num_hidden_layers': %d layers, but the checkpoint has only %zu tensors", c->path,
                     c->num_hidden_layers, ck->tensor_count);
  return 0;
}

/* ck->tensors: the located tensors with the quantized ones paired with their scales. */
static int pair_quantized(checkpoint *ck, const located *all, rotq_error *err) {
  const st_tensor **stored = malloc((ck->tensor_count ? ck->tensor_count : 1) * sizeof *stored);
  if (!stored) return rotq_fail(err, "%s: out of memory", ck->dir);
  for (size_t i = 0; i < ck->tensor_count; i++) stored[i] = all[i].tensor;
  size_t shown = 0;
  int status = quantized_pair(ck->dir, ck->config.json, stored, ck->tensor_count, &ck->quantized, &ck->quantized_count,
                              &ck->tensors, &shown, err);
  free(stored);
  if (status == 0) ck->tensor_count = shown;
  return status;
}

int checkpoint_open(const char *dir, checkpoint *ck, rotq_error *err) {
  memset(ck, 0, sizeof *ck);
  ck->dir = strdup(dir);
  if (!ck->dir) return rotq_fail(err, "%s: out of memory", dir);
  located *all = NULL;
  char *config_path = path_join(dir, "config.json", err);
  char *index_path = config_path ? path_join(dir, INDEX_NAME, err) : NULL;
  int status = -1;
  if (!index_path || model_config_load(config_path, &ck->config, err) != 0) goto done;
  status = is_regular_file(index_path) ? open_indexed(ck, index_path, &all, err) : open_unindexed(ck, &all, err);
  if (status != 0) goto done;
  status = pair_quantized(ck, all, err);
  if (status == 0) status = check_config_sizes(ck, err);
done:
  free(all);
  free(config_path);
  free(index_path);
  if (status != 0) checkpoint_close(ck);
  return status;
}

void checkpoint_close(checkpoint *ck) {
  for (size_t i = 0; i < ck->shard_count; i++) st_close(&ck->shards[i]);
  free(ck->shards);
  free(ck->tensors);
  quantized_free(ck->quantized, ck->quantized_count);
  model_config_free(&ck->config);
  free(ck->dir);
  memset(ck, 0, sizeof *ck);
}

static int compare_key_tensor(const void *key, const void *element) {
  return strcmp(key, (*(const st_tensor *const *)element)->name);
}

void checkpoint_release(const checkpoint *ck) {
  for (size_t s = 0; s < ck->shard_count; s++) st_release(ck->shards[s].map, ck->shards[s].size);
}

void checkpoint_forget(const checkpoint *ck, const void *data, size_t nbytes) {
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), address = (uintptr_t)data;
  for (size_t s = 0; s < ck->shard_count; s++) {
    const st_file *f = &ck->shards[s];
    uintptr_t map = (uintptr_t)f->map;
    if (address < map || address - map >= f->size) continue;
    uintptr_t first = (address - map + page - 1) & ~(page - 1), end = (address - map + nbytes) & ~(page - 1);
    int fd = end > first ? open(f->path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
      posix_fadvise(fd, (off_t)first, (off_t)(end - first), POSIX_FADV_DONTNEED);
      close(fd);
    }
    return;
  }
}

const st_tensor *checkpoint_find(const checkpoint *ck, const char *name) {
  const st_tensor *const *found = bsearch(name, ck->tensors, ck->tensor_count, sizeof *ck->tensors, compare_key_tensor);
  return found ? *found : NULL;
}

/* The tensor called name, checked against expected_numel (0 = any). */
static const st_tensor *find_checked(const checkpoint *ck, const char *name, size_t expected_numel, rotq_error *err) {
  const st_tensor *t = checkpoint_find(ck, name);
  if (!t) {
    rotq_fail(err, "%s: no tensor '%s'", ck->dir, name);
    return NULL;
  }
  if (expected_numel && st_numel(t) != expected_numel) {
    rotq_fail(err, "%s: tensor '%s' has %zu elements, expected %zu", ck->dir, name, st_numel(t), expected_numel);
    return NULL;
  }
  return t;
}

int checkpoint_read_f64(const checkpoint *ck, const char *name, size_t expected_numel, double **out, rotq_error *err) {
  const st_tensor *t = find_checked(ck, name, expected_numel, err);
  if (!t) return -1;
  size_t n = st_numel(t);
  *out = malloc((n ? n : 1) * sizeof **out);
  if (!*out) return rotq_fail(err, "%s: tensor '%s': out of memory for %zu doubles", ck->dir, name, n);
  st_to_f64(t, 0, n, *out);
  return 0;
}

int checkpoint_read_f32(const checkpoint *ck, const char *name, size_t expected_numel, float **out, rotq_error *err) {
  const st_tensor *t = find_checked(ck, name, expected_numel, err);
  if (!t) return -1;
  size_t n = st_numel(t);
  *out = malloc((n ? n : 1) * sizeof **out);
  if (!*out) return rotq_fail(err, "%s: tensor '%s': out of memory for %zu floats", ck->dir, name, n);
  st_to_f32(t, 0, n, *out);
  return 0;
}

const char *checkpoint_path_of(const checkpoint *ck, const st_tensor *t) {
  for (size_t i = 0; i < ck->shard_count; i++) {
    const unsigned char *base = ck->shards[i].map;
    if ((const unsigned char *)t->data >= base && (const unsigned char *)t->data <= base + ck->shards[i].size)
      return ck->shards[i].path;
  }
  return ck->dir;
}
