//! `model_type = 'logistic_reg'`: L2-regularized logistic regression fitted by Newton's
//! method (iteratively reweighted least squares) on standardized features.
//!
//! Features are standardized with the training rows' mean and standard deviation (a
//! constant feature keeps a scale of 1); a NULL feature value is replaced by the mean
//! (0 after standardization), in training and in scoring alike. The penalty `l2 * |w|^2 / 2`
//! leaves the intercept out. Each Newton step solves the (p + 1)-square system by Cholesky
//! decomposition; iterations stop when no coefficient moves more than 1e-8, or after
//! `max_iterations`.

use serde::{Deserialize, Serialize};

use super::{Dataset, ModelError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub means: Vec<f64>,
    pub scales: Vec<f64>,
    /// Coefficients on the standardized features.
    pub weights: Vec<f64>,
    pub intercept: f64,
    pub iterations: u32,
}

pub struct Params {
    pub l2: f64,
    pub max_iterations: u32,
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl Logistic {
    /// Fits the rows `rows` of `data` with per-row weights `sample_weights`.
    pub fn fit(
        data: &Dataset,
        rows: &[usize],
        sample_weights: &[f64],
        params: &Params,
    ) -> Result<Logistic, ModelError> {
        let p = data.features.len();
        let n = rows.len();
        let mut means = vec![0.0; p];
        let mut scales = vec![1.0; p];
        for (j, column) in data.features.iter().enumerate() {
            let (mut sum, mut sum_sq, mut count) = (0.0, 0.0, 0usize);
            for &i in rows {
                let x = column[i];
                if !x.is_nan() {
                    sum += x;
                    sum_sq += x * x;
                    count += 1;
                }
            }
            if count > 0 {
                let mean = sum / count as f64;
                let variance = (sum_sq / count as f64 - mean * mean).max(0.0);
                means[j] = mean;
                scales[j] = if variance.sqrt() > 1e-12 { variance.sqrt() } else { 1.0 };
            }
        }
        // Standardized design, row-major with the intercept's 1 last: (n, p + 1).
        let d = p + 1;
        let mut x = vec![0.0; n * d];
        for (r, &i) in rows.iter().enumerate() {
            for j in 0..p {
                let value = data.features[j][i];
                x[r * d + j] = if value.is_nan() { 0.0 } else { (value - means[j]) / scales[j] };
            }
            x[r * d + p] = 1.0;
        }
        let mut beta = vec![0.0; d];
        let mut iterations = 0;
        for _ in 0..params.max_iterations {
            iterations += 1;
            let mut gradient = vec![0.0; d];
            let mut hessian = vec![0.0; d * d];
            for (r, &i) in rows.iter().enumerate() {
                let row = &x[r * d..(r + 1) * d];
                let z: f64 = row.iter().zip(&beta).map(|(a, b)| a * b).sum();
                let prob = sigmoid(z);
                let w = sample_weights[r];
                let residual = w * (prob - data.labels[i]);
                let curvature = w * prob * (1.0 - prob);
                for a in 0..d {
                    gradient[a] += residual * row[a];
                    let scaled = curvature * row[a];
                    // Lower triangle only; mirrored below.
                    for b in 0..=a {
                        hessian[a * d + b] += scaled * row[b];
                    }
                }
            }
            for a in 0..p {
                gradient[a] += params.l2 * beta[a];
                hessian[a * d + a] += params.l2;
            }
            // A tiny ridge keeps the system positive definite when a feature is constant.
            for a in 0..d {
                hessian[a * d + a] += 1e-9;
            }
            let step = cholesky_solve(&mut hessian, &gradient, d)
                .ok_or_else(|| ModelError::Numeric("the Newton system is not positive definite".into()))?;
            let mut largest: f64 = 0.0;
            for a in 0..d {
                beta[a] -= step[a];
                largest = largest.max(step[a].abs());
            }
            if !beta.iter().all(|b| b.is_finite()) {
                return Err(ModelError::Numeric("logistic regression diverged".into()));
            }
            if largest < 1e-8 {
                break;
            }
        }
        let intercept = beta[p];
        beta.truncate(p);
        Ok(Logistic { means, scales, weights: beta, intercept, iterations })
    }

    /// Probability of the positive class for one row of raw feature values.
    pub fn score(&self, features: &[f64]) -> f64 {
        let mut z = self.intercept;
        for (j, value) in features.iter().enumerate() {
            if !value.is_nan() {
                z += self.weights[j] * (value - self.means[j]) / self.scales[j];
            }
        }
        sigmoid(z)
    }
}

/// Solves `a x = b` for a symmetric positive definite `a` given by its lower triangle
/// (row-major, n x n; overwritten by its Cholesky factor). None if not positive definite.
fn cholesky_solve(a: &mut [f64], b: &[f64], n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut diagonal = a[j * n + j];
        for k in 0..j {
            diagonal -= a[j * n + k] * a[j * n + k];
        }
        if diagonal <= 0.0 || !diagonal.is_finite() {
            return None;
        }
        let diagonal = diagonal.sqrt();
        a[j * n + j] = diagonal;
        for i in j + 1..n {
            let mut value = a[i * n + j];
            for k in 0..j {
                value -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = value / diagonal;
        }
    }
    let mut y = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            y[i] -= a[i * n + k] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            y[i] -= a[k * n + i] * y[k];
        }
        y[i] /= a[i * n + i];
    }
    Some(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        // [[4, 2], [2, 3]] x = [2, 1] has x = [0.5, 0].
        let mut a = vec![4.0, 0.0, 2.0, 3.0];
        let x = cholesky_solve(&mut a, &[2.0, 1.0], 2).unwrap();
        assert!((x[0] - 0.5).abs() < 1e-12 && x[1].abs() < 1e-12);
        assert!(cholesky_solve(&mut [0.0, 0.0, 0.0, 0.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn recovers_known_coefficients() {
        // Labels drawn from p = sigmoid(2 x - 1) with a deterministic sequence: the fit
        // must come close to slope 2 (in raw units) and intercept -1.
        let n = 20_000;
        let mut state = 12345u64;
        let mut uniform = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let xs: Vec<f64> = (0..n).map(|_| uniform() * 4.0 - 2.0).collect();
        let labels: Vec<f64> = xs.iter().map(|x| f64::from(uniform() < sigmoid(2.0 * x - 1.0))).collect();
        let data = Dataset { features: vec![xs], labels, split: vec![] };
        let rows: Vec<usize> = (0..n).collect();
        let model = Logistic::fit(&data, &rows, &vec![1.0; n], &Params { l2: 0.0, max_iterations: 50 }).unwrap();
        let slope = model.weights[0] / model.scales[0];
        let intercept = model.intercept - slope * model.means[0];
        assert!((slope - 2.0).abs() < 0.15, "slope {slope}");
        assert!((intercept + 1.0).abs() < 0.1, "intercept {intercept}");
        assert!((model.score(&[0.5]) - 0.5).abs() < 0.05);
    }
}
