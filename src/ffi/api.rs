//! The entry points of the C ABI: brains, feature sets, synthetic data, fits, monitors and step
//! reports. Each `extern "C"` function runs its body under `guard` (errors become statuses and
//! the thread's last error, panics become `FT_ERR_PANIC`) and checks every pointer it receives.

use std::ffi::c_char;
use std::path::{Path, PathBuf};

use crate::data::{Array, Brain, FeatureFile, FeatureSource, Features, Precision, Store, StoredFeatures, StoredLayer};
use crate::ffi::dlpack::{DLManagedTensor, DLManagedTensorVersioned, DLTensor, FT_DLPACK_MAJOR_VERSION};
use crate::ffi::tensor::{ft_tensor, RawView};
use crate::ffi::{
    c_string, exclusive, ft_status, guard, guard_value, handle, out_arg, shared, str_arg, Busy, FfiError, FfiResult,
    Immutable, Policed,
};
use crate::engine::Device;
use crate::model::encoder_file::{save_encoder, FitRecord};
use crate::model::{Encoder, FitConfig, Preset, Resample};
use crate::monitor::{Monitor, MonitorConfig, StepReport};
use crate::scores::Report;
use crate::synth::{Scenario, SynthConfig};

// ---------------------------------------------------------------------------------------------
// Handles

/// A subject's brain data (responses z-scored per voxel on load). Immutable once loaded: every
/// function taking `const ft_brain *` may be called from several threads at once.
pub struct ft_brain {
    pub(crate) inner: Brain,
}

/// A network's features on the probe images, built layer by layer (or loaded). Functions taking
/// `const ft_features *` may run concurrently with each other; `ft_features_add_layer*` needs
/// exclusive access (no other call on the same handle meanwhile).
pub struct ft_features {
    busy: Busy,
    inner: FeatureSet,
}

/// What a feature handle holds: layers in memory, each in the precision it was given in (16-bit
/// tensors stay 16-bit), or a features file opened by `ft_features_open`, read a block of images
/// at a time when a fit, score or observation uses it.
pub(crate) enum FeatureSet {
    Memory(StoredFeatures),
    File(FeatureFile),
}

impl FeatureSet {
    /// The feature set as every consumer reads it.
    pub(crate) fn source(&self) -> &dyn FeatureSource {
        match self {
            FeatureSet::Memory(f) => f,
            FeatureSet::File(f) => f,
        }
    }

    /// Every value widened to f32 in memory (the paths that need whole arrays: writing a file,
    /// planting a synthetic brain).
    pub(crate) fn to_features(&self) -> crate::error::Result<Features> {
        match self {
            FeatureSet::Memory(f) => f.to_features(),
            FeatureSet::File(f) => Features::load(f.path()),
        }
    }

    fn memory_mut(&mut self, what: &str) -> FfiResult<&mut StoredFeatures> {
        match self {
            FeatureSet::Memory(f) => Ok(f),
            FeatureSet::File(f) => Err(FfiError::invalid(format!(
                "{what}: the feature set reads {} on demand (ft_features_open); add layers to a set made with ft_features_new",
                f.path().display()
            ))),
        }
    }
}

/// A fitted and scored encoder. Immutable: safe to share between threads.
pub struct ft_fit {
    pub(crate) report: Report,
    pub(crate) encoder: Encoder,
    pub(crate) record: FitRecord,
}

/// The forgetting monitor. Not thread-safe: calls on one monitor must not overlap (serialise
/// them, e.g. call from the training loop's thread); it may move between threads.
pub struct ft_monitor {
    busy: Busy,
    inner: Monitor,
}

impl ft_features {
    pub(crate) fn new(inner: FeatureSet) -> Self {
        Self { busy: Busy::default(), inner }
    }
}

impl ft_monitor {
    pub(crate) fn new(inner: Monitor) -> Self {
        Self { busy: Busy::default(), inner }
    }
}

// The header's rules: reading a feature set may overlap other reads (adding a layer may not);
// no two calls on one monitor may overlap.
impl Policed for ft_features {
    type Inner = FeatureSet;
    const SHARED_READS: bool = true;
    unsafe fn busy_of(p: *const Self) -> *const Busy {
        // SAFETY: `p` is live by the caller's contract; no reference to the handle is made.
        unsafe { std::ptr::addr_of!((*p).busy) }
    }
    unsafe fn inner_of(p: *mut Self) -> *mut FeatureSet {
        // SAFETY: as above.
        unsafe { std::ptr::addr_of_mut!((*p).inner) }
    }
}

impl Policed for ft_monitor {
    type Inner = Monitor;
    const SHARED_READS: bool = false;
    unsafe fn busy_of(p: *const Self) -> *const Busy {
        // SAFETY: `p` is live by the caller's contract; no reference to the handle is made.
        unsafe { std::ptr::addr_of!((*p).busy) }
    }
    unsafe fn inner_of(p: *mut Self) -> *mut Monitor {
        // SAFETY: as above.
        unsafe { std::ptr::addr_of_mut!((*p).inner) }
    }
}

impl Immutable for ft_brain {}
impl Immutable for ft_fit {}
impl Immutable for ft_step_report {}

/// One observation's report. Immutable: safe to share between threads.
pub struct ft_step_report {
    inner: StepReport,
}

// The thread-safety promises of the header, checked at compile time: every handle may move
// between threads, and the immutable ones may be shared.
const _: () = {
    fn send<T: Send>() {}
    fn sync<T: Sync>() {}
    #[allow(dead_code)]
    fn promises() {
        send::<ft_brain>();
        send::<ft_features>();
        send::<ft_fit>();
        send::<ft_monitor>();
        send::<ft_step_report>();
        sync::<ft_brain>();
        sync::<ft_features>();
        sync::<ft_fit>();
        sync::<ft_step_report>();
    }
};

pub(crate) fn boxed<T>(value: T) -> *mut T {
    Box::into_raw(Box::new(value))
}

/// Frees a boxed handle (NULL is a no-op).
///
/// # Safety
/// `p` is NULL or came from `boxed` and is freed once.
unsafe fn free_box<T>(p: *mut T) {
    guard_value((), || {
        if !p.is_null() {
            // SAFETY: by the caller's contract, `p` came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(p) });
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Brains

/// Loads and validates a brain file (DESIGN §2) and z-scores each voxel. On success `*out` is a
/// new handle to free with `ft_brain_free`.
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_brain_load(path: *const c_char, out: *mut *mut ft_brain) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        let brain = Brain::load(Path::new(path))?;
        *out = boxed(ft_brain { inner: brain });
        Ok(())
    })
}

/// Frees a brain (NULL is a no-op).
///
/// # Safety
/// `brain` is NULL or a live handle; it is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_brain_free(brain: *mut ft_brain) {
    // SAFETY: caller's contract.
    unsafe { free_box(brain) }
}

/// Number of probe images and voxels of a brain.
///
/// # Safety
/// `brain` is a live handle; the out-pointers are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_brain_shape(brain: *const ft_brain, n_images: *mut usize, n_voxels: *mut usize) -> ft_status {
    guard(|| {
        let b = handle(brain, "brain")?;
        let n = out_arg(n_images, "n_images")?;
        let v = out_arg(n_voxels, "n_voxels")?;
        *n = b.inner.n_images();
        *v = b.inner.n_voxels();
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Feature sets

/// A borrowed view of one layer of a feature set, as f32 row-major arrays owned by the library.
/// The pointers stay valid until the feature set is modified or freed.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_layer_view {
    /// `[N, C, H, W]` local map.
    pub local: *const f32,
    pub local_shape: [i64; 4],
    /// `[N, C]` global token, or NULL when the layer has none (the spatial mean of the local map
    /// is used then).
    pub global: *const f32,
    pub global_shape: [i64; 2],
}

/// A new, empty feature set; add layers in depth order with `ft_features_add_layer*`.
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_features_new(out: *mut *mut ft_features) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        *out = boxed(ft_features::new(FeatureSet::Memory(StoredFeatures::new("network"))));
        Ok(())
    })
}

/// Loads and validates a features file (DESIGN §2) into memory, each tensor in the precision it
/// is stored in (16-bit files stay 16-bit).
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_features_load(path: *const c_char, out: *mut *mut ft_features) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        let f = StoredFeatures::load(Path::new(path))?;
        *out = boxed(ft_features::new(FeatureSet::Memory(f)));
        Ok(())
    })
}

/// Opens a features file (DESIGN §2) without reading its values: its structure is checked now,
/// and a fit, score, prediction or observation reads the values it needs a block of images at
/// a time (each block checked as it is read). A subject-scale file is never held whole: a fit
/// holds the features resampled to the grid, in the file's precision. `ft_features_layer` and
/// `ft_features_add_layer*` do not apply to such a set (`ft_features_layer_copy` does).
///
/// # Safety
/// `path` is a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_features_open(path: *const c_char, out: *mut *mut ft_features) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        let f = FeatureFile::open(Path::new(path))?;
        *out = boxed(ft_features::new(FeatureSet::File(f)));
        Ok(())
    })
}

/// Frees a feature set (NULL is a no-op).
///
/// # Safety
/// `features` is NULL or a live handle; it is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_features_free(features: *mut ft_features) {
    // SAFETY: caller's contract.
    unsafe { free_box(features) }
}

/// Number of probe images (0 while empty) and layers of a feature set.
///
/// # Safety
/// `features` is a live handle; the out-pointers are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_features_shape(
    features: *const ft_features,
    n_images: *mut usize,
    n_layers: *mut usize,
) -> ft_status {
    guard(|| {
        let f = shared(features, "features")?;
        let n = out_arg(n_images, "n_images")?;
        let l = out_arg(n_layers, "n_layers")?;
        *n = f.source().n_images();
        *l = f.source().n_layers();
        Ok(())
    })
}

/// Checks a converted layer against the feature set and appends it, kept in `precision` (the
/// precision the caller's tensor was in); the set is unchanged on error.
fn push_layer(f: &mut StoredFeatures, local: Array, global: Option<Array>, precision: Precision) -> FfiResult<()> {
    let l = f.layers().len();
    let shape_err = |m: String| FfiError::new(ft_status::FT_ERR_SHAPE, m);
    if local.shape.len() != 4 || local.shape.contains(&0) {
        return Err(shape_err(format!(
            "layer {l}: the local map has shape {:?}; expected 4 dimensions [N, C, H, W], all > 0",
            local.shape
        )));
    }
    let (n, c) = (local.shape[0], local.shape[1]);
    if let Some(first) = f.layers().first() {
        let n0 = first.shape()[0];
        if n != n0 {
            return Err(shape_err(format!("layer {l}: the local map has {n} images but layer 0 has {n0}")));
        }
    }
    if let Some(g) = &global {
        if g.shape != [n, c] {
            return Err(shape_err(format!(
                "layer {l}: the global token has shape {:?}; expected [{n}, {c}] (images × channels of the local map)",
                g.shape
            )));
        }
    }
    for (a, what) in [(Some(&local), "local map"), (global.as_ref(), "global token")] {
        if let Some(a) = a {
            if let Some(i) = a.first_non_finite() {
                return Err(FfiError::new(
                    ft_status::FT_ERR_DATA,
                    format!("layer {l}: the {what} has a non-finite value ({}) at index {:?}", a.data[i], a.unravel(i)),
                ));
            }
        }
    }
    // f32 values move into the store; 16-bit values are narrowed back exactly (they came from
    // 16 bits), so the set keeps the caller's bytes per value.
    let keep = |a: Array| -> FfiResult<Store> {
        Ok(match precision {
            Precision::F32 => Store::F32(a.data),
            p => {
                let mut s = Store::zeroed("a 16-bit layer", p, a.data.len())?;
                s.write(0, &a.data);
                s
            }
        })
    };
    let shape = [local.shape[0], local.shape[1], local.shape[2], local.shape[3]];
    let local = keep(local)?;
    let global = global.map(keep).transpose()?;
    f.push(StoredLayer::new(shape, local, global)?)?;
    Ok(())
}

/// Appends a layer from plain tensor views: `local` `[N, C, H, W]` and optionally `global`
/// `[N, C]` (NULL: the spatial mean of `local` is used). f32, f16 or bf16 host memory; the data
/// is copied (converted to f32), nothing is kept. Non-finite values are `FT_ERR_DATA`, wrong
/// shapes `FT_ERR_SHAPE`; on error the feature set is unchanged.
///
/// # Safety
/// `features` is a live handle; `local` (and `global` when non-NULL) satisfy the `ft_tensor`
/// contract.
#[no_mangle]
pub unsafe extern "C" fn ft_features_add_layer(
    features: *mut ft_features,
    local: *const ft_tensor,
    global: *const ft_tensor,
) -> ft_status {
    // SAFETY: caller's contract for the views.
    guard(|| unsafe { add_layer_from(features, local, global, RawView::from_ft) })
}

/// Describes a required local and an optional global tensor with `describe`, copies them and
/// appends the layer: the one body of every `ft_features_add_layer*`.
///
/// # Safety
/// `features` is a live handle; `local` and `global` are NULL or valid for `describe`'s contract.
unsafe fn add_layer_from<T>(
    features: *mut ft_features,
    local: *const T,
    global: *const T,
    describe: unsafe fn(&T, &str) -> FfiResult<RawView>,
) -> FfiResult<()> {
    let mut guard = exclusive(features, "features")?;
    let f = guard.memory_mut("ft_features_add_layer")?;
    let local = crate::ffi::arg_ref(local, "local")?;
    // SAFETY: forwarded contract.
    let view = unsafe { describe(local, "local")? };
    // SAFETY: forwarded contract.
    let global = unsafe { global.as_ref().map(|g| describe(g, "global")).transpose()? };
    if crate::ffi::tensor::push_device_layer(f, &view, global.as_ref())? {
        return Ok(());
    }
    let precision = view.precision();
    // SAFETY: forwarded contract.
    let local = unsafe { view.to_array()? };
    // SAFETY: forwarded contract.
    let global = global.map(|g| unsafe { g.to_array() }).transpose()?;
    push_layer(f, local, global, precision)
}

/// Appends a layer from DLPack tensors (`local` `[N, C, H, W]`, optional `global` `[N, C]`), as
/// `ft_features_add_layer`. Borrows: the data is copied during the call and the tensors' owners
/// keep them (this function never calls a deleter). Strides and `byte_offset` are honoured.
/// Host memory (kDLCPU, kDLCUDAHost) is copied to the host. CUDA memory (kDLCUDA,
/// kDLCUDAManaged) needs a build with the `cuda` feature (else `FT_ERR_DEVICE`): when both
/// tensors are on one device, the library synchronises it and copies them device-to-device into
/// its own memory there (checked against the free device memory first), where monitor steps and
/// predictions on that device read them; other work copies the layer to the host once, when it
/// first needs it. Either way the caller may free or reuse its tensors when the call returns.
///
/// # Safety
/// `features` is a live handle; `local` (and `global` when non-NULL) are valid `DLTensor`s whose
/// memory is valid for reads.
#[no_mangle]
pub unsafe extern "C" fn ft_features_add_layer_dlpack(
    features: *mut ft_features,
    local: *const DLTensor,
    global: *const DLTensor,
) -> ft_status {
    // SAFETY: caller's contract for the tensors.
    guard(|| unsafe { add_layer_from(features, local, global, RawView::from_dl) })
}

/// Appends a layer from DLPack managed tensors, taking ownership: whatever the outcome (success,
/// error, even a NULL `features`), the deleter of each non-NULL tensor is called exactly once
/// before this function returns (NULL deleters are skipped). Otherwise as
/// `ft_features_add_layer_dlpack`.
///
/// # Safety
/// `features` is NULL or a live handle; `local` and `global` are NULL or valid managed tensors
/// not used by the caller afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_features_add_layer_dlpack_managed(
    features: *mut ft_features,
    local: *mut DLManagedTensor,
    global: *mut DLManagedTensor,
) -> ft_status {
    // SAFETY: caller's contract: non-NULL managed tensors are valid until deleted below, so
    // their embedded DLTensors are too.
    let status = guard(|| unsafe {
        let dl = |m: *mut DLManagedTensor| match m.as_ref() {
            None => std::ptr::null(),
            Some(m) => &m.dl_tensor as *const DLTensor,
        };
        add_layer_from(features, dl(local), dl(global), RawView::from_dl)
    });
    // SAFETY: ownership of both tensors passed to us; each is deleted once (the same pointer
    // given twice is deleted once).
    unsafe {
        delete_managed(local);
        if global != local {
            delete_managed(global);
        }
    }
    status
}

/// Appends a layer from DLPack 1.x versioned managed tensors (`DLManagedTensorVersioned`, what
/// `__dlpack__(max_version=(1, 0))` exports), taking ownership exactly as
/// `ft_features_add_layer_dlpack_managed` does: each non-NULL tensor's deleter is called once
/// before this returns, whatever the outcome. A major version other than
/// `FT_DLPACK_MAJOR_VERSION` is `FT_ERR_INVALID_ARGUMENT`; read-only tensors are fine (the
/// library only reads). CUDA memory (kDLCUDA, kDLCUDAManaged) is accepted by builds with the
/// `cuda` feature and kept on its device as `ft_features_add_layer_dlpack` says (the device's
/// primary context is synchronised first, so work on every stream is done); without the feature
/// it is `FT_ERR_DEVICE`.
///
/// # Safety
/// `features` is NULL or a live handle; `local` and `global` are NULL or valid versioned managed
/// tensors not used by the caller afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_features_add_layer_dlpack_versioned(
    features: *mut ft_features,
    local: *mut DLManagedTensorVersioned,
    global: *mut DLManagedTensorVersioned,
) -> ft_status {
    // SAFETY: caller's contract: non-NULL tensors are valid until deleted below.
    let status = guard(|| unsafe {
        for (t, name) in [(local, "local"), (global, "global")] {
            if let Some(m) = t.as_ref() {
                if m.version.major != FT_DLPACK_MAJOR_VERSION {
                    return Err(FfiError::invalid(format!(
                        "{name} is a DLPack {}.{} tensor; this library reads DLPack {FT_DLPACK_MAJOR_VERSION}.x",
                        m.version.major, m.version.minor
                    )));
                }
            }
        }
        let dl = |m: *mut DLManagedTensorVersioned| match m.as_ref() {
            None => std::ptr::null(),
            Some(m) => &m.dl_tensor as *const DLTensor,
        };
        add_layer_from(features, dl(local), dl(global), RawView::from_dl)
    });
    // SAFETY: ownership of both tensors passed to us; each is deleted once.
    unsafe {
        delete_versioned(local);
        if global != local {
            delete_versioned(global);
        }
    }
    status
}

/// Calls a versioned managed tensor's deleter (NULL tensor or deleter: nothing to do).
///
/// # Safety
/// `t` is NULL or a valid versioned managed tensor owned by the caller of this function.
unsafe fn delete_versioned(t: *mut DLManagedTensorVersioned) {
    if t.is_null() {
        return;
    }
    // SAFETY: non-NULL and valid by the contract; the deleter is the owner's and takes `t`.
    unsafe {
        if let Some(del) = (*t).deleter {
            del(t);
        }
    }
}

/// Calls a managed tensor's deleter (NULL tensor or deleter: nothing to do).
///
/// # Safety
/// `t` is NULL or a valid managed tensor owned by the caller of this function.
unsafe fn delete_managed(t: *mut DLManagedTensor) {
    if t.is_null() {
        return;
    }
    // SAFETY: non-NULL and valid by the contract; the deleter is the owner's and takes `t`.
    unsafe {
        if let Some(del) = (*t).deleter {
            del(t);
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FeaturesMetadata {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    layer_names: Option<Vec<String>>,
    #[serde(default)]
    stimulus_ids: Option<Vec<String>>,
}

/// Sets a feature set's descriptive metadata from a JSON object with any of `model` (string: the
/// network's name, used by reports and rankings), `layer_names` (list of one string per layer
/// added so far) and `stimulus_ids` (list of one string per image, matched against the brain's).
/// Members not given are left as they are; on error nothing changes.
///
/// # Safety
/// `features` is a live handle used by no other call meanwhile; `json` is a NUL-terminated
/// string.
#[no_mangle]
pub unsafe extern "C" fn ft_features_set_metadata(features: *mut ft_features, json: *const c_char) -> ft_status {
    guard(|| {
        let mut f = exclusive(features, "features")?;
        // SAFETY: caller's contract.
        let json = unsafe { str_arg(json, "json") }?;
        let m: FeaturesMetadata =
            serde_json::from_str(json).map_err(|e| FfiError::invalid(format!("features metadata: {e}")))?;
        let (n_images, n_layers) = (f.source().n_images(), f.source().n_layers());
        if let Some(names) = &m.layer_names {
            if names.len() != n_layers {
                return Err(FfiError::new(
                    ft_status::FT_ERR_MISMATCH,
                    format!("layer_names has {} names but the feature set has {n_layers} layers", names.len()),
                ));
            }
        }
        if let Some(ids) = &m.stimulus_ids {
            if ids.len() != n_images {
                return Err(FfiError::new(
                    ft_status::FT_ERR_MISMATCH,
                    format!("stimulus_ids has {} entries but the feature set has {n_images} images", ids.len()),
                ));
            }
        }
        match &mut *f {
            FeatureSet::Memory(s) => {
                if let Some(model) = m.model {
                    s.model = model;
                }
                if let Some(names) = m.layer_names {
                    s.layer_names = names;
                }
                if m.stimulus_ids.is_some() {
                    s.stimulus_ids = m.stimulus_ids;
                }
            }
            FeatureSet::File(file) => file.set_names(m.model, m.layer_names, m.stimulus_ids),
        }
        Ok(())
    })
}

/// Writes the feature set as a features file (DESIGN §2, atomically), for the CLI's `fit`,
/// `score`, `rank` and `synth --from-features`.
///
/// # Safety
/// `features` is a live handle; `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_features_save(features: *const ft_features, path: *const c_char) -> ft_status {
    guard(|| {
        let f = shared(features, "features")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        f.source().check_images(path, None)?;
        f.to_features()?.save(Path::new(path))?;
        Ok(())
    })
}

/// Copies layer `layer` (0-based) of a feature set, widened to f32, into the caller's buffers (a
/// set opened with `ft_features_open` reads it from its file): `local` (`local_capacity` floats) and, when the layer has a global token, `global`
/// (`global_capacity` floats). `shape` receives the shapes (its data pointers are NULL), with
/// `global_shape` `[0, 0]` when the layer has no global token. Pass NULL buffers to ask for the
/// shapes only. Works whatever precision the layer is kept in (unlike
/// `ft_features_layer`, which views f32 layers only).
///
/// # Safety
/// `features` is a live handle; `shape` is valid for writes; `local` and `global` are NULL or
/// valid for their capacities' writes.
#[no_mangle]
pub unsafe extern "C" fn ft_features_layer_copy(
    features: *const ft_features,
    layer: usize,
    shape: *mut ft_layer_view,
    local: *mut f32,
    local_capacity: usize,
    global: *mut f32,
    global_capacity: usize,
) -> ft_status {
    guard(|| {
        let f = shared(features, "features")?;
        let shape = out_arg(shape, "shape")?;
        let src = f.source();
        if layer >= src.n_layers() {
            return Err(FfiError::invalid(format!("layer {layer} does not exist (the feature set has {} layers)", src.n_layers())));
        }
        let [n, c, h, w] = src.local_shape(layer);
        let has_global = src.has_global(layer);
        *shape = ft_layer_view {
            local: std::ptr::null(),
            local_shape: [n as i64, c as i64, h as i64, w as i64],
            global: std::ptr::null(),
            global_shape: if has_global { [n as i64, c as i64] } else { [0, 0] },
        };
        if !local.is_null() {
            let need = n * c * h * w;
            if local_capacity < need {
                return Err(FfiError::new(ft_status::FT_ERR_SHAPE, format!("local holds {local_capacity} floats; the layer has {need}")));
            }
            let rows = src.local_rows(layer, 0..n)?;
            // SAFETY: non-NULL and valid for `local_capacity` ≥ `need` writes by the caller's contract.
            unsafe { std::slice::from_raw_parts_mut(local, need) }.copy_from_slice(&rows);
        }
        if !global.is_null() && has_global {
            let need = n * c;
            if global_capacity < need {
                return Err(FfiError::new(ft_status::FT_ERR_SHAPE, format!("global holds {global_capacity} floats; the token has {need}")));
            }
            let g = src.stored_global(layer)?.expect("checked: the layer has a global token");
            // SAFETY: non-NULL and valid for `global_capacity` ≥ `need` writes by the caller's contract.
            unsafe { std::slice::from_raw_parts_mut(global, need) }.copy_from_slice(&g);
        }
        Ok(())
    })
}

/// A borrowed view of layer `layer` (0-based). The pointers stay valid until `features` is
/// modified or freed.
///
/// # Safety
/// `features` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_features_layer(
    features: *const ft_features,
    layer: usize,
    out: *mut ft_layer_view,
) -> ft_status {
    guard(|| {
        let f = shared(features, "features")?;
        let out = out_arg(out, "out")?;
        let n_layers = f.source().n_layers();
        let FeatureSet::Memory(set) = &*f else {
            return Err(FfiError::invalid(
                "the feature set reads its file on demand (ft_features_open); load it with ft_features_load for views",
            ));
        };
        let l = set.layers().get(layer).ok_or_else(|| {
            FfiError::invalid(format!("layer {layer} does not exist (the feature set has {n_layers} layers)"))
        })?;
        let s = l.shape();
        let local = l.local_f32().ok_or_else(|| {
            FfiError::new(
                ft_status::FT_ERR_DTYPE,
                format!("layer {layer} is kept in {} (as it was given); views are of f32 layers only", l.precision()),
            )
        })?;
        let mut view = ft_layer_view {
            local: local.as_ptr(),
            local_shape: [s[0] as i64, s[1] as i64, s[2] as i64, s[3] as i64],
            global: std::ptr::null(),
            global_shape: [s[0] as i64, s[1] as i64],
        };
        if let Some(g) = l.global_f32() {
            view.global = g.as_ptr();
        }
        *out = view;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Synthetic data

/// Planted patterns of the synthetic generator (DESIGN §8).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ft_scenario {
    FT_SCENARIO_HIERARCHICAL = 0,
    FT_SCENARIO_REVERSED = 1,
    FT_SCENARIO_FLAT_EARLY = 2,
    FT_SCENARIO_FLAT_LATE = 3,
    FT_SCENARIO_SHUFFLED = 4,
}

/// Settings of the synthetic data generator (fill with `ft_synth_options_default`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_synth_options {
    /// An `ft_scenario` value.
    pub scenario: i32,
    pub n_images: usize,
    pub n_voxels: usize,
    pub n_layers: usize,
    /// Channels per layer.
    pub width: usize,
    /// Planting grid G (early layers 2G×2G, the rest G×G).
    pub grid: usize,
    /// Explainable fraction of a signal voxel's variance, in (0, 1].
    pub noise_ceiling: f64,
    /// Fraction of voxels carrying signal, in [0, 1].
    pub signal_fraction: f64,
    pub seed: u64,
}

/// Writes the generator's defaults into `*out`.
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_options_default(out: *mut ft_synth_options) -> ft_status {
    guard(|| {
        let out = out_arg(out, "out")?;
        let d = SynthConfig::default();
        *out = ft_synth_options {
            scenario: ft_scenario::FT_SCENARIO_HIERARCHICAL as i32,
            n_images: d.n_images,
            n_voxels: d.n_voxels,
            n_layers: d.n_layers,
            width: d.width,
            grid: d.grid,
            noise_ceiling: d.noise_ceiling,
            signal_fraction: d.signal_fraction,
            seed: d.seed,
        };
        Ok(())
    })
}

/// Generates planted-hierarchy data and writes `features.safetensors`, `brain.safetensors` and
/// `truth.safetensors` into `dir` (created if needed). `options` NULL: defaults.
///
/// # Safety
/// `dir` is a NUL-terminated string; `options` is NULL or valid for reads.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_write(dir: *const c_char, options: *const ft_synth_options) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let dir = unsafe { str_arg(dir, "dir") }?;
        // SAFETY: caller's contract.
        let cfg = unsafe { synth_config(options) }?;
        let data = crate::synth::generate(&cfg)?;
        crate::synth::write(Path::new(dir), &data)?;
        Ok(())
    })
}

/// The generator's settings from C options (NULL: defaults).
///
/// # Safety
/// `options` is NULL or valid for reads.
unsafe fn synth_config(options: *const ft_synth_options) -> FfiResult<SynthConfig> {
    // SAFETY: forwarded contract.
    let Some(o) = (unsafe { options.as_ref() }) else {
        return Ok(SynthConfig::default());
    };
    let scenario = match o.scenario {
        0 => Scenario::Hierarchical,
        1 => Scenario::Reversed,
        2 => Scenario::FlatEarly,
        3 => Scenario::FlatLate,
        4 => Scenario::Shuffled,
        s => return Err(FfiError::invalid(format!("unknown scenario {s} (expected 0..4)"))),
    };
    Ok(SynthConfig {
        scenario,
        n_images: o.n_images,
        n_voxels: o.n_voxels,
        n_layers: o.n_layers,
        width: o.width,
        grid: o.grid,
        noise_ceiling: o.noise_ceiling,
        seed: o.seed,
        signal_fraction: o.signal_fraction,
        // `ft_synth_options` is frozen: these entry points plant as they always did (point
        // sampling); `ft_synth_write_rf` and `ft_synth_plant_rf` take a receptive field.
        prf_size: Some(0.0),
    })
}

/// The receptive-field argument of the `_rf` entry points: a fraction of the image in [0, 1]
/// (0: point sampling), or any negative value for one grid cell (`1/grid`, the CLI's default).
fn prf_arg(prf_size: f64) -> Option<f64> {
    (prf_size.is_nan() || prf_size >= 0.0).then_some(prf_size)
}

/// `ft_synth_write` with receptive fields: every signal voxel reads its layer's map averaged
/// over a square window of side `prf_size` (a fraction of the image, in [0, 1]) at the layer's
/// own resolution; 0 is `ft_synth_write`'s point sampling, a negative value one grid cell (the
/// CLI's default). A value above 1 (or NaN) is `FT_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// As `ft_synth_write`.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_write_rf(dir: *const c_char, options: *const ft_synth_options, prf_size: f64) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let dir = unsafe { str_arg(dir, "dir") }?;
        // SAFETY: caller's contract.
        let cfg = SynthConfig { prf_size: prf_arg(prf_size), ..unsafe { synth_config(options) }? };
        let data = crate::synth::generate(&cfg)?;
        crate::synth::write(Path::new(dir), &data)?;
        Ok(())
    })
}

/// `ft_synth_plant` with receptive fields (`prf_size` as in `ft_synth_write_rf`).
///
/// # Safety
/// As `ft_synth_plant`.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_plant_rf(
    features: *const ft_features,
    options: *const ft_synth_options,
    prf_size: f64,
    dir: *const c_char,
    out: *mut *mut ft_brain,
) -> ft_status {
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { synth_plant(features, options, Some(prf_arg(prf_size)), dir, out) })
}

/// Plants a brain on a network's own features (the CLI's `synth --from-features`): each ROI reads
/// from the layer, location and scale its scenario plants, with noise at the noise ceiling. The
/// brain comes back z-scored, as `ft_brain_load` would give it; `dir` non-NULL also writes
/// `brain.safetensors` and `truth.safetensors` there. The options' `n_images`, `n_layers` and
/// `width` are ignored (the features fix them). `options` NULL: defaults. `out` may be NULL when
/// only the files are wanted.
///
/// # Safety
/// `features` is a live handle; `options` is NULL or valid for reads; `dir` is NULL or a
/// NUL-terminated string; `out` is NULL or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_synth_plant(
    features: *const ft_features,
    options: *const ft_synth_options,
    dir: *const c_char,
    out: *mut *mut ft_brain,
) -> ft_status {
    // SAFETY: forwarded caller's contract.
    guard(|| unsafe { synth_plant(features, options, None, dir, out) })
}

// ---------------------------------------------------------------------------------------------
// Fitting and scoring

/// Settings of a fit (DESIGN §3); fill with `ft_fit_options_default` and change what you need.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_fit_options {
    pub seed: u64,
    /// Fraction of images held out for validation, in (0, 1).
    pub val_fraction: f64,
    pub max_epochs: u32,
    pub batch_size: u32,
    pub lr: f64,
    pub weight_decay: f64,
    /// Bottleneck width D.
    pub d: u32,
    /// Local grid G.
    pub grid: u32,
    /// Epochs without improvement before stopping.
    pub patience: u32,
    /// Optimiser steps over which the warm-up regulariser fades.
    pub reg_steps: u32,
    /// Hard limit on optimiser steps (0: none).
    pub max_steps: u64,
    /// Hard limit on seconds (<= 0: none).
    pub max_seconds: f64,
    /// Non-zero: weight the hierarchy line by max(R², 0).
    pub weighted: i32,
}

pub(crate) fn fit_options_default() -> ft_fit_options {
    fit_options_of(&FitConfig::default())
}

/// The default schedule for a probe set of `n_images` images (what NULL options mean).
pub(crate) fn fit_options_for_images(n_images: usize) -> ft_fit_options {
    fit_options_of(&Preset::Auto.config(n_images))
}

fn fit_options_of(d: &FitConfig) -> ft_fit_options {
    ft_fit_options {
        seed: d.seed,
        val_fraction: d.val_fraction,
        max_epochs: d.max_epochs as u32,
        batch_size: d.batch_size as u32,
        lr: d.lr,
        weight_decay: d.weight_decay,
        d: d.d as u32,
        grid: d.grid as u32,
        patience: d.patience as u32,
        reg_steps: d.reg_steps as u32,
        max_steps: d.max_steps.unwrap_or(0) as u64,
        max_seconds: d.max_seconds.unwrap_or(0.0),
        weighted: 0,
    }
}

pub(crate) fn fit_config(o: &ft_fit_options) -> FfiResult<FitConfig> {
    let cfg = FitConfig {
        seed: o.seed,
        val_fraction: o.val_fraction,
        max_epochs: o.max_epochs as usize,
        batch_size: o.batch_size as usize,
        lr: o.lr,
        weight_decay: o.weight_decay,
        d: o.d as usize,
        grid: o.grid as usize,
        patience: o.patience as usize,
        reg_steps: o.reg_steps as usize,
        max_steps: (o.max_steps > 0).then_some(o.max_steps as usize),
        max_seconds: (o.max_seconds > 0.0).then_some(o.max_seconds),
        // `ft_fit_options` has no resampling field (it is frozen): the entry points that take
        // one set it; the older ones resample as they always did (DESIGN §3.1, bilinear).
        ..FitConfig::design()
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Writes DESIGN §3.5's fit settings into `*out` (lr 1e-3, batch 8, warm-up over 2000 steps,
/// patience 5, at most 40 epochs; the `"design"` preset), as every release has: a program that
/// fills its options with this keeps its results. The default schedule, which follows the
/// probe-set size and is what NULL options mean in `ft_fit_new`, `ft_rank` and `ft_monitor_new`,
/// is `ft_fit_options_for_images`.
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_default(out: *mut ft_fit_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = fit_options_default();
        Ok(())
    })
}

/// Writes the default fit settings for a probe set of `n_images` images into `*out` (the CLI's
/// `--preset auto`; what NULL options mean): lr 1e-2, batch 32, the warm-up over 150 optimiser
/// steps, patience about 60 steps (at least 2 epochs) and at most about 1200 steps (3 to 40
/// epochs). Pass the `n_images` of `ft_brain_shape`.
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_for_images(n_images: usize, out: *mut ft_fit_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = fit_options_for_images(n_images);
        Ok(())
    })
}

/// Writes a named preset of fit settings into `*out`: `"design"` (DESIGN §3.5: lr 1e-3, batch
/// 8; the same as `ft_fit_options_default`) or `"fast"` (lr 1e-2, batch 32, regulariser over 300
/// steps, patience 3: the CLI's `--preset fast`). The `"auto"` preset depends on the probe-set
/// size: `ft_fit_options_for_images`.
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_preset(name: *const c_char, out: *mut ft_fit_options) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let name = unsafe { str_arg(name, "name") }?;
        let out = out_arg(out, "out")?;
        *out = fit_options_of(&preset(name)?);
        Ok(())
    })
}

/// A preset by name (`model::Preset`: "auto", "design" or "fast").
fn named_preset(name: &str) -> FfiResult<Preset> {
    name.parse::<Preset>().map_err(|_| {
        FfiError::invalid(format!("unknown preset `{name}` (expected \"design\" or \"fast\")"))
    })
}

/// The settings of a named preset; "auto" depends on the probe-set size
/// (`ft_fit_options_for_images`).
fn preset(name: &str) -> FfiResult<FitConfig> {
    match named_preset(name)? {
        Preset::Auto => Err(FfiError::invalid(
            "the \"auto\" preset follows the probe-set size: use ft_fit_options_for_images",
        )),
        p => Ok(p.config(0)),
    }
}

/// Writes the grid resampling of a named preset into `*out` (a static string, never freed):
/// `"bilinear"` for `"design"` (DESIGN §3.1), `"auto"` for `"fast"` and `"auto"`.
/// `ft_fit_options` has no field for it (the struct is frozen); pass it to
/// `ft_fit_new_resampled` and the other `_resampled` entry points.
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_preset_resample(name: *const c_char, out: *mut *const c_char) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let name = unsafe { str_arg(name, "name") }?;
        let out = out_arg(out, "out")?;
        // The resampling of a preset does not depend on the probe-set size.
        *out = match named_preset(name)?.config(0).resample {
            Resample::Bilinear => c"bilinear".as_ptr(),
            Resample::Area => c"area".as_ptr(),
            Resample::Auto => c"auto".as_ptr(),
        };
        Ok(())
    })
}

/// Writes the layers' units of a named preset into `*out` (a static string, never freed):
/// `"raw"` for `"design"` (DESIGN §3), `"common"` for `"fast"` and `"auto"`. Append it to the
/// resampling, after a comma, in `ft_fit_new_resampled` and the other `_resampled` entry points.
///
/// # Safety
/// `name` is a NUL-terminated string; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_options_preset_layer_units(name: *const c_char, out: *mut *const c_char) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let name = unsafe { str_arg(name, "name") }?;
        let out = out_arg(out, "out")?;
        *out = if named_preset(name)?.config(0).normalise_layers { c"common".as_ptr() } else { c"raw".as_ptr() };
        Ok(())
    })
}

/// Headline numbers of a fit's report (DESIGN §4).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_fit_summary {
    pub n_images: usize,
    pub n_voxels: usize,
    pub n_layers: usize,
    /// Slope of the depth-vs-hierarchy line. `slope`, `b0`, `b1` and `spearman` are NaN when
    /// undefined (one ROI level, one voxel, or every voxel at one depth; the report's JSON has
    /// `null` and a `warning`).
    pub slope: f64,
    /// Depth early cortex reads from (smaller is better).
    pub b0: f64,
    /// Depth the top of the hierarchy reads from (larger is better).
    pub b1: f64,
    /// Spearman rank correlation of ROI position and voxel depth.
    pub spearman: f64,
    /// Held-out R² over voxels.
    pub r2_mean: f64,
    pub r2_median: f64,
    /// Held-out Pearson r over voxels.
    pub pearson_mean: f64,
}



/// Frees a fit (NULL is a no-op).
///
/// # Safety
/// `fit` is NULL or a live handle; it is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_free(fit: *mut ft_fit) {
    // SAFETY: caller's contract.
    unsafe { free_box(fit) }
}

/// The headline numbers of a fit.
///
/// # Safety
/// `fit` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_report_summary(fit: *const ft_fit, out: *mut ft_fit_summary) -> ft_status {
    guard(|| {
        let r = &handle(fit, "fit")?.report;
        let out = out_arg(out, "out")?;
        let (slope, b0, b1, spearman) = r.hierarchy.as_nan_tuple();
        *out = ft_fit_summary {
            n_images: r.n_images,
            n_voxels: r.n_voxels,
            n_layers: r.n_layers,
            slope,
            b0,
            b1,
            spearman,
            r2_mean: r.r2.mean,
            r2_median: r.r2.median,
            pearson_mean: r.pearson.mean,
        };
        Ok(())
    })
}

/// The full report of a fit as JSON (the `report.json` of `factortopy fit`). Free `*out` with
/// `ft_string_free`.
///
/// # Safety
/// `fit` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_report_json(fit: *const ft_fit, out: *mut *mut c_char) -> ft_status {
    guard(|| {
        let f = handle(fit, "fit")?;
        let out = out_arg(out, "out")?;
        *out = c_string(f.report.to_json());
        Ok(())
    })
}

/// Saves the fitted encoder (DESIGN §3.7 tensor names), e.g. to create a monitor from later.
///
/// # Safety
/// `fit` is a live handle; `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_fit_save_encoder(fit: *const ft_fit, path: *const c_char) -> ft_status {
    guard(|| {
        let f = handle(fit, "fit")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        save_encoder(Path::new(path), &f.encoder, &f.record)?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Monitor

/// Settings of a monitor (DESIGN §5); fill with `ft_monitor_options_default`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_monitor_options {
    /// Settings of the reference fit and of refits. `fit.val_fraction` is ignored:
    /// `held_out_fraction` sets the held-out images.
    pub fit: ft_fit_options,
    /// Fraction of probe images held out of the reference fit; retention is measured on them.
    pub held_out_fraction: f64,
    /// Refit every this many observations (0: never).
    pub refit_every: u32,
    /// Optimiser steps of one refit.
    pub refit_max_steps: u32,
    /// Seconds of one refit (<= 0: no time limit).
    pub refit_max_seconds: f64,
    /// `should_stop` is set when forgetting exceeds this (INFINITY: never).
    pub forgetting_threshold: f64,
}

pub(crate) fn monitor_options_default() -> ft_monitor_options {
    monitor_options_with(fit_options_default())
}

/// The default monitor settings for a probe set of `n_images` images (what NULL options mean):
/// the reference fit runs the default schedule for that size.
pub(crate) fn monitor_options_for_images(n_images: usize) -> ft_monitor_options {
    monitor_options_with(fit_options_for_images(n_images))
}

fn monitor_options_with(fit: ft_fit_options) -> ft_monitor_options {
    let d = MonitorConfig::default();
    ft_monitor_options {
        fit,
        held_out_fraction: d.held_out_fraction,
        refit_every: d.refit_every as u32,
        refit_max_steps: d.refit_max_steps as u32,
        refit_max_seconds: d.refit_max_seconds.unwrap_or(0.0),
        forgetting_threshold: d.forgetting_threshold,
    }
}

/// The monitor settings of `o` on `device`.
pub(crate) fn monitor_config(o: &ft_monitor_options, device: Device) -> FfiResult<MonitorConfig> {
    let fit = fit_config(&ft_fit_options { val_fraction: o.held_out_fraction, ..o.fit })?;
    let cfg = MonitorConfig {
        fit,
        held_out_fraction: o.held_out_fraction,
        refit_every: o.refit_every as usize,
        refit_max_steps: o.refit_max_steps as usize,
        refit_max_seconds: (o.refit_max_seconds > 0.0).then_some(o.refit_max_seconds),
        forgetting_threshold: o.forgetting_threshold,
        weighted: o.fit.weighted != 0,
        device,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Writes the default monitor settings into `*out`, with `ft_fit_options_default`'s fit settings
/// (DESIGN §3.5). NULL options in `ft_monitor_new` mean `ft_monitor_options_for_images` instead.
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_options_default(out: *mut ft_monitor_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = monitor_options_default();
        Ok(())
    })
}

/// Writes the default monitor settings for a probe set of `n_images` images into `*out`: the
/// reference fit and refits run `ft_fit_options_for_images`'s schedule (what NULL options mean).
///
/// # Safety
/// `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_options_for_images(n_images: usize, out: *mut ft_monitor_options) -> ft_status {
    guard(|| {
        *out_arg(out, "out")? = monitor_options_for_images(n_images);
        Ok(())
    })
}



/// Observes the network at training step `step` through its probe-set features. On success
/// `*out` is a new report (free with `ft_step_report_free`); it is also appended to the
/// monitor's history (and history file). On error the history is unchanged.
///
/// # Safety
/// Handles are live; no other call uses `monitor` meanwhile; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_observe(
    monitor: *mut ft_monitor,
    step: u64,
    features: *const ft_features,
    out: *mut *mut ft_step_report,
) -> ft_status {
    guard(|| {
        let mut m = exclusive(monitor, "monitor")?;
        let f = shared(features, "features")?;
        let out = out_arg(out, "out")?;
        let r = m.observe(step, f.source())?;
        *out = boxed(ft_step_report { inner: r });
        Ok(())
    })
}

/// Saves the monitor's state (reference encoder and statistics, history, settings) to one
/// safetensors file, atomically.
///
/// # Safety
/// `monitor` is a live handle; `path` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_save(monitor: *const ft_monitor, path: *const c_char) -> ft_status {
    guard(|| {
        let m = shared(monitor, "monitor")?;
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        m.save(Path::new(path))?;
        Ok(())
    })
}

/// Restores a monitor saved by `ft_monitor_save`, for the brain it was created with (checked).
/// The history continues; the history file is not part of the state (set it again).
///
/// # Safety
/// `path` is a NUL-terminated string; `brain` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_load(
    path: *const c_char,
    brain: *const ft_brain,
    out: *mut *mut ft_monitor,
) -> ft_status {
    guard(|| {
        // SAFETY: caller's contract.
        let path = unsafe { str_arg(path, "path") }?;
        let b = handle(brain, "brain")?;
        let out = out_arg(out, "out")?;
        let m = Monitor::load(Path::new(path), &b.inner)?;
        *out = boxed(ft_monitor::new(m));
        Ok(())
    })
}

/// The monitor's state as bytes (the same bytes `ft_monitor_save` writes), for hosts that store
/// it inside their own checkpoints. Free `*data` with `ft_bytes_free(*data, *len)`.
///
/// # Safety
/// `monitor` is a live handle; `data` and `len` are valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_save_bytes(monitor: *const ft_monitor, data: *mut *mut u8, len: *mut usize) -> ft_status {
    guard(|| {
        let m = shared(monitor, "monitor")?;
        let data = out_arg(data, "data")?;
        let len = out_arg(len, "len")?;
        let bytes = m.to_bytes()?.into_boxed_slice();
        *len = bytes.len();
        *data = Box::into_raw(bytes).cast::<u8>();
        Ok(())
    })
}

/// Restores a monitor from `ft_monitor_save_bytes`' bytes (copied during the call), for the
/// brain it was created with (checked), as `ft_monitor_load`.
///
/// # Safety
/// `data` is valid for reads of `len` bytes; `brain` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_load_bytes(
    data: *const u8,
    len: usize,
    brain: *const ft_brain,
    out: *mut *mut ft_monitor,
) -> ft_status {
    guard(|| {
        if data.is_null() {
            return Err(FfiError::null("data"));
        }
        let b = handle(brain, "brain")?;
        let out = out_arg(out, "out")?;
        let max = usize::try_from(crate::data::limits::MAX_FILE_BYTES).unwrap_or(usize::MAX);
        // SAFETY: non-NULL and valid for `len` reads by the caller's contract.
        let bytes = unsafe { crate::ffi::copy_arg(data, len, "monitor state bytes (len)", max) }?;
        let m = Monitor::from_bytes(Path::new("monitor state bytes"), bytes, &b.inner)?;
        *out = boxed(ft_monitor::new(m));
        Ok(())
    })
}

/// Frees bytes returned by the library (`ft_monitor_save_bytes`); `len` is the length it
/// returned with them. Accepts NULL.
///
/// # Safety
/// `data` is NULL or bytes from this library, with their length, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn ft_bytes_free(data: *mut u8, len: usize) {
    guard_value((), || {
        if !data.is_null() {
            // SAFETY: `data` and `len` came from `Box::<[u8]>::into_raw` in
            // `ft_monitor_save_bytes` and are freed once.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, len)) });
        }
    })
}

/// Appends every later observation to `path` as one JSON line (created if missing, existing
/// lines kept). `path` NULL: stop appending.
///
/// # Safety
/// `monitor` is a live handle not used by another call meanwhile; `path` is NULL or a
/// NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_set_history_file(monitor: *mut ft_monitor, path: *const c_char) -> ft_status {
    guard(|| {
        let mut m = exclusive(monitor, "monitor")?;
        let p = match path.is_null() {
            true => None,
            // SAFETY: non-NULL, caller's contract.
            false => Some(PathBuf::from(unsafe { str_arg(path, "path") }?)),
        };
        m.set_history_file(p);
        Ok(())
    })
}

/// The whole history as a JSON list of step reports. Free `*out` with `ft_string_free`.
///
/// # Safety
/// `monitor` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_history_json(monitor: *const ft_monitor, out: *mut *mut c_char) -> ft_status {
    guard(|| {
        let m = shared(monitor, "monitor")?;
        let out = out_arg(out, "out")?;
        let s = serde_json::to_string(m.history()).expect("step reports serialise");
        *out = c_string(s);
        Ok(())
    })
}

/// Draws the monitor's history as PNG charts into `dir` (created if needed): `forgetting.png`
/// (overall and per ROI) and `cka.png` (per layer), over training steps, as `factortopy monitor`
/// does.
///
/// # Safety
/// `monitor` is a live handle; `dir` is a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_write_curves(monitor: *const ft_monitor, dir: *const c_char) -> ft_status {
    guard(|| {
        let m = shared(monitor, "monitor")?;
        // SAFETY: caller's contract.
        let dir = Path::new(unsafe { str_arg(dir, "dir") }?);
        if m.history().is_empty() {
            return Err(FfiError::invalid("the monitor has no observations to draw yet"));
        }
        crate::monitor::write_curves(dir, &m)?;
        Ok(())
    })
}

/// Frees a monitor (NULL is a no-op).
///
/// # Safety
/// `monitor` is NULL or a live handle; it is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_monitor_free(monitor: *mut ft_monitor) {
    // SAFETY: caller's contract.
    unsafe { free_box(monitor) }
}

// ---------------------------------------------------------------------------------------------
// Step reports

/// Headline numbers of one observation. Refit fields are NaN unless `refitted`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct ft_step_summary {
    pub step: u64,
    /// Index of the observation since the monitor was created (0 for the first).
    pub observation: u64,
    /// Held-out R² of the reference encoder on these features / on the reference features.
    pub retention: f64,
    /// 1 - retention.
    pub forgetting: f64,
    /// Mean held-out R² of the reference encoder on these features.
    pub r2: f64,
    /// The same on the reference features.
    pub reference_r2: f64,
    /// Number of layers (the length of the CKA list).
    pub n_layers: usize,
    /// Smallest and mean linear CKA over layers.
    pub min_cka: f64,
    pub mean_cka: f64,
    /// Forgetting is above the configured threshold.
    pub should_stop: bool,
    /// This observation refitted the encoder.
    pub refitted: bool,
    /// mean_v |d_v(t) - d_v(0)| of the refit.
    pub layer_shift: f64,
    /// Fraction of voxels whose argmax layer moved.
    pub argmax_moved: f64,
    /// Hierarchy scores of the refit (NaN when not refitted, or when undefined).
    pub slope: f64,
    pub b0: f64,
    pub b1: f64,
    pub spearman: f64,
    /// Held-out R² of the refitted encoder.
    pub refit_r2: f64,
}

/// The headline numbers of a report.
///
/// # Safety
/// `report` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_step_report_summary(report: *const ft_step_report, out: *mut ft_step_summary) -> ft_status {
    guard(|| {
        let r = &handle(report, "report")?.inner;
        let out = out_arg(out, "out")?;
        let nan = f64::NAN;
        let n = r.cka.len();
        let mut s = ft_step_summary {
            step: r.step,
            observation: r.observation as u64,
            retention: r.retention,
            forgetting: r.forgetting,
            r2: r.r2,
            reference_r2: r.reference_r2,
            n_layers: n,
            min_cka: r.min_cka(),
            mean_cka: if n == 0 { nan } else { r.cka.iter().sum::<f64>() / n as f64 },
            should_stop: r.should_stop,
            refitted: r.refit.is_some(),
            layer_shift: nan,
            argmax_moved: nan,
            slope: nan,
            b0: nan,
            b1: nan,
            spearman: nan,
            refit_r2: nan,
        };
        if let Some(f) = &r.refit {
            s.layer_shift = f.layer_shift;
            s.argmax_moved = f.argmax_moved;
            (s.slope, s.b0, s.b1, s.spearman) = f.hierarchy.as_nan_tuple();
            s.refit_r2 = f.r2;
        }
        *out = s;
        Ok(())
    })
}

/// Copies the per-layer CKA values into `out[0 .. n_layers)`; `capacity` is the length of
/// `out` and must be at least `n_layers` (see `ft_step_summary`).
///
/// # Safety
/// `report` is a live handle; `out` is valid for writes of `capacity` doubles.
#[no_mangle]
pub unsafe extern "C" fn ft_step_report_cka(report: *const ft_step_report, out: *mut f64, capacity: usize) -> ft_status {
    guard(|| {
        let r = &handle(report, "report")?.inner;
        if out.is_null() {
            return Err(FfiError::null("out"));
        }
        let n = r.cka.len();
        if capacity < n {
            return Err(FfiError::invalid(format!("`out` holds {capacity} values; the report has {n} layers")));
        }
        // SAFETY: non-NULL and valid for `capacity >= n` writes by the caller's contract.
        let dst = unsafe { std::slice::from_raw_parts_mut(out, n) };
        dst.copy_from_slice(&r.cka);
        Ok(())
    })
}

/// The full report as JSON (the same object as a line of the history file, pretty-printed).
/// Free `*out` with `ft_string_free`.
///
/// # Safety
/// `report` is a live handle; `out` is valid for writes.
#[no_mangle]
pub unsafe extern "C" fn ft_step_report_json(report: *const ft_step_report, out: *mut *mut c_char) -> ft_status {
    guard(|| {
        let r = &handle(report, "report")?.inner;
        let out = out_arg(out, "out")?;
        *out = c_string(r.to_json());
        Ok(())
    })
}

/// Frees a report (NULL is a no-op).
///
/// # Safety
/// `report` is NULL or a live handle; it is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn ft_step_report_free(report: *mut ft_step_report) {
    // SAFETY: caller's contract.
    unsafe { free_box(report) }
}

/// The body of `ft_synth_plant` (`prf_size` None: its point sampling) and `ft_synth_plant_rf`.
///
/// # Safety
/// As `ft_synth_plant`.
unsafe fn synth_plant(
    features: *const ft_features,
    options: *const ft_synth_options,
    prf_size: Option<Option<f64>>,
    dir: *const c_char,
    out: *mut *mut ft_brain,
) -> FfiResult<()> {
    let f = &shared(features, "features")?.to_features()?;
    // SAFETY: caller's contract.
    let mut cfg = unsafe { synth_config(options) }?;
    if let Some(prf_size) = prf_size {
        cfg.prf_size = prf_size;
    }
    // SAFETY: NULL or a NUL-terminated string by the caller's contract.
    let dir = match dir.is_null() {
        true => None,
        false => Some(unsafe { str_arg(dir, "dir") }?),
    };
    if dir.is_none() && out.is_null() {
        return Err(FfiError::null("dir and out (at least one is needed)"));
    }
    f.validate("features")?;
    cfg.n_layers = f.n_layers();
    cfg.n_images = f.n_images();
    let (brain, truth) = crate::synth::plant(f, &cfg)?;
    if let Some(dir) = dir {
        crate::synth::write_planted(Path::new(dir), &brain, &truth)?;
    }
    if !out.is_null() {
        let mut brain = brain;
        brain.zscore("planted brain")?;
        *out_arg(out, "out")? = boxed(ft_brain { inner: brain });
    }
    Ok(())
}
