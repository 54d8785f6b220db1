/* The forward pass in float64 (see forward.h). */
typedef double real;
#define TYPED(name) name##_f64
#define GEMM cblas_dgemm
#include "model/forward.h"
