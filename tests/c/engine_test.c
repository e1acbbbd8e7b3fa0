/*
 * The engine through the C ABI: fits and monitors on a named device, predictions from
 * a fit and from a saved encoder, and the one-line refusal of a device this build or machine
 * cannot use.
 *
 * Usage: engine_test WORKDIR
 */
#include "factortopy.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { N_IMAGES = 120, N_VOXELS = 24, N_LAYERS = 3, WIDTH = 8, GRID = 4 };

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  char path[4096];

  ft_brain *brain = NULL;
  ft_features *feats = NULL;
  load_synth(dir, N_IMAGES, N_VOXELS, N_LAYERS, WIDTH, 5, &brain, &feats);

  /* Device names: syntax errors and unusable devices are refused before any work. */
  EXPECT_STATUS(ft_device_check("gpu"), FT_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(ft_device_check(NULL), FT_ERR_NULL);
  CHECK(ft_device_check("cpu"));
  const int have_cuda = ft_device_check("cuda:0") == FT_OK;
  EXPECT_STATUS(ft_device_check("cuda:1000000"), FT_ERR_BACKEND);

  ft_fit_options fo;
  CHECK(ft_fit_options_preset("fast", &fo));
  fo.d = 8;
  fo.grid = GRID;
  fo.max_epochs = 8;
  fo.batch_size = 8;
  fo.reg_steps = 60;
  fo.val_fraction = 0.2;
  ft_fit *fit = (ft_fit *)(uintptr_t)0x1; /* must stay untouched on error */
  EXPECT_STATUS(ft_fit_new_on(feats, brain, &fo, "cuda:1000000", &fit), FT_ERR_BACKEND);
  EXPECT(fit == (ft_fit *)(uintptr_t)0x1);
  if (!have_cuda) {
    EXPECT_STATUS(ft_fit_new_on(feats, brain, &fo, "cuda:0", &fit), FT_ERR_BACKEND);
    printf("cuda:0 refused: %s\n", ft_last_error());
  }
  fit = NULL;
  CHECK(ft_fit_new_on(feats, brain, &fo, "cpu", &fit));
  ft_fit_summary s;
  CHECK(ft_fit_report_summary(fit, &s));
  EXPECT(s.n_voxels == N_VOXELS);

  /* Predictions: from the fit, and from its saved encoder (the same numbers). */
  const size_t n = (size_t)N_IMAGES * N_VOXELS;
  float *pred = calloc(n, sizeof *pred);
  float *again = calloc(n, sizeof *again);
  EXPECT_STATUS(ft_fit_predict(fit, feats, NULL, NULL, pred, n - 1), FT_ERR_SHAPE);
  EXPECT_STATUS(ft_fit_predict(fit, feats, NULL, NULL, NULL, n), FT_ERR_NULL);
  CHECK(ft_fit_predict(fit, feats, NULL, NULL, pred, n));
  int finite = 1;
  double sum_sq = 0;
  for (size_t i = 0; i < n; i++) {
    finite &= isfinite(pred[i]);
    sum_sq += (double)pred[i] * pred[i];
  }
  EXPECT(finite && sum_sq > 0);
  snprintf(path, sizeof path, "%s/encoder.safetensors", dir);
  CHECK(ft_fit_save_encoder(fit, path));
  size_t v = 0;
  CHECK(ft_encoder_n_voxels(path, &v));
  EXPECT(v == N_VOXELS);
  CHECK(ft_predict_encoder(path, feats, NULL, "cpu", again, n));
  EXPECT(memcmp(pred, again, n * sizeof *pred) == 0);
  EXPECT_STATUS(ft_predict_encoder(path, feats, NULL, "cuda:1000000", again, n), FT_ERR_BACKEND);

  /* A monitor on the CPU; an unusable device leaves the monitor as it was. */
  ft_monitor_options mo;
  CHECK(ft_monitor_options_default(&mo));
  mo.fit = fo;
  mo.held_out_fraction = 0.2;
  ft_monitor *mon = NULL;
  EXPECT_STATUS(ft_monitor_new_on(brain, feats, &mo, "cuda:1000000", &mon), FT_ERR_BACKEND);
  EXPECT(mon == NULL);
  CHECK(ft_monitor_new_from_encoder_on(brain, feats, path, &mo, "cpu", &mon));
  EXPECT_STATUS(ft_monitor_set_device(mon, "cuda:1000000"), FT_ERR_BACKEND);
  CHECK(ft_monitor_set_device(mon, "cpu"));
  ft_step_report *rep = NULL;
  CHECK(ft_monitor_observe(mon, 0, feats, &rep));
  ft_step_summary ss;
  CHECK(ft_step_report_summary(rep, &ss));
  EXPECT(ss.retention == 1.0);

  /* Ranking on a device (ridge is CPU only). */
  const ft_features *nets[1] = {feats};
  char *json = NULL;
  EXPECT_STATUS(ft_rank_on(nets, 1, brain, &fo, FT_RANK_FACTORTOPY, "cuda:1000000", &json), FT_ERR_BACKEND);
  if (have_cuda) {
    EXPECT_STATUS(ft_rank_on(nets, 1, brain, &fo, FT_RANK_RIDGE, "cuda:0", &json), FT_ERR_INVALID_ARGUMENT);
  }
  EXPECT(json == NULL);

  ft_step_report_free(rep);
  ft_monitor_free(mon);
  free(pred);
  free(again);
  ft_fit_free(fit);
  ft_features_free(feats);
  ft_brain_free(brain);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("engine_test: devices, predictions and monitors through the C ABI: ok\n");
  return 0;
}
