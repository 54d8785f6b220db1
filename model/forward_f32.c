/* The forward pass in float32 (see forward.h). */
typedef float real;
#define TYPED(name) name##_f32
#define GEMM cblas_sgemm
#include "model/forward.h"
