/*
 * factortopy: C ABI.
 *
 * How brain-like is a vision network's hierarchy, and how much of it does fine-tuning destroy?
 * FactorTopy brain encoding, hierarchy scores and a forgetting monitor (see DESIGN.md).
 *
 * CONVENTIONS
 *
 * - Handles are opaque (ft_brain, ft_features, ft_fit, ft_monitor, ft_step_report). They are
 *   created by ft_<type>_new (or ft_<type>_load) and released by ft_<type>_free; every free
 *   function accepts NULL.
 * - Every fallible call returns an ft_status (FT_OK = 0) and writes its outputs only on
 *   success: on error, out-parameters are left untouched and no handle is modified.
 * - ft_last_error() returns a message about the last failed call on the calling thread
 *   (thread-local; "" after a successful call). It stays valid until the next library call on
 *   that thread; never free it.
 * - No panic ever crosses the boundary: an internal panic becomes FT_ERR_PANIC.
 * - Every pointer argument is checked: NULL where a value is required is FT_ERR_NULL. The
 *   library cannot check that a non-NULL pointer is valid: pass live handles from this
 *   library, NUL-terminated UTF-8 strings, and tensors whose memory is valid for reads.
 * - Strings returned by the library (JSON reports) are freed with ft_string_free, byte
 *   buffers (ft_monitor_save_bytes) with ft_bytes_free.
 * - Tensors (ft_tensor views and DLPack DLTensor / DLManagedTensor /
 *   DLManagedTensorVersioned) are copied into the library's own f32 arrays during the call
 *   (f32, f16 and bf16 accepted; strides and byte_offset honoured); the library never keeps a
 *   pointer to caller memory. ft_tensor views are host memory. DLPack tensors may be host
 *   memory or, in a library built with the `cuda` feature, CUDA device or managed memory:
 *   the library then synchronises the device (cuCtxSynchronize on its primary context, so work
 *   queued on any stream is finished) and copies the tensor to the host once. Other device
 *   memory, or CUDA memory in a build without CUDA, is FT_ERR_DEVICE.
 * - DLPack ownership: ft_features_add_layer_dlpack borrows (never calls a deleter);
 *   ft_features_add_layer_dlpack_managed (DLPack 0.x) and _versioned (DLPack 1.x) take
 *   ownership and call each tensor's deleter exactly once before returning, whatever the
 *   outcome.
 * - DLPack structs are defined below unless dlpack.h was included first (its include guard
 *   DLPACK_DLPACK_H_); when using both headers, include dlpack.h (1.0 or newer) before this one.
 * - Settings: an ft_fit_config holds every setting of fits, rankings, monitors and synthetic
 *   data. ft_fit_config_new(preset, n_images, &cfg) starts from a preset; one setter per setting,
 *   ft_fit_config_set_<setting>(cfg, value), checks the value when it is set (a refused value
 *   leaves the config unchanged; ft_last_error() names the setter); ft_fit_config_free frees it.
 *   The current entry points take it first: ft_fit_with, ft_fit_load_with, ft_rank_with,
 *   ft_rank_plan_with, ft_rank_pair_with, ft_rank_grid_with, ft_monitor_with,
 *   ft_monitor_from_encoder_with, ft_synth_write_with and ft_synth_plant_with (NULL: the
 *   defaults). A setting an entry point would not use is refused with FT_ERR_INVALID_ARGUMENT
 *   naming it, never ignored.
 * - Devices: "cpu", "cuda" or "cuda:N" (ft_fit_config_set_device; the default is "cpu"). A
 *   device this build or machine cannot use is FT_ERR_BACKEND with the reason, before any
 *   work; ft_device_check() asks in advance.
 * - Versioning: the option structs (ft_fit_options, ft_monitor_options, ft_synth_options) are
 *   frozen, and the entry points that take them or a setting as an argument (ft_fit_new*,
 *   ft_fit_load*, ft_rank, ft_rank_on, ft_rank_resampled, ft_rank_plan, ft_rank_pair,
 *   ft_rank_grid, ft_monitor_new*, ft_synth_write*, ft_synth_plant*, ft_*_options_*) are
 *   deprecated but kept: a program compiled against an older header keeps working unchanged,
 *   with the same results. A new setting arrives only as a new ft_fit_config_set_* setter.
 *
 * THREAD SAFETY (per handle)
 *
 * - ft_brain, ft_fit, ft_step_report: immutable; any number of threads may use one at once.
 * - ft_features: const functions may run concurrently; ft_features_add_layer* needs exclusive
 *   access to the handle.
 * - ft_monitor: not thread-safe; calls on one monitor must not overlap. It may be used from
 *   different threads one after another. Different monitors are independent.
 * - Overlapping calls the rules above forbid are detected, not raced: the later call returns
 *   FT_ERR_BUSY at once, doing nothing (retry after the other call has returned). Freeing a
 *   handle while another thread uses it is not detected: never do it.
 * - The library runs its computations on an internal worker pool; every call blocks until done.
 *
 * VERSION: FT_VERSION_MAJOR/MINOR/PATCH and FT_VERSION_STRING match ft_version() and the
 * crate's Cargo.toml.
 */

#ifndef FACTORTOPY_H
#define FACTORTOPY_H

/* Generated by cbindgen from src/ffi/ (cbindgen.toml). Do not edit by hand. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FT_STRINGIFY_(x) #x
#define FT_STRINGIFY(x) FT_STRINGIFY_(x)
/** The version as a string, e.g. "0.1.0"; equal to what ft_version() returns. */
#define FT_VERSION_STRING \
  FT_STRINGIFY(FT_VERSION_MAJOR) "." FT_STRINGIFY(FT_VERSION_MINOR) "." FT_STRINGIFY(FT_VERSION_PATCH)

/**
 * Major version of the library; matches `Cargo.toml` (checked by a test).
 */
#define FT_VERSION_MAJOR 0

/**
 * Minor version of the library; matches `Cargo.toml`.
 */
#define FT_VERSION_MINOR 2

/**
 * Patch version of the library; matches `Cargo.toml`.
 */
#define FT_VERSION_PATCH 0

/**
 * The DLPack major version this library reads (`DLManagedTensorVersioned.version.major`).
 */
#define FT_DLPACK_MAJOR_VERSION 1

/**
 * Outcome of every fallible call. `FT_OK` is 0; every other value is an error, described by
 * `ft_last_error()`.
 */
typedef enum ft_status {
  /**
   * Success.
   */
  FT_OK = 0,
  /**
   * A required pointer argument was NULL.
   */
  FT_ERR_NULL = 1,
  /**
   * An argument is out of range or inconsistent (including invalid UTF-8 strings).
   */
  FT_ERR_INVALID_ARGUMENT = 2,
  /**
   * A tensor has the wrong number of dimensions or a shape that does not fit.
   */
  FT_ERR_SHAPE = 3,
  /**
   * A tensor's element type is not supported (f32, f16 and bf16 are).
   */
  FT_ERR_DTYPE = 4,
  /**
   * A tensor lives in memory the library cannot read (e.g. CUDA device memory).
   */
  FT_ERR_DEVICE = 5,
  /**
   * Invalid data: a file's content, or non-finite values in a tensor.
   */
  FT_ERR_DATA = 6,
  /**
   * The operating system refused a read or write.
   */
  FT_ERR_IO = 7,
  /**
   * Two inputs that must agree do not (image counts, layers, a state saved for another brain).
   */
  FT_ERR_MISMATCH = 8,
  /**
   * A numerical failure (non-finite loss, an encoder that predicts nothing, ...).
   */
  FT_ERR_NUMERIC = 9,
  /**
   * The tensor backend or the CUDA path failed.
   */
  FT_ERR_BACKEND = 10,
  /**
   * A panic inside the library was caught at the boundary (a bug; please report it).
   */
  FT_ERR_PANIC = 11,
  /**
   * An allocation sized by the input failed; the process and the library stay usable.
   */
  FT_ERR_MEMORY = 12,
  /**
   * The handle is in use by a call on another thread that the thread-safety rules forbid to
   * overlap with this one (two calls on one monitor, or adding a layer to a feature set
   * while it is read). Nothing was done; retry once the other call has returned.
   */
  FT_ERR_BUSY = 13,
} ft_status;

/**
 * Element types accepted for features (the `dtype` field of `ft_tensor`).
 */
typedef enum ft_dtype {
  /**
   * IEEE 754 binary32.
   */
  FT_F32 = 0,
  /**
   * IEEE 754 binary16.
   */
  FT_F16 = 1,
  /**
   * bfloat16 (the upper half of a binary32).
   */
  FT_BF16 = 2,
} ft_dtype;

/**
 * Planted patterns of the synthetic generator (DESIGN §8).
 */
typedef enum ft_scenario {
  FT_SCENARIO_HIERARCHICAL = 0,
  FT_SCENARIO_REVERSED = 1,
  FT_SCENARIO_FLAT_EARLY = 2,
  FT_SCENARIO_FLAT_LATE = 3,
  FT_SCENARIO_SHUFFLED = 4,
} ft_scenario;

/**
 * How `ft_rank` fits each network.
 */
typedef enum ft_rank_method {
  /**
   * The FactorTopy encoder (DESIGN §3).
   */
  FT_RANK_FACTORTOPY = 0,
  /**
   * The layer-wise ridge baseline: a fast estimate with a one-hot layer choice.
   */
  FT_RANK_RIDGE = 1,
} ft_rank_method;

/**
 * A subject's brain data (responses z-scored per voxel on load). Immutable once loaded: every
 * function taking `const ft_brain *` may be called from several threads at once.
 */
typedef struct ft_brain ft_brain;

/**
 * A network's features on the probe images, built layer by layer (or loaded). Functions taking
 * `const ft_features *` may run concurrently with each other; `ft_features_add_layer*` needs
 * exclusive access (no other call on the same handle meanwhile).
 */
typedef struct ft_features ft_features;

/**
 * A fitted and scored encoder. Immutable: safe to share between threads.
 */
typedef struct ft_fit ft_fit;

/**
 * Settings of fits, rankings, monitors and synthetic data, built one setting at a time
 * (`ft_fit_config_new`, `ft_fit_config_set_*`, `ft_fit_config_free`). Setters need exclusive
 * access; entry points that read a config may share it (`FT_ERR_BUSY` otherwise).
 */
typedef struct ft_fit_config ft_fit_config;

/**
 * The forgetting monitor. Not thread-safe: calls on one monitor must not overlap (serialise
 * them, e.g. call from the training loop's thread); it may move between threads.
 */
typedef struct ft_monitor ft_monitor;

/**
 * One observation's report. Immutable: safe to share between threads.
 */
typedef struct ft_step_report ft_step_report;

/**
 * A plain tensor view: `data` points at the element with index (0, ..., 0); element
 * (i_0, ..., i_{n-1}) is at `data + Σ i_k·strides[k]` elements (not bytes). `strides` may be
 * NULL for a compact row-major tensor. `dtype` is an `ft_dtype` value. The memory must be
 * host (CPU) memory, valid for reads of every element the shape and strides describe, for the
 * duration of the call; the library copies it and keeps no pointer to it.
 */
typedef struct ft_tensor {
  const void *data;
  /**
   * An `ft_dtype` value.
   */
  int32_t dtype;
  size_t ndim;
  const int64_t *shape;
  /**
   * Strides in elements, or NULL for compact row-major.
   */
  const int64_t *strides;
} ft_tensor;

/**
 * The arrays of a brain (DESIGN §2), for `ft_brain_new`. Optional members are NULL when absent.
 */
typedef struct ft_brain_arrays {
  /**
   * `[N, V]` responses to the probe images (f32, f16 or bf16).
   */
  const struct ft_tensor *responses;
  /**
   * `[V, 3]` voxel positions.
   */
  const struct ft_tensor *coords;
  /**
   * `[V]` index into the ROI names, -1 for voxels outside every ROI.
   */
  const int32_t *roi;
  /**
   * Length of `roi`; must equal V.
   */
  size_t roi_len;
  /**
   * `[V]` noise ceiling in R² units, or NULL.
   */
  const struct ft_tensor *noise_ceiling;
  /**
   * `[V, 2]` flatmap positions for pictures, or NULL.
   */
  const struct ft_tensor *flat;
  /**
   * A JSON object: `roi_names` (list of strings, required when any voxel is in an ROI),
   * `roi_levels` (list of integers; default from the names as in DESIGN §2), `subject`
   * (string), `stimulus_ids` (list of N strings). NULL: `{}`.
   */
  const char *metadata_json;
  /**
   * Non-zero: z-score each voxel over images, as `ft_brain_load` does (recommended).
   */
  int32_t zscore;
} ft_brain_arrays;

/**
 * Settings of the synthetic data generator (fill with `ft_synth_options_default`).
 *
 * Deprecated: use `ft_fit_config` and its `synth_*` setters.
 */
typedef struct ft_synth_options {
  /**
   * An `ft_scenario` value.
   */
  int32_t scenario;
  size_t n_images;
  size_t n_voxels;
  size_t n_layers;
  /**
   * Channels per layer.
   */
  size_t width;
  /**
   * Planting grid G (early layers 2G×2G, the rest G×G).
   */
  size_t grid;
  /**
   * Explainable fraction of a signal voxel's variance, in (0, 1].
   */
  double noise_ceiling;
  /**
   * Fraction of voxels carrying signal, in [0, 1].
   */
  double signal_fraction;
  uint64_t seed;
} ft_synth_options;

/**
 * Settings of a fit (DESIGN §3); fill with `ft_fit_options_default` and change what you need.
 *
 * Deprecated: use `ft_fit_config` and its setters.
 */
typedef struct ft_fit_options {
  uint64_t seed;
  /**
   * Fraction of images held out for validation, in (0, 1).
   */
  double val_fraction;
  uint32_t max_epochs;
  uint32_t batch_size;
  double lr;
  double weight_decay;
  /**
   * Bottleneck width D.
   */
  uint32_t d;
  /**
   * Local grid G.
   */
  uint32_t grid;
  /**
   * Epochs without improvement before stopping.
   */
  uint32_t patience;
  /**
   * Optimiser steps over which the warm-up regulariser fades.
   */
  uint32_t reg_steps;
  /**
   * Hard limit on optimiser steps (0: none).
   */
  uint64_t max_steps;
  /**
   * Hard limit on seconds (<= 0: none).
   */
  double max_seconds;
  /**
   * Non-zero: weight the hierarchy line by max(R², 0).
   */
  int32_t weighted;
} ft_fit_options;

/**
 * Settings of a monitor (DESIGN §5); fill with `ft_monitor_options_default`.
 *
 * Deprecated: use `ft_fit_config` and its monitor setters.
 */
typedef struct ft_monitor_options {
  /**
   * Settings of the reference fit and of refits. `fit.val_fraction` is ignored:
   * `held_out_fraction` sets the held-out images.
   */
  struct ft_fit_options fit;
  /**
   * Fraction of probe images held out of the reference fit; retention is measured on them.
   */
  double held_out_fraction;
  /**
   * Refit every this many observations (0: never).
   */
  uint32_t refit_every;
  /**
   * Optimiser steps of one refit.
   */
  uint32_t refit_max_steps;
  /**
   * Seconds of one refit (<= 0: no time limit).
   */
  double refit_max_seconds;
  /**
   * `should_stop` is set when forgetting exceeds this (INFINITY: never).
   */
  double forgetting_threshold;
} ft_monitor_options;

#if !defined(DLPACK_DLPACK_H_)
/**
 * Where a tensor's memory lives (dlpack.h `DLDevice`; `device_type` is a `DLDeviceType`).
 */
typedef struct DLDevice {
  int32_t device_type;
  int32_t device_id;
} DLDevice;
#endif

#if !defined(DLPACK_DLPACK_H_)
/**
 * Element type (dlpack.h `DLDataType`): `code` is a `DLDataTypeCode` (kDLFloat = 2,
 * kDLBfloat = 4), `bits` the width, `lanes` 1 for scalars.
 */
typedef struct DLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
} DLDataType;
#endif

#if !defined(DLPACK_DLPACK_H_)
/**
 * dlpack.h `DLTensor`: a borrowed view. `strides` (in elements) may be NULL for a compact
 * row-major tensor; `byte_offset` is added to `data`.
 */
typedef struct DLTensor {
  void *data;
  struct DLDevice device;
  int32_t ndim;
  struct DLDataType dtype;
  int64_t *shape;
  int64_t *strides;
  uint64_t byte_offset;
} DLTensor;
#endif

#if !defined(DLPACK_DLPACK_H_)
/**
 * dlpack.h `DLManagedTensor` (the legacy, unversioned struct that `torch.utils.dlpack.to_dlpack`
 * and `__dlpack__()` without `max_version` produce): a tensor plus the deleter its owner
 * provides.
 */
typedef struct DLManagedTensor {
  struct DLTensor dl_tensor;
  void *manager_ctx;
  void (*deleter)(struct DLManagedTensor *self_);
} DLManagedTensor;
#endif

#if !defined(DLPACK_DLPACK_H_)
/**
 * dlpack.h (v1.x) `DLPackVersion`: the ABI version a versioned tensor was produced with.
 */
typedef struct DLPackVersion {
  uint32_t major;
  uint32_t minor;
} DLPackVersion;
#endif

#if !defined(DLPACK_DLPACK_H_)
/**
 * dlpack.h (v1.x) `DLManagedTensorVersioned`, what `__dlpack__(max_version=(1, 0))` produces:
 * the version, the owner's context and deleter, `flags` (bit 0: read-only, bit 1: is a copy,
 * bit 2: sub-byte types padded) and the tensor.
 */
typedef struct DLManagedTensorVersioned {
  struct DLPackVersion version;
  void *manager_ctx;
  void (*deleter)(struct DLManagedTensorVersioned *self_);
  uint64_t flags;
  struct DLTensor dl_tensor;
} DLManagedTensorVersioned;
#endif

/**
 * A borrowed view of one layer of a feature set, as f32 row-major arrays owned by the library.
 * The pointers stay valid until the feature set is modified or freed.
 */
typedef struct ft_layer_view {
  /**
   * `[N, C, H, W]` local map.
   */
  const float *local;
  int64_t local_shape[4];
  /**
   * `[N, C]` global token, or NULL when the layer has none (the spatial mean of the local map
   * is used then).
   */
  const float *global;
  int64_t global_shape[2];
} ft_layer_view;

/**
 * Headline numbers of a fit's report (DESIGN §4).
 */
typedef struct ft_fit_summary {
  size_t n_images;
  size_t n_voxels;
  size_t n_layers;
  /**
   * Slope of the depth-vs-hierarchy line. `slope`, `b0`, `b1` and `spearman` are NaN when
   * undefined (one ROI level, one voxel, or every voxel at one depth; the report's JSON has
   * `null` and a `warning`).
   */
  double slope;
  /**
   * Depth early cortex reads from (smaller is better).
   */
  double b0;
  /**
   * Depth the top of the hierarchy reads from (larger is better).
   */
  double b1;
  /**
   * Spearman rank correlation of ROI position and voxel depth.
   */
  double spearman;
  /**
   * Held-out R² over voxels.
   */
  double r2_mean;
  double r2_median;
  /**
   * Held-out Pearson r over voxels.
   */
  double pearson_mean;
} ft_fit_summary;

/**
 * Headline numbers of one observation. Refit fields are NaN unless `refitted`.
 */
typedef struct ft_step_summary {
  uint64_t step;
  /**
   * Index of the observation since the monitor was created (0 for the first).
   */
  uint64_t observation;
  /**
   * Held-out R² of the reference encoder on these features / on the reference features.
   */
  double retention;
  /**
   * 1 - retention.
   */
  double forgetting;
  /**
   * Mean held-out R² of the reference encoder on these features.
   */
  double r2;
  /**
   * The same on the reference features.
   */
  double reference_r2;
  /**
   * Number of layers (the length of the CKA list).
   */
  size_t n_layers;
  /**
   * Smallest and mean linear CKA over layers.
   */
  double min_cka;
  double mean_cka;
  /**
   * Forgetting is above the configured threshold.
   */
  bool should_stop;
  /**
   * This observation refitted the encoder.
   */
  bool refitted;
  /**
   * mean_v |d_v(t) - d_v(0)| of the refit.
   */
  double layer_shift;
  /**
   * Fraction of voxels whose argmax layer moved.
   */
  double argmax_moved;
  /**
   * Hierarchy scores of the refit (NaN when not refitted, or when undefined).
   */
  double slope;
  double b0;
  double b1;
  double spearman;
  /**
   * Held-out R² of the refitted encoder.
   */
  double refit_r2;
} ft_step_summary;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * The library version, e.g. "0.1.0" (the same as `FT_VERSION_STRING`). Static; never free it.
 */
const char *ft_version(void);

/**
 * The message of the last failed call on this thread ("" when the last call succeeded). The
 * pointer stays valid until the next library call on this thread; never free it.
 */
const char *ft_last_error(void);

/**
 * A static, human-readable name of a status value ("FT_OK", "FT_ERR_NULL", ...), or
 * "FT_UNKNOWN_STATUS". Never free it.
 */
const char *ft_status_name(int32_t status);

/**
 * Frees a string returned by the library (JSON reports). Accepts NULL.
 *
 * # Safety
 * `s` is NULL or a string from this library not yet freed.
 */
void ft_string_free(char *s);

/**
 * Loads and validates a brain file (DESIGN §2) and z-scores each voxel. On success `*out` is a
 * new handle to free with `ft_brain_free`.
 *
 * # Safety
 * `path` is a NUL-terminated string; `out` is valid for writes.
 */
enum ft_status ft_brain_load(const char *path, struct ft_brain **out);

/**
 * Frees a brain (NULL is a no-op).
 *
 * # Safety
 * `brain` is NULL or a live handle; it is not used afterwards.
 */
void ft_brain_free(struct ft_brain *brain);

/**
 * Number of probe images and voxels of a brain.
 *
 * # Safety
 * `brain` is a live handle; the out-pointers are valid for writes.
 */
enum ft_status ft_brain_shape(const struct ft_brain *brain, size_t *n_images, size_t *n_voxels);

/**
 * Builds a brain from arrays (copied; nothing is kept) and validates it as `ft_brain_load`
 * validates a file: shapes, finiteness, ROI indices, and with `zscore` no constant voxel.
 *
 * # Safety
 * `arrays` is valid for reads; its non-NULL tensors satisfy the `ft_tensor` contract, `roi` is
 * valid for `roi_len` reads and `metadata_json` is NULL or a NUL-terminated string; `out` is
 * valid for writes.
 */
enum ft_status ft_brain_new(const struct ft_brain_arrays *arrays, struct ft_brain **out);

/**
 * Writes a brain file (atomically) that `ft_brain_load` and the CLI read. The responses are
 * written as held, i.e. z-scored when the brain was.
 *
 * # Safety
 * `brain` is a live handle; `path` is a NUL-terminated string.
 */
enum ft_status ft_brain_save(const struct ft_brain *brain, const char *path);

/**
 * A JSON object describing a brain: `n_images`, `n_voxels`, `roi_names`, `roi_levels`,
 * `roi_sizes` (voxels per ROI), `subject` (or null), `has_noise_ceiling`. Free `*out` with
 * `ft_string_free`.
 *
 * # Safety
 * `brain` is a live handle; `out` is valid for writes.
 */
enum ft_status ft_brain_info_json(const struct ft_brain *brain, char **out);

/**
 * What a brain file's header says, without reading its values: `*out` is JSON with
 * `n_images`, `n_voxels` and `subject` (`null` when the file names none); free it with
 * `ft_string_free`. For planning a grid (the schedule follows the number of images).
 *
 * # Safety
 * `path` is NUL-terminated; `out` is valid for writes.
 */
enum ft_status ft_brain_file_header(const char *path, char **out);

/**
 * Writes the generator's defaults into `*out`.
 * Deprecated: use `ft_fit_config_new`.
 * # Safety
 * `out` is valid for writes.
 */
enum ft_status ft_synth_options_default(struct ft_synth_options *out);

/**
 * Generates planted-hierarchy data and writes `features.safetensors`, `brain.safetensors` and
 * `truth.safetensors` into `dir` (created if needed). `options` NULL: defaults.
 * Deprecated: use `ft_synth_write_with`.
 * # Safety
 * `dir` is a NUL-terminated string; `options` is NULL or valid for reads.
 */
enum ft_status ft_synth_write(const char *dir, const struct ft_synth_options *options);

/**
 * `ft_synth_write` with receptive fields of side `prf_size` (a fraction of the image in
 * [0, 1]; 0: point sampling; negative: one grid cell). Above 1 or NaN: `FT_ERR_INVALID_ARGUMENT`.
 * Deprecated: use `ft_synth_write_with` and `ft_fit_config_set_prf_size`.
 * # Safety
 * As `ft_synth_write`.
 */
enum ft_status ft_synth_write_rf(const char *dir,
                                 const struct ft_synth_options *options,
                                 double prf_size);

/**
 * `ft_synth_plant` with receptive fields (`prf_size` as in `ft_synth_write_rf`).
 * Deprecated: use `ft_synth_plant_with` and `ft_fit_config_set_prf_size`.
 * # Safety
 * As `ft_synth_plant`.
 */
enum ft_status ft_synth_plant_rf(const struct ft_features *features,
                                 const struct ft_synth_options *options,
                                 double prf_size,
                                 const char *dir,
                                 struct ft_brain **out);

/**
 * Plants a brain on a network's own features (see `ft_synth_plant_with`); the options'
 * `n_images`, `n_layers` and `width` are ignored (the features fix them). `options` NULL:
 * defaults.
 * Deprecated: use `ft_synth_plant_with`.
 * # Safety
 * `features` is a live handle; `options` is NULL or valid for reads; `dir` is NULL or a
 * NUL-terminated string; `out` is NULL or valid for writes.
 */
enum ft_status ft_synth_plant(const struct ft_features *features,
                              const struct ft_synth_options *options,
                              const char *dir,
                              struct ft_brain **out);

/**
 * Writes DESIGN §3.5's fit settings (the `"design"` preset) into `*out`, as every release has.
 * Deprecated: use `ft_fit_config_new("design", 0)`.
 * # Safety
 * `out` is valid for writes.
 */
enum ft_status ft_fit_options_default(struct ft_fit_options *out);

/**
 * Writes the default schedule for `n_images` probe images (what NULL options mean) into `*out`.
 * Deprecated: use `ft_fit_config_new("auto", n_images)`.
 * # Safety
 * `out` is valid for writes.
 */
enum ft_status ft_fit_options_for_images(size_t n_images, struct ft_fit_options *out);

/**
 * Writes the `"design"` or `"fast"` preset's fit settings into `*out`.
 * Deprecated: use `ft_fit_config_new`.
 * # Safety
 * `name` is a NUL-terminated string; `out` is valid for writes.
 */
enum ft_status ft_fit_options_preset(const char *name, struct ft_fit_options *out);

/**
 * Writes a named preset's grid resampling into `*out` (a static string, never freed).
 * Deprecated: use `ft_fit_config_new` (a config holds its preset's resampling).
 * # Safety
 * `name` is a NUL-terminated string; `out` is valid for writes.
 */
enum ft_status ft_fit_options_preset_resample(const char *name, const char **out);

/**
 * Writes a named preset's layer units into `*out` (a static string, never freed).
 * Deprecated: use `ft_fit_config_new` (a config holds its preset's layer units).
 * # Safety
 * `name` is a NUL-terminated string; `out` is valid for writes.
 */
enum ft_status ft_fit_options_preset_layer_units(const char *name, const char **out);

/**
 * Writes the default monitor settings, with `ft_fit_options_default`'s fit, into `*out`.
 * Deprecated: use `ft_fit_config_new("design", 0)`.
 * # Safety
 * `out` is valid for writes.
 */
enum ft_status ft_monitor_options_default(struct ft_monitor_options *out);

/**
 * Writes the default monitor settings for `n_images` probe images into `*out`.
 * Deprecated: use `ft_fit_config_new("auto", n_images)`.
 * # Safety
 * `out` is valid for writes.
 */
enum ft_status ft_monitor_options_for_images(size_t n_images, struct ft_monitor_options *out);

/**
 * A fit on the CPU with DESIGN §3's preparation. Deprecated: use `ft_fit_with`.
 *
 * # Safety
 * Handles are live; `options` is NULL or valid for reads; `out` is valid for writes.
 */
enum ft_status ft_fit_new(const struct ft_features *features,
                          const struct ft_brain *brain,
                          const struct ft_fit_options *options,
                          struct ft_fit **out);

/**
 * `ft_fit_new` on `device` (NULL: the CPU). Deprecated: use `ft_fit_with` and
 * `ft_fit_config_set_device`.
 *
 * # Safety
 * As `ft_fit_new`; `device` is NULL or a NUL-terminated string.
 */
enum ft_status ft_fit_new_on(const struct ft_features *features,
                             const struct ft_brain *brain,
                             const struct ft_fit_options *options,
                             const char *device,
                             struct ft_fit **out);

/**
 * `ft_fit_new_on` with the features' preparation `resample`, `METHOD[,UNITS]` (NULL:
 * `"auto,common"`). Deprecated: use `ft_fit_with` and `ft_fit_config_set_resample` /
 * `ft_fit_config_set_layer_units`.
 *
 * # Safety
 * As `ft_fit_new_on`; `resample` is NULL or a NUL-terminated string.
 */
enum ft_status ft_fit_new_resampled(const struct ft_features *features,
                                    const struct ft_brain *brain,
                                    const struct ft_fit_options *options,
                                    const char *device,
                                    const char *resample,
                                    struct ft_fit **out);

/**
 * Scores a saved encoder on the CPU. Deprecated: use `ft_fit_load_with`.
 *
 * # Safety
 * `encoder_path` is a NUL-terminated string; handles are live; `out` is valid for writes.
 */
enum ft_status ft_fit_load(const char *encoder_path,
                           const struct ft_features *features,
                           const struct ft_brain *brain,
                           int32_t weighted,
                           struct ft_fit **out);

/**
 * `ft_fit_load` on `device`. Deprecated: use `ft_fit_load_with`.
 *
 * # Safety
 * As `ft_fit_load`; `device` is NULL or a NUL-terminated string.
 */
enum ft_status ft_fit_load_on(const char *encoder_path,
                              const struct ft_features *features,
                              const struct ft_brain *brain,
                              int32_t weighted,
                              const char *device,
                              struct ft_fit **out);

/**
 * A monitor on the CPU. Deprecated: use `ft_monitor_with`.
 *
 * # Safety
 * Handles are live; `options` is NULL or valid for reads; `out` is valid for writes.
 */
enum ft_status ft_monitor_new(const struct ft_brain *brain,
                              const struct ft_features *reference,
                              const struct ft_monitor_options *options,
                              struct ft_monitor **out);

/**
 * `ft_monitor_new` on `device`. Deprecated: use `ft_monitor_with`.
 *
 * # Safety
 * As `ft_monitor_new`; `device` is NULL or a NUL-terminated string.
 */
enum ft_status ft_monitor_new_on(const struct ft_brain *brain,
                                 const struct ft_features *reference,
                                 const struct ft_monitor_options *options,
                                 const char *device,
                                 struct ft_monitor **out);

/**
 * `ft_monitor_new_on` with the reference fit's preparation (as `ft_fit_new_resampled`).
 * Deprecated: use `ft_monitor_with`.
 *
 * # Safety
 * As `ft_monitor_new_on`; `resample` is NULL or a NUL-terminated string.
 */
enum ft_status ft_monitor_new_resampled(const struct ft_brain *brain,
                                        const struct ft_features *reference,
                                        const struct ft_monitor_options *options,
                                        const char *device,
                                        const char *resample,
                                        struct ft_monitor **out);

/**
 * A monitor around a saved encoder, on the CPU. Deprecated: use `ft_monitor_from_encoder_with`.
 *
 * # Safety
 * As `ft_monitor_new`; `encoder_path` is a NUL-terminated string.
 */
enum ft_status ft_monitor_new_from_encoder(const struct ft_brain *brain,
                                           const struct ft_features *reference,
                                           const char *encoder_path,
                                           const struct ft_monitor_options *options,
                                           struct ft_monitor **out);

/**
 * `ft_monitor_new_from_encoder` on `device`. Deprecated: use `ft_monitor_from_encoder_with`.
 *
 * # Safety
 * As `ft_monitor_new_from_encoder`; `device` is NULL or a NUL-terminated string.
 */
enum ft_status ft_monitor_new_from_encoder_on(const struct ft_brain *brain,
                                              const struct ft_features *reference,
                                              const char *encoder_path,
                                              const struct ft_monitor_options *options,
                                              const char *device,
                                              struct ft_monitor **out);

/**
 * A ranking on the CPU; `method` is an `ft_rank_method` value. Deprecated: use `ft_rank_with`.
 *
 * # Safety
 * `networks` is valid for `n_networks` reads of live handles; `brain` is live; `options` is
 * NULL or valid for reads; `out` is valid for writes.
 */
enum ft_status ft_rank(const struct ft_features *const *networks,
                       size_t n_networks,
                       const struct ft_brain *brain,
                       const struct ft_fit_options *options,
                       int32_t method,
                       char **out);

/**
 * `ft_rank` on `device`. Deprecated: use `ft_rank_with`.
 *
 * # Safety
 * As `ft_rank`; `device` is NULL or a NUL-terminated string.
 */
enum ft_status ft_rank_on(const struct ft_features *const *networks,
                          size_t n_networks,
                          const struct ft_brain *brain,
                          const struct ft_fit_options *options,
                          int32_t method,
                          const char *device,
                          char **out);

/**
 * `ft_rank_on` with the features' preparation (as `ft_fit_new_resampled`). Deprecated: use
 * `ft_rank_with`.
 *
 * # Safety
 * As `ft_rank_on`; `resample` is NULL or a NUL-terminated string.
 */
enum ft_status ft_rank_resampled(const struct ft_features *const *networks,
                                 size_t n_networks,
                                 const struct ft_brain *brain,
                                 const struct ft_fit_options *options,
                                 int32_t method,
                                 const char *device,
                                 const char *resample,
                                 char **out);

/**
 * Plans a grid; settings as `ft_rank_resampled`. Deprecated: use `ft_rank_plan_with`.
 *
 * # Safety
 * `networks` and `brains` are valid for `n_networks` / `n_brains` reads of NUL-terminated
 * strings; `options` is NULL or valid for reads; `device`, `resample`, `out_dir` are NULL or
 * NUL-terminated; `out` is valid for writes.
 */
enum ft_status ft_rank_plan(const char *const *networks,
                            size_t n_networks,
                            const char *const *brains,
                            size_t n_brains,
                            const struct ft_fit_options *options,
                            int32_t method,
                            const char *device,
                            const char *resample,
                            int32_t with_layers,
                            const char *out_dir,
                            char **out);

/**
 * Fits one pair of a grid; settings as `ft_rank_plan`. Deprecated: use `ft_rank_pair_with`.
 *
 * # Safety
 * `network_path`, `brain_path` are NUL-terminated; `options` NULL or valid for reads; `device`,
 * `resample` NULL or NUL-terminated; `out` valid for writes.
 */
enum ft_status ft_rank_pair(const char *network_path,
                            const char *brain_path,
                            size_t network,
                            size_t subject,
                            const struct ft_fit_options *options,
                            int32_t method,
                            const char *device,
                            const char *resample,
                            int32_t with_layers,
                            char **out);

/**
 * Runs a whole grid; settings as `ft_rank_plan`. Deprecated: use `ft_rank_grid_with`.
 *
 * # Safety
 * As `ft_rank_plan`; `device` must name a usable device.
 */
enum ft_status ft_rank_grid(const char *const *networks,
                            size_t n_networks,
                            const char *const *brains,
                            size_t n_brains,
                            const struct ft_fit_options *options,
                            int32_t method,
                            const char *device,
                            const char *resample,
                            int32_t with_layers,
                            const char *out_dir,
                            char **out);

/**
 * Makes a config with the settings of the preset `preset` (`"auto"`, `"design"` or `"fast"`;
 * NULL: `"auto"`) for a probe set of `n_images` images. With `"auto"` and `n_images` 0 the
 * schedule (max_epochs, batch_size, lr, patience, reg_steps) follows the number of images of
 * the data each entry point receives, as NULL options did; fields set explicitly are kept.
 * Change settings with `ft_fit_config_set_*`; free with `ft_fit_config_free`.
 *
 * # Safety
 * `preset` is NULL or a NUL-terminated string; `out` is valid for writes.
 */
enum ft_status ft_fit_config_new(const char *preset, size_t n_images, struct ft_fit_config **out);

/**
 * Frees a config (NULL is a no-op). Handles made with it do not keep it.
 *
 * # Safety
 * `cfg` is NULL or a live handle; it is not used afterwards.
 */
void ft_fit_config_free(struct ft_fit_config *cfg);

/**
 * Every setting of a config as a JSON object (one member per setter, named as the setter,
 * plus `preset`, `n_images` and `set`, the settings changed by a setter); free `*out` with
 * `ft_string_free`. Before a schedule that follows the data is resolved, its fields hold the
 * schedule for `n_images`.
 *
 * # Safety
 * `cfg` is a live handle; `out` is valid for writes.
 */
enum ft_status ft_fit_config_json(const struct ft_fit_config *cfg, char **out);

/**
 * Checks that `device` (`"cpu"`, `"cuda"`, `"cuda:N"`) can be used now: `FT_OK`, or
 * `FT_ERR_BACKEND` with the reason (no CUDA in this build, no driver, NVRTC or cuBLAS, a bad
 * ordinal) in `ft_last_error()`; a name that is not a device is `FT_ERR_INVALID_ARGUMENT`.
 *
 * # Safety
 * `device` is a NUL-terminated string.
 */
enum ft_status ft_device_check(const char *device);

/**
 * Seed of the split, the initialisation, the batches' order and the synthetic generator.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_seed(struct ft_fit_config *cfg, uint64_t value);

/**
 * Fraction of images held out for validation, in (0, 1).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_val_fraction(struct ft_fit_config *cfg, double value);

/**
 * Maximum number of epochs.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_max_epochs(struct ft_fit_config *cfg, size_t value);

/**
 * Images per optimiser step.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_batch_size(struct ft_fit_config *cfg, size_t value);

/**
 * AdamW learning rate (positive).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_lr(struct ft_fit_config *cfg, double value);

/**
 * AdamW weight decay (non-negative).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_weight_decay(struct ft_fit_config *cfg, double value);

/**
 * Bottleneck width D.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_d(struct ft_fit_config *cfg, size_t value);

/**
 * Local grid G of the encoder.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_grid(struct ft_fit_config *cfg, size_t value);

/**
 * Epochs without improvement before stopping.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_patience(struct ft_fit_config *cfg, size_t value);

/**
 * Optimiser steps over which the warm-up regulariser fades.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_reg_steps(struct ft_fit_config *cfg, size_t value);

/**
 * Hard limit on optimiser steps (0: none).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_max_steps(struct ft_fit_config *cfg, uint64_t value);

/**
 * Hard limit on seconds (0: none; makes a fit depend on the machine's speed).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_max_seconds(struct ft_fit_config *cfg, double value);

/**
 * Global gradient-norm clip (positive).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_clip_norm(struct ft_fit_config *cfg, double value);

/**
 * Smooth-L1 threshold β (positive).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_beta(struct ft_fit_config *cfg, double value);

/**
 * Weight λ of the warm-up regulariser (non-negative).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_reg_lambda(struct ft_fit_config *cfg, double value);

/**
 * Smallest improvement of mean validation R² that counts.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_min_delta(struct ft_fit_config *cfg, double value);

/**
 * How each layer's map is resized to the grid: `"bilinear"` (DESIGN §3.1), `"area"` (each cell the exact average of the pixels it covers) or `"auto"` (area where a map shrinks, bilinear where it grows). Saved with the encoder.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile; `value` is a NUL-terminated string.
 */
enum ft_status ft_fit_config_set_resample(struct ft_fit_config *cfg,
                                          const char *value);

/**
 * The layers' units: `"common"` (every layer scaled to a root mean square of 1 over the probe set, so a layer's units cannot decide the fit) or `"raw"` (as they come, DESIGN §3). Saved with the encoder.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile; `value` is a NUL-terminated string.
 */
enum ft_status ft_fit_config_set_layer_units(struct ft_fit_config *cfg,
                                             const char *value);

/**
 * The precision the resampled features are kept in while fitting: `"f32"`, `"f16"` or `"bf16"`; NULL: the precision they arrive in.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile; `value` is NULL or a NUL-terminated string.
 */
enum ft_status ft_fit_config_set_store(struct ft_fit_config *cfg,
                                       const char *value);

/**
 * The method: `"factortopy"` (the encoder, DESIGN §3) or `"ridge"` (the layer-wise ridge baseline; rankings only, on the CPU).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile; `value` is a NUL-terminated string.
 */
enum ft_status ft_fit_config_set_method(struct ft_fit_config *cfg,
                                        const char *value);

/**
 * Where computations run: `"cpu"`, `"cuda"` or `"cuda:N"`. The name is checked here; whether the device can be used is checked by each entry point before any work (`FT_ERR_BACKEND`; `ft_device_check` asks in advance).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile; `value` is a NUL-terminated string.
 */
enum ft_status ft_fit_config_set_device(struct ft_fit_config *cfg,
                                        const char *value);

/**
 * Weight the hierarchy line by max(R², 0).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_weighted(struct ft_fit_config *cfg, bool value);

/**
 * Bootstrap resamples behind every interval of a report or ranking (0: none).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_bootstrap(struct ft_fit_config *cfg, size_t value);

/**
 * Confidence level of the bootstrap intervals, in (0, 1).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_bootstrap_level(struct ft_fit_config *cfg, double value);

/**
 * Random permutations of the hierarchy's permutation test (0: no test).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_permutations(struct ft_fit_config *cfg, size_t value);

/**
 * Monitors: fraction of probe images held out of the reference fit; retention is measured on them.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_held_out_fraction(struct ft_fit_config *cfg, double value);

/**
 * Monitors: refit every this many observations (0: never).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_refit_every(struct ft_fit_config *cfg, size_t value);

/**
 * Monitors: optimiser steps of one refit.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_refit_max_steps(struct ft_fit_config *cfg, size_t value);

/**
 * Monitors: seconds of one refit (0: no time limit).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_refit_max_seconds(struct ft_fit_config *cfg, double value);

/**
 * Monitors: `should_stop` is set when forgetting exceeds this (INFINITY: never).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_forgetting_threshold(struct ft_fit_config *cfg, double value);

/**
 * Synthetic data: the planted pattern, an `ft_scenario` value.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_scenario(struct ft_fit_config *cfg, int32_t value);

/**
 * Synthetic data: number of voxels.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_synth_voxels(struct ft_fit_config *cfg, size_t value);

/**
 * Synthetic data: number of network layers.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_synth_layers(struct ft_fit_config *cfg, size_t value);

/**
 * Synthetic data: channels per layer.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_synth_width(struct ft_fit_config *cfg, size_t value);

/**
 * Synthetic data: planting grid G (early layers 2G×2G, the rest G×G).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_synth_grid(struct ft_fit_config *cfg, size_t value);

/**
 * Synthetic data: explainable fraction of a signal voxel's variance, in (0, 1].
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_noise_ceiling(struct ft_fit_config *cfg, double value);

/**
 * Synthetic data: fraction of voxels carrying signal, in [0, 1].
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_signal_fraction(struct ft_fit_config *cfg, double value);

/**
 * Synthetic data: side of a signal voxel's receptive field as a fraction of the image, in [0, 1] (0: point sampling); any negative value: one grid cell (the default).
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_prf_size(struct ft_fit_config *cfg,
                                          double value);

/**
 * Grids: also score every layer with the ridge baseline.
 *
 * # Safety
 * `cfg` is a live handle not used by another call meanwhile.
 */
enum ft_status ft_fit_config_set_score_layers(struct ft_fit_config *cfg, bool value);

/**
 * A new, empty feature set; add layers in depth order with `ft_features_add_layer*`.
 *
 * # Safety
 * `out` is valid for writes.
 */
enum ft_status ft_features_new(struct ft_features **out);

/**
 * Loads and validates a features file (DESIGN §2) into memory, each tensor in the precision it
 * is stored in (16-bit files stay 16-bit).
 *
 * # Safety
 * `path` is a NUL-terminated string; `out` is valid for writes.
 */
enum ft_status ft_features_load(const char *path, struct ft_features **out);

/**
 * Opens a features file (DESIGN §2) without reading its values: its structure is checked now,
 * and a fit, score, prediction or observation reads the values it needs a block of images at
 * a time (each block checked as it is read). A subject-scale file is never held whole: a fit
 * holds the features resampled to the grid, in the file's precision. `ft_features_layer` and
 * `ft_features_add_layer*` do not apply to such a set (`ft_features_layer_copy` does).
 *
 * # Safety
 * `path` is a NUL-terminated string; `out` is valid for writes.
 */
enum ft_status ft_features_open(const char *path, struct ft_features **out);

/**
 * Frees a feature set (NULL is a no-op).
 *
 * # Safety
 * `features` is NULL or a live handle; it is not used afterwards.
 */
void ft_features_free(struct ft_features *features);

/**
 * Number of probe images (0 while empty) and layers of a feature set.
 *
 * # Safety
 * `features` is a live handle; the out-pointers are valid for writes.
 */
enum ft_status ft_features_shape(const struct ft_features *features,
                                 size_t *n_images,
                                 size_t *n_layers);

/**
 * Appends a layer from plain tensor views: `local` `[N, C, H, W]` and optionally `global`
 * `[N, C]` (NULL: the spatial mean of `local` is used). f32, f16 or bf16 host memory; the data
 * is copied (converted to f32), nothing is kept. Non-finite values are `FT_ERR_DATA`, wrong
 * shapes `FT_ERR_SHAPE`; on error the feature set is unchanged.
 *
 * # Safety
 * `features` is a live handle; `local` (and `global` when non-NULL) satisfy the `ft_tensor`
 * contract.
 */
enum ft_status ft_features_add_layer(struct ft_features *features,
                                     const struct ft_tensor *local,
                                     const struct ft_tensor *global);

/**
 * Appends a layer from DLPack tensors (`local` `[N, C, H, W]`, optional `global` `[N, C]`), as
 * `ft_features_add_layer`. Borrows: the data is copied during the call and the tensors' owners
 * keep them (this function never calls a deleter). Strides and `byte_offset` are honoured.
 * Host memory (kDLCPU, kDLCUDAHost) is copied to the host. CUDA memory (kDLCUDA,
 * kDLCUDAManaged) needs a build with the `cuda` feature (else `FT_ERR_DEVICE`): when both
 * tensors are on one device, the library synchronises it and copies them device-to-device into
 * its own memory there (checked against the free device memory first), where monitor steps and
 * predictions on that device read them; other work copies the layer to the host once, when it
 * first needs it. Either way the caller may free or reuse its tensors when the call returns.
 *
 * # Safety
 * `features` is a live handle; `local` (and `global` when non-NULL) are valid `DLTensor`s whose
 * memory is valid for reads.
 */
enum ft_status ft_features_add_layer_dlpack(struct ft_features *features,
                                            const struct DLTensor *local,
                                            const struct DLTensor *global);

/**
 * Appends a layer from DLPack managed tensors, taking ownership: whatever the outcome (success,
 * error, even a NULL `features`), the deleter of each non-NULL tensor is called exactly once
 * before this function returns (NULL deleters are skipped). Otherwise as
 * `ft_features_add_layer_dlpack`.
 *
 * # Safety
 * `features` is NULL or a live handle; `local` and `global` are NULL or valid managed tensors
 * not used by the caller afterwards.
 */
enum ft_status ft_features_add_layer_dlpack_managed(struct ft_features *features,
                                                    struct DLManagedTensor *local,
                                                    struct DLManagedTensor *global);

/**
 * Appends a layer from DLPack 1.x versioned managed tensors (`DLManagedTensorVersioned`, what
 * `__dlpack__(max_version=(1, 0))` exports), taking ownership exactly as
 * `ft_features_add_layer_dlpack_managed` does: each non-NULL tensor's deleter is called once
 * before this returns, whatever the outcome. A major version other than
 * `FT_DLPACK_MAJOR_VERSION` is `FT_ERR_INVALID_ARGUMENT`; read-only tensors are fine (the
 * library only reads). CUDA memory (kDLCUDA, kDLCUDAManaged) is accepted by builds with the
 * `cuda` feature and kept on its device as `ft_features_add_layer_dlpack` says (the device's
 * primary context is synchronised first, so work on every stream is done); without the feature
 * it is `FT_ERR_DEVICE`.
 *
 * # Safety
 * `features` is NULL or a live handle; `local` and `global` are NULL or valid versioned managed
 * tensors not used by the caller afterwards.
 */
enum ft_status ft_features_add_layer_dlpack_versioned(struct ft_features *features,
                                                      struct DLManagedTensorVersioned *local,
                                                      struct DLManagedTensorVersioned *global);

/**
 * Sets a feature set's descriptive metadata from a JSON object with any of `model` (string: the
 * network's name, used by reports and rankings), `layer_names` (list of one string per layer
 * added so far) and `stimulus_ids` (list of one string per image, matched against the brain's).
 * Members not given are left as they are; on error nothing changes.
 *
 * # Safety
 * `features` is a live handle used by no other call meanwhile; `json` is a NUL-terminated
 * string.
 */
enum ft_status ft_features_set_metadata(struct ft_features *features, const char *json);

/**
 * Writes the feature set as a features file (DESIGN §2, atomically), for the CLI's `fit`,
 * `score`, `rank` and `synth --from-features`.
 *
 * # Safety
 * `features` is a live handle; `path` is a NUL-terminated string.
 */
enum ft_status ft_features_save(const struct ft_features *features, const char *path);

/**
 * Copies layer `layer` (0-based) of a feature set, widened to f32, into the caller's buffers (a
 * set opened with `ft_features_open` reads it from its file): `local` (`local_capacity` floats) and, when the layer has a global token, `global`
 * (`global_capacity` floats). `shape` receives the shapes (its data pointers are NULL), with
 * `global_shape` `[0, 0]` when the layer has no global token. Pass NULL buffers to ask for the
 * shapes only. Works whatever precision the layer is kept in (unlike
 * `ft_features_layer`, which views f32 layers only).
 *
 * # Safety
 * `features` is a live handle; `shape` is valid for writes; `local` and `global` are NULL or
 * valid for their capacities' writes.
 */
enum ft_status ft_features_layer_copy(const struct ft_features *features,
                                      size_t layer,
                                      struct ft_layer_view *shape,
                                      float *local,
                                      size_t local_capacity,
                                      float *global,
                                      size_t global_capacity);

/**
 * A borrowed view of layer `layer` (0-based). The pointers stay valid until `features` is
 * modified or freed.
 *
 * # Safety
 * `features` is a live handle; `out` is valid for writes.
 */
enum ft_status ft_features_layer(const struct ft_features *features,
                                 size_t layer,
                                 struct ft_layer_view *out);

/**
 * Fits an encoder of `features` to `brain` and scores it, with the settings of `cfg` (NULL:
 * `ft_fit_config_new(NULL, 0)`'s, the default schedule for the brain's number of images).
 * Long: runs the whole fit on the calling thread (using the library's worker threads). A
 * device that cannot be used now is `FT_ERR_BACKEND` before any work; a setting a fit does not
 * use (the monitor's, the generator's, method `ridge`) is `FT_ERR_INVALID_ARGUMENT` naming it.
 *
 * # Safety
 * `cfg` is NULL or a live config; `features` and `brain` are live handles; `out` is valid for
 * writes.
 */
enum ft_status ft_fit_with(const struct ft_fit_config *cfg,
                           const struct ft_features *features,
                           const struct ft_brain *brain,
                           struct ft_fit **out);

/**
 * Scores a saved encoder (`factortopy fit`'s encoder.safetensors) on `features` and `brain`, on
 * the held-out images it was validated on, with `cfg`'s device, weighting and uncertainty
 * settings (NULL: defaults). The encoder is trained already: a training setting in `cfg` is
 * `FT_ERR_INVALID_ARGUMENT` naming it.
 *
 * # Safety
 * `cfg` is NULL or a live config; `encoder_path` is a NUL-terminated string; handles are live;
 * `out` is valid for writes.
 */
enum ft_status ft_fit_load_with(const struct ft_fit_config *cfg,
                                const char *encoder_path,
                                const struct ft_features *features,
                                const struct ft_brain *brain,
                                struct ft_fit **out);

/**
 * Frees a fit (NULL is a no-op).
 *
 * # Safety
 * `fit` is NULL or a live handle; it is not used afterwards.
 */
void ft_fit_free(struct ft_fit *fit);

/**
 * The headline numbers of a fit.
 *
 * # Safety
 * `fit` is a live handle; `out` is valid for writes.
 */
enum ft_status ft_fit_report_summary(const struct ft_fit *fit, struct ft_fit_summary *out);

/**
 * The full report of a fit as JSON (the `report.json` of `factortopy fit`). Free `*out` with
 * `ft_string_free`.
 *
 * # Safety
 * `fit` is a live handle; `out` is valid for writes.
 */
enum ft_status ft_fit_report_json(const struct ft_fit *fit, char **out);

/**
 * Saves the fitted encoder (DESIGN §3.7 tensor names), e.g. to create a monitor from later.
 *
 * # Safety
 * `fit` is a live handle; `path` is a NUL-terminated string.
 */
enum ft_status ft_fit_save_encoder(const struct ft_fit *fit, const char *path);

/**
 * Predicted responses of the fit's voxels to the images of `features` (same network layers as
 * the fit), written row-major into `out[0 .. n_images·n_voxels)` as f32 (`n_voxels` from
 * `ft_fit_report_summary`, `n_images` from `ft_features_shape`). `capacity` is the number of
 * floats `out` holds; a smaller one is `FT_ERR_SHAPE` and nothing is written. `brain` may be
 * NULL when the fit carries its voxels' coordinates (fits made by this library do; encoders
 * converted from other implementations need the brain they were fitted to). `device` NULL:
 * `"cpu"`.
 *
 * # Safety
 * `fit` and `features` are live handles; `brain` is NULL or live; `device` is NULL or a
 * NUL-terminated string; `out` is valid for `capacity` writes.
 */
enum ft_status ft_fit_predict(const struct ft_fit *fit,
                              const struct ft_features *features,
                              const struct ft_brain *brain,
                              const char *device,
                              float *out,
                              size_t capacity);

/**
 * The number of voxels a saved encoder predicts (the row length of `ft_predict_encoder`'s
 * output).
 *
 * # Safety
 * `encoder_path` is a NUL-terminated string; `out` is valid for writes.
 */
enum ft_status ft_encoder_n_voxels(const char *encoder_path, size_t *out);

/**
 * Predicted responses of a saved encoder (`factortopy fit`'s encoder.safetensors) to the images
 * of `features`, as `ft_fit_predict` (row-major f32 into `out[0 .. n_images·n_voxels)`,
 * `capacity` floats available; `brain` NULL unless the encoder carries no voxel coordinates;
 * `device` NULL: `"cpu"`).
 *
 * # Safety
 * `encoder_path` is a NUL-terminated string; `features` is live; `brain` is NULL or live;
 * `device` is NULL or a NUL-terminated string; `out` is valid for `capacity` writes.
 */
enum ft_status ft_predict_encoder(const char *encoder_path,
                                  const struct ft_features *features,
                                  const struct ft_brain *brain,
                                  const char *device,
                                  float *out,
                                  size_t capacity);

/**
 * Creates a monitor: fits the reference encoder on `reference` (the network before
 * fine-tuning) with the settings of `cfg` (NULL: defaults, the schedule for the brain's number
 * of images) and caches the reference statistics. The fit settings' held-out images are
 * `held_out_fraction`'s (setting `val_fraction` is refused, as are the bootstrap and
 * permutations: a monitor reports no intervals). The brain and features are copied; the
 * handles can be freed afterwards.
 *
 * # Safety
 * `cfg` is NULL or a live config; handles are live; `out` is valid for writes.
 */
enum ft_status ft_monitor_with(const struct ft_fit_config *cfg,
                               const struct ft_brain *brain,
                               const struct ft_features *reference,
                               struct ft_monitor **out);

/**
 * Creates a monitor around a saved reference encoder instead of fitting one, with the settings
 * of `cfg` (NULL: defaults) for its refits. Retention is measured on the images the encoder was
 * validated on; the encoder's own preparation is used (setting `resample` or `layer_units` is
 * refused).
 *
 * # Safety
 * As `ft_monitor_with`; `encoder_path` is a NUL-terminated string.
 */
enum ft_status ft_monitor_from_encoder_with(const struct ft_fit_config *cfg,
                                            const struct ft_brain *brain,
                                            const struct ft_features *reference,
                                            const char *encoder_path,
                                            struct ft_monitor **out);

/**
 * Moves a monitor (e.g. one restored by `ft_monitor_load`, which starts on the CPU) to
 * `device`. On error the monitor is unchanged.
 *
 * # Safety
 * `monitor` is a live handle not used by another call meanwhile; `device` is a NUL-terminated
 * string.
 */
enum ft_status ft_monitor_set_device(struct ft_monitor *monitor, const char *device);

/**
 * Observes the network at training step `step` through its probe-set features. On success
 * `*out` is a new report (free with `ft_step_report_free`); it is also appended to the
 * monitor's history (and history file). On error the history is unchanged.
 *
 * # Safety
 * Handles are live; no other call uses `monitor` meanwhile; `out` is valid for writes.
 */
enum ft_status ft_monitor_observe(struct ft_monitor *monitor,
                                  uint64_t step,
                                  const struct ft_features *features,
                                  struct ft_step_report **out);

/**
 * Saves the monitor's state (reference encoder and statistics, history, settings) to one
 * safetensors file, atomically.
 *
 * # Safety
 * `monitor` is a live handle; `path` is a NUL-terminated string.
 */
enum ft_status ft_monitor_save(const struct ft_monitor *monitor, const char *path);

/**
 * Restores a monitor saved by `ft_monitor_save`, for the brain it was created with (checked).
 * The history continues; the history file is not part of the state (set it again).
 *
 * # Safety
 * `path` is a NUL-terminated string; `brain` is a live handle; `out` is valid for writes.
 */
enum ft_status ft_monitor_load(const char *path,
                               const struct ft_brain *brain,
                               struct ft_monitor **out);

/**
 * The monitor's state as bytes (the same bytes `ft_monitor_save` writes), for hosts that store
 * it inside their own checkpoints. Free `*data` with `ft_bytes_free(*data, *len)`.
 *
 * # Safety
 * `monitor` is a live handle; `data` and `len` are valid for writes.
 */
enum ft_status ft_monitor_save_bytes(const struct ft_monitor *monitor, uint8_t **data, size_t *len);

/**
 * Restores a monitor from `ft_monitor_save_bytes`' bytes (copied during the call), for the
 * brain it was created with (checked), as `ft_monitor_load`.
 *
 * # Safety
 * `data` is valid for reads of `len` bytes; `brain` is a live handle; `out` is valid for writes.
 */
enum ft_status ft_monitor_load_bytes(const uint8_t *data,
                                     size_t len,
                                     const struct ft_brain *brain,
                                     struct ft_monitor **out);

/**
 * Frees bytes returned by the library (`ft_monitor_save_bytes`); `len` is the length it
 * returned with them. Accepts NULL.
 *
 * # Safety
 * `data` is NULL or bytes from this library, with their length, not yet freed.
 */
void ft_bytes_free(uint8_t *data, size_t len);

/**
 * Appends every later observation to `path` as one JSON line (created if missing, existing
 * lines kept). `path` NULL: stop appending.
 *
 * # Safety
 * `monitor` is a live handle not used by another call meanwhile; `path` is NULL or a
 * NUL-terminated string.
 */
enum ft_status ft_monitor_set_history_file(struct ft_monitor *monitor, const char *path);

/**
 * The whole history as a JSON list of step reports. Free `*out` with `ft_string_free`.
 *
 * # Safety
 * `monitor` is a live handle; `out` is valid for writes.
 */
enum ft_status ft_monitor_history_json(const struct ft_monitor *monitor, char **out);

/**
 * Draws the monitor's history as PNG charts into `dir` (created if needed): `forgetting.png`
 * (overall and per ROI) and `cka.png` (per layer), over training steps, as `factortopy monitor`
 * does.
 *
 * # Safety
 * `monitor` is a live handle; `dir` is a NUL-terminated string.
 */
enum ft_status ft_monitor_write_curves(const struct ft_monitor *monitor, const char *dir);

/**
 * Frees a monitor (NULL is a no-op).
 *
 * # Safety
 * `monitor` is NULL or a live handle; it is not used afterwards.
 */
void ft_monitor_free(struct ft_monitor *monitor);

/**
 * The headline numbers of a report.
 *
 * # Safety
 * `report` is a live handle; `out` is valid for writes.
 */
enum ft_status ft_step_report_summary(const struct ft_step_report *report,
                                      struct ft_step_summary *out);

/**
 * Copies the per-layer CKA values into `out[0 .. n_layers)`; `capacity` is the length of
 * `out` and must be at least `n_layers` (see `ft_step_summary`).
 *
 * # Safety
 * `report` is a live handle; `out` is valid for writes of `capacity` doubles.
 */
enum ft_status ft_step_report_cka(const struct ft_step_report *report,
                                  double *out,
                                  size_t capacity);

/**
 * The full report as JSON (the same object as a line of the history file, pretty-printed).
 * Free `*out` with `ft_string_free`.
 *
 * # Safety
 * `report` is a live handle; `out` is valid for writes.
 */
enum ft_status ft_step_report_json(const struct ft_step_report *report, char **out);

/**
 * Frees a report (NULL is a no-op).
 *
 * # Safety
 * `report` is NULL or a live handle; it is not used afterwards.
 */
void ft_step_report_free(struct ft_step_report *report);

/**
 * Draws the pictures of a fit saved by `factortopy fit` in `fit_dir` (report.json,
 * selectors.safetensors, and encoder.safetensors for the channel map) on `brain`, the brain
 * it was fitted on. `maps`: comma-separated names among layer, space, scale, r2, channels,
 * profile, overview, or all; NULL or "" for every picture the fit has. `out_dir`: NULL for
 * `fit_dir`. `width`, `height`: size of each picture (0, 0 for 800×600; the overview's panels
 * are three quarters of it). `groups`: number of channel groups (0 for 20). `*out` is a JSON
 * list of `{"map": name, "path": file}` in drawing order; free it with `ft_string_free`.
 *
 * # Safety
 * `fit_dir` is a NUL-terminated string; `maps` and `out_dir` are NULL or NUL-terminated
 * strings; `brain` is a live handle; `out` is valid for writes.
 */
enum ft_status ft_plot(const char *fit_dir,
                       const struct ft_brain *brain,
                       const char *maps,
                       const char *out_dir,
                       uint32_t width,
                       uint32_t height,
                       uint32_t groups,
                       char **out);

/**
 * Scores the encoder saved at `encoder_path` (a `factortopy fit` encoder or a converted PyTorch
 * checkpoint) on `features` and `brain` and writes the directory `factortopy fit` writes into
 * `out_dir`: report.json, encoder.safetensors, selectors.safetensors and, when `plots` is
 * non-zero, every picture. `ft_plot` can redraw from it later.
 *
 * # Safety
 * `encoder_path` and `out_dir` are NUL-terminated strings; handles are live.
 */
enum ft_status ft_score_write_dir(const char *encoder_path,
                                  const struct ft_features *features,
                                  const struct ft_brain *brain,
                                  int32_t weighted,
                                  int32_t plots,
                                  const char *out_dir);

/**
 * Fits every network in `networks[0 .. n_networks)` against `brain` with the settings of
 * `cfg` (NULL: defaults; method `factortopy` or `ridge`, the same split and seed for every
 * network) and ranks them by hierarchy slope (ties: Spearman ρ, then input order). `*out` is
 * the ranking as JSON: `method`, `level`, `n_resamples`, `subject`, `roi_names` and `rows`
 * (best first; each with `rank`, `index` into `networks`, `name`, `slope`, `b0`, `b1`,
 * `spearman`, `r2_mean`, `r2_median`, `fit_seconds`, `roi_depth`, `slope_interval` (bootstrap
 * interval), `p_slope` (permutation p-value) and `vs_next` (paired bootstrap test of the slope
 * difference with the next row)); `slope`, `b0`, `b1` and `spearman` are `null` when
 * undefined, and such rows rank last. Free it with `ft_string_free`. With method `ridge`, a
 * FactorTopy training setting in `cfg` is `FT_ERR_INVALID_ARGUMENT` naming it.
 *
 * # Safety
 * `cfg` is NULL or a live config; `networks` is valid for `n_networks` reads of live handles;
 * `brain` is live; `out` is valid for writes.
 */
enum ft_status ft_rank_with(const struct ft_fit_config *cfg,
                            const struct ft_features *const *networks,
                            size_t n_networks,
                            const struct ft_brain *brain,
                            char **out);

/**
 * Plans a grid of `networks` (features files) × `brains` (brain files, one per subject, the
 * same images) with the settings of `cfg` (NULL: defaults; the schedule follows the first
 * brain's number of images): checks the files' headers and returns, as JSON in `*out` (free
 * with `ft_string_free`), `subjects` (names) and `jobs`, one per pair: `network` and `subject`
 * (indices into the lists), `digest` (of both files' contents and the settings) and `done`
 * (whether `out_dir`, NULL for none, already holds that pair's outcome). The device is checked
 * by name only. `ft_fit_config_set_score_layers` also scores every layer with the ridge
 * baseline.
 *
 * # Safety
 * `cfg` is NULL or a live config; `networks` and `brains` are valid for `n_networks` /
 * `n_brains` reads of NUL-terminated strings; `out_dir` is NULL or NUL-terminated; `out` is
 * valid for writes.
 */
enum ft_status ft_rank_plan_with(const struct ft_fit_config *cfg,
                                 const char *const *networks,
                                 size_t n_networks,
                                 const char *const *brains,
                                 size_t n_brains,
                                 const char *out_dir,
                                 char **out);

/**
 * Fits one pair of a grid: the features file `network_path` against the brain file
 * `brain_path`, recorded as network `network` × subject `subject` of the grid. `*out` is the
 * pair's outcome as JSON (free with `ft_string_free`), for `ft_rank_store` and
 * `ft_rank_combine`. Settings as `ft_rank_plan_with` (the same settings give the same digest).
 *
 * # Safety
 * `cfg` is NULL or a live config; `network_path`, `brain_path` are NUL-terminated; `out` is
 * valid for writes.
 */
enum ft_status ft_rank_pair_with(const struct ft_fit_config *cfg,
                                 const char *network_path,
                                 const char *brain_path,
                                 size_t network,
                                 size_t subject,
                                 char **out);

/**
 * Runs a whole grid in this process (pairs one after another, each brain loaded once) and
 * returns the ranking as `ft_rank_combine` does. With `out_dir` (NULL: none), each finished
 * pair is stored there as it finishes and pairs already stored are not fitted again. When
 * pairs fail, the others still run (and are stored); the status is the failure's and
 * `ft_last_error()` names every failed pair.
 *
 * # Safety
 * As `ft_rank_plan_with`; the config's device must be usable.
 */
enum ft_status ft_rank_grid_with(const struct ft_fit_config *cfg,
                                 const char *const *networks,
                                 size_t n_networks,
                                 const char *const *brains,
                                 size_t n_brains,
                                 const char *out_dir,
                                 char **out);

/**
 * Saves a pair's outcome (JSON from `ft_rank_pair`) into `out_dir`'s store, atomically, so a
 * later `ft_rank_plan` with the same `out_dir` marks the pair done.
 *
 * # Safety
 * `out_dir` and `outcome` are NUL-terminated.
 */
enum ft_status ft_rank_store(const char *out_dir, const char *outcome);

/**
 * The stored outcome with `digest` from `out_dir`'s store, recorded as network `network` ×
 * subject `subject` (identical inputs share one stored outcome). `*out` is its JSON (free with
 * `ft_string_free`); `FT_ERR_IO` when the store has no readable outcome with that digest.
 *
 * # Safety
 * `out_dir` and `digest` are NUL-terminated; `out` is valid for writes.
 */
enum ft_status ft_rank_load(const char *out_dir,
                            const char *digest,
                            size_t network,
                            size_t subject,
                            char **out);

/**
 * Combines a complete grid's outcomes (JSON from `ft_rank_pair` or `ft_rank_load`, every
 * network × subject once) into the ranking, as JSON in `*out` (free with `ft_string_free`):
 * with one subject the layout of `ft_rank`; with several, `subjects` and `rows` each with
 * `across` (mean over subjects and t-interval of slope, spearman, b1, noise-normalised
 * accuracy), `vs_next` (paired t-test over subjects) and `subjects` (the network's row in each
 * subject's own ranking).
 *
 * # Safety
 * `outcomes` is valid for `n` reads of NUL-terminated strings; `out` is valid for writes.
 */
enum ft_status ft_rank_combine(const char *const *outcomes, size_t n, char **out);

/**
 * Resizes `n · channels` maps of `height × width` f32 values (row-major `[N, C, H, W]`, `input`
 * holding `input_len` floats, which must be `n · channels · height · width`) to
 * `out_height × out_width` with the grid resampling the encoders use: `resample` is
 * `"bilinear"`, `"area"` or `"auto"` (NULL: `"auto"`; see `ft_fit_new_resampled`), each axis
 * resized by its own rule (`auto`: area where the axis shrinks, bilinear where it grows or
 * keeps its size). The result, row-major `[N, C, out_height, out_width]`, is written into
 * `out[0 .. n · channels · out_height · out_width)`; `capacity` is the number of floats `out`
 * holds. Resizing to the fit's grid G this way gives the maps, bit for bit, that a fit or an
 * encoder with the same `resample` computes from the full-size maps.
 *
 * Errors, with nothing written (except after `FT_ERR_MEMORY`, when `out` may hold some maps):
 * `FT_ERR_NULL` (`input` or `out` NULL), `FT_ERR_SHAPE` (a zero
 * height, width or output size, `input_len` not the product of the sizes, `capacity` too
 * small), `FT_ERR_INVALID_ARGUMENT` (sizes whose product overflows, an unknown `resample`, one
 * input map (`height · width`), one output map (`out_height · out_width`) or the working row
 * (`height · out_width`) beyond the library's limit on one array, 2³¹ elements, even when `n`
 * or `channels` is 0), `FT_ERR_DATA` (a NaN or infinite input value, named by its index),
 * `FT_ERR_MEMORY` (that working row cannot be allocated). Nothing else is allocated: no table
 * is sized by the requested output.
 *
 * # Safety
 * `input` is NULL or valid for `input_len` reads; `out` is NULL or valid for `capacity` writes
 * and does not overlap `input`; `resample` is NULL or a NUL-terminated string.
 */
enum ft_status ft_resample(const float *input,
                           size_t input_len,
                           size_t n,
                           size_t channels,
                           size_t height,
                           size_t width,
                           size_t out_height,
                           size_t out_width,
                           const char *resample,
                           float *out,
                           size_t capacity);

/**
 * Generates planted-hierarchy data with the settings of `cfg` (NULL: defaults; the images are
 * `ft_fit_config_new`'s `n_images`, the seed `ft_fit_config_set_seed`'s, the rest the
 * `synth_*`, `scenario`, `noise_ceiling`, `signal_fraction` and `prf_size` setters') and writes
 * `features.safetensors`, `brain.safetensors` and `truth.safetensors` into `dir` (created if
 * needed). A fit setting in `cfg` is `FT_ERR_INVALID_ARGUMENT` naming it.
 *
 * # Safety
 * `cfg` is NULL or a live config; `dir` is a NUL-terminated string.
 */
enum ft_status ft_synth_write_with(const struct ft_fit_config *cfg, const char *dir);

/**
 * Plants a brain on a network's own features (the CLI's `synth --from-features`) with the
 * settings of `cfg` (as `ft_synth_write_with`; the features fix the images, layers and width,
 * so setting `synth_layers` or `synth_width` is refused): each ROI reads from the layer,
 * location and scale its scenario plants, with noise at the noise ceiling. The brain comes
 * back z-scored, as `ft_brain_load` would give it; `dir` non-NULL also writes
 * `brain.safetensors` and `truth.safetensors` there. `out` may be NULL when only the files are
 * wanted.
 *
 * # Safety
 * `cfg` is NULL or a live config; `features` is a live handle; `dir` is NULL or a
 * NUL-terminated string; `out` is NULL or valid for writes.
 */
enum ft_status ft_synth_plant_with(const struct ft_fit_config *cfg,
                                   const struct ft_features *features,
                                   const char *dir,
                                   struct ft_brain **out);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* FACTORTOPY_H */
