//! `model_type = 'boosted_tree_classifier'`: gradient-boosted decision trees for log loss
//! (the second-order method of XGBoost), with histogram split finding.
//!
//! Each feature's training values are cut into at most `max_bins` bins at quantiles of
//! (up to 200,000 of) its values; the cut points are data values, and a split "bin <= b"
//! is stored as the raw threshold "value <= cut[b]", so scoring raw values takes the same
//! path as training did on bins. NULL (NaN) values have a bin of their own; each split
//! learns which side they go to (the side with the larger gain). Trees grow depth-first
//! to `max_depth`; a split needs `min_child_weight` of hessian on both sides and a
//! positive gain `G_L^2/(H_L+l2) + G_R^2/(H_R+l2) - G^2/(H+l2)`; a leaf's value is
//! `-learning_rate * G/(H+l2)`. The score is the sigmoid of the base log-odds plus the
//! leaves' values.

use serde::{Deserialize, Serialize};

use super::{Dataset, ModelError};

/// The bin index NULL values fall in; real bins are 0..max_bins (at most 255).
const MISSING_BIN: u8 = u8::MAX;
/// Values per feature the cut points are computed from.
const CUT_SAMPLE_MAX: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trees {
    pub base_score: f64,
    pub trees: Vec<Tree>,
}

/// One tree as parallel arrays; node 0 is the root, a node with `left == 0` is a leaf
/// (the root is nobody's child).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Tree {
    pub feature: Vec<u32>,
    pub threshold: Vec<f64>,
    pub missing_left: Vec<bool>,
    pub left: Vec<u32>,
    pub right: Vec<u32>,
    pub value: Vec<f64>,
}

pub struct Params {
    pub num_trees: u32,
    pub learning_rate: f64,
    pub max_depth: u32,
    pub min_child_weight: f64,
    pub l2: f64,
    pub max_bins: u32,
}

impl Tree {
    fn push(&mut self, value: f64) -> usize {
        self.feature.push(0);
        self.threshold.push(0.0);
        self.missing_left.push(false);
        self.left.push(0);
        self.right.push(0);
        self.value.push(value);
        self.value.len() - 1
    }

    fn predict(&self, features: &[f64]) -> f64 {
        let mut node = 0;
        while self.left[node] != 0 {
            let x = features[self.feature[node] as usize];
            let go_left = if x.is_nan() { self.missing_left[node] } else { x <= self.threshold[node] };
            node = if go_left { self.left[node] } else { self.right[node] } as usize;
        }
        self.value[node]
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Cut points of one feature over the training rows.
fn cuts(column: &[f64], rows: &[usize], max_bins: usize) -> Vec<f64> {
    let stride = rows.len().div_ceil(CUT_SAMPLE_MAX).max(1);
    let mut values: Vec<f64> = rows.iter().step_by(stride).map(|&i| column[i]).filter(|x| !x.is_nan()).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    if values.len() <= max_bins {
        // One bin per distinct value: the last needs no cut above it.
        values.pop();
        return values;
    }
    let mut cuts: Vec<f64> = (1..max_bins).map(|b| values[b * values.len() / max_bins]).collect();
    cuts.dedup();
    cuts
}

struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
    missing_left: bool,
}

fn leaf_weight(g: f64, h: f64, l2: f64) -> f64 {
    -g / (h + l2)
}

fn score_of(g: f64, h: f64, l2: f64) -> f64 {
    g * g / (h + l2)
}

impl Trees {
    pub fn fit(data: &Dataset, rows: &[usize], sample_weights: &[f64], params: &Params) -> Result<Trees, ModelError> {
        let max_bins = (params.max_bins as usize).clamp(2, MISSING_BIN as usize);
        let n = rows.len();
        let all_cuts: Vec<Vec<f64>> = data.features.iter().map(|column| cuts(column, rows, max_bins)).collect();
        let binned: Vec<Vec<u8>> = data
            .features
            .iter()
            .zip(&all_cuts)
            .map(|(column, cuts)| {
                rows.iter()
                    .map(|&i| {
                        let x = column[i];
                        if x.is_nan() { MISSING_BIN } else { cuts.partition_point(|c| *c < x) as u8 }
                    })
                    .collect()
            })
            .collect();
        let weight_total: f64 = sample_weights.iter().sum();
        let positive: f64 = rows.iter().zip(sample_weights).map(|(&i, w)| w * data.labels[i]).sum();
        let mean = (positive / weight_total).clamp(1e-6, 1.0 - 1e-6);
        let base_score = (mean / (1.0 - mean)).ln();
        let mut scores = vec![base_score; n];
        let mut gradients = vec![0.0; n];
        let mut hessians = vec![0.0; n];
        let mut trees = Vec::with_capacity(params.num_trees as usize);
        for _ in 0..params.num_trees {
            for r in 0..n {
                let p = sigmoid(scores[r]);
                let w = sample_weights[r];
                gradients[r] = w * (p - data.labels[rows[r]]);
                hessians[r] = (w * p * (1.0 - p)).max(1e-16);
            }
            let mut tree = Tree::default();
            let root = tree.push(0.0);
            let all: Vec<u32> = (0..n as u32).collect();
            let mut stack = vec![(root, all, 0u32)];
            while let Some((node, members, depth)) = stack.pop() {
                let g: f64 = members.iter().map(|&r| gradients[r as usize]).sum();
                let h: f64 = members.iter().map(|&r| hessians[r as usize]).sum();
                let split = if depth < params.max_depth && members.len() > 1 {
                    best_split(&binned, &all_cuts, &members, &gradients, &hessians, g, h, params)
                } else {
                    None
                };
                let Some(split) = split else {
                    let value = params.learning_rate * leaf_weight(g, h, params.l2);
                    tree.value[node] = value;
                    for &r in &members {
                        scores[r as usize] += value;
                    }
                    continue;
                };
                let column = &binned[split.feature];
                let (left_rows, right_rows): (Vec<u32>, Vec<u32>) = members.iter().partition(|&&r| {
                    let bin = column[r as usize];
                    if bin == MISSING_BIN { split.missing_left } else { bin as usize <= split.bin }
                });
                let left = tree.push(0.0);
                let right = tree.push(0.0);
                tree.feature[node] = split.feature as u32;
                tree.threshold[node] = all_cuts[split.feature][split.bin];
                tree.missing_left[node] = split.missing_left;
                tree.left[node] = left as u32;
                tree.right[node] = right as u32;
                stack.push((right, right_rows, depth + 1));
                stack.push((left, left_rows, depth + 1));
            }
            if !scores.iter().all(|s| s.is_finite()) {
                return Err(ModelError::Numeric("boosting diverged".into()));
            }
            trees.push(tree);
        }
        Ok(Trees { base_score, trees })
    }

    /// Probability of the positive class for one row of raw feature values.
    pub fn score(&self, features: &[f64]) -> f64 {
        sigmoid(self.base_score + self.trees.iter().map(|tree| tree.predict(features)).sum::<f64>())
    }
}

#[allow(clippy::too_many_arguments)]
fn best_split(
    binned: &[Vec<u8>],
    all_cuts: &[Vec<f64>],
    members: &[u32],
    gradients: &[f64],
    hessians: &[f64],
    g: f64,
    h: f64,
    params: &Params,
) -> Option<Split> {
    let parent = score_of(g, h, params.l2);
    let mut best: Option<Split> = None;
    let mut hist_g = [0.0f64; 256];
    let mut hist_h = [0.0f64; 256];
    for (feature, column) in binned.iter().enumerate() {
        let bins = all_cuts[feature].len() + 1;
        if bins < 2 {
            continue;
        }
        hist_g.fill(0.0);
        hist_h.fill(0.0);
        for &r in members {
            let bin = column[r as usize] as usize;
            hist_g[bin] += gradients[r as usize];
            hist_h[bin] += hessians[r as usize];
        }
        let (missing_g, missing_h) = (hist_g[MISSING_BIN as usize], hist_h[MISSING_BIN as usize]);
        let (mut left_g, mut left_h) = (0.0, 0.0);
        for bin in 0..bins - 1 {
            left_g += hist_g[bin];
            left_h += hist_h[bin];
            for missing_left in [false, true] {
                let (lg, lh) = if missing_left { (left_g + missing_g, left_h + missing_h) } else { (left_g, left_h) };
                let (rg, rh) = (g - lg, h - lh);
                if lh < params.min_child_weight || rh < params.min_child_weight {
                    continue;
                }
                let gain = score_of(lg, lh, params.l2) + score_of(rg, rh, params.l2) - parent;
                if gain > 1e-12 && best.as_ref().is_none_or(|b| gain > b.gain) {
                    best = Some(Split { gain, feature, bin, missing_left });
                }
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_an_interaction_a_line_cannot() {
        // Positive exactly when x and y have the same sign (XOR): no linear model separates
        // it; two levels of trees do. NULL x values are positive: the missing side is learnt.
        let n = 4_000;
        let mut state = 99u64;
        let mut uniform = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let mut xs: Vec<f64> = (0..n).map(|_| uniform()).collect();
        let ys: Vec<f64> = (0..n).map(|_| uniform()).collect();
        for x in xs.iter_mut().step_by(10) {
            *x = f64::NAN;
        }
        let labels: Vec<f64> =
            xs.iter().zip(&ys).map(|(x, y)| f64::from(x.is_nan() || (*x > 0.0) == (*y > 0.0))).collect();
        let data = Dataset { features: vec![xs.clone(), ys.clone()], labels: labels.clone(), split: vec![] };
        let rows: Vec<usize> = (0..n).collect();
        let params =
            Params { num_trees: 30, learning_rate: 0.3, max_depth: 3, min_child_weight: 1.0, l2: 1.0, max_bins: 64 };
        let model = Trees::fit(&data, &rows, &vec![1.0; n], &params).unwrap();
        let correct = (0..n).filter(|&i| (model.score(&[xs[i], ys[i]]) > 0.5) == (labels[i] == 1.0)).count();
        assert!(correct as f64 / n as f64 > 0.97, "{correct} of {n}");
        assert!(model.score(&[f64::NAN, 0.3]) > 0.9);
    }
}
