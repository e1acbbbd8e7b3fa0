//! The FactorTopy encoder's parameters (DESIGN §3.2–§3.4, §3.7): channel alignment per layer,
//! three selector MLPs over the positional encoding, and the per-voxel linear readout.

use crate::data::Array;
use crate::error::{Error, Result};
use crate::model::posenc::{CoordNorm, ENC_DIM};
use crate::model::readout::{fused_readout, reference_readout};
use crate::model::resample::Resample;
use crate::model::selections::Selections;
use crate::rng::Rng;
use candle_core::{DType, Device, Tensor, Var, D};

/// Which implementation of the §3.4 readout a fit uses. Both give the same numbers; the
/// unfused one materialises `[B, L, V, D]` and exists as the benchmark baseline and test oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readout {
    /// The fused op of DESIGN §3.8: nothing `[B, V, L, D]`-sized is stored.
    #[default]
    Fused,
    /// The plain formula, materialising the sampled features.
    Unfused,
}

/// Hidden width of the selector MLPs.
pub const HIDDEN: usize = 128;

/// Everything about an encoder that is not a learned parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderSpec {
    /// Channel width `C_l` of every layer.
    pub widths: Vec<usize>,
    /// Bottleneck width D.
    pub d: usize,
    /// Local grid size G.
    pub grid: usize,
    /// How features are resized to the grid (saved with the encoder, so `score`, `predict` and
    /// the monitor prepare features as the fit did).
    pub resample: Resample,
    /// Number of voxels V the readout predicts.
    pub n_voxels: usize,
    /// The coordinate normalisation of DESIGN §3.3 (stored in the encoder file's metadata).
    pub coord_norm: CoordNorm,
    /// The layers' names, from the features the encoder was fitted on.
    pub layer_names: Vec<String>,
    /// Name of the network the encoder was fitted on.
    pub model: String,
    /// Per layer, the common units the fit put its resampled features in before the channel
    /// alignment ([`crate::model::PreparedFeatures::normalise`]), which `score`, `predict` and
    /// the monitor apply to new features. `None`: the features as they come (DESIGN §3).
    pub layer_units: Option<Vec<crate::model::preparation::LayerUnits>>,
}

impl EncoderSpec {
    /// Number of layers L.
    pub fn n_layers(&self) -> usize {
        self.widths.len()
    }

    /// The parameters' DESIGN §3.7 names in the one fixed order every implementation uses (the
    /// order matters for reproducible gradient norms and for saving): `P_l`, `Q_l`, the space,
    /// layer and scale MLPs, then `W` and `c`.
    pub fn param_names(&self) -> Vec<String> {
        let l = self.n_layers();
        let mut out: Vec<String> = (0..l).map(|i| format!("local_token_bottleneck.{i}.weight")).collect();
        out.extend((0..l).map(|i| format!("global_token_bottleneck.{i}.weight")));
        for name in ["space", "layer", "scale"] {
            for part in ["1.weight", "1.bias", "3.weight", "3.bias", "5.weight"] {
                out.push(format!("{name}_selector_mlp.{part}"));
            }
        }
        out.extend(["weight".to_string(), "bias".to_string()]);
        out
    }

    /// Checks the sizes against `data::limits` before any parameter is allocated: the one check
    /// of an encoder's shape, whether it comes from a fit's settings or from a file's metadata.
    pub fn validate(&self) -> Result<()> {
        use crate::data::limits;
        let l = self.widths.len();
        limits::positive_at_most("number of layers (widths)", l, limits::MAX_LAYERS)?;
        limits::positive_at_most("d", self.d, limits::MAX_D)?;
        limits::positive_at_most("grid", self.grid, limits::MAX_GRID)?;
        if self.n_voxels == 0 {
            return Err(Error::invalid("an encoder needs at least one voxel (n_voxels = 0)"));
        }
        limits::elements("voxel weights [n_voxels, d]", &[self.n_voxels, self.d])?;
        for (i, &c) in self.widths.iter().enumerate() {
            if c == 0 {
                return Err(Error::invalid(format!("layer {i} has width 0")));
            }
            limits::elements(&format!("bottleneck of layer {i} [d, width]"), &[self.d, c])?;
        }
        Ok(())
    }
}

/// One selector MLP: 192 → 128 → GELU → 128 → GELU → K (last layer bias-free).
#[derive(Debug, Clone)]
pub struct SelectorMlp {
    /// First layer's weight `[128, 192]` (saved as `*_selector_mlp.1.weight`).
    pub w1: Var,
    /// First layer's bias `[128]`.
    pub b1: Var,
    /// Second layer's weight `[128, 128]` (`*_selector_mlp.3.weight`).
    pub w3: Var,
    /// Second layer's bias `[128]`.
    pub b3: Var,
    /// Last layer's weight `[K, 128]`, initialised to zero (`*_selector_mlp.5.weight`).
    pub w5: Var,
}

impl SelectorMlp {
    fn new(k: usize, rng: &mut Rng, dev: &Device) -> Result<Self> {
        Ok(Self {
            w1: uniform_var(&[HIDDEN, ENC_DIM], ENC_DIM, rng, dev)?,
            b1: uniform_var(&[HIDDEN], ENC_DIM, rng, dev)?,
            w3: uniform_var(&[HIDDEN, HIDDEN], HIDDEN, rng, dev)?,
            b3: uniform_var(&[HIDDEN], HIDDEN, rng, dev)?,
            // Zero so that every voxel starts at the image centre, uniform over layers, scale 0.5.
            w5: Var::from_tensor(&Tensor::zeros((k, HIDDEN), DType::F32, dev)?)?,
        })
    }

    fn forward(&self, pe: &Tensor) -> candle_core::Result<Tensor> {
        let h = pe.matmul(&self.w1.t()?)?.broadcast_add(&self.b1)?.gelu_erf()?;
        let h = h.matmul(&self.w3.t()?)?.broadcast_add(&self.b3)?.gelu_erf()?;
        h.matmul(&self.w5.t()?)
    }
}

/// PyTorch's default Linear/Conv initialisation: U(±1/√fan_in).
fn uniform_var(shape: &[usize], fan_in: usize, rng: &mut Rng, dev: &Device) -> Result<Var> {
    let bound = 1.0 / (fan_in as f64).sqrt();
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|_| rng.uniform_range(-bound, bound) as f32).collect();
    Ok(Var::from_tensor(&Tensor::from_vec(data, shape, dev)?)?)
}

/// The selector heads' outputs for every voxel.
pub struct SelectorOutputs {
    /// `[V, 2]` tanh outputs.
    pub space: Tensor,
    /// `[V, L]` softmax outputs.
    pub probs: Tensor,
    /// `[V]` sigmoid outputs.
    pub scale: Tensor,
}

impl SelectorOutputs {
    /// `[V, L + 3]`: the packed operand of the fused readout.
    pub fn packed(&self) -> candle_core::Result<Tensor> {
        Tensor::cat(&[&self.space, &self.probs, &self.scale.unsqueeze(1)?], 1)
    }

    /// The selections as host arrays.
    pub fn to_host(&self) -> Result<Selections> {
        let (v, l) = self.probs.dims2()?;
        Ok(Selections {
            layer_probs: Array::new(vec![v, l], self.probs.flatten_all()?.to_vec1()?)?,
            space: Array::new(vec![v, 2], self.space.flatten_all()?.to_vec1()?)?,
            scale: self.scale.to_vec1()?,
        })
    }
}

/// The FactorTopy encoder of DESIGN §3: channel alignment, the three selectors and the readout.
/// Its tensors are candle `Var`s on the CPU; `Clone` shares their storage (see
/// [`Encoder::deep_copy`]).
#[derive(Debug, Clone)]
pub struct Encoder {
    /// Sizes, resampling, units and metadata.
    pub spec: EncoderSpec,
    /// `P_l` as `[D, C_l]` (saved as `[D, C_l, 1, 1]`).
    pub local_bottleneck: Vec<Var>,
    /// `Q_l` `[D, C_l]`.
    pub global_bottleneck: Vec<Var>,
    /// The space selector (K = 2, tanh).
    pub space_mlp: SelectorMlp,
    /// The layer selector (K = L, softmax).
    pub layer_mlp: SelectorMlp,
    /// The scale selector (K = 1, sigmoid).
    pub scale_mlp: SelectorMlp,
    /// `W` `[V, D]`.
    pub weight: Var,
    /// `c` `[V]`.
    pub bias: Var,
}

impl Encoder {
    /// A freshly initialised encoder (DESIGN §3.2–§3.4 initialisation), seeded.
    pub fn new(spec: EncoderSpec, seed: u64) -> Result<Self> {
        spec.validate()?;
        let dev = Device::Cpu;
        let mut rng = Rng::derive(seed, "encoder-init");
        let d = spec.d;
        let mut local_bottleneck = Vec::new();
        let mut global_bottleneck = Vec::new();
        for &c in &spec.widths {
            local_bottleneck.push(uniform_var(&[d, c], c, &mut rng, &dev)?);
            global_bottleneck.push(uniform_var(&[d, c], c, &mut rng, &dev)?);
        }
        let space_mlp = SelectorMlp::new(2, &mut rng, &dev)?;
        let layer_mlp = SelectorMlp::new(spec.n_layers(), &mut rng, &dev)?;
        let scale_mlp = SelectorMlp::new(1, &mut rng, &dev)?;
        let weight = uniform_var(&[spec.n_voxels, d], d, &mut rng, &dev)?;
        let bias = uniform_var(&[spec.n_voxels], d, &mut rng, &dev)?;
        Ok(Self { spec, local_bottleneck, global_bottleneck, space_mlp, layer_mlp, scale_mlp, weight, bias })
    }

    /// Parameters with their DESIGN §3.7 names, in a fixed order (the order matters for
    /// reproducible gradient norms and for saving).
    pub fn named_vars(&self) -> Vec<(String, &Var)> {
        let mut vars: Vec<&Var> = Vec::new();
        vars.extend(&self.local_bottleneck);
        vars.extend(&self.global_bottleneck);
        for mlp in [&self.space_mlp, &self.layer_mlp, &self.scale_mlp] {
            vars.extend([&mlp.w1, &mlp.b1, &mlp.w3, &mlp.b3, &mlp.w5]);
        }
        vars.extend([&self.weight, &self.bias]);
        self.spec.param_names().into_iter().zip(vars).collect()
    }

    /// The parameters in the order of [`Encoder::named_vars`].
    pub fn vars(&self) -> Vec<Var> {
        self.named_vars().into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// A deep copy (the `Var`s of a clone share storage with the original).
    pub fn deep_copy(&self) -> Result<Self> {
        let copy = |v: &Var| -> Result<Var> { Ok(Var::from_tensor(&v.as_tensor().copy()?)?) };
        let mlp = |m: &SelectorMlp| -> Result<SelectorMlp> {
            Ok(SelectorMlp { w1: copy(&m.w1)?, b1: copy(&m.b1)?, w3: copy(&m.w3)?, b3: copy(&m.b3)?, w5: copy(&m.w5)? })
        };
        Ok(Self {
            spec: self.spec.clone(),
            local_bottleneck: self.local_bottleneck.iter().map(copy).collect::<Result<_>>()?,
            global_bottleneck: self.global_bottleneck.iter().map(copy).collect::<Result<_>>()?,
            space_mlp: mlp(&self.space_mlp)?,
            layer_mlp: mlp(&self.layer_mlp)?,
            scale_mlp: mlp(&self.scale_mlp)?,
            weight: copy(&self.weight)?,
            bias: copy(&self.bias)?,
        })
    }

    /// Overwrites this encoder's parameter values with `other`'s (same spec).
    pub fn assign_from(&self, other: &Encoder) -> Result<()> {
        for ((_, dst), (_, src)) in self.named_vars().into_iter().zip(other.named_vars()) {
            dst.set(&src.as_tensor().copy()?)?;
        }
        Ok(())
    }

    /// Selector heads on a positional encoding `[V, 192]`.
    pub fn selectors(&self, pe: &Tensor) -> Result<SelectorOutputs> {
        let space = self.space_mlp.forward(pe)?.tanh()?;
        let probs = candle_nn::ops::softmax(&self.layer_mlp.forward(pe)?, D::Minus1)?;
        let scale = candle_nn::ops::sigmoid(&self.scale_mlp.forward(pe)?.squeeze(1)?)?;
        Ok(SelectorOutputs { space, probs, scale })
    }

    /// Channel alignment (§3.2) of one batch: `locals[l]` `[B, G·G, C_l]`, `globals[l]`
    /// `[B, C_l]` → packed maps `[B, L, G·G + 1, D]`.
    pub fn align(&self, locals: &[Tensor], globals: &[Tensor]) -> Result<Tensor> {
        let mut per_layer = Vec::with_capacity(locals.len());
        for l in 0..self.spec.n_layers() {
            per_layer.push(self.align_layer(l, &locals[l], &globals[l])?);
        }
        Ok(Tensor::stack(&per_layer, 1)?)
    }

    /// Channel alignment of layer `l` alone: `local` `[B, G·G, C_l]`, `global` `[B, C_l]` →
    /// `[B, G·G + 1, D]`.
    pub fn align_layer(&self, l: usize, local: &Tensor, global: &Tensor) -> Result<Tensor> {
        let (b, cells, c) = local.dims3()?;
        let m = local.reshape((b * cells, c))?.matmul(&self.local_bottleneck[l].t()?)?.reshape((b, cells, self.spec.d))?;
        let g = global.matmul(&self.global_bottleneck[l].t()?)?.unsqueeze(1)?;
        Ok(Tensor::cat(&[&m, &g], 1)?)
    }

    /// `[V, D + 1]`: the packed readout operand.
    pub fn readout_params(&self) -> Result<Tensor> {
        Ok(Tensor::cat(&[self.weight.as_tensor(), &self.bias.unsqueeze(1)?], 1)?)
    }

    /// Predictions `[B, V]` for one batch, given selector outputs computed once per step.
    pub fn predict(&self, maps: &Tensor, sel: &SelectorOutputs, readout: Readout) -> Result<Tensor> {
        let (packed, wc) = (sel.packed()?, self.readout_params()?);
        Ok(match readout {
            Readout::Fused => fused_readout(maps, &packed, &wc, self.spec.grid)?,
            Readout::Unfused => reference_readout(maps, &packed, &wc, self.spec.grid)?,
        })
    }
}
