/* JSON files: read and parsed whole, or written once (new file, fsynced). */
#ifndef ROTQ_IO_JSON_FILE_H
#define ROTQ_IO_JSON_FILE_H

#include "common/error.h"

struct cJSON;

/* Parses the file at path; NULL with an error naming the file (and the byte) on failure. */
struct cJSON *json_file_read(const char *path, rotq_error *err);
/* Creates path (it must not exist), writes json indented plus a newline, and fsyncs it. */
int json_file_write(const char *path, const struct cJSON *json, rotq_error *err);

#endif
