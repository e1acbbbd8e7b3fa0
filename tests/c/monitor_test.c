/*
 * End-to-end test of the C ABI (include/factortopy.h), built against the shared and the static
 * library and run under valgrind by .ci/c_abi_check.sh (and by tests/ffi_c_program.rs).
 *
 * Usage: monitor_test WORKDIR
 *
 * Writes small synthetic data into WORKDIR, loads it, rebuilds the reference features through
 * every tensor path (plain view, DLPack borrowed with strides, DLPack managed with a byte
 * offset; f32, f16 and bf16), creates a monitor, observes features perturbed more and more and
 * checks that forgetting rises and CKA falls, reads the JSON, saves and reloads the monitor,
 * then checks that NULLs, wrong shapes, NaN, bad dtypes and device memory return error
 * statuses without touching outputs. Frees everything, so valgrind reports no leak.
 */
#include "factortopy.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

enum { N_IMAGES = 120, N_VOXELS = 28, N_LAYERS = 4, WIDTH = 12, GRID = 4 };

/* ---- deterministic noise and low-precision conversions ------------------------------------ */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double uniform01(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* Approximately standard normal: sum of four uniforms, rescaled. */
static float noise(void) {
  double s = uniform01() + uniform01() + uniform01() + uniform01() - 2.0;
  return (float)(s * 1.7320508075688772);
}

static uint16_t to_bf16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  x += 0x7FFFu + ((x >> 16) & 1u); /* round to nearest even */
  return (uint16_t)(x >> 16);
}

static uint16_t to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint32_t sign = (x >> 16) & 0x8000u;
  int32_t exp = (int32_t)((x >> 23) & 0xFFu) - 127 + 15;
  uint32_t mant = x & 0x7FFFFFu;
  if (exp <= 0) return (uint16_t)sign; /* tiny values flush to zero: fine for test data */
  if (exp >= 31) return (uint16_t)(sign | 0x7C00u);
  uint32_t h = sign | ((uint32_t)exp << 10) | (mant >> 13);
  uint32_t rem = mant & 0x1FFFu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
  return (uint16_t)h;
}

/* ---- DLPack managed tensors owned by this program ----------------------------------------- */

static int deleter_calls = 0;

typedef struct {
  DLManagedTensor managed;
  int64_t shape[4];
  void *buffer;
} owned_tensor;

static void owned_deleter(DLManagedTensor *self) {
  owned_tensor *t = (owned_tensor *)self->manager_ctx;
  deleter_calls++;
  free(t->buffer);
  free(t);
}

/* A managed bf16 tensor of `shape` whose data starts `offset` bytes into its buffer. */
static DLManagedTensor *managed_bf16(const float *values, const int64_t *shape, int ndim,
                                     size_t offset) {
  owned_tensor *t = calloc(1, sizeof *t);
  size_t n = 1;
  for (int k = 0; k < ndim; k++) {
    t->shape[k] = shape[k];
    n *= (size_t)shape[k];
  }
  t->buffer = malloc(offset + 2 * n);
  uint16_t *dst = (uint16_t *)((char *)t->buffer + offset);
  for (size_t i = 0; i < n; i++) dst[i] = to_bf16(values[i]);
  t->managed.dl_tensor.data = t->buffer;
  t->managed.dl_tensor.byte_offset = offset;
  t->managed.dl_tensor.device.device_type = 1; /* kDLCPU */
  t->managed.dl_tensor.ndim = ndim;
  t->managed.dl_tensor.dtype.code = 4; /* kDLBfloat */
  t->managed.dl_tensor.dtype.bits = 16;
  t->managed.dl_tensor.dtype.lanes = 1;
  t->managed.dl_tensor.shape = t->shape;
  t->managed.dl_tensor.strides = NULL;
  t->managed.manager_ctx = t;
  t->managed.deleter = owned_deleter;
  return &t->managed;
}

/* ---- feature sets built through every tensor path ----------------------------------------- */

/*
 * A copy of `ref` with `sigma`-scaled noise added to every value. Layer l goes in through
 * path l % 4: plain f32 view; DLPack borrowed f32 stored channels-last (non-trivial strides);
 * DLPack managed bf16 with a byte offset (consumed); plain f16 view. Without `lowp`, every
 * path carries f32 so the copy is exact.
 */
static ft_features *build(const ft_features *ref, float sigma, int lowp) {
  ft_features *f = NULL;
  CHECK(ft_features_new(&f));
  for (size_t l = 0; l < N_LAYERS; l++) {
    ft_layer_view v;
    CHECK(ft_features_layer(ref, l, &v));
    int64_t n = v.local_shape[0], c = v.local_shape[1], h = v.local_shape[2], w = v.local_shape[3];
    size_t nl = (size_t)(n * c * h * w), ng = (size_t)(n * c);
    float *local = malloc(nl * sizeof(float));
    float *global = malloc(ng * sizeof(float));
    for (size_t i = 0; i < nl; i++) local[i] = v.local[i] + sigma * noise();
    for (size_t i = 0; i < ng; i++) global[i] = v.global[i] + sigma * noise();
    int64_t gshape[2] = {n, c};
    ft_tensor g = {global, FT_F32, 2, gshape, NULL};
    int path = (int)(l % 4);
    if (path == 0) {
      ft_tensor t = {local, FT_F32, 4, v.local_shape, NULL};
      CHECK(ft_features_add_layer(f, &t, &g));
    } else if (path == 1) {
      /* Channels-last memory [N, H, W, C] described as [N, C, H, W] with strides. */
      float *nhwc = malloc(nl * sizeof(float));
      for (int64_t i = 0; i < n; i++)
        for (int64_t ch = 0; ch < c; ch++)
          for (int64_t y = 0; y < h; y++)
            for (int64_t x = 0; x < w; x++)
              nhwc[((i * h + y) * w + x) * c + ch] = local[((i * c + ch) * h + y) * w + x];
      int64_t shape[4] = {n, c, h, w};
      int64_t strides[4] = {h * w * c, 1, w * c, c};
      DLTensor t;
      memset(&t, 0, sizeof t);
      t.data = nhwc;
      t.device.device_type = 1;
      t.ndim = 4;
      t.dtype.code = 2;
      t.dtype.bits = 32;
      t.dtype.lanes = 1;
      t.shape = shape;
      t.strides = strides;
      DLTensor gt = t;
      gt.data = global;
      gt.ndim = 2;
      gt.shape = gshape;
      gt.strides = NULL;
      CHECK(ft_features_add_layer_dlpack(f, &t, &gt));
      free(nhwc);
    } else if (path == 2) {
      if (lowp) {
        int before = deleter_calls;
        DLManagedTensor *lt = managed_bf16(local, v.local_shape, 4, 24);
        DLManagedTensor *gt = managed_bf16(global, gshape, 2, 8);
        CHECK(ft_features_add_layer_dlpack_managed(f, lt, gt));
        EXPECT(deleter_calls == before + 2);
      } else {
        ft_tensor t = {local, FT_F32, 4, v.local_shape, NULL};
        CHECK(ft_features_add_layer(f, &t, &g));
      }
    } else {
      if (lowp) {
        uint16_t *h16 = malloc(nl * 2), *g16 = malloc(ng * 2);
        for (size_t i = 0; i < nl; i++) h16[i] = to_f16(local[i]);
        for (size_t i = 0; i < ng; i++) g16[i] = to_f16(global[i]);
        ft_tensor t = {h16, FT_F16, 4, v.local_shape, NULL};
        ft_tensor gt = {g16, FT_F16, 2, gshape, NULL};
        CHECK(ft_features_add_layer(f, &t, &gt));
        free(h16);
        free(g16);
      } else {
        ft_tensor t = {local, FT_F32, 4, v.local_shape, NULL};
        CHECK(ft_features_add_layer(f, &t, &g));
      }
    }
    free(local);
    free(global);
  }
  return f;
}

static void join(char *out, size_t cap, const char *dir, const char *name) {
  snprintf(out, cap, "%s/%s", dir, name);
}

/* ---- error paths -------------------------------------------------------------------------- */

static void error_paths(const char *dir, ft_brain *brain, ft_features *ref, ft_monitor *mon) {
  char path[4096];
  ft_brain *sentinel_brain = (ft_brain *)(uintptr_t)0x1;
  ft_brain *b = sentinel_brain;

  /* NULL arguments. */
  EXPECT_STATUS(ft_brain_load(NULL, &b), FT_ERR_NULL);
  join(path, sizeof path, dir, "brain.safetensors");
  EXPECT_STATUS(ft_brain_load(path, NULL), FT_ERR_NULL);
  join(path, sizeof path, dir, "does-not-exist.safetensors");
  EXPECT_STATUS(ft_brain_load(path, &b), FT_ERR_IO);
  EXPECT(b == sentinel_brain); /* outputs untouched on error */
  size_t n = 12345, v = 12345;
  EXPECT_STATUS(ft_brain_shape(NULL, &n, &v), FT_ERR_NULL);
  EXPECT_STATUS(ft_brain_shape(brain, NULL, &v), FT_ERR_NULL);
  EXPECT(n == 12345 && v == 12345);
  EXPECT_STATUS(ft_features_add_layer(NULL, NULL, NULL), FT_ERR_NULL);
  EXPECT_STATUS(ft_monitor_new(NULL, ref, NULL, NULL), FT_ERR_NULL);
  EXPECT_STATUS(ft_monitor_save(mon, NULL), FT_ERR_NULL);
  ft_step_report *r = (ft_step_report *)(uintptr_t)0x1;
  EXPECT_STATUS(ft_monitor_observe(mon, 1, NULL, &r), FT_ERR_NULL);
  EXPECT_STATUS(ft_monitor_observe(mon, 1, ref, NULL), FT_ERR_NULL);
  EXPECT_STATUS(ft_monitor_observe(NULL, 1, ref, &r), FT_ERR_NULL);
  EXPECT(r == (ft_step_report *)(uintptr_t)0x1);

  /* Wrong shapes, NaN, bad dtypes and device memory: the feature set stays unchanged. */
  ft_features *f = NULL;
  CHECK(ft_features_new(&f));
  float data[2 * 3 * 2 * 2];
  for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) data[i] = (float)i;
  int64_t s3[3] = {2, 3, 4};
  ft_tensor t3 = {data, FT_F32, 3, s3, NULL};
  EXPECT_STATUS(ft_features_add_layer(f, &t3, NULL), FT_ERR_SHAPE);
  EXPECT_STATUS(ft_features_add_layer(f, NULL, NULL), FT_ERR_NULL);
  int64_t s4[4] = {2, 3, 2, 2};
  ft_tensor t4 = {data, FT_F32, 4, s4, NULL};
  int64_t gs_bad[2] = {2, 4};
  ft_tensor gbad = {data, FT_F32, 2, gs_bad, NULL};
  EXPECT_STATUS(ft_features_add_layer(f, &t4, &gbad), FT_ERR_SHAPE);
  int64_t neg[4] = {2, -3, 2, 2};
  ft_tensor tneg = {data, FT_F32, 4, neg, NULL};
  EXPECT_STATUS(ft_features_add_layer(f, &tneg, NULL), FT_ERR_SHAPE);
  ft_tensor tdt = {data, 7, 4, s4, NULL};
  EXPECT_STATUS(ft_features_add_layer(f, &tdt, NULL), FT_ERR_DTYPE);
  ft_tensor tnull = {NULL, FT_F32, 4, s4, NULL};
  EXPECT_STATUS(ft_features_add_layer(f, &tnull, NULL), FT_ERR_NULL);
  data[5] = NAN;
  EXPECT_STATUS(ft_features_add_layer(f, &t4, NULL), FT_ERR_DATA);
  EXPECT(strstr(ft_last_error(), "non-finite") != NULL);
  data[5] = INFINITY;
  EXPECT_STATUS(ft_features_add_layer(f, &t4, NULL), FT_ERR_DATA);
  data[5] = 5.0f;
  size_t fn = 99, fl = 99;
  CHECK(ft_features_shape(f, &fn, &fl));
  EXPECT(fn == 0 && fl == 0);
  CHECK(ft_features_add_layer(f, &t4, NULL)); /* now it is fine */
  int64_t s4n[4] = {1, 3, 2, 2};
  ft_tensor t4n = {data, FT_F32, 4, s4n, NULL};
  EXPECT_STATUS(ft_features_add_layer(f, &t4n, NULL), FT_ERR_SHAPE); /* image count differs */

  DLTensor d;
  memset(&d, 0, sizeof d);
  d.data = data;
  d.device.device_type = 2; /* kDLCUDA */
  d.ndim = 4;
  d.dtype.code = 2;
  d.dtype.bits = 32;
  d.dtype.lanes = 1;
  d.shape = s4;
  EXPECT_STATUS(ft_features_add_layer_dlpack(f, &d, NULL), FT_ERR_DEVICE);
  EXPECT(strstr(ft_last_error(), "CUDA") != NULL && strstr(ft_last_error(), "cpu") != NULL);
  d.device.device_type = 1;
  d.dtype.code = 0; /* kDLInt */
  EXPECT_STATUS(ft_features_add_layer_dlpack(f, &d, NULL), FT_ERR_DTYPE);
  d.dtype.code = 2;
  d.dtype.lanes = 4;
  EXPECT_STATUS(ft_features_add_layer_dlpack(f, &d, NULL), FT_ERR_DTYPE);
  d.dtype.lanes = 1;
  d.ndim = -1;
  EXPECT_STATUS(ft_features_add_layer_dlpack(f, &d, NULL), FT_ERR_SHAPE);
  CHECK(ft_features_shape(f, &fn, &fl));
  EXPECT(fn == 2 && fl == 1);

  /* A managed tensor is consumed even when the call fails. */
  int before = deleter_calls;
  int64_t bad_shape[3] = {2, 3, 4};
  EXPECT_STATUS(ft_features_add_layer_dlpack_managed(f, managed_bf16(data, bad_shape, 3, 0), NULL),
                FT_ERR_SHAPE);
  EXPECT(deleter_calls == before + 1);
  EXPECT_STATUS(ft_features_add_layer_dlpack_managed(NULL, managed_bf16(data, s4, 4, 0), NULL),
                FT_ERR_NULL);
  EXPECT(deleter_calls == before + 2);

  /* Observing features that do not match the reference. */
  EXPECT_STATUS(ft_monitor_observe(mon, 7, f, &r), FT_ERR_MISMATCH);
  ft_features *empty = NULL;
  CHECK(ft_features_new(&empty));
  EXPECT_STATUS(ft_monitor_observe(mon, 7, empty, &r), FT_ERR_DATA);
  EXPECT_STATUS(ft_monitor_new(brain, empty, NULL, &mon), FT_ERR_DATA);
  ft_features_free(empty);
  EXPECT_STATUS(ft_features_layer(ref, 99, NULL), FT_ERR_NULL);
  ft_layer_view lv;
  EXPECT_STATUS(ft_features_layer(ref, 99, &lv), FT_ERR_INVALID_ARGUMENT);

  /* Options out of range. */
  ft_monitor_options mo;
  CHECK(ft_monitor_options_default(&mo));
  mo.held_out_fraction = 1.5;
  ft_monitor *m2 = (ft_monitor *)(uintptr_t)0x1;
  EXPECT_STATUS(ft_monitor_new(brain, ref, &mo, &m2), FT_ERR_INVALID_ARGUMENT);
  EXPECT(m2 == (ft_monitor *)(uintptr_t)0x1);

  /* Sizes past memory are refused before anything is allocated, never an abort. A
   * zero-stride view describes 2^52 elements with one float of memory. */
  int64_t huge[4] = {(int64_t)1 << 20, (int64_t)1 << 20, 64, 64};
  int64_t zero_strides[4] = {0, 0, 0, 0};
  ft_tensor tz = {data, FT_F32, 4, huge, zero_strides};
  EXPECT_STATUS(ft_features_add_layer(f, &tz, NULL), FT_ERR_SHAPE);
  EXPECT(strstr(ft_last_error(), "elements") != NULL);
  ft_fit_options fo;
  CHECK(ft_fit_options_default(&fo));
  fo.grid = 4000000000u;
  ft_fit *fit = NULL;
  EXPECT_STATUS(ft_fit_new(ref, brain, &fo, &fit), FT_ERR_INVALID_ARGUMENT);
  EXPECT(strstr(ft_last_error(), "grid") != NULL && fit == NULL);
  CHECK(ft_fit_options_default(&fo));
  fo.val_fraction = NAN;
  EXPECT_STATUS(ft_fit_new(ref, brain, &fo, &fit), FT_ERR_INVALID_ARGUMENT);
  ft_synth_options huge_synth;
  CHECK(ft_synth_options_default(&huge_synth));
  huge_synth.n_voxels = SIZE_MAX;
  join(path, sizeof path, dir, "never");
  EXPECT_STATUS(ft_synth_write(path, &huge_synth), FT_ERR_INVALID_ARGUMENT);
  CHECK(ft_synth_options_default(&huge_synth));
  huge_synth.grid = SIZE_MAX / 2;
  EXPECT_STATUS(ft_synth_write(path, &huge_synth), FT_ERR_INVALID_ARGUMENT);
  EXPECT(strcmp(ft_status_name(FT_ERR_MEMORY), "FT_ERR_MEMORY") == 0);

  /* Loading a state that does not exist, a path that is not UTF-8. */
  join(path, sizeof path, dir, "nope.safetensors");
  EXPECT_STATUS(ft_monitor_load(path, brain, &m2), FT_ERR_IO);
  const char bad_utf8[] = {'/', 't', 'm', 'p', '/', (char)0xff, 0};
  EXPECT_STATUS(ft_monitor_load(bad_utf8, brain, &m2), FT_ERR_INVALID_ARGUMENT);

  ft_features_free(f);
}

/* The monitor's state through memory (as a host's checkpoint carries it), its curves, and a brain
 * built from arrays: the entry points in-memory hosts (the Python package) use. */
static void memory_paths(const char *dir, ft_brain *brain, ft_monitor *mon) {
  char path[4096];
  uint8_t *bytes = NULL;
  size_t nbytes = 0;
  CHECK(ft_monitor_save_bytes(mon, &bytes, &nbytes));
  EXPECT(bytes != NULL && nbytes > 8);
  ft_monitor *back = NULL, *untouched = (ft_monitor *)0x10;
  CHECK(ft_monitor_load_bytes(bytes, nbytes, brain, &back));
  EXPECT_STATUS(ft_monitor_load_bytes(bytes, nbytes / 2, brain, &untouched), FT_ERR_DATA);
  EXPECT(untouched == (ft_monitor *)0x10);
  ft_bytes_free(bytes, nbytes);
  ft_bytes_free(NULL, 0);
  char *h1 = NULL, *h2 = NULL;
  CHECK(ft_monitor_history_json(mon, &h1));
  CHECK(ft_monitor_history_json(back, &h2));
  EXPECT(strcmp(h1, h2) == 0);
  ft_string_free(h1);
  ft_string_free(h2);
  join(path, sizeof path, dir, "curves");
  CHECK(ft_monitor_write_curves(back, path));
  join(path, sizeof path, dir, "curves/forgetting.png");
  FILE *png = fopen(path, "rb");
  EXPECT(png != NULL);
  if (png) fclose(png);
  ft_monitor_free(back);

  enum { N = 16, V = 5 };
  float responses[N * V], coords[V * 3];
  for (int i = 0; i < N * V; i++) responses[i] = noise();
  for (int i = 0; i < V * 3; i++) coords[i] = (float)i;
  int32_t roi[V] = {0, 0, 1, 1, -1};
  int64_t rshape[2] = {N, V}, cshape[2] = {V, 3};
  ft_tensor rt = {responses, FT_F32, 2, rshape, NULL};
  ft_tensor ct = {coords, FT_F32, 2, cshape, NULL};
  ft_brain_arrays arrays = {&rt, &ct, roi, V, NULL, NULL, "{\"roi_names\": [\"V1\", \"FFA\"]}", 1};
  ft_brain *made = NULL;
  CHECK(ft_brain_new(&arrays, &made));
  char *info = NULL;
  CHECK(ft_brain_info_json(made, &info));
  EXPECT(strstr(info, "\"roi_sizes\":[2,2]") != NULL);
  ft_string_free(info);
  join(path, sizeof path, dir, "made_brain.safetensors");
  CHECK(ft_brain_save(made, path));
  ft_brain_free(made);
  /* A length far beyond what `roi` holds: a length error before anything is read. */
  ft_brain *bad = (ft_brain *)0x10;
  arrays.roi_len = SIZE_MAX / 2;
  EXPECT_STATUS(ft_brain_new(&arrays, &bad), FT_ERR_INVALID_ARGUMENT);
  EXPECT(bad == (ft_brain *)0x10 && strstr(ft_last_error(), "roi_len") != NULL);
  arrays.roi_len = V;
  responses[7] = NAN;
  EXPECT_STATUS(ft_brain_new(&arrays, &bad), FT_ERR_DATA);
  EXPECT(bad == (ft_brain *)0x10);
  arrays.metadata_json = "{\"roi_names\": [\"V1\"";
  EXPECT_STATUS(ft_brain_new(&arrays, &bad), FT_ERR_INVALID_ARGUMENT);
  printf("memory paths: state %zu bytes round-trips, curves drawn, brain from arrays\n", nbytes);
}

/* Two threads on one monitor, which the header forbids: the library detects the overlap and the
 * later call returns FT_ERR_BUSY doing nothing, instead of reading the history while the other
 * call grows it (a use-after-free, which the AddressSanitizer build of this program reports). */
struct overlap {
  ft_monitor *mon;
  ft_features *f;
  volatile int done;
  int observed, busy, other;
};

static void *observer(void *arg) {
  struct overlap *o = arg;
  for (int k = 0; k < 3;) {
    ft_step_report *r = NULL;
    ft_status st = ft_monitor_observe(o->mon, (uint64_t)(1000 + k), o->f, &r);
    if (st == FT_OK) {
      ft_step_report_free(r);
      o->observed++;
      k++;
    } else if (st == FT_ERR_BUSY) {
      o->busy++;
    } else {
      o->other++;
      break;
    }
  }
  __atomic_store_n(&o->done, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void overlapping_calls(ft_monitor *mon, ft_features *f) {
  struct overlap o = {mon, f, 0, 0, 0, 0};
  pthread_t t;
  EXPECT(pthread_create(&t, NULL, observer, &o) == 0);
  int ok = 0, busy = 0, other = 0;
  while (!__atomic_load_n(&o.done, __ATOMIC_SEQ_CST)) {
    char *h = NULL;
    ft_status st = ft_monitor_history_json(mon, &h);
    if (st == FT_OK) {
      ok++;
      ft_string_free(h);
    } else if (st == FT_ERR_BUSY) {
      busy++;
      EXPECT(h == NULL && strstr(ft_last_error(), "in use") != NULL);
    } else {
      other++;
    }
  }
  pthread_join(t, NULL);
  EXPECT(o.observed == 3 && o.other == 0 && other == 0);
  printf("overlapping calls on one monitor: %d observations (%d busy retries), %d history reads, %d busy\n",
         o.observed, o.busy, ok, busy);
  EXPECT(strcmp(ft_status_name(FT_ERR_BUSY), "FT_ERR_BUSY") == 0);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s WORKDIR\n", argv[0]);
    return 2;
  }
  const char *dir = argv[1];
  char path[4096];
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines show up as they happen (CI logs) */

  /* Version. */
  EXPECT(strcmp(ft_version(), FT_VERSION_STRING) == 0);
  printf("factortopy %s (header %d.%d.%d)\n", ft_version(), FT_VERSION_MAJOR, FT_VERSION_MINOR,
         FT_VERSION_PATCH);

  /* Synthetic data, loaded back through the loaders. */
  ft_brain *brain = NULL;
  ft_features *ref = NULL;
  load_synth(dir, N_IMAGES, N_VOXELS, N_LAYERS, WIDTH, 11, &brain, &ref);
  size_t n_images = 0, n_voxels = 0, n_layers = 0;
  CHECK(ft_brain_shape(brain, &n_images, &n_voxels));
  EXPECT(n_images == N_IMAGES && n_voxels == N_VOXELS);
  CHECK(ft_features_shape(ref, &n_images, &n_layers));
  EXPECT(n_images == N_IMAGES && n_layers == N_LAYERS);

  /* The monitor: a small reference fit, a refit every third observation. */
  ft_monitor_options mo;
  CHECK(ft_monitor_options_default(&mo));
  mo.fit.d = 8;
  mo.fit.grid = GRID;
  mo.fit.max_epochs = 8;
  mo.fit.batch_size = 8;
  mo.fit.lr = 1e-2;
  mo.fit.reg_steps = 60;
  mo.fit.seed = 3;
  mo.held_out_fraction = 0.2;
  mo.refit_every = 3;
  mo.refit_max_steps = 4;
  mo.forgetting_threshold = 0.3;
  ft_monitor *mon = NULL;
  CHECK(ft_monitor_new(brain, ref, &mo, &mon));
  join(path, sizeof path, dir, "history.jsonl");
  remove(path);
  CHECK(ft_monitor_set_history_file(mon, path));

  /* Step 0: the reference rebuilt through every f32 path is the reference, exactly. */
  ft_features *same = build(ref, 0.0f, 0);
  ft_step_report *rep = NULL;
  CHECK(ft_monitor_observe(mon, 0, same, &rep));
  ft_step_summary s;
  CHECK(ft_step_report_summary(rep, &s));
  EXPECT(s.retention == 1.0 && s.forgetting == 0.0);
  EXPECT(s.n_layers == N_LAYERS && fabs(s.min_cka - 1.0) < 1e-9);
  EXPECT(!s.should_stop && !s.refitted && isnan(s.layer_shift));
  EXPECT(s.reference_r2 > 0.0);
  printf("step %llu: retention %.6f forgetting %.6f min CKA %.6f (reference R2 %.4f)\n",
         (unsigned long long)s.step, s.retention, s.forgetting, s.min_cka, s.reference_r2);
  ft_step_report_free(rep);
  ft_features_free(same);

  /* Growing noise through f32, f16 and bf16 paths: forgetting rises, CKA falls. */
  const float sigmas[4] = {0.25f, 0.5f, 1.0f, 2.0f};
  double last_forgetting = 0.0;
  double last_cka[N_LAYERS] = {1.0, 1.0, 1.0, 1.0};
  ft_features *last = NULL;
  for (int k = 0; k < 4; k++) {
    ft_features *f = build(ref, sigmas[k], 1);
    CHECK(ft_monitor_observe(mon, (uint64_t)(100 * (k + 1)), f, &rep));
    CHECK(ft_step_report_summary(rep, &s));
    double cka[N_LAYERS];
    EXPECT_STATUS(ft_step_report_cka(rep, cka, N_LAYERS - 1), FT_ERR_INVALID_ARGUMENT);
    CHECK(ft_step_report_cka(rep, cka, N_LAYERS));
    printf("step %llu: sigma %.2f retention %.4f forgetting %.4f CKA %.3f %.3f %.3f %.3f%s%s\n",
           (unsigned long long)s.step, sigmas[k], s.retention, s.forgetting, cka[0], cka[1],
           cka[2], cka[3], s.should_stop ? " STOP" : "", s.refitted ? " (refit)" : "");
    EXPECT(s.forgetting > last_forgetting);
    for (int l = 0; l < N_LAYERS; l++) {
      EXPECT(cka[l] < last_cka[l]);
      last_cka[l] = cka[l];
    }
    EXPECT(s.refitted == (k == 1)); /* observations 0, 1, 2: the third refits */
    if (s.refitted) {
      EXPECT(s.layer_shift >= 0.0 && s.argmax_moved >= 0.0 && s.argmax_moved <= 1.0);
      EXPECT(!isnan(s.slope) && !isnan(s.refit_r2));
    }
    last_forgetting = s.forgetting;
    char *json = NULL;
    CHECK(ft_step_report_json(rep, &json));
    EXPECT(strstr(json, "\"retention\"") && strstr(json, "\"forgetting\"") &&
           strstr(json, "\"cka\"") && strstr(json, "\"should_stop\"") && strstr(json, "\"rois\""));
    ft_string_free(json);
    ft_step_report_free(rep);
    if (last) ft_features_free(last);
    last = f;
  }
  EXPECT(s.should_stop);

  /* Save, load, observe: the same report as the monitor that never stopped. */
  join(path, sizeof path, dir, "monitor.safetensors");
  CHECK(ft_monitor_save(mon, path));
  ft_monitor *again = NULL;
  CHECK(ft_monitor_load(path, brain, &again));
  ft_step_report *ra = NULL, *rb = NULL;
  CHECK(ft_monitor_observe(mon, 900, last, &ra));
  CHECK(ft_monitor_observe(again, 900, last, &rb));
  char *ja = NULL, *jb = NULL;
  CHECK(ft_step_report_json(ra, &ja));
  CHECK(ft_step_report_json(rb, &jb));
  EXPECT(strcmp(ja, jb) == 0);
  ft_string_free(ja);
  ft_string_free(jb);
  ft_step_report_free(ra);
  ft_step_report_free(rb);
  char *hist = NULL;
  CHECK(ft_monitor_history_json(again, &hist));
  EXPECT(hist[0] == '[' && strstr(hist, "\"step\":900") != NULL);
  ft_string_free(hist);

  /* The history file has one line per observation of `mon`. */
  join(path, sizeof path, dir, "history.jsonl");
  FILE *fh = fopen(path, "r");
  EXPECT(fh != NULL);
  if (fh) {
    int lines = 0, ch;
    while ((ch = fgetc(fh)) != EOF) lines += ch == '\n';
    fclose(fh);
    EXPECT(lines == 6);
  }

  error_paths(dir, brain, ref, mon);
  memory_paths(dir, brain, again);
  overlapping_calls(again, last);

  /* Free everything (NULL is fine too). */
  ft_monitor_free(again);
  ft_monitor_free(mon);
  ft_features_free(last);
  ft_features_free(ref);
  ft_brain_free(brain);
  ft_monitor_free(NULL);
  ft_features_free(NULL);
  ft_brain_free(NULL);
  ft_fit_free(NULL);
  ft_step_report_free(NULL);
  ft_string_free(NULL);

  if (failures) {
    fprintf(stderr, "%d check(s) failed\n", failures);
    return 1;
  }
  printf("C ABI test passed\n");
  return 0;
}
