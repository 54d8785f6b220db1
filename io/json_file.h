/* JSON files: read and parsed whole, or written once (new file, fsynced). */
#ifndef ROTQ_IO_JSON_FILE_H
#define ROTQ_IO_JSON_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/error.h"

struct cJSON;

/* Parses the file at path; NULL with an error naming the file (and the byte) on failure. */
struct cJSON *json_file_read(const char *path, rotq_error *err);
/* Creates path (it must not exist), writes json indented plus a newline, and fsyncs it. Fails
 * ("out of memory") if any cJSON allocation failed since the previous call: a tree built with a
 * failed allocation silently lacks items. */
int json_file_write(const char *path, const struct cJSON *json, rotq_error *err);

/* Routes cJSON's allocations through json_file_malloc (cJSON_InitHooks, process-wide; done by
 * json_file_read and json_file_write, before any tree is built in rotq's flows). */
void json_file_init(void);
void *json_file_malloc(size_t size);

/* cJSON_AddItemToArray / cJSON_AddItemToObject that delete item when it cannot be added (a NULL
 * parent or a failed allocation), instead of leaking it. */
bool json_add_to_array(struct cJSON *array, struct cJSON *item);
bool json_add_to_object(struct cJSON *object, const char *key, struct cJSON *item);

/* A 64-bit seed as JSON: its decimal string ("9007199254740993"), so that every value survives
 * readers that parse numbers as doubles (exact only up to 2^53). NULL when out of memory. */
struct cJSON *json_seed_create(uint64_t seed);
/* Reads a seed written by json_seed_create, or by an older rotq as a JSON number (exact only when
 * it is an integer in 0..2^53). -1 when v is neither (the caller names the field). */
int json_seed_get(const struct cJSON *v, uint64_t *out);

#endif
