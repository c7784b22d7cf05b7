//! Overlap scores between label maps (any number of dimensions, flattened).

/// Dice of one class; `None` when the class is in neither map (undefined, left out of means).
pub fn dice(pred: &[u8], truth: &[u8], class: u8) -> Option<f64> {
    let (mut both, mut p, mut t) = (0u64, 0u64, 0u64);
    for (&a, &b) in pred.iter().zip(truth) {
        let (a, b) = (a == class, b == class);
        both += u64::from(a && b);
        p += u64::from(a);
        t += u64::from(b);
    }
    (p + t > 0).then(|| 2.0 * both as f64 / (p + t) as f64)
}

/// Mean of the defined values.
pub fn mean(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let (sum, n) = values
        .into_iter()
        .flatten()
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_counts_overlap_and_skips_absent_classes() {
        let truth = [0, 1, 1, 2, 2, 0];
        let pred = [0, 1, 0, 2, 2, 2];
        assert_eq!(dice(&pred, &truth, 1), Some(2.0 / 3.0));
        assert_eq!(dice(&pred, &truth, 2), Some(0.8));
        assert_eq!(dice(&pred, &truth, 3), None);
        assert_eq!(mean([Some(1.0), None, Some(0.5)]), Some(0.75));
    }
}
