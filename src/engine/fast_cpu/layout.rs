//! Where every parameter of the model sits in the trainer's one flat buffer (parameters,
//! gradients and both AdamW moments share it, so clipping and AdamW are one loop each).
//!
//! Order: `P_l` `[D, C_l]` for every layer, `Q_l` `[D, C_l]`, then the three selector MLPs
//! packed so that they run as one chain: the first layers stacked `W1 [3·H, 192]` (space, layer,
//! scale) with `b1 [3·H]`, the second layers `W3 [3][H, H]` with `b3 [3·H]`, and the last layers
//! stacked in the column order of the heads, `W5 [L + 3, H]` (x, y | p_1..p_L | s); last the
//! readout operand `wc [V, D + 1]` (`W[v]` then `c_v`), which the readout kernels read and whose
//! gradient they write in place.

use crate::error::Result;
use crate::model::encoder::{Encoder, EncoderSpec, HIDDEN};
use crate::model::posenc::ENC_DIM;
use candle_core::Tensor;

/// `(parameter name, values)` in `Encoder::named_vars` order.
pub type NamedValues = Vec<(String, Vec<f32>)>;

/// The three selector MLPs in encoder order, with their output counts and head columns.
pub const MLP_NAMES: [&str; 3] = ["space", "layer", "scale"];

/// The offsets of every parameter block in the flat buffer (see the module docs).
#[derive(Debug, Clone)]
pub struct Layout {
    /// Common channel width D.
    pub d: usize,
    /// Layers L.
    pub l: usize,
    /// Voxels V.
    pub v: usize,
    /// Each layer's channel count C_l.
    pub widths: Vec<usize>,
    /// Offset of each `P_l`.
    pub local: Vec<usize>,
    /// Offset of each `Q_l`.
    pub global: Vec<usize>,
    /// Offset of the stacked first layers `W1`.
    pub w1: usize,
    /// Offset of `b1`.
    pub b1: usize,
    /// Offset of the second layers `W3`.
    pub w3: usize,
    /// Offset of `b3`.
    pub b3: usize,
    /// Offset of the stacked last layers `W5`.
    pub w5: usize,
    /// Offset of the readout operand `wc`.
    pub wc: usize,
    /// Length of the buffer.
    pub total: usize,
}

impl Layout {
    /// The layout of an encoder of `spec`.
    pub fn new(spec: &EncoderSpec) -> Self {
        let (d, l, v) = (spec.d, spec.n_layers(), spec.n_voxels);
        let mut at = 0usize;
        let mut take = |n: usize| {
            let o = at;
            at += n;
            o
        };
        let local = spec.widths.iter().map(|&c| take(d * c)).collect();
        let global = spec.widths.iter().map(|&c| take(d * c)).collect();
        let w1 = take(3 * HIDDEN * ENC_DIM);
        let b1 = take(3 * HIDDEN);
        let w3 = take(3 * HIDDEN * HIDDEN);
        let b3 = take(3 * HIDDEN);
        let w5 = take((l + 3) * HIDDEN);
        let wc = take(v * (d + 1));
        Layout { d, l, v, widths: spec.widths.clone(), local, global, w1, b1, w3, b3, w5, wc, total: at }
    }

    /// Width of the packed heads `[V, L + 3]`.
    pub fn sw(&self) -> usize {
        self.l + 3
    }

    /// Outputs of MLP `m` (space 2, layer L, scale 1) and its first column in the heads.
    pub fn head(&self, m: usize) -> (usize, usize) {
        match m {
            0 => (2, 0),
            1 => (self.l, 2),
            _ => (1, 2 + self.l),
        }
    }

    /// End of the alignment parameters (`P_l` and `Q_l` come first).
    pub fn align_end(&self) -> usize {
        self.w1
    }

    /// The selector-MLP tensors as `(name, offset, length)` in `Encoder::named_vars` order.
    fn mlp_parts(&self) -> Vec<(String, usize, usize)> {
        let h = HIDDEN;
        let mut out = Vec::new();
        for (m, name) in MLP_NAMES.iter().enumerate() {
            let (k, col) = self.head(m);
            out.push((format!("{name}_selector_mlp.1.weight"), self.w1 + m * h * ENC_DIM, h * ENC_DIM));
            out.push((format!("{name}_selector_mlp.1.bias"), self.b1 + m * h, h));
            out.push((format!("{name}_selector_mlp.3.weight"), self.w3 + m * h * h, h * h));
            out.push((format!("{name}_selector_mlp.3.bias"), self.b3 + m * h, h));
            out.push((format!("{name}_selector_mlp.5.weight"), self.w5 + col * h, k * h));
        }
        out
    }
}

/// Flattens an encoder's parameters into the layout.
pub fn pack(enc: &Encoder, lay: &Layout) -> Result<Vec<f32>> {
    let mut out = vec![0f32; lay.total];
    let host = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
    for (l, p) in enc.local_bottleneck.iter().enumerate() {
        let v = host(p.as_tensor())?;
        out[lay.local[l]..lay.local[l] + v.len()].copy_from_slice(&v);
    }
    for (l, q) in enc.global_bottleneck.iter().enumerate() {
        let v = host(q.as_tensor())?;
        out[lay.global[l]..lay.global[l] + v.len()].copy_from_slice(&v);
    }
    let named = enc.named_vars();
    for (name, off, len) in lay.mlp_parts() {
        let var = named.iter().find(|(n, _)| *n == name).map(|(_, v)| *v).expect("the layout names every MLP tensor");
        let v = host(var.as_tensor())?;
        debug_assert_eq!(v.len(), len);
        out[off..off + len].copy_from_slice(&v);
    }
    let d = lay.d;
    let w = host(enc.weight.as_tensor())?;
    let c = host(enc.bias.as_tensor())?;
    for v in 0..lay.v {
        let row = lay.wc + v * (d + 1);
        out[row..row + d].copy_from_slice(&w[v * d..(v + 1) * d]);
        out[row + d] = c[v];
    }
    Ok(out)
}

/// The inverse of [`pack`]: `(name, values)` in `Encoder::named_vars` order.
pub fn unpack(lay: &Layout, flat: &[f32]) -> NamedValues {
    let d = lay.d;
    let mut out = Vec::new();
    for (l, &c) in lay.widths.iter().enumerate() {
        out.push((format!("local_token_bottleneck.{l}.weight"), flat[lay.local[l]..lay.local[l] + d * c].to_vec()));
    }
    for (l, &c) in lay.widths.iter().enumerate() {
        out.push((format!("global_token_bottleneck.{l}.weight"), flat[lay.global[l]..lay.global[l] + d * c].to_vec()));
    }
    for (name, off, len) in lay.mlp_parts() {
        out.push((name, flat[off..off + len].to_vec()));
    }
    let mut w = Vec::with_capacity(lay.v * d);
    let mut c = Vec::with_capacity(lay.v);
    for v in 0..lay.v {
        let row = lay.wc + v * (d + 1);
        w.extend_from_slice(&flat[row..row + d]);
        c.push(flat[row + d]);
    }
    out.push(("weight".to_string(), w));
    out.push(("bias".to_string(), c));
    out
}

/// Writes flat parameters into `encoder` (same spec as the layout's).
pub fn write_into(encoder: &Encoder, lay: &Layout, flat: &[f32]) -> Result<()> {
    let named = unpack(lay, flat);
    for ((name, var), (name2, values)) in encoder.named_vars().into_iter().zip(named) {
        debug_assert_eq!(name, name2);
        let shape = var.as_tensor().dims().to_vec();
        var.set(&Tensor::from_vec(values, shape.as_slice(), var.as_tensor().device())?)?;
    }
    Ok(())
}
