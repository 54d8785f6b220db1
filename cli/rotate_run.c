#include "cli/rotate_run.h"

#include <cblas.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static volatile sig_atomic_t interrupted;
static struct sigaction old_int, old_term, old_xfsz;

static void on_signal(int sig) { interrupted = sig; }

void cli_print_log(rotq_log_level level, const char *message, void *context) {
  const cli_log *c = context;
  const char *timing = getenv("ROTQ_TIMING");
  switch (level) {
  case ROTQ_LOG_DEBUG:
    if (timing && *timing && strcmp(timing, "0") != 0) fprintf(stderr, "rotq %s\n", message);
    break;
  case ROTQ_LOG_INFO:
    if (!c->quiet) fprintf(stderr, "rotq %s: %s\n", c->command, message);
    break;
  case ROTQ_LOG_WARNING:
    if (!c->quiet) fprintf(stderr, "rotq %s: warning: %s\n", c->command, message);
    break;
  case ROTQ_LOG_NOTICE: fprintf(stderr, "rotq: %s\n", message); break;
  }
}

void cli_interrupt_begin(void) {
  struct sigaction sa = {.sa_handler = on_signal}, ignore = {.sa_handler = SIG_IGN};
  sigemptyset(&sa.sa_mask);
  sigemptyset(&ignore.sa_mask);
  interrupted = 0;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGXFSZ, &ignore, &old_xfsz);
}

void cli_interrupt_end(void) {
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  sigaction(SIGXFSZ, &old_xfsz, NULL);
}

int cli_interrupted(void *context) {
  (void)context;
  return (int)interrupted;
}

static int saved_blas_threads;

void cli_rotation_begin(void) {
  cli_interrupt_begin();
  /* rotq parallelises above BLAS; threaded OpenBLAS would change the last bits of dense
   * products with the thread count, and the output must not depend on it. */
  saved_blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
}

void cli_rotation_end(void) {
  openblas_set_num_threads(saved_blas_threads);
  cli_interrupt_end();
}

int cli_rotate(rotq_rotate_options *o, rotq_error *err) {
  if (!o->cancel) o->cancel = cli_interrupted;
  cli_rotation_begin();
  int rc = rotq_rotate(o, err);
  int sig = (int)interrupted;
  cli_rotation_end();
  if (rc != 0 && sig) rotq_fail(err, "interrupted by signal %d; the partial output was removed", sig);
  return rc;
}
