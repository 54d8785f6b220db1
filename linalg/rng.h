/* A seeded pseudo-random generator whose integer stream is the same on every platform:
 * xoshiro256** (Blackman & Vigna) with its state filled by splitmix64 from a 64-bit seed. Every
 * random matrix of rotq (sign diagonals, Gaussian matrices) is drawn from it, so a seed names one
 * rotation. */
#ifndef ROTQ_LINALG_RNG_H
#define ROTQ_LINALG_RNG_H

#include <stdint.h>

typedef struct rng {
  uint64_t state[4];
  int has_spare; /* Box–Muller makes Gaussians in pairs; the second waits here */
  double spare;
} rng;

/* The generator seeded with seed (any value, 0 included). */
void rng_seed(rng *g, uint64_t seed);
/* The next 64 random bits. */
uint64_t rng_next(rng *g);
/* Uniform in [0, 1), a multiple of 2^-53. */
double rng_uniform(rng *g);
/* Standard normal (Box–Muller). The bits are platform independent; the value goes through libm's
 * log, sqrt, cos and sin. */
double rng_gaussian(rng *g);
/* +1.0 or -1.0 with equal probability (the top bit of one draw). */
double rng_sign(rng *g);

#endif
