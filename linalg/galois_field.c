#include "linalg/galois_field.h"

#include <stdlib.h>

int prime_power(int q, int *p, int *k) {
  if (q < 2) return 0;
  int d = 2;
  while (d * d <= q && q % d) d++;
  if (q % d) d = q; /* q is prime */
  int power = 0;
  while (q % d == 0) {
    q /= d;
    power++;
  }
  if (q != 1) return 0;
  *p = d;
  *k = power;
  return 1;
}

/* a·x mod f for a field element a (digits base p) and f = x^k + sum poly[i] x^i. */
static int times_x(int a, const int *poly, int p, int k) {
  int digit[32], place = 1;
  for (int i = 0; i < k; i++, a /= p) digit[i] = a % p;
  int top = digit[k - 1];
  for (int i = k - 1; i > 0; i--) digit[i] = digit[i - 1];
  digit[0] = 0;
  int result = 0;
  for (int i = 0; i < k; i++, place *= p) {
    int c = ((digit[i] - top * poly[i]) % p + p) % p; /* x^k = -sum poly[i] x^i */
    result += c * place;
  }
  return result;
}

/* Fills log[] if the powers of x modulo poly run through all q-1 nonzero elements (poly is then
 * primitive, hence irreducible); 0 on success, -1 if x has a smaller order. */
static int try_primitive(galois_field *f, const int *poly) {
  for (int a = 0; a < f->q; a++) f->log[a] = -1;
  int a = 1;
  for (int i = 0; i < f->q - 1; i++) {
    if (a == 0 || f->log[a] >= 0) return -1;
    f->log[a] = i;
    a = f->k == 1 ? (a * ((f->p - poly[0]) % f->p)) % f->p : times_x(a, poly, f->p, f->k);
  }
  return a == 1 ? 0 : -1;
}

int galois_field_init(galois_field *f, int q) {
  f->log = NULL;
  if (!prime_power(q, &f->p, &f->k) || f->k > 30) return -1;
  f->q = q;
  f->log = malloc(sizeof *f->log * (size_t)q);
  if (!f->log) return -1;
  /* Monic polynomials of degree k, coefficients poly[0 .. k-1] = the digits of c (for k = 1,
   * x + poly[0], whose root -poly[0] must be a primitive root mod p). */
  for (int c = 1; c < q; c++) {
    int poly[32];
    for (int i = 0, rest = c; i < f->k; i++, rest /= f->p) poly[i] = rest % f->p;
    if (poly[0] == 0) continue; /* x divides it */
    if (try_primitive(f, poly) == 0) return 0;
  }
  galois_field_free(f);
  return -1;
}

void galois_field_free(galois_field *f) {
  free(f->log);
  f->log = NULL;
}

int galois_field_sub(const galois_field *f, int a, int b) {
  int result = 0;
  for (int place = 1; place < f->q; place *= f->p, a /= f->p, b /= f->p)
    result += ((a % f->p - b % f->p + f->p) % f->p) * place;
  return result;
}

int galois_field_quadratic_character(const galois_field *f, int a) {
  if (a == 0) return 0;
  return f->log[a] % 2 ? -1 : 1;
}
