/* The registry: the one list of families (family/<family>.c each define one descriptor), in the
 * order every list of architectures follows. */
#include <stdio.h>
#include <string.h>

#include "family/family.h"

extern const family_descriptor family_llama, family_mixtral, family_qwen_moe, family_phi3, family_gemma, family_gemma2,
    family_opt, family_nemotron_h, family_glm4_moe, family_deepseek_v3, family_qwen3_next, family_gpt_oss,
    family_llama4;

static const family_descriptor *const families[] = {
    &family_llama,      &family_mixtral, &family_qwen_moe,   &family_phi3,     &family_gemma,
    &family_gemma2,     &family_opt,     &family_nemotron_h, &family_glm4_moe, &family_deepseek_v3,
    &family_qwen3_next, &family_gpt_oss, &family_llama4};
#define FAMILY_COUNT (sizeof families / sizeof families[0])

size_t family_count(void) { return FAMILY_COUNT; }

const family_descriptor *family_at(size_t i) { return i < FAMILY_COUNT ? families[i] : NULL; }

const family_descriptor *family_find(const char *architecture, const family_variant **variant) {
  for (size_t i = 0; architecture && i < FAMILY_COUNT; i++)
    for (const family_variant *v = families[i]->variants; v->architecture; v++)
      if (strcmp(v->architecture, architecture) == 0) {
        if (variant) *variant = v;
        return families[i];
      }
  return NULL;
}

/* Built once from the descriptors; the registry is constant, so every call returns the same text. */
const char *family_supported_list(void) {
  static char list[1024];
  if (list[0]) return list;
  char text[sizeof list] = "";
  for (size_t i = 0; i < FAMILY_COUNT; i++)
    for (const family_variant *v = families[i]->variants; v->architecture; v++) {
      if (text[0]) strncat(text, ", ", sizeof text - strlen(text) - 1);
      strncat(text, v->architecture, sizeof text - strlen(text) - 1);
    }
  memcpy(list, text, sizeof list);
  return list;
}

bool family_tie_default(const char *model_type) {
  for (size_t i = 0; model_type && i < FAMILY_COUNT; i++)
    for (const family_variant *v = families[i]->variants; v->architecture; v++)
      for (int t = 0; t < 3 && v->model_types[t]; t++)
        if (strcmp(v->model_types[t], model_type) == 0) return v->tie_default;
  return false;
}

void family_layer_module(const family_descriptor *f, int layer, const char *relative, char *out, size_t cap) {
  if (relative && relative[0])
    snprintf(out, cap, "%s.%d.%s", f->layer_prefix, layer, relative);
  else
    snprintf(out, cap, "%s.%d", f->layer_prefix, layer);
}
