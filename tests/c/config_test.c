/*
 * The settings builder: every handle family made through an ft_fit_config (synthetic data,
 * planted brains, fits, scored encoders, monitors, rankings, grids), every setter called, bad
 * values refused with the right status and the config left unchanged, settings an entry point
 * would not use refused by name, and the builder's results equal to those of the older entry
 * points with the same settings.
 *
 * Usage: config_test WORKDIR
 */
#include "factortopy.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { N_IMAGES = 120, N_VOXELS = 24, N_LAYERS = 3, WIDTH = 8, GRID = 4 };

/* The config as JSON (a fresh string; free with ft_string_free). */
static char *json_of(const ft_fit_config *cfg) {
  char *s = NULL;
  CHECK(ft_fit_config_json(cfg, &s));
  return s;
}

/* The whole content of a file (free with free), or NULL. */
static char *slurp(const char *path, long *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *len = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)*len + 1);
  if (fread(buf, 1, (size_t)*len, f) != (size_t)*len) {
    free(buf);
    buf = NULL;
  }
  fclose(f);
  return buf;
}

static int same_file(const char *a, const char *b) {
  long la = 0, lb = 0;
  char *x = slurp(a, &la), *y = slurp(b, &lb);
  int same = x && y && la == lb && memcmp(x, y, (size_t)la) == 0;
  free(x);
  free(y);
  return same;
}

/* A bad value must be refused with `want`, leave the config as it was, and name the setter. */
#define EXPECT_REFUSED(cfg, call, want, setter)                                             \
  do {                                                                                      \
    char *before_ = json_of(cfg);                                                           \
    EXPECT_STATUS(call, want);                                                              \
    EXPECT(strstr(ft_last_error(), setter) != NULL);                                        \
    char *after_ = json_of(cfg);                                                            \
    EXPECT(strcmp(before_, after_) == 0);                                                   \
    ft_string_free(before_);                                                                \
    ft_string_free(after_);                                                                 \
  } while (0)

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  char a[4096], b[4096];

  /* Making a config. */
  ft_fit_config *cfg = NULL;
  EXPECT_STATUS(ft_fit_config_new("slow", 0, &cfg), FT_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(ft_fit_config_new(NULL, 0, NULL), FT_ERR_NULL);
  EXPECT(cfg == NULL);
  ft_fit_config_free(NULL);

  /* Every setter once, with a value it accepts, on one config. */
  CHECK(ft_fit_config_new("fast", 0, &cfg));
  CHECK(ft_fit_config_set_seed(cfg, 3));
  CHECK(ft_fit_config_set_val_fraction(cfg, 0.2));
  CHECK(ft_fit_config_set_max_epochs(cfg, 8));
  CHECK(ft_fit_config_set_batch_size(cfg, 8));
  CHECK(ft_fit_config_set_lr(cfg, 1e-2));
  CHECK(ft_fit_config_set_weight_decay(cfg, 0.01));
  CHECK(ft_fit_config_set_d(cfg, 8));
  CHECK(ft_fit_config_set_grid(cfg, GRID));
  CHECK(ft_fit_config_set_patience(cfg, 3));
  CHECK(ft_fit_config_set_reg_steps(cfg, 60));
  CHECK(ft_fit_config_set_max_steps(cfg, 0));
  CHECK(ft_fit_config_set_max_seconds(cfg, 0.0));
  CHECK(ft_fit_config_set_clip_norm(cfg, 0.5));
  CHECK(ft_fit_config_set_beta(cfg, 0.1));
  CHECK(ft_fit_config_set_reg_lambda(cfg, 0.1));
  CHECK(ft_fit_config_set_min_delta(cfg, 1e-4));
  CHECK(ft_fit_config_set_resample(cfg, "auto"));
  CHECK(ft_fit_config_set_layer_units(cfg, "common"));
  CHECK(ft_fit_config_set_store(cfg, "f32"));
  CHECK(ft_fit_config_set_store(cfg, NULL));
  CHECK(ft_fit_config_set_method(cfg, "factortopy"));
  CHECK(ft_fit_config_set_device(cfg, "cpu"));
  CHECK(ft_fit_config_set_weighted(cfg, false));
  CHECK(ft_fit_config_set_bootstrap(cfg, 200));
  CHECK(ft_fit_config_set_bootstrap_level(cfg, 0.9));
  CHECK(ft_fit_config_set_permutations(cfg, 100));
  CHECK(ft_fit_config_set_held_out_fraction(cfg, 0.2));
  CHECK(ft_fit_config_set_refit_every(cfg, 1));
  CHECK(ft_fit_config_set_refit_max_steps(cfg, 5));
  CHECK(ft_fit_config_set_refit_max_seconds(cfg, 0.0));
  CHECK(ft_fit_config_set_forgetting_threshold(cfg, INFINITY));
  CHECK(ft_fit_config_set_scenario(cfg, FT_SCENARIO_REVERSED));
  CHECK(ft_fit_config_set_synth_voxels(cfg, N_VOXELS));
  CHECK(ft_fit_config_set_synth_layers(cfg, N_LAYERS));
  CHECK(ft_fit_config_set_synth_width(cfg, WIDTH));
  CHECK(ft_fit_config_set_synth_grid(cfg, GRID));
  CHECK(ft_fit_config_set_noise_ceiling(cfg, 0.8));
  CHECK(ft_fit_config_set_signal_fraction(cfg, 0.9));
  CHECK(ft_fit_config_set_prf_size(cfg, -1.0));
  CHECK(ft_fit_config_set_score_layers(cfg, true));
  char *js = json_of(cfg);
  EXPECT(strstr(js, "\"d\":8") != NULL);
  EXPECT(strstr(js, "\"scenario\":\"reversed\"") != NULL);
  EXPECT(strstr(js, "\"forgetting_threshold\":null") != NULL);
  ft_string_free(js);

  /* Bad values: refused with a status naming the setter; the config is unchanged. */
  EXPECT_REFUSED(cfg, ft_fit_config_set_val_fraction(cfg, 1.5), FT_ERR_INVALID_ARGUMENT, "val_fraction");
  EXPECT_REFUSED(cfg, ft_fit_config_set_val_fraction(cfg, NAN), FT_ERR_INVALID_ARGUMENT, "val_fraction");
  EXPECT_REFUSED(cfg, ft_fit_config_set_d(cfg, 0), FT_ERR_INVALID_ARGUMENT, "set_d");
  EXPECT_REFUSED(cfg, ft_fit_config_set_grid(cfg, (size_t)1 << 40), FT_ERR_INVALID_ARGUMENT, "set_grid");
  EXPECT_REFUSED(cfg, ft_fit_config_set_batch_size(cfg, 0), FT_ERR_INVALID_ARGUMENT, "batch_size");
  EXPECT_REFUSED(cfg, ft_fit_config_set_lr(cfg, -1.0), FT_ERR_INVALID_ARGUMENT, "set_lr");
  EXPECT_REFUSED(cfg, ft_fit_config_set_max_seconds(cfg, -2.0), FT_ERR_INVALID_ARGUMENT, "max_seconds");
  EXPECT_REFUSED(cfg, ft_fit_config_set_resample(cfg, "cubic"), FT_ERR_INVALID_ARGUMENT, "resample");
  EXPECT_REFUSED(cfg, ft_fit_config_set_resample(cfg, NULL), FT_ERR_NULL, "resample");
  EXPECT_REFUSED(cfg, ft_fit_config_set_layer_units(cfg, "metres"), FT_ERR_INVALID_ARGUMENT, "layer_units");
  EXPECT_REFUSED(cfg, ft_fit_config_set_store(cfg, "f64"), FT_ERR_INVALID_ARGUMENT, "store");
  EXPECT_REFUSED(cfg, ft_fit_config_set_method(cfg, "lasso"), FT_ERR_INVALID_ARGUMENT, "method");
  EXPECT_REFUSED(cfg, ft_fit_config_set_device(cfg, "gpu"), FT_ERR_INVALID_ARGUMENT, "device");
  EXPECT_REFUSED(cfg, ft_fit_config_set_bootstrap_level(cfg, 1.0), FT_ERR_INVALID_ARGUMENT, "bootstrap_level");
  EXPECT_REFUSED(cfg, ft_fit_config_set_held_out_fraction(cfg, 0.0), FT_ERR_INVALID_ARGUMENT, "held_out_fraction");
  EXPECT_REFUSED(cfg, ft_fit_config_set_refit_max_steps(cfg, 0), FT_ERR_INVALID_ARGUMENT, "refit_max_steps");
  EXPECT_REFUSED(cfg, ft_fit_config_set_forgetting_threshold(cfg, NAN), FT_ERR_INVALID_ARGUMENT, "forgetting_threshold");
  EXPECT_REFUSED(cfg, ft_fit_config_set_scenario(cfg, 9), FT_ERR_INVALID_ARGUMENT, "scenario");
  EXPECT_REFUSED(cfg, ft_fit_config_set_synth_voxels(cfg, 2), FT_ERR_INVALID_ARGUMENT, "synth_voxels");
  EXPECT_REFUSED(cfg, ft_fit_config_set_noise_ceiling(cfg, 0.0), FT_ERR_INVALID_ARGUMENT, "noise_ceiling");
  EXPECT_REFUSED(cfg, ft_fit_config_set_signal_fraction(cfg, 2.0), FT_ERR_INVALID_ARGUMENT, "signal_fraction");
  EXPECT_REFUSED(cfg, ft_fit_config_set_prf_size(cfg, 1.5), FT_ERR_INVALID_ARGUMENT, "prf_size");
  EXPECT_STATUS(ft_fit_config_set_seed(NULL, 1), FT_ERR_NULL);

  /* The all-settings config holds fit, monitor and generator settings at once: every entry
   * point refuses it, naming a setting it would not use. */
  ft_fit *fit = (ft_fit *)(uintptr_t)0x1;
  EXPECT_STATUS(ft_fit_with(cfg, NULL, NULL, &fit), FT_ERR_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "held_out_fraction") != NULL);
  EXPECT(fit == (ft_fit *)(uintptr_t)0x1);
  snprintf(a, sizeof a, "%s/refused", dir);
  EXPECT_STATUS(ft_synth_write_with(cfg, a), FT_ERR_INVALID_ARGUMENT);
  ft_fit_config_free(cfg);

  /* Synthetic data: the builder's equals ft_synth_write's, byte for byte. */
  ft_fit_config *sc = NULL;
  CHECK(ft_fit_config_new(NULL, N_IMAGES, &sc));
  CHECK(ft_fit_config_set_synth_voxels(sc, N_VOXELS));
  CHECK(ft_fit_config_set_synth_layers(sc, N_LAYERS));
  CHECK(ft_fit_config_set_synth_width(sc, WIDTH));
  CHECK(ft_fit_config_set_synth_grid(sc, GRID));
  CHECK(ft_fit_config_set_noise_ceiling(sc, 0.8));
  CHECK(ft_fit_config_set_seed(sc, 5));
  CHECK(ft_fit_config_set_prf_size(sc, 0.0));
  snprintf(a, sizeof a, "%s/with", dir);
  CHECK(ft_synth_write_with(sc, a));
  snprintf(b, sizeof b, "%s/old", dir);
  ft_brain *brain = NULL;
  ft_features *feats = NULL;
  load_synth(b, N_IMAGES, N_VOXELS, N_LAYERS, WIDTH, 5, &brain, &feats); /* ft_synth_write */
  const char *files[] = {"features.safetensors", "brain.safetensors", "truth.safetensors"};
  for (int i = 0; i < 3; i++) {
    char pa[4200], pb[4200];
    snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
    snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
    EXPECT(same_file(pa, pb));
  }
  /* A fit setting is not a generator setting. */
  CHECK(ft_fit_config_set_lr(sc, 1e-2));
  EXPECT_STATUS(ft_synth_write_with(sc, a), FT_ERR_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "`lr`") != NULL);
  ft_fit_config_free(sc);

  char brain_path[4200], features_path[4200];
  snprintf(brain_path, sizeof brain_path, "%s/brain.safetensors", a);
  snprintf(features_path, sizeof features_path, "%s/features.safetensors", a);

  /* A planted brain through the builder. */
  ft_fit_config *pc = NULL;
  CHECK(ft_fit_config_new(NULL, 0, &pc));
  CHECK(ft_fit_config_set_scenario(pc, FT_SCENARIO_HIERARCHICAL));
  CHECK(ft_fit_config_set_synth_voxels(pc, N_VOXELS));
  ft_brain *planted = NULL;
  CHECK(ft_synth_plant_with(pc, feats, NULL, &planted));
  size_t pn = 0, pv = 0;
  CHECK(ft_brain_shape(planted, &pn, &pv));
  EXPECT(pn == N_IMAGES && pv == N_VOXELS);
  ft_brain_free(planted);
  CHECK(ft_fit_config_set_synth_width(pc, WIDTH)); /* the features fix the width */
  EXPECT_STATUS(ft_synth_plant_with(pc, feats, NULL, &planted), FT_ERR_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "synth_width") != NULL);
  ft_fit_config_free(pc);

  /* A fit: the builder's equals ft_fit_new_resampled's with the same settings. */
  ft_fit_config *fc = NULL;
  CHECK(ft_fit_config_new("fast", 0, &fc));
  CHECK(ft_fit_config_set_d(fc, 8));
  CHECK(ft_fit_config_set_grid(fc, GRID));
  CHECK(ft_fit_config_set_max_epochs(fc, 8));
  CHECK(ft_fit_config_set_batch_size(fc, 8));
  CHECK(ft_fit_config_set_reg_steps(fc, 60));
  CHECK(ft_fit_config_set_val_fraction(fc, 0.2));
  CHECK(ft_fit_config_set_seed(fc, 2));
  fit = NULL;
  CHECK(ft_fit_with(fc, feats, brain, &fit));
  ft_fit_options fo;
  CHECK(ft_fit_options_preset("fast", &fo));
  fo.d = 8;
  fo.grid = GRID;
  fo.max_epochs = 8;
  fo.batch_size = 8;
  fo.reg_steps = 60;
  fo.val_fraction = 0.2;
  fo.seed = 2;
  ft_fit *old = NULL;
  CHECK(ft_fit_new_resampled(feats, brain, &fo, "cpu", "auto,common", &old));
  ft_fit_summary s1, s2;
  CHECK(ft_fit_report_summary(fit, &s1));
  CHECK(ft_fit_report_summary(old, &s2));
  EXPECT(s1.n_voxels == N_VOXELS && s1.n_layers == N_LAYERS);
  EXPECT(s1.r2_mean == s2.r2_mean && s1.r2_median == s2.r2_median && s1.pearson_mean == s2.pearson_mean);
  EXPECT((isnan(s1.slope) && isnan(s2.slope)) || s1.slope == s2.slope);
  const size_t n = (size_t)N_IMAGES * N_VOXELS;
  float *p1 = calloc(n, sizeof *p1), *p2 = calloc(n, sizeof *p2);
  CHECK(ft_fit_predict(fit, feats, NULL, NULL, p1, n));
  CHECK(ft_fit_predict(old, feats, NULL, NULL, p2, n));
  EXPECT(memcmp(p1, p2, n * sizeof *p1) == 0);
  snprintf(a, sizeof a, "%s/encoder.safetensors", dir);
  CHECK(ft_fit_save_encoder(fit, a));
  ft_fit_free(old);
  ft_fit_free(fit);

  /* Scoring the saved encoder: its training settings are fixed, so setting one is refused. */
  fit = NULL;
  CHECK(ft_fit_load_with(NULL, a, feats, brain, &fit));
  ft_fit_summary s3;
  CHECK(ft_fit_report_summary(fit, &s3));
  EXPECT(s3.r2_mean == s1.r2_mean);
  ft_fit_free(fit);
  EXPECT_STATUS(ft_fit_load_with(fc, a, feats, brain, &fit), FT_ERR_INVALID_ARGUMENT);

  /* A monitor through the builder; val_fraction is the fit's, not the monitor's. */
  EXPECT_STATUS(ft_monitor_with(fc, brain, feats, NULL), FT_ERR_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "val_fraction") != NULL);
  ft_fit_config *mc = NULL;
  CHECK(ft_fit_config_new("fast", 0, &mc));
  CHECK(ft_fit_config_set_d(mc, 8));
  CHECK(ft_fit_config_set_grid(mc, GRID));
  CHECK(ft_fit_config_set_max_epochs(mc, 8));
  CHECK(ft_fit_config_set_batch_size(mc, 8));
  CHECK(ft_fit_config_set_reg_steps(mc, 60));
  CHECK(ft_fit_config_set_seed(mc, 2));
  CHECK(ft_fit_config_set_held_out_fraction(mc, 0.2));
  CHECK(ft_fit_config_set_refit_every(mc, 1));
  CHECK(ft_fit_config_set_refit_max_steps(mc, 3));
  CHECK(ft_fit_config_set_forgetting_threshold(mc, 0.5));
  ft_monitor *mon = NULL;
  CHECK(ft_monitor_with(mc, brain, feats, &mon));
  ft_step_report *rep = NULL;
  CHECK(ft_monitor_observe(mon, 1, feats, &rep));
  ft_step_summary ss;
  CHECK(ft_step_report_summary(rep, &ss));
  EXPECT(ss.step == 1 && isfinite(ss.retention));
  ft_step_report_free(rep);
  ft_monitor_free(mon);
  mon = NULL;
  CHECK(ft_monitor_from_encoder_with(mc, brain, feats, a, &mon));
  ft_monitor_free(mon);
  ft_fit_config_free(mc);

  /* Rankings: the ridge baseline through the builder equals ft_rank's; a FactorTopy training
   * setting would be ignored by ridge, so it is refused. */
  ft_fit_config *rc = NULL;
  CHECK(ft_fit_config_new(NULL, 0, &rc));
  CHECK(ft_fit_config_set_method(rc, "ridge"));
  const ft_features *nets[2] = {feats, feats};
  char *r1 = NULL, *r2 = NULL;
  CHECK(ft_rank_with(rc, nets, 2, brain, &r1));
  CHECK(ft_rank(nets, 2, brain, NULL, FT_RANK_RIDGE, &r2));
  const char *k1 = strstr(r1, "\"slope\":"), *k2 = strstr(r2, "\"slope\":");
  EXPECT(k1 && k2 && strncmp(k1, k2, 40) == 0);
  ft_string_free(r1);
  ft_string_free(r2);
  EXPECT_STATUS(ft_fit_with(rc, feats, brain, &fit), FT_ERR_INVALID_ARGUMENT); /* a fit is FactorTopy's */
  CHECK(ft_fit_config_set_lr(rc, 1e-2));
  EXPECT_STATUS(ft_rank_with(rc, nets, 2, brain, &r1), FT_ERR_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "`lr`") != NULL);
  ft_fit_config_free(rc);

  /* Grids by file: the builder's plan equals ft_rank_plan's (the same digests), and a pair
   * runs. */
  const char *net_paths[1] = {features_path};
  const char *brain_paths[1] = {brain_path};
  char *plan1 = NULL, *plan2 = NULL;
  CHECK(ft_rank_plan_with(NULL, net_paths, 1, brain_paths, 1, NULL, &plan1));
  CHECK(ft_rank_plan(net_paths, 1, brain_paths, 1, NULL, FT_RANK_FACTORTOPY, NULL, NULL, 0, NULL, &plan2));
  EXPECT(strcmp(plan1, plan2) == 0);
  ft_string_free(plan1);
  ft_string_free(plan2);
  ft_fit_config *gc = NULL;
  CHECK(ft_fit_config_new(NULL, 0, &gc));
  CHECK(ft_fit_config_set_method(gc, "ridge"));
  CHECK(ft_fit_config_set_bootstrap(gc, 50));
  CHECK(ft_fit_config_set_permutations(gc, 20));
  char *pair = NULL, *ranking = NULL;
  CHECK(ft_rank_pair_with(gc, features_path, brain_path, 0, 0, &pair));
  const char *outcomes[1] = {pair};
  CHECK(ft_rank_combine(outcomes, 1, &ranking));
  EXPECT(strstr(ranking, "\"rows\"") != NULL);
  ft_string_free(ranking);
  ft_string_free(pair);
  CHECK(ft_rank_grid_with(gc, net_paths, 1, brain_paths, 1, NULL, &ranking));
  ft_string_free(ranking);
  ft_fit_config_free(gc);
  /* A monitor setting is not a grid's. */
  CHECK(ft_fit_config_set_refit_every(fc, 2));
  EXPECT_STATUS(ft_rank_plan_with(fc, net_paths, 1, brain_paths, 1, NULL, &plan1), FT_ERR_INVALID_ARGUMENT);
  ft_fit_config_free(fc);

  free(p1);
  free(p2);
  ft_features_free(feats);
  ft_brain_free(brain);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("config_test: ok\n");
  return 0;
}
