/* Fuzz inputs as files: the parsers under test open paths, so each input is written to a file
 * first. An in-memory file (memfd, opened through /proc/self/fd/N) keeps this off the disk. */
#ifndef ROTQ_FUZZ_INPUT_FILE_H
#define ROTQ_FUZZ_INPUT_FILE_H

#include <stddef.h>
#include <stdint.h>

/* Replaces the contents of the process's one in-memory file with data and returns its path
 * (a static string). Aborts on failure: a harness that cannot write its input tests nothing. */
const char *fuzz_input_as_file(const uint8_t *data, size_t size);

/* Creates (or replaces) the file at path with data. Aborts on failure. */
void fuzz_write_file(const char *path, const void *data, size_t size);

#endif
