#include "linalg/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t rotate_left(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void rng_seed(rng *g, uint64_t seed) {
  for (int i = 0; i < 4; i++) g->state[i] = splitmix64(&seed);
  g->has_spare = 0;
  g->spare = 0.0;
}

uint64_t rng_next(rng *g) {
  uint64_t *s = g->state;
  uint64_t result = rotate_left(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotate_left(s[3], 45);
  return result;
}

double rng_uniform(rng *g) { return (double)(rng_next(g) >> 11) * 0x1.0p-53; }

double rng_gaussian(rng *g) {
  if (g->has_spare) {
    g->has_spare = 0;
    return g->spare;
  }
  double u1 = 1.0 - rng_uniform(g); /* (0, 1]: log(u1) is finite */
  double u2 = rng_uniform(g);
  double radius = sqrt(-2.0 * log(u1));
  double angle = 2.0 * M_PI * u2;
  g->spare = radius * sin(angle);
  g->has_spare = 1;
  return radius * cos(angle);
}

double rng_sign(rng *g) { return (rng_next(g) >> 63) ? -1.0 : 1.0; }
