/* Williamson sequences: four symmetric ±1 sequences a, b, c, d of odd length m (x[i] = x[m-i])
 * whose periodic autocorrelations sum to zero at every nonzero shift. Their circulants satisfy
 * A² + B² + C² + D² = 4m·I, which the Goethals–Seidel array turns into a Hadamard matrix of
 * order 4m (172 = 4·43 is LLaMA-2's 11008 = 172·64).
 *
 * They are found by search, not read from a table: the sequences are taken constant on the orbits
 * of a multiplier group G = <u, -1> acting on Z_m (then the autocorrelation is constant on the
 * orbits too, so the condition has one equation per orbit), candidates whose power spectrum
 * exceeds 4m anywhere are dropped, and the pairs (a, b) and (c, d) are matched by their summed
 * autocorrelations (meet in the middle) for each way of writing 4m as a sum of four odd squares
 * (the row sums). Groups are tried largest first; the search is bounded (orbit count, pair count),
 * so it answers "none found" quickly for orders it cannot reach. The result is deterministic. */
#ifndef ROTQ_LINALG_WILLIAMSON_H
#define ROTQ_LINALG_WILLIAMSON_H

#include <stdint.h>

/* Fills rows[0 .. 4m-1] (sequence t at rows + t·m) with Williamson sequences of odd order m
 * (1 ≤ m ≤ WILLIAMSON_MAX_ORDER); 0, or -1 if the bounded search finds none (or m is out of
 * range, or memory runs out). Results are cached for the process (thread-safe). */
int williamson_sequences(int m, int8_t *rows);

#define WILLIAMSON_MAX_ORDER 1023

#endif
