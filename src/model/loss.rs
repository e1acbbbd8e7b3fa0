//! The objective of DESIGN §3.5: smooth-L1 on the prediction error plus a fading regulariser
//! that keeps the selectors from collapsing before the readout has learned anything.

use candle_core::{Result, Tensor};

/// Element-wise smooth-L1 with threshold β: `0.5·e²/β` for |e| < β, else `|e| − β/2`.
pub fn smooth_l1(err: &Tensor, beta: f64) -> Result<Tensor> {
    // With m = min(|e|, β): 0.5·m²/β + (|e| − m) equals both branches and is differentiable
    // with ops candle's autograd supports.
    let abs = err.abs()?;
    let m = abs.clamp(0.0, beta)?;
    (m.sqr()? * (0.5 / beta))? + (abs - m)?
}

/// `R = mean_v Σ_l p·log(p + 1e-8)/log L + mean_v (s − 0.5)²` for probs `[V, L]`, scale `[V]`.
pub fn regulariser(probs: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let l = probs.dim(1)?;
    let spread = scale.affine(1.0, -0.5)?.sqr()?.mean_all()?;
    if l < 2 {
        // One layer leaves nothing to choose: the entropy term is identically zero.
        return Ok(spread);
    }
    let neg_entropy = (probs * (probs + 1e-8)?.log()?)?.sum(1)?.mean_all()?;
    (neg_entropy / (l as f64).ln())? + spread
}

/// The regulariser's weight at an optimiser step: `λ·max(0, 1 − step/T)`.
pub fn regulariser_weight(lambda: f64, step: usize, fade_steps: usize) -> f64 {
    if fade_steps == 0 {
        return 0.0;
    }
    lambda * (1.0 - step as f64 / fade_steps as f64).max(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn smooth_l1_hand_values() {
        let e = Tensor::new(&[0.05f32, -0.05, 0.3, -0.3, 0.0, 0.1], &Device::Cpu).unwrap();
        let v = smooth_l1(&e, 0.1).unwrap().to_vec1::<f32>().unwrap();
        let want = [0.0125, 0.0125, 0.25, 0.25, 0.0, 0.05];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-7, "{v:?}");
        }
    }

    #[test]
    fn smooth_l1_gradient_is_clipped_error() {
        use candle_core::Var;
        let e = Var::new(&[0.05f32, 0.3, -0.3], &Device::Cpu).unwrap();
        let g = smooth_l1(e.as_tensor(), 0.1).unwrap().sum_all().unwrap().backward().unwrap();
        let ge = g.get(e.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        // d/de = e/β inside, sign(e) outside.
        assert!((ge[0] - 0.5).abs() < 1e-6 && (ge[1] - 1.0).abs() < 1e-6 && (ge[2] + 1.0).abs() < 1e-6);
    }

    #[test]
    fn regulariser_at_initialisation_is_minus_one() {
        let dev = Device::Cpu;
        for l in [2usize, 6, 12] {
            let p = Tensor::full(1.0 / l as f32, (5, l), &dev).unwrap();
            let s = Tensor::full(0.5f32, 5, &dev).unwrap();
            let r = regulariser(&p, &s).unwrap().to_scalar::<f32>().unwrap();
            // p·log(p + 1e-8) differs from p·log p by ~1e-8·L, well below the tolerance.
            assert!((r + 1.0).abs() < 1e-5, "L={l}: {r}");
        }
        // One-hot choice, scale at 0: entropy term 0, spread term 0.25.
        let p = Tensor::new(&[[1.0f32, 0.0, 0.0]], &dev).unwrap();
        let s = Tensor::new(&[0.0f32], &dev).unwrap();
        let r = regulariser(&p, &s).unwrap().to_scalar::<f32>().unwrap();
        assert!((r - 0.25).abs() < 1e-6, "{r}");
        assert_eq!(regulariser_weight(0.1, 0, 2000), 0.1);
        assert!((regulariser_weight(0.1, 1000, 2000) - 0.05).abs() < 1e-12);
        assert_eq!(regulariser_weight(0.1, 2500, 2000), 0.0);
    }
}
