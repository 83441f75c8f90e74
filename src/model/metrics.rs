//! Quality measures of a binary classifier's scores on labelled rows: ROC AUC (ties
//! counted half, as the Mann-Whitney statistic and scikit-learn's `roc_auc_score`),
//! average precision (scikit-learn's `average_precision_score`: the sum over distinct
//! score thresholds of precision times the recall gained there, no interpolation) and
//! log loss (natural log, probabilities clipped to [1e-15, 1 - 1e-15]).

/// Area under the ROC curve, or None without both classes.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len());
    let positives = labels.iter().filter(|l| **l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    // Average ranks (1-based) over ties; the sum of the positives' ranks gives U.
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let rank = (start + 1 + end) as f64 / 2.0;
        positive_rank_sum += rank * order[start..end].iter().filter(|i| labels[**i]).count() as f64;
        start = end;
    }
    let p = positives as f64;
    Some((positive_rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// Average precision, or None without a positive.
pub fn average_precision(scores: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(scores.len(), labels.len());
    let positives = labels.iter().filter(|l| **l).count();
    if positives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].total_cmp(&scores[*a]));
    let (mut true_positives, mut seen, mut ap, mut recall_before) = (0usize, 0usize, 0.0, 0.0);
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        true_positives += order[start..end].iter().filter(|i| labels[**i]).count();
        seen += end - start;
        let recall = true_positives as f64 / positives as f64;
        ap += (recall - recall_before) * true_positives as f64 / seen as f64;
        recall_before = recall;
        start = end;
    }
    Some(ap)
}

/// Mean log loss, or None for no rows.
pub fn log_loss(probabilities: &[f64], labels: &[bool]) -> Option<f64> {
    assert_eq!(probabilities.len(), labels.len());
    if probabilities.is_empty() {
        return None;
    }
    let total: f64 = probabilities
        .iter()
        .zip(labels)
        .map(|(p, y)| {
            let p = p.clamp(1e-15, 1.0 - 1e-15);
            if *y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    Some(total / probabilities.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values() {
        // scikit-learn: roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75,
        // average_precision_score(...) = 0.8333...
        let (scores, labels) = ([0.1, 0.4, 0.35, 0.8], [false, false, true, true]);
        assert!((roc_auc(&scores, &labels).unwrap() - 0.75).abs() < 1e-12);
        assert!((average_precision(&scores, &labels).unwrap() - 5.0 / 6.0).abs() < 1e-12);
        // Ties count half; one class has no AUC.
        assert_eq!(roc_auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(roc_auc(&[0.5, 0.7], &[true, true]), None);
        assert_eq!(average_precision(&[0.5], &[false]), None);
        let loss = log_loss(&[0.9, 0.2], &[true, false]).unwrap();
        assert!((loss - (-(0.9f64.ln()) - 0.8f64.ln()) / 2.0).abs() < 1e-12);
    }
}
