/*
 * A program written against factortopy 0.1.0's header (tests/c/compat/factortopy_0_1.h, the
 * header before the engine's `_on` entry points existed), linked against today's library: the
 * option structs are frozen, so it works unchanged (the versioning rule in the header).
 *
 * Usage: old_header_test WORKDIR
 */
#include "factortopy_0_1.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../check.h"

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  char path[4096];
  ft_brain *brain = NULL;
  ft_features *feats = NULL;
  load_synth(dir, 120, 20, 3, 8, 0, &brain, &feats);

  ft_fit_options fo;
  CHECK(ft_fit_options_default(&fo));
  fo.d = 8;
  fo.grid = 4;
  fo.max_epochs = 8;
  fo.batch_size = 8;
  fo.reg_steps = 60;
  fo.lr = 1e-2;
  fo.val_fraction = 0.2;
  ft_fit *fit = NULL;
  CHECK(ft_fit_new(feats, brain, &fo, &fit));
  ft_fit_summary s;
  CHECK(ft_fit_report_summary(fit, &s));
  EXPECT(s.n_voxels == 20 && s.n_layers == 3);

  ft_monitor_options mo;
  CHECK(ft_monitor_options_default(&mo));
  mo.fit = fo;
  mo.held_out_fraction = 0.2;
  snprintf(path, sizeof path, "%s/encoder.safetensors", dir);
  CHECK(ft_fit_save_encoder(fit, path));
  ft_monitor *mon = NULL;
  CHECK(ft_monitor_new_from_encoder(brain, feats, path, &mo, &mon));
  ft_step_report *rep = NULL;
  CHECK(ft_monitor_observe(mon, 0, feats, &rep));

  ft_step_report_free(rep);
  ft_monitor_free(mon);
  ft_fit_free(fit);
  ft_features_free(feats);
  ft_brain_free(brain);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("old_header_test: a 0.1.0 program runs against this library: ok\n");
  return 0;
}
