//! AdamW (as `torch.optim.AdamW`), global-norm gradient clipping (as `clip_grad_norm_`) and the
//! learning-rate schedule of the PyTorch reference.

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug)]
pub struct AdamW {
    /// Exponential decay of the first moment.
    pub beta1: f32,
    /// Exponential decay of the second moment.
    pub beta2: f32,
    /// Added to the denominator.
    pub eps: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
}

/// First and second moments, laid out like the parameters.
#[derive(Clone, Debug, Default)]
pub struct Moments {
    /// First moment.
    pub m: Vec<f32>,
    /// Second moment.
    pub v: Vec<f32>,
}

impl Moments {
    /// Zero moments for `n` parameters.
    pub fn zeros(n: usize) -> Moments {
        Moments {
            m: vec![0.0; n],
            v: vec![0.0; n],
        }
    }
}

impl AdamW {
    /// One update of step `t` (1-based) with learning rate `lr`.
    pub fn step(&self, params: &mut [f32], grads: &[f32], mom: &mut Moments, lr: f32, t: u64) {
        let bc1 = 1.0 - (self.beta1 as f64).powi(t as i32);
        let bc2 = 1.0 - (self.beta2 as f64).powi(t as i32);
        let step_size = (lr as f64 / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let decay = 1.0 - lr * self.weight_decay;
        let (b1, b2) = (self.beta1, self.beta2);
        for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(mom.m.iter_mut()).zip(mom.v.iter_mut()) {
            *p *= decay;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= step_size * *m / (v.sqrt() / bc2_sqrt + self.eps);
        }
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm`; returns the norm before clipping.
pub fn clip_global_norm(grads: &mut [f32], max_norm: f32) -> f32 {
    let norm = grads.iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>().sqrt() as f32;
    if max_norm > 0.0 {
        let coef = (max_norm / (norm + 1e-6)).min(1.0);
        if coef < 1.0 {
            grads.iter_mut().for_each(|g| *g *= coef);
        }
    }
    norm
}

/// Learning rate at 1-based `step`: linear warm-up over `warmup` steps, then cosine decay over
/// `total` steps to 5% of `peak`, as `torch_seq2seq.py` (which decays over time instead of steps).
pub fn learning_rate(peak: f32, step: u64, warmup: u64, total: u64) -> f32 {
    let warm = if warmup == 0 {
        1.0
    } else {
        (step as f64 / warmup as f64).min(1.0)
    };
    let frac = (step as f64 / total.max(1) as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * frac).cos()) * 0.95 + 0.05;
    (f64::from(peak) * warm * cosine) as f32
}
