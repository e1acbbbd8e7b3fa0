//! A tiny random fitting problem for gradient tests (the candle oracle, the hand-written CPU and
//! GPU trainers): three layers of different widths and grids (one without a global token),
//! 10 images, 45 voxels, and an encoder moved away from its initialisation so that every
//! parameter has a gradient (the zero last selector layers would otherwise block it).

use crate::data::{Array, Features, LayerFeatures};
use crate::model::posenc::CoordNorm;
use crate::model::{BrainTensors, Encoder, EncoderSpec, PreparedFeatures};
use crate::rng::Rng;
use candle_core::{Device, Tensor};

/// `(features prepared on a G×G grid, brain tensors, encoder with bottleneck D)`.
pub fn tiny(seed: u64, grid: usize, d: usize) -> (PreparedFeatures, BrainTensors, Encoder) {
    let cpu = Device::Cpu;
    let mut rng = Rng::new(seed);
    let (n, v) = (10usize, 45usize);
    let mut arr = |shape: Vec<usize>| {
        let k: usize = shape.iter().product();
        Array::new(shape, (0..k).map(|_| rng.normal() as f32).collect()).expect("shape matches data")
    };
    let features = Features {
        model: "tiny".into(),
        layer_names: vec!["a".into(), "b".into(), "c".into()],
        stimulus_ids: None,
        layers: vec![
            LayerFeatures { local: arr(vec![n, 3, 6, 6]), global: Some(arr(vec![n, 3])) },
            LayerFeatures { local: arr(vec![n, 5, 3, 3]), global: None },
            LayerFeatures { local: arr(vec![n, 33, 2, 2]), global: Some(arr(vec![n, 33])) },
        ],
    };
    let responses = arr(vec![n, v]);
    let coords = arr(vec![v, 3]);
    let prepared = PreparedFeatures::new(&features, grid, crate::model::Resample::Bilinear, None).expect("valid features");
    let norm = CoordNorm::from_coords(&coords).expect("spread coordinates");
    let pe = norm.encode(&coords).expect("finite coordinates");
    let bt = BrainTensors {
        responses: responses.into(),
        pe: Tensor::from_vec(pe.data, pe.shape.as_slice(), &cpu).expect("shape"),
        coord_norm: norm,
    };
    let spec = EncoderSpec {
        widths: prepared.widths().to_vec(),
        d,
        grid,
        resample: prepared.resample(),
        n_voxels: v,
        coord_norm: norm,
        layer_names: features.layer_names.clone(),
        model: "tiny".into(),
        layer_units: None,
    };
    let enc = Encoder::new(spec, seed).expect("valid spec");
    for (_, var) in enc.named_vars() {
        let dims = var.as_tensor().dims().to_vec();
        let k: usize = dims.iter().product();
        let vals: Vec<f32> = (0..k).map(|_| (rng.normal() * 0.3) as f32).collect();
        var.set(&Tensor::from_vec(vals, dims.as_slice(), &cpu).expect("shape")).expect("same shape");
    }
    (prepared, bt, enc)
}
