//! Feature sets: a network's features on the probe images, built layer by layer from host
//! tensors or DLPack tensors, loaded, opened on demand, saved and read back.

use crate::error::Error;
use std::ffi::c_char;
use std::path::Path;

use crate::data::{Array, FeatureFile, FeatureSource, Features, Precision, Store, StoredFeatures, StoredLayer};
use crate::ffi::dlpack::{DLManagedTensor, DLManagedTensorVersioned, DLTensor, FT_DLPACK_MAJOR_VERSION};
use crate::ffi::tensor::{ft_tensor, RawView};
use crate::ffi::{
    boxed, exclusive, free_box, ft_status, guard, out_arg, shared, str_arg, Busy, FfiError, FfiResult, Policed,
};

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

impl ft_features {
    pub(crate) fn new(inner: FeatureSet) -> Self {
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

/// The error for the first non-finite value of a layer's tensor (`what`: "local map" or "global
/// token"), at multi-index `at`: one text for host tensors and for CUDA tensors checked on the
/// device.
pub(crate) fn non_finite_error(l: usize, what: &str, value: f32, at: &[usize]) -> FfiError {
    FfiError::new(ft_status::FT_ERR_DATA, format!("layer {l}: the {what} has a non-finite value ({value}) at index {at:?}"))
}

/// Checks a converted layer against the feature set and appends it, kept in `precision` (the
/// precision the caller's tensor was in); the set is unchanged on error.
fn push_layer(f: &mut StoredFeatures, local: Array, global: Option<Array>, precision: Precision) -> FfiResult<()> {
    let l = f.layers().len();
    let shape_err = |m: String| FfiError::from(Error::shape(format!("layer {l}"), m));
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
                return Err(non_finite_error(l, what, a.data[i], &a.unravel(i)));
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
                return Err(Error::mismatch(format!(
                    "layer_names has {} names but the feature set has {n_layers} layers",
                    names.len()
                ))
                .into());
            }
        }
        if let Some(ids) = &m.stimulus_ids {
            if ids.len() != n_images {
                return Err(Error::mismatch(format!(
                    "stimulus_ids has {} entries but the feature set has {n_images} images",
                    ids.len()
                ))
                .into());
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
                return Err(Error::shape("local", format!("local holds {local_capacity} floats; the layer has {need}")).into());
            }
            let rows = src.local_rows(layer, 0..n)?;
            // SAFETY: non-NULL and valid for `local_capacity` ≥ `need` writes by the caller's contract.
            unsafe { std::slice::from_raw_parts_mut(local, need) }.copy_from_slice(&rows);
        }
        if !global.is_null() && has_global {
            let need = n * c;
            if global_capacity < need {
                return Err(Error::shape("global", format!("global holds {global_capacity} floats; the token has {need}")).into());
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
            FfiError::from(Error::dtype(
                format!("layer {layer}"),
                format!("layer {layer} is kept in {} (as it was given); views are of f32 layers only", l.precision()),
            ))
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
