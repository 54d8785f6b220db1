#include "linalg/williamson.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Search limits: at most 2^(MAX_ORBITS+1) sign patterns per group, and sorted pair tables of at
 * most MAX_PAIRS entries. m = 29 (14 orbits under ±1) is the costliest order found (~0.2 s). */
#define MAX_ORBITS 15
#define MAX_PAIRS (1L << 22)

/* The orbits of a multiplier group on Z_m: orbit 0 is {0}; rep[o] is a member of orbit o. */
typedef struct orbits {
  int count;
  int *of; /* of[x] = orbit of x */
  int rep[MAX_ORBITS + 1];
} orbits;

/* Candidate sequences (one sign per orbit, positive row sum) that passed the spectrum test. */
typedef struct candidates {
  int count, shifts; /* shifts = nonzero orbits */
  int *row_sum;
  uint32_t *pattern;        /* bit o set = sign -1 on orbit o */
  int16_t *autocorrelation; /* [count][shifts]: at shift rep[1 + s] */
  float *spectrum;          /* [count][shifts]: power spectrum at frequency rep[1 + s] */
} candidates;

typedef struct pair {
  uint64_t key; /* hash of the summed autocorrelations */
  int first, second;
} pair;

static int gcd(int a, int b) {
  while (b) {
    int t = a % b;
    a = b;
    b = t;
  }
  return a;
}

/* Orbits of G on Z_m; -1 if there are more than MAX_ORBITS + 1. */
static int find_orbits(int m, const char *in_group, orbits *o) {
  for (int x = 0; x < m; x++) o->of[x] = -1;
  o->count = 0;
  for (int x = 0; x < m; x++) {
    if (o->of[x] >= 0) continue;
    if (o->count > MAX_ORBITS) return -1;
    o->rep[o->count] = x;
    for (int g = 1; g < m; g++)
      if (in_group[g]) o->of[(int)((long)g * x % m)] = o->count;
    o->of[x] = o->count;
    o->count++;
  }
  return 0;
}

static void expand(int m, const orbits *o, uint32_t pattern, int8_t *seq) {
  for (int x = 0; x < m; x++) seq[x] = (pattern >> o->of[x]) & 1 ? -1 : 1;
}

static void free_candidates(candidates *c) {
  free(c->row_sum);
  free(c->pattern);
  free(c->autocorrelation);
  free(c->spectrum);
}

/* Every sign pattern on the orbits with positive row sum and power spectrum ≤ 4m. */
static int make_candidates(int m, const orbits *o, candidates *c) {
  int shifts = o->count - 1;
  long total = 1L << o->count;
  memset(c, 0, sizeof *c);
  c->shifts = shifts;
  c->row_sum = malloc(sizeof *c->row_sum * (size_t)total);
  c->pattern = malloc(sizeof *c->pattern * (size_t)total);
  c->autocorrelation = malloc(sizeof *c->autocorrelation * (size_t)(total * shifts + 1));
  c->spectrum = malloc(sizeof *c->spectrum * (size_t)(total * shifts + 1));
  /* orbit_cosine[f][o] = sum over x in orbit o of cos(2π·rep[1+f]·x/m) */
  double *orbit_cosine = calloc((size_t)(shifts * o->count + 1), sizeof *orbit_cosine);
  int8_t *seq = malloc((size_t)m);
  if (!c->row_sum || !c->pattern || !c->autocorrelation || !c->spectrum || !orbit_cosine || !seq) {
    free(orbit_cosine);
    free(seq);
    free_candidates(c);
    return -1;
  }
  for (int f = 0; f < shifts; f++)
    for (int x = 0; x < m; x++) orbit_cosine[f * o->count + o->of[x]] += cos(2 * M_PI * (double)o->rep[1 + f] * x / m);
  for (long pattern = 0; pattern < total; pattern++) {
    int sum = 0;
    for (int x = 0; x < m; x++) sum += (pattern >> o->of[x]) & 1 ? -1 : 1;
    if (sum <= 0) continue;
    float *spectrum = c->spectrum + (size_t)c->count * shifts;
    int fits = 1;
    for (int f = 0; f < shifts && fits; f++) {
      double amplitude = 0;
      for (int k = 0; k < o->count; k++) amplitude += ((pattern >> k) & 1 ? -1 : 1) * orbit_cosine[f * o->count + k];
      spectrum[f] = (float)(amplitude * amplitude);
      fits = amplitude * amplitude <= 4.0 * m + 1e-6;
    }
    if (!fits) continue;
    expand(m, o, (uint32_t)pattern, seq);
    int16_t *acf = c->autocorrelation + (size_t)c->count * shifts;
    for (int s = 0; s < shifts; s++) {
      int shift = o->rep[1 + s], value = 0;
      for (int x = 0; x < m; x++) value += seq[x] * seq[(x + shift) % m];
      acf[s] = (int16_t)value;
    }
    c->row_sum[c->count] = sum;
    c->pattern[c->count] = (uint32_t)pattern;
    c->count++;
  }
  free(orbit_cosine);
  free(seq);
  return 0;
}

static int compare_pairs(const void *pa, const void *pb) {
  const pair *a = pa, *b = pb;
  if (a->key != b->key) return a->key < b->key ? -1 : 1;
  if (a->first != b->first) return a->first < b->first ? -1 : 1;
  return (a->second > b->second) - (a->second < b->second);
}

/* FNV-1a of sign·(acf[i] + acf[j]). */
static uint64_t pair_key(const candidates *c, int i, int j, int sign) {
  uint64_t h = 1469598103934665603ULL;
  for (int s = 0; s < c->shifts; s++) {
    int v = sign * (c->autocorrelation[(size_t)i * c->shifts + s] + c->autocorrelation[(size_t)j * c->shifts + s]);
    h = (h ^ (uint16_t)v) * 1099511628211ULL;
  }
  return h;
}

static int spectra_fit(const candidates *c, int i, int j, int m) {
  for (int s = 0; s < c->shifts; s++)
    if (c->spectrum[(size_t)i * c->shifts + s] + c->spectrum[(size_t)j * c->shifts + s] > 4.0f * m + 1e-3f) return 0;
  return 1;
}

static int sums_to_zero(const candidates *c, const int *pick) {
  for (int s = 0; s < c->shifts; s++) {
    int total = 0;
    for (int t = 0; t < 4; t++) total += c->autocorrelation[(size_t)pick[t] * c->shifts + s];
    if (total) return 0;
  }
  return 1;
}

/* Candidate indices with row sum sigma, in order. */
static int *with_row_sum(const candidates *c, int sigma, int *count) {
  int *list = malloc(sizeof *list * (size_t)(c->count + 1));
  *count = 0;
  if (list)
    for (int i = 0; i < c->count; i++)
      if (c->row_sum[i] == sigma) list[(*count)++] = i;
  return list;
}

/* Meet in the middle for row sums sigma[0..3]: pairs (0, 1) in a sorted table, pairs (2, 3)
 * looked up by the negated sum. 1 and pick[] set if found, 0 if not, -1 on allocation failure. */
static int match(const candidates *c, int m, const int *sigma, int *pick) {
  int count[4], *list[4] = {0}, status = 0;
  for (int t = 0; t < 4; t++) {
    list[t] = with_row_sum(c, sigma[t], &count[t]);
    if (!list[t]) status = -1;
  }
  long table_pairs = (long)count[0] * count[1], probe_pairs = (long)count[2] * count[3];
  pair *table = NULL;
  if (status == 0 && table_pairs > 0 && probe_pairs > 0 && table_pairs <= 4 * MAX_PAIRS) {
    table = malloc(sizeof *table * (size_t)table_pairs);
    if (!table) status = -1;
  }
  if (table) {
    long size = 0;
    for (int i = 0; i < count[0]; i++)
      for (int j = 0; j < count[1] && size < MAX_PAIRS; j++)
        if (spectra_fit(c, list[0][i], list[1][j], m))
          table[size++] = (pair){pair_key(c, list[0][i], list[1][j], 1), i, j};
    if (size < MAX_PAIRS) {
      qsort(table, (size_t)size, sizeof *table, compare_pairs);
      for (int i = 0; i < count[2] && status == 0; i++)
        for (int j = 0; j < count[3] && status == 0; j++) {
          if (!spectra_fit(c, list[2][i], list[3][j], m)) continue;
          uint64_t key = pair_key(c, list[2][i], list[3][j], -1);
          long lo = 0, hi = size;
          while (lo < hi) {
            long mid = (lo + hi) / 2;
            if (table[mid].key < key)
              lo = mid + 1;
            else
              hi = mid;
          }
          for (; lo < size && table[lo].key == key && status == 0; lo++) {
            int trial[4] = {list[0][table[lo].first], list[1][table[lo].second], list[2][i], list[3][j]};
            if (sums_to_zero(c, trial)) {
              memcpy(pick, trial, sizeof trial);
              status = 1;
            }
          }
        }
    }
    free(table);
  }
  for (int t = 0; t < 4; t++) free(list[t]);
  return status;
}

/* Searches sequences constant on the orbits of one group: 1 found, 0 not, -1 out of memory. */
static int search_group(int m, const char *in_group, int8_t *rows) {
  orbits o;
  o.of = malloc(sizeof *o.of * (size_t)m);
  if (!o.of) return -1;
  int status = 0;
  candidates c;
  if (find_orbits(m, in_group, &o) == 0) {
    if (make_candidates(m, &o, &c) < 0) {
      free(o.of);
      return -1;
    }
    /* Row sums s0 ≥ s1 ≥ s2 ≥ s3 ≥ 1, odd, with s0² + s1² + s2² + s3² = 4m. */
    for (int s0 = 1; s0 * s0 <= 4 * m && status == 0; s0 += 2)
      for (int s1 = 1; s1 <= s0 && status == 0; s1 += 2)
        for (int s2 = 1; s2 <= s1 && status == 0; s2 += 2) {
          int rest = 4 * m - s0 * s0 - s1 * s1 - s2 * s2, s3 = 1;
          while (s3 * s3 < rest) s3 += 2;
          if (rest <= 0 || s3 * s3 != rest || s3 > s2) continue;
          int sigma[4] = {s0, s1, s2, s3}, pick[4];
          status = match(&c, m, sigma, pick);
          if (status == 1)
            for (int t = 0; t < 4; t++) expand(m, &o, c.pattern[pick[t]], rows + t * m);
        }
    free_candidates(&c);
  }
  free(o.of);
  return status;
}

/* Groups <u, -1> of units mod m, as membership arrays, fewest orbits first. */
static int search(int m, int8_t *rows) {
  char *groups = malloc((size_t)m * (size_t)m);
  int *orbit_count = malloc(sizeof *orbit_count * (size_t)m);
  int *scratch = malloc(sizeof *scratch * (size_t)m);
  int count = 0, status = 0;
  if (!groups || !orbit_count || !scratch) status = -1;
  for (int u = 1; u < m && status == 0; u++) {
    if (gcd(u, m) != 1) continue;
    char *g = groups + (size_t)count * m;
    memset(g, 0, (size_t)m);
    g[1] = 1;
    for (int changed = 1; changed;) {
      changed = 0;
      for (int x = 1; x < m; x++) {
        if (!g[x]) continue;
        int images[2] = {(int)((long)x * u % m), m - x};
        for (int i = 0; i < 2; i++)
          if (!g[images[i]]) g[images[i]] = changed = 1;
      }
    }
    int duplicate = 0;
    for (int k = 0; k < count && !duplicate; k++) duplicate = !memcmp(groups + (size_t)k * m, g, (size_t)m);
    if (duplicate) continue;
    int orbits_found = 0;
    for (int x = 0; x < m; x++) scratch[x] = 0;
    for (int x = 0; x < m; x++) {
      if (scratch[x]) continue;
      orbits_found++;
      for (int y = 1; y < m; y++)
        if (g[y]) scratch[(int)((long)y * x % m)] = 1;
      scratch[x] = 1;
    }
    orbit_count[count++] = orbits_found;
  }
  for (int orbits_wanted = 1; orbits_wanted <= MAX_ORBITS + 1 && status == 0; orbits_wanted++)
    for (int k = 0; k < count && status == 0; k++)
      if (orbit_count[k] == orbits_wanted) status = search_group(m, groups + (size_t)k * m, rows);
  free(groups);
  free(orbit_count);
  free(scratch);
  return status;
}

/* Process-wide cache: state[m] = 0 unknown, 1 found (rows kept), -1 none found. */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static signed char cache_state[WILLIAMSON_MAX_ORDER + 1];
static int8_t *cache_rows[WILLIAMSON_MAX_ORDER + 1];

int williamson_sequences(int m, int8_t *rows) {
  if (m < 1 || m > WILLIAMSON_MAX_ORDER || m % 2 == 0) return -1;
  if (m == 1) {
    memset(rows, 1, 4);
    return 0;
  }
  pthread_mutex_lock(&cache_lock);
  int status = cache_state[m];
  if (status == 0) {
    int8_t *found = malloc(4 * (size_t)m);
    int result = found ? search(m, found) : -1;
    if (result == 1) {
      cache_rows[m] = found;
      cache_state[m] = 1;
    } else {
      free(found);
      if (result == 0) cache_state[m] = -1; /* an allocation failure is not remembered */
    }
    status = result == 1 ? 1 : -1;
  }
  if (status == 1) memcpy(rows, cache_rows[m], 4 * (size_t)m);
  pthread_mutex_unlock(&cache_lock);
  return status == 1 ? 0 : -1;
}
