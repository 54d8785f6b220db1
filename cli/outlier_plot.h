/* QuaRot's Figure 1 as an SVG: the largest |activation| of each channel of one linear input,
 * the original model beside the rotated one, on the same vertical scale, so that outlier
 * channels stand out on the left and their absence shows on the right. */
#ifndef ROTQ_CLI_OUTLIER_PLOT_H
#define ROTQ_CLI_OUTLIER_PLOT_H

#include "common/error.h"

typedef struct plot_panel {
  const char *label;    /* e.g. "original" */
  const double *values; /* [dim] per-channel max |x| */
} plot_panel;

/* Writes the two panels (same dim) to path; title goes above them. */
int outlier_plot_write(const char *path, const char *title, const plot_panel *left, const plot_panel *right, int dim,
                       rotq_error *err);

#endif
