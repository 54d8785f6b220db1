#include "io/finite.h"

#include <stdint.h>
#include <string.h>

/* The scans are built for x86-64-v4 (AVX-512 with 16-bit lanes), AVX2 and the baseline, picked at load time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SCAN_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define SCAN_CLONES
#endif

/* Scans 16-bit elements for exponent == mask; chunks of 64 are OR-reduced so the loop vectorizes. */
SCAN_CLONES static size_t scan16(const void *data, size_t n, uint16_t mask) {
  const unsigned char *bytes = data;
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    uint16_t chunk[64];
    memcpy(chunk, bytes + 2 * i, sizeof chunk);
    int any = 0;
    for (int k = 0; k < 64; k++) any |= (chunk[k] & mask) == mask;
    if (any) break;
  }
  for (; i < n; i++) {
    uint16_t v;
    memcpy(&v, bytes + 2 * i, 2);
    if ((v & mask) == mask) return i;
  }
  return n;
}

SCAN_CLONES static size_t scan32(const void *data, size_t n) {
  const unsigned char *bytes = data;
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint32_t chunk[32];
    memcpy(chunk, bytes + 4 * i, sizeof chunk);
    int any = 0;
    for (int k = 0; k < 32; k++) any |= (chunk[k] & 0x7f800000u) == 0x7f800000u;
    if (any) break;
  }
  for (; i < n; i++) {
    uint32_t v;
    memcpy(&v, bytes + 4 * i, 4);
    if ((v & 0x7f800000u) == 0x7f800000u) return i;
  }
  return n;
}

static size_t scan64(const void *data, size_t n) {
  const unsigned char *bytes = data;
  const uint64_t mask = 0x7ff0000000000000ull;
  for (size_t i = 0; i < n; i++) {
    uint64_t v;
    memcpy(&v, bytes + 8 * i, 8);
    if ((v & mask) == mask) return i;
  }
  return n;
}

/* The first of n bytes with (byte & mask) == value. */
static size_t scan8(const void *data, size_t n, unsigned char mask, unsigned char value) {
  const unsigned char *bytes = data;
  for (size_t i = 0; i < n; i++)
    if ((bytes[i] & mask) == value) return i;
  return n;
}

size_t first_non_finite(dtype t, const void *data, size_t n) {
  switch (t) {
  case DTYPE_F64: return scan64(data, n);
  case DTYPE_F32: return scan32(data, n);
  case DTYPE_F16: return scan16(data, n, 0x7c00);
  case DTYPE_BF16: return scan16(data, n, 0x7f80);
  case DTYPE_F8_E4M3: return scan8(data, n, 0x7f, 0x7f); /* NaN: 0x7F, 0xFF */
  case DTYPE_F8_E5M2: return scan8(data, n, 0x7c, 0x7c); /* ±inf, NaN: exponent all ones */
  default: break;                                        /* U8, FP4 codes: always finite */
  }
  return n;
}
