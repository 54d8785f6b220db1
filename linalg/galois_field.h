/* The finite field GF(q), q = p^k a prime power: what Paley's constructions need. Elements are
 * the integers 0 .. q-1, read as the base-p digits of a polynomial over GF(p) (digit i is the
 * coefficient of x^i); multiplication is modulo a primitive polynomial found by search, whose
 * root x generates the multiplicative group. */
#ifndef ROTQ_LINALG_GALOIS_FIELD_H
#define ROTQ_LINALG_GALOIS_FIELD_H

typedef struct galois_field {
  int p, k, q; /* q = p^k */
  int *log;    /* log[a] = i with x^i = a, for a = 1 .. q-1 (log[0] unused) */
} galois_field;

/* 1 if q is a prime power (then *p and *k are set), else 0. */
int prime_power(int q, int *p, int *k);
/* Builds GF(q); -1 if q is not a prime power or the tables cannot be allocated. */
int galois_field_init(galois_field *f, int q);
void galois_field_free(galois_field *f);
/* a - b. */
int galois_field_sub(const galois_field *f, int a, int b);
/* The quadratic character: 0 for 0, +1 for a nonzero square, -1 otherwise. */
int galois_field_quadratic_character(const galois_field *f, int a);

#endif
