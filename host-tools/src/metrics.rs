//! Sequence metrics shared by `eval`, `train` and `qemu`: exact match, WER and token error rate,
//! with several acceptable references per input (e.g. pronunciation variants).

use std::collections::HashMap;

/// Aggregate scores over a set of distinct inputs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Scores {
    /// Distinct inputs scored.
    pub examples: usize,
    /// Share of inputs whose prediction equals one of their references (0..=1).
    pub exact_match: f64,
    /// Word error rate: 1 - exact_match.
    pub wer: f64,
    /// Sum of edit distances to the nearest reference over the sum of those references' lengths.
    pub token_error_rate: f64,
}

/// Levenshtein distance between two token sequences.
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(x != y);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Groups `(input, reference)` pairs by input, keeping first-seen order of inputs.
pub fn group_references<T: Clone>(pairs: impl IntoIterator<Item = (String, T)>) -> Vec<(String, Vec<T>)> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(String, Vec<T>)> = Vec::new();
    for (input, reference) in pairs {
        match index.get(&input) {
            Some(&i) => groups[i].1.push(reference),
            None => {
                index.insert(input.clone(), groups.len());
                groups.push((input, vec![reference]));
            }
        }
    }
    groups
}

/// Scores predictions against their references: `items` yields, per distinct input,
/// the references and the prediction (token sequences).
pub fn score<'a, T: PartialEq + 'a>(items: impl IntoIterator<Item = (&'a [Vec<T>], &'a [T])>) -> Scores {
    let (mut n, mut correct, mut errors, mut length) = (0usize, 0usize, 0usize, 0usize);
    for (refs, pred) in items {
        n += 1;
        let nearest = refs
            .iter()
            .map(|r| (edit_distance(pred, r), r.len()))
            .min()
            .unwrap_or((pred.len(), 0));
        correct += usize::from(nearest.0 == 0 && !refs.is_empty());
        errors += nearest.0;
        length += nearest.1;
    }
    let exact_match = if n == 0 { 0.0 } else { correct as f64 / n as f64 };
    Scores {
        examples: n,
        exact_match,
        wer: 1.0 - exact_match,
        token_error_rate: if length == 0 {
            0.0
        } else {
            errors as f64 / length as f64
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance(b"kitten", b"sitting"), 3);
        assert_eq!(edit_distance::<u8>(b"", b"abc"), 3);
        assert_eq!(edit_distance(b"abc", b"abc"), 0);
    }

    #[test]
    fn variants_count_as_correct_and_nearest_is_used() {
        let groups = group_references(vec![
            ("read".to_string(), vec!["R", "IY", "D"]),
            ("read".to_string(), vec!["R", "EH", "D"]),
            ("a".to_string(), vec!["AH"]),
        ]);
        assert_eq!(groups.len(), 2);
        let preds = [vec!["R", "EH", "D"], vec!["EY", "X"]];
        let s = score(
            groups
                .iter()
                .zip(&preds)
                .map(|((_, r), p)| (r.as_slice(), p.as_slice())),
        );
        assert_eq!(s.examples, 2);
        assert!((s.exact_match - 0.5).abs() < 1e-12);
        // "a": distance 2 to a reference of length 1; "read": 0 over 3.
        assert!((s.token_error_rate - 2.0 / 4.0).abs() < 1e-12);
    }
}
