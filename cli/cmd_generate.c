/* rotq generate: greedy decoding with the reference forward pass. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/model.h"

static const char *help = "usage: rotq generate --model DIR [--prompt-tokens 1,2,3] [--max-new N] [--f32]\n\n"
                          "Greedy (argmax) decoding with the reference forward pass. Prints the token ids, prompt\n"
                          "included, space separated, on one line. Stops after N new tokens or at the config's\n"
                          "eos_token_id, which is printed.\n\n"
                          "  --model DIR            checkpoint directory\n"
                          "  --prompt-tokens LIST   comma-separated prompt token ids (default: 1, the BOS token)\n"
                          "  --max-new N            new tokens to generate (default 120)\n"
                          "  --f32                  compute in float32 (default float64)\n";

/* Parses "1,2,3" into *tokens (malloc'd); -1 if malformed. */
static int parse_tokens(const char *text, int32_t **tokens, int *count) {
  int capacity = 1;
  for (const char *p = text; *p; p++) capacity += *p == ',';
  *tokens = malloc(sizeof **tokens * (size_t)capacity);
  *count = 0;
  const char *p = text;
  while (*tokens) {
    char *end;
    errno = 0;
    long id = strtol(p, &end, 10);
    if (errno || end == p || id < INT32_MIN || id > INT32_MAX || (*end != ',' && *end != '\0')) break;
    (*tokens)[(*count)++] = (int32_t)id;
    if (*end == '\0') return 0;
    p = end + 1;
  }
  free(*tokens);
  *tokens = NULL;
  return -1;
}

/* Whether token is the config's eos_token_id (a number or a list of them). */
static int is_eos(const model_config *c, int32_t token) {
  const cJSON *eos = cJSON_GetObjectItemCaseSensitive(c->json, "eos_token_id");
  if (cJSON_IsNumber(eos)) return eos->valuedouble == token;
  if (!cJSON_IsArray(eos)) return 0;
  const cJSON *item;
  cJSON_ArrayForEach(item, eos) {
    if (cJSON_IsNumber(item) && item->valuedouble == token) return 1;
  }
  return 0;
}

static int argmax(const double *row, int n) {
  int best = 0;
  for (int j = 1; j < n; j++)
    if (row[j] > row[best]) best = j;
  return best;
}

int cmd_generate(int argc, char **argv) {
  const char *dir = NULL, *prompt_text = "1";
  long max_new = 120;
  bool f32 = false;
  const arg_spec specs[] = {{"model", ARG_STRING, &dir},
                            {"prompt-tokens", ARG_STRING, &prompt_text},
                            {"max-new", ARG_INT, &max_new},
                            {"f32", ARG_FLAG, &f32}};
  int parsed = args_parse("generate", argc, argv, specs, 4);
  if (parsed == 1) {
    fputs(help, stdout);
    return 0;
  }
  if (parsed < 0) return 2;
  if (!dir) {
    fprintf(stderr, "rotq generate: --model DIR is required (see rotq generate --help)\n");
    return 2;
  }
  if (max_new < 0 || max_new > 1000000) {
    fprintf(stderr, "rotq generate: --max-new must be between 0 and 1000000\n");
    return 2;
  }
  int32_t *prompt = NULL;
  int prompt_count = 0;
  if (parse_tokens(prompt_text, &prompt, &prompt_count) != 0) {
    fprintf(stderr, "rotq generate: --prompt-tokens wants comma-separated integers, got '%s'\n", prompt_text);
    return 2;
  }
  model *m = NULL;
  model_session *s = NULL;
  double *logits = NULL;
  rotq_error err;
  int status = 1;
  model_options options = {.f32 = f32};
  if (model_load(dir, &options, &m, &err) != 0) goto done;
  const model_config *c = model_get_config(m);
  const int vocab = c->vocab_size;
  if (c->max_position_embeddings > 0 && prompt_count + max_new > c->max_position_embeddings) {
    rotq_fail(&err, "%s: %d prompt tokens + --max-new %ld = %ld positions, beyond max_position_embeddings %d", c->path,
              prompt_count, max_new, prompt_count + max_new, c->max_position_embeddings);
    goto done;
  }
  s = model_session_new(m, prompt_count + (int)max_new, &err);
  logits = malloc(sizeof(double) * (size_t)prompt_count * vocab); /* [prompt, vocab] */
  if (!s || !logits) {
    if (s) rotq_fail(&err, "out of memory for the logits of %d tokens", prompt_count);
    goto done;
  }
  if (model_session_forward(s, prompt, prompt_count, logits, &err) != 0) goto done;
  for (int i = 0; i < prompt_count; i++) printf("%s%d", i ? " " : "", (int)prompt[i]);
  const double *next = logits + (size_t)(prompt_count - 1) * vocab;
  for (long i = 0; i < max_new; i++) {
    int32_t token = argmax(next, vocab);
    printf(" %d", (int)token);
    fflush(stdout);
    if (is_eos(c, token) || i + 1 == max_new) break;
    if (model_session_step(s, token, logits, &err) != 0) goto done;
    next = logits;
  }
  printf("\n");
  status = 0;
done:
  if (status != 0) fprintf(stderr, "rotq generate: %s\n", err.message);
  free(logits);
  model_session_free(s);
  model_free(m);
  free(prompt);
  return status;
}
