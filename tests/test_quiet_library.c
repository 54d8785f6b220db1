/* The library is quiet: rotq_rotate (and rotq_eval) on a model that makes it warn, verify, and
 * clean up after a killed run write nothing to stderr or stdout; everything comes through the log
 * callback instead — the warnings, the verify reports, the summary, the timing and the notice of
 * the stale partial output it removed. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rotq.h"

typedef struct log_record {
  int count[ROTQ_LOG_WARNING + 1];
  char text[16384];
} log_record;

static void record(rotq_log_level level, const char *message, void *context) {
  log_record *r = context;
  assert_true(level >= ROTQ_LOG_DEBUG && level <= ROTQ_LOG_WARNING);
  assert_null(strchr(message, '\n')); /* one line, no newline */
  r->count[level]++;
  size_t used = strlen(r->text);
  snprintf(r->text + used, sizeof r->text - used, "%d %s\n", (int)level, message);
}

/* A pid no process has: a child's, after it exited and was reaped. */
static pid_t dead_pid(void) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  waitpid(pid, NULL, 0);
  return pid;
}

static void test_rotate_writes_nothing_to_stderr(void **state) {
  (void)state;
  char dir[4096], model[4096], output[4096], partial[4200], captured[4200];
  snprintf(dir, sizeof dir, "%s/rotq-quiet-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  assert_non_null(mkdtemp(dir));
  snprintf(model, sizeof model, "%s/models/stories260K", getenv("ROTQ_SOURCE_DIR"));
  snprintf(output, sizeof output, "%s/out", dir);
  /* the partial output of a killed run, which the next run removes (and says so) */
  snprintf(partial, sizeof partial, "%s/.out.rotq-partial-%ld", dir, (long)dead_pid());
  assert_int_equal(mkdir(partial, 0700), 0);

  /* stderr and stdout into a file for the calls */
  snprintf(captured, sizeof captured, "%s/captured", dir);
  fflush(stdout);
  fflush(stderr);
  int saved_err = dup(STDERR_FILENO), saved_out = dup(STDOUT_FILENO);
  int fd = open(captured, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  assert_true(fd >= 0 && saved_err >= 0 && saved_out >= 0);
  dup2(fd, STDERR_FILENO);
  dup2(fd, STDOUT_FILENO);
  close(fd);

  log_record log = {0};
  rotq_rotate_options o = rotq_rotate_default_options();
  o.model_dir = model;
  o.output_dir = output;
  o.verify = ROTQ_VERIFY_ALL;
  o.log = record;
  o.log_context = &log;
  rotq_error err = {{0}};
  int rc = rotq_rotate(&o, &err);
  /* a failing call is quiet too */
  rotq_rotate_options bad = o;
  bad.output_dir = model; /* the input itself */
  int bad_rc = rotq_rotate(&bad, &err);
  rotq_eval_options e = {.model_dir = output, .tokens_path = "/nonexistent/tokens.u16"};
  rotq_eval_result r;
  int eval_rc = rotq_eval(&e, &r, &err);

  fflush(stdout);
  fflush(stderr);
  dup2(saved_err, STDERR_FILENO);
  dup2(saved_out, STDOUT_FILENO);
  close(saved_err);
  close(saved_out);

  struct stat st;
  assert_int_equal(stat(captured, &st), 0);
  if (st.st_size != 0) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "cat '%s' >&2", captured);
    if (system(cmd) != 0) fail_msg("cannot show %s", captured);
  }
  assert_int_equal(st.st_size, 0);
  assert_int_equal(rc, 0);
  assert_int_equal(bad_rc, -1);
  assert_int_equal(eval_rc, -1);
  printf("%s", log.text);
  /* what `rotq rotate` prints came through the callback */
  assert_true(log.count[ROTQ_LOG_WARNING] >= 2);
  assert_non_null(strstr(log.text, "3 rotation_config '*in_proj' matches no tensor (ignored)\n"));
  assert_non_null(strstr(log.text, "1 verify: in-stream: "));
  assert_non_null(strstr(log.text, "1 verify: max |Δlogit| "));
  assert_non_null(strstr(log.text, "1 LlamaForCausalLM (llama): 48 tensors, 5 layers, 2 warnings"));
  assert_non_null(strstr(log.text, "0 timing: transforms "));
  assert_non_null(strstr(log.text, "2 removing the partial output of an interrupted run: "));
  assert_int_equal(stat(partial, &st), -1);

  char cmd[4200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_rotate_writes_nothing_to_stderr)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
