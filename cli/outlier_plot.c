#include "cli/outlier_plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "eval/activation_stats.h"

/* Geometry of the picture, in SVG user units. */
#define PANEL_WIDTH 440
#define PANEL_HEIGHT 260
#define MARGIN_LEFT 64
#define MARGIN_TOP 56
#define GAP 40
#define MARGIN_BOTTOM 48

/* A round number ≥ v for the top of the axis: 1, 2 or 5 × 10^k. */
static double axis_top(double v) {
  if (!(v > 0)) return 1;
  double p = pow(10, floor(log10(v)));
  for (double step = 1; step <= 10; step = step == 1 ? 2 : step == 2 ? 5 : 10)
    if (step * p >= v) return step * p;
  return 10 * p;
}

static void panel(FILE *f, double x0, const plot_panel *p, int dim, double top, const char *color) {
  const double y0 = MARGIN_TOP, bar = (double)PANEL_WIDTH / dim;
  fprintf(f, "<rect x='%.1f' y='%.1f' width='%d' height='%d' fill='none' stroke='#888'/>\n", x0, y0, PANEL_WIDTH,
          PANEL_HEIGHT);
  for (int t = 0; t <= 4; t++) { /* horizontal grid and labels */
    double y = y0 + PANEL_HEIGHT * (1 - t / 4.0);
    fprintf(f, "<line x1='%.1f' y1='%.1f' x2='%.1f' y2='%.1f' stroke='#ddd'/>\n", x0, y, x0 + PANEL_WIDTH, y);
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='end'>%g</text>\n", x0 - 4, y + 4, top * t / 4);
  }
  for (int j = 0; j < dim; j++) {
    double h = PANEL_HEIGHT * fmin(p->values[j] / top, 1);
    fprintf(f, "<rect x='%.2f' y='%.2f' width='%.2f' height='%.2f' fill='%s'/>\n", x0 + j * bar, y0 + PANEL_HEIGHT - h,
            bar > 1.5 ? bar * 0.8 : bar, h, color);
  }
  for (int t = 0; t <= 4; t++) {
    int channel = (int)((long)dim * t / 4);
    fprintf(f, "<text x='%.1f' y='%.1f' font-size='11' text-anchor='middle'>%d</text>\n", x0 + bar * channel,
            y0 + PANEL_HEIGHT + 16, channel);
  }
  fprintf(f, "<text x='%.1f' y='%.1f' font-size='13' text-anchor='middle'>channel</text>\n", x0 + PANEL_WIDTH / 2.0,
          y0 + PANEL_HEIGHT + 34);
  fprintf(f, "<text x='%.1f' y='%.1f' font-size='14' text-anchor='middle'>%s — largest/median channel %.1f</text>\n",
          x0 + PANEL_WIDTH / 2.0, y0 - 10, p->label, max_median_ratio(p->values, dim));
}

int outlier_plot_write(const char *path, const char *title, const plot_panel *left, const plot_panel *right, int dim,
                       rotq_error *err) {
  FILE *f = fopen(path, "w");
  if (!f) return rotq_fail(err, "%s: cannot create: %s", path, strerror(errno));
  double max = 0;
  for (int j = 0; j < dim; j++) max = fmax(max, fmax(left->values[j], right->values[j]));
  const double top = axis_top(max);
  const int width = MARGIN_LEFT + 2 * PANEL_WIDTH + GAP + 20;
  const int height = MARGIN_TOP + PANEL_HEIGHT + MARGIN_BOTTOM;
  fprintf(f, "<svg xmlns='http://www.w3.org/2000/svg' width='%d' height='%d' font-family='sans-serif'>\n", width,
          height);
  fprintf(f, "<rect width='100%%' height='100%%' fill='white'/>\n");
  fprintf(f, "<text x='%d' y='22' font-size='16' text-anchor='middle'>%s</text>\n", width / 2, title);
  fprintf(
      f,
      "<text x='16' y='%d' font-size='13' text-anchor='middle' transform='rotate(-90 16 %d)'>max |activation|</text>\n",
      MARGIN_TOP + PANEL_HEIGHT / 2, MARGIN_TOP + PANEL_HEIGHT / 2);
  panel(f, MARGIN_LEFT, left, dim, top, "#c0392b");
  panel(f, MARGIN_LEFT + PANEL_WIDTH + GAP, right, dim, top, "#2471a3");
  fprintf(f, "</svg>\n");
  if (fclose(f) != 0) return rotq_fail(err, "%s: cannot write: %s", path, strerror(errno));
  return 0;
}
