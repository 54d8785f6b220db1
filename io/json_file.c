/* JSON files read and written whole with cJSON. */
#include "io/json_file.h"

#include "common/regular_file.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <fcntl.h>
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

cJSON *json_file_read(const char *path, rotq_error *err) {
  json_file_init();
  char *text = read_text(path, err);
  if (!text) return NULL;
  const char *parse_end = NULL;
  cJSON *json = cJSON_ParseWithOpts(text, &parse_end, 1);
  if (!json)
    rotq_fail(err, "%s: not valid JSON (error at byte %td)", path, parse_end ? parse_end - text : (ptrdiff_t)0);
  free(text);
  return json;
}

int json_file_write(const char *path, const cJSON *json, rotq_error *err) {
  json_file_init();
  unsigned long failures = __atomic_load_n(&alloc_failures, __ATOMIC_RELAXED);
  bool incomplete = failures != failures_at_last_write;
  failures_at_last_write = failures;
  if (incomplete) return rotq_fail(err, "%s: out of memory (building its JSON)", path);
  char *text = cJSON_Print(json);
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
