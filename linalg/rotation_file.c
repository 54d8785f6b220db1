#include "linalg/rotation_file.h"

#include <math.h>
#include <stdlib.h>

#include "io/safetensors.h"
#include "linalg/orthogonal.h"

static double tolerance(dtype t) {
  switch (t) {
  case DTYPE_F64: return 1e-9;
  case DTYPE_F32: return 1e-5;
  case DTYPE_F16: return 1e-2;
  case DTYPE_BF16: return 5e-2;
  default: break; /* FP8/U8 codes have no scale here: no such tensor is orthogonal */
  }
  return 0;
}

rotation *rotation_load_file(const char *path, const char *tensor, int dim, rotq_error *err) {
  st_file f;
  if (st_open(path, &f, err) < 0) {
    rotq_fail_context(err, "rotation '%s'", tensor);
    return NULL;
  }
  rotation *r = NULL;
  double *m = NULL;
  const st_tensor *t = st_find(&f, tensor);
  if (!t) {
    rotq_fail(err, "%s: no tensor '%s'", path, tensor);
  } else if (t->ndim != 2 || t->shape[0] != dim || t->shape[1] != dim) {
    rotq_fail(err, "%s: tensor '%s': a rotation of order %d must have shape [%d, %d]", path, tensor, dim, dim, dim);
  } else if (!(m = malloc(sizeof *m * (size_t)dim * (size_t)dim))) {
    rotq_fail(err, "%s: tensor '%s': out of memory", path, tensor);
  } else {
    dtype_to_f64(t->dtype, t->data, m, (size_t)dim * (size_t)dim);
    size_t bad = 0, count = (size_t)dim * (size_t)dim;
    while (bad < count && isfinite(m[bad])) bad++;
    double e = bad < count ? NAN : orthogonality_error(dim, m), tol = tolerance(t->dtype);
    if (bad < count)
      rotq_fail(err, "%s: tensor '%s': element [%zu, %zu] is not finite (NaN or infinity)", path, tensor,
                bad / (size_t)dim, bad % (size_t)dim);
    else if (!(e < tol))
      rotq_fail(err, "%s: tensor '%s' (%s) is not orthogonal: max |RᵀR - I| = %.3g (tolerance %.3g)", path, tensor,
                dtype_name(t->dtype), e, tol);
    else if (e >= 1e-13 && orthogonal_polish(dim, m, err) < 0)
      rotq_fail_context(err, "%s: tensor '%s'", path, tensor);
    else if (!(r = rotation_from_dense(dim, m, 1e-12, err)))
      rotq_fail_context(err, "%s: tensor '%s'", path, tensor);
  }
  free(m);
  st_close(&f);
  return r;
}
