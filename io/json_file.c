/* JSON files read and written whole with cJSON. */
#include "io/json_file.h"

#include "common/regular_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cJSON's functions that build a tree (cJSON_AddStringToObject, ...) drop what they cannot
 * allocate without a word; a file written from such a tree would look complete but lack fields.
 * cJSON's allocations therefore go through json_file_malloc, which counts failures, and
 * json_file_write refuses to write when any happened since the previous write. */
static unsigned long alloc_failures, failures_at_last_write;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

void *json_file_malloc(size_t size) {
  void *p = malloc(size);
  if (!p) __atomic_add_fetch(&alloc_failures, 1, __ATOMIC_RELAXED);
  return p;
}

static void install_hooks(void) { cJSON_InitHooks(&(cJSON_Hooks){.malloc_fn = json_file_malloc, .free_fn = free}); }

void json_file_init(void) { pthread_once(&hooks_once, install_hooks); }

/* The whole file as a NUL-terminated string (caller frees), or NULL with an error. */
static char *read_text(const char *path, rotq_error *err) {
  FILE *file = regular_file_open(path, err);
  if (!file) return NULL;
  size_t size = 0, capacity = 4096;
  char *text = malloc(capacity);
  while (text) {
    size += fread(text + size, 1, capacity - 1 - size, file);
    if (size < capacity - 1) break;
    char *bigger = realloc(text, capacity *= 2);
    if (!bigger) free(text);
    text = bigger;
  }
  int failed = ferror(file);
  fclose(file);
  if (!text) {
    rotq_fail(err, "%s: out of memory", path);
    return NULL;
  }
  if (failed) {
    free(text);
    rotq_fail(err, "%s: read error", path);
    return NULL;
  }
  text[size] = '\0';
  return text;
}

/* Number literals keep their spelling. cJSON prints 30.0 as 30 and 0.0 as 0; Python's json then
 * reads an int, and transformers 5's strict config classes refuse it where a float is declared
 * (Gemma-2 final_logit_softcapping, Mixtral router_jitter_noise, Nemotron-H time_step_limit).
 * Reading, each number item gets its source literal in valuestring (unused by cJSON for numbers,
 * freed and copied with the item); writing, a number whose value still equals its literal is
 * printed as that literal. Literals are matched to items in document order, which cJSON keeps. */

/* The next number literal of text after *p (skipping strings), its length in *length; NULL at the end. */
static const char *next_number(const char **p, size_t *length) {
  const char *s = *p;
  while (*s) {
    if (*s == '"') {
      for (s++; *s && *s != '"'; s++)
        if (*s == '\\' && s[1]) s++;
      if (*s) s++;
    } else if (*s == '-' || (*s >= '0' && *s <= '9')) {
      const char *start = s;
      while (*s && strchr("+-.0123456789eE", *s)) s++;
      *length = (size_t)(s - start);
      *p = s;
      return start;
    } else {
      s++;
    }
  }
  *p = s;
  return NULL;
}

/* Gives every number item of json, in document order, its literal from text; false on a mismatch. */
static bool attach_literals(cJSON *json, const char **cursor) {
  for (cJSON *item = json; item; item = item->next) {
    if (cJSON_IsNumber(item)) {
      size_t length;
      const char *literal = next_number(cursor, &length);
      if (!literal) return false;
      item->valuestring = strndup(literal, length);
      if (!item->valuestring) return false;
    }
    if (item->child && !attach_literals(item->child, cursor)) return false;
  }
  return true;
}

/* Drops the literals (on a mismatch: the numbers are then printed as cJSON prints them). */
static void drop_literals(cJSON *json) {
  for (cJSON *item = json; item; item = item->next) {
    if (cJSON_IsNumber(item) && item->valuestring) {
      free(item->valuestring);
      item->valuestring = NULL;
    }
    if (item->child) drop_literals(item->child);
  }
}

/* Turns every number whose value still equals its literal into a raw item printing that literal. */
static void literals_to_raw(cJSON *json) {
  for (cJSON *item = json; item; item = item->next) {
    if (cJSON_IsNumber(item) && item->valuestring) {
      char *end = NULL;
      double value = strtod(item->valuestring, &end);
      if (end && *end == '\0' && value == item->valuedouble) {
        item->type = cJSON_Raw;
      } else {
        free(item->valuestring);
        item->valuestring = NULL;
      }
    }
    if (item->child) literals_to_raw(item->child);
  }
}

cJSON *json_file_read(const char *path, rotq_error *err) {
  json_file_init();
  char *text = read_text(path, err);
  if (!text) return NULL;
  const char *parse_end = NULL;
  cJSON *json = cJSON_ParseWithOpts(text, &parse_end, 1);
  if (!json)
    rotq_fail(err, "%s: not valid JSON (error at byte %td)", path, parse_end ? parse_end - text : (ptrdiff_t)0);
  const char *cursor = text;
  if (json && !attach_literals(json, &cursor)) drop_literals(json);
  free(text);
  return json;
}

int json_file_write(const char *path, const cJSON *json, rotq_error *err) {
  json_file_init();
  unsigned long failures = __atomic_load_n(&alloc_failures, __ATOMIC_RELAXED);
  bool incomplete = failures != failures_at_last_write;
  failures_at_last_write = failures;
  if (incomplete) return rotq_fail(err, "%s: out of memory (building its JSON)", path);
  cJSON *copy = cJSON_Duplicate(json, 1);
  if (!copy) return rotq_fail(err, "%s: out of memory", path);
  literals_to_raw(copy);
  char *text = cJSON_Print(copy);
  cJSON_Delete(copy);
  if (!text) return rotq_fail(err, "%s: out of memory", path);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    rotq_fail(err, "%s: cannot create: %s", path, strerror(errno));
    free(text);
    return -1;
  }
  size_t length = strlen(text);
  text[length++] = '\n'; /* replaces the NUL: the text is written by length */
  size_t done = 0;
  while (done < length) {
    ssize_t n = write(fd, text + done, length - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    done += (size_t)n;
  }
  int status = 0;
  if (done < length || fsync(fd) != 0) status = rotq_fail(err, "%s: cannot write: %s", path, strerror(errno));
  if (close(fd) != 0 && status == 0) status = rotq_fail(err, "%s: cannot close: %s", path, strerror(errno));
  free(text);
  return status;
}

bool json_add_to_array(cJSON *array, cJSON *item) {
  if (cJSON_AddItemToArray(array, item)) return true;
  cJSON_Delete(item);
  return false;
}

bool json_add_to_object(cJSON *object, const char *key, cJSON *item) {
  if (cJSON_AddItemToObject(object, key, item)) return true;
  cJSON_Delete(item);
  return false;
}

cJSON *json_seed_create(uint64_t seed) {
  char text[24];
  snprintf(text, sizeof text, "%" PRIu64, seed);
  return cJSON_CreateString(text);
}

int json_seed_get(const cJSON *v, uint64_t *out) {
  if (cJSON_IsNumber(v)) { /* the numeric form of older outputs */
    double d = v->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return -1;
    *out = (uint64_t)d;
    return 0;
  }
  if (!cJSON_IsString(v) || !v->valuestring[0]) return -1;
  for (const char *c = v->valuestring; *c; c++)
    if (*c < '0' || *c > '9') return -1;
  errno = 0;
  char *end;
  unsigned long long s = strtoull(v->valuestring, &end, 10);
  if (errno || *end) return -1;
  *out = (uint64_t)s;
  return 0;
}
