/* A grid of networks × subjects through the C ABI: the whole grid in one call, the same grid
 * pair by pair (as a cluster would run it) and combined, the plan of a finished grid, and the
 * misuse cases. */
#include <string.h>

#include "factortopy.h"
#include "check.h"

static size_t count(const char *haystack, const char *needle) {
  size_t n = 0;
  for (const char *p = strstr(haystack, needle); p; p = strstr(p + 1, needle)) n++;
  return n;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  char s1[4096], s2dir[4096], s2[4096], net[4096], out_dir[4096];
  ft_brain *brain = NULL;
  ft_features *feats = NULL;
  load_synth(dir, 120, 80, 3, 8, 5, &brain, &feats);
  snprintf(s1, sizeof s1, "%s/brain.safetensors", dir);
  snprintf(net, sizeof net, "%s/features.safetensors", dir);
  snprintf(s2dir, sizeof s2dir, "%s/s2", dir);
  snprintf(s2, sizeof s2, "%s/s2/brain.safetensors", dir);
  snprintf(out_dir, sizeof out_dir, "%s/grid", dir);

  /* A second subject planted on the same network (the same images). */
  ft_synth_options so;
  CHECK(ft_synth_options_default(&so));
  so.n_voxels = 60;
  so.grid = 4;
  so.seed = 9;
  ft_brain *brain2 = NULL;
  CHECK(ft_synth_plant(feats, &so, s2dir, &brain2));

  char *header = NULL;
  CHECK(ft_brain_file_header(s2, &header));
  EXPECT(strstr(header, "\"n_images\":120") && strstr(header, "\"n_voxels\":60"));
  ft_string_free(header);

  const char *nets[2] = {net, net};
  const char *brains[2] = {s1, s2};
  char *grid = NULL;
  CHECK(ft_rank_grid(nets, 2, brains, 2, NULL, FT_RANK_RIDGE, NULL, NULL, 0, out_dir, &grid));
  EXPECT(strstr(grid, "\"subjects\"") && strstr(grid, "\"across\""));
  EXPECT(count(grid, "\"rank\": 1") >= 1);

  /* The finished grid's plan: every pair is done. */
  char *plan = NULL;
  CHECK(ft_rank_plan(nets, 2, brains, 2, NULL, FT_RANK_RIDGE, NULL, NULL, 0, out_dir, &plan));
  EXPECT(count(plan, "\"done\":true") == 4);
  ft_string_free(plan);

  /* Pair by pair, then combined: the same ranking, byte for byte. */
  char *pairs[4];
  for (size_t i = 0; i < 2; i++)
    for (size_t s = 0; s < 2; s++)
      CHECK(ft_rank_pair(nets[i], brains[s], i, s, NULL, FT_RANK_RIDGE, NULL, NULL, 0, &pairs[2 * i + s]));
  char *combined = NULL;
  CHECK(ft_rank_combine((const char *const *)pairs, 4, &combined));
  EXPECT(strcmp(combined, grid) == 0);
  char *stored = NULL;
  CHECK(ft_rank_store(out_dir, pairs[0]));
  /* An incomplete grid is refused. */
  EXPECT_STATUS(ft_rank_combine((const char *const *)pairs, 3, &stored), FT_ERR_INVALID_ARGUMENT);
  for (size_t k = 0; k < 4; k++) ft_string_free(pairs[k]);
  ft_string_free(combined);

  /* Misuse. */
  EXPECT_STATUS(ft_rank_grid(NULL, 2, brains, 2, NULL, FT_RANK_RIDGE, NULL, NULL, 0, NULL, &grid), FT_ERR_NULL);
  EXPECT_STATUS(ft_rank_grid(nets, 0, brains, 2, NULL, FT_RANK_RIDGE, NULL, NULL, 0, NULL, &grid),
                FT_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(ft_rank_grid(nets, 2, brains, 2, NULL, 7, NULL, NULL, 0, NULL, &grid), FT_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(ft_rank_load(out_dir, "not-a-digest", 0, 0, &stored), FT_ERR_INVALID_ARGUMENT);
  EXPECT_STATUS(ft_rank_load(out_dir, "0000000000000000000000000000000000000000000000000000000000000000", 0, 0, &stored),
                FT_ERR_IO);
  EXPECT_STATUS(ft_rank_store(out_dir, "{\"format\": 1}"), FT_ERR_INVALID_ARGUMENT);
  const char *bad[1] = {"[]"};
  EXPECT_STATUS(ft_rank_combine(bad, 1, &stored), FT_ERR_INVALID_ARGUMENT);
  const char *other[2] = {s1, net};
  EXPECT_STATUS(ft_rank_plan(nets, 2, other, 2, NULL, FT_RANK_RIDGE, NULL, NULL, 0, NULL, &plan), FT_ERR_DATA);

  ft_string_free(grid);
  ft_brain_free(brain2);
  ft_brain_free(brain);
  ft_features_free(feats);
  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("rank_grid_test: ok\n");
  return 0;
}
