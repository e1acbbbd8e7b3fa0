/* Checking macros and the synthetic data shared by the C test programs (tests/c/ and
 * tests/c/compat/). Each program includes its header (the current one or an old one) before this
 * file, so everything here uses only what factortopy 0.1's header already had. */
#ifndef FT_TEST_CHECK_H
#define FT_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int failures = 0;

#define CHECK(call)                                                                        \
  do {                                                                                     \
    ft_status s_ = (call);                                                                 \
    if (s_ != FT_OK) {                                                                     \
      fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #call,                  \
              ft_status_name(s_), ft_last_error());                                        \
      exit(1);                                                                             \
    }                                                                                      \
  } while (0)

#define EXPECT(cond)                                                                       \
  do {                                                                                     \
    if (!(cond)) {                                                                         \
      fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond);                  \
      failures++;                                                                          \
    }                                                                                      \
  } while (0)

/* The call must fail with `want` and leave a non-empty message. */
#define EXPECT_STATUS(call, want)                                                          \
  do {                                                                                     \
    ft_status s_ = (call);                                                                 \
    if (s_ != (want)) {                                                                    \
      fprintf(stderr, "%s:%d: %s -> %s, expected %s (%s)\n", __FILE__, __LINE__, #call,    \
              ft_status_name(s_), ft_status_name(want), ft_last_error());                  \
      failures++;                                                                          \
    } else if (ft_last_error()[0] == '\0') {                                               \
      fprintf(stderr, "%s:%d: %s gave no error message\n", __FILE__, __LINE__, #call);     \
      failures++;                                                                          \
    }                                                                                      \
  } while (0)

/* Writes planted-hierarchy synthetic data (ft_synth_write: the hierarchical scenario, noise
 * ceiling 0.8, grid 4, `seed`, the given sizes, the library's defaults otherwise) into `dir` and
 * loads it back through the file loaders into `*brain` and `*features` (free them with
 * ft_brain_free and ft_features_free). Exits on failure, like CHECK. */
static void load_synth(const char *dir, size_t n_images, size_t n_voxels, size_t n_layers, size_t width,
                       uint64_t seed, ft_brain **brain, ft_features **features) {
  ft_synth_options so;
  CHECK(ft_synth_options_default(&so));
  so.n_images = n_images;
  so.n_voxels = n_voxels;
  so.n_layers = n_layers;
  so.width = width;
  so.grid = 4;
  so.noise_ceiling = 0.8;
  so.seed = seed;
  CHECK(ft_synth_write(dir, &so));
  char path[4096];
  snprintf(path, sizeof path, "%s/brain.safetensors", dir);
  CHECK(ft_brain_load(path, brain));
  snprintf(path, sizeof path, "%s/features.safetensors", dir);
  CHECK(ft_features_load(path, features));
}

#endif
