//! A set of interval indices along one axis of the analysis space, as a bitset: regions
//! merge cells by comparing and joining such sets many times over, which a tree set makes
//! slow (a node allocation per set, a clone per comparison key).

use std::cmp::Ordering;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct IndexSet {
    words: Vec<u64>,
}

impl IndexSet {
    /// The set `{i}`, able to hold indices below `len`.
    pub(super) fn single(i: usize, len: usize) -> IndexSet {
        let mut set = IndexSet {
            words: vec![0; len.div_ceil(64).max(1)],
        };
        set.insert(i);
        set
    }

    pub(super) fn insert(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    pub(super) fn union_with(&mut self, other: &IndexSet) {
        for (w, o) in self.words.iter_mut().zip(&other.words) {
            *w |= o;
        }
    }

    pub(super) fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub(super) fn retain(&mut self, keep: impl Fn(usize) -> bool) {
        for i in self.iter().collect::<Vec<_>>() {
            if !keep(i) {
                self.words[i / 64] &= !(1 << (i % 64));
            }
        }
    }

    /// The indices in ascending order.
    pub(super) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(wi, &w)| {
            let mut rest = w;
            std::iter::from_fn(move || {
                (rest != 0).then(|| {
                    let bit = rest.trailing_zeros() as usize;
                    rest &= rest - 1;
                    wi * 64 + bit
                })
            })
        })
    }
}

/// Ordered as the sorted index sequences compare (as `BTreeSet<usize>` orders), so regions
/// come out in the same order as they always have.
impl Ord for IndexSet {
    fn cmp(&self, other: &IndexSet) -> Ordering {
        let pairs = self.words.iter().zip(&other.words);
        let Some((at, a, b)) = pairs
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(at, (a, b))| (at, *a, *b))
        else {
            return self.words.len().cmp(&other.words.len());
        };
        // The lowest index in one set only: below it the sequences agree. The set that
        // holds it is the smaller one unless the other has nothing after it.
        let low = (a ^ b) & (a ^ b).wrapping_neg();
        let more_after = |s: &IndexSet| {
            s.words[at] & !(low | (low - 1)) != 0 || s.words[at + 1..].iter().any(|w| *w != 0)
        };
        match (
            a & low != 0,
            more_after(if a & low != 0 { other } else { self }),
        ) {
            (true, true) | (false, false) => Ordering::Less,
            (true, false) | (false, true) => Ordering::Greater,
        }
    }
}

impl PartialOrd for IndexSet {
    fn partial_cmp(&self, other: &IndexSet) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::IndexSet;

    fn set(items: &[usize], len: usize) -> IndexSet {
        let mut s = IndexSet::single(items[0], len);
        for &i in items {
            s.insert(i);
        }
        s
    }

    proptest! {
        #[test]
        fn orders_and_iterates_as_a_tree_set(
            a in prop::collection::btree_set(0usize..150, 1..12),
            b in prop::collection::btree_set(0usize..150, 1..12),
        ) {
            let (av, bv): (Vec<usize>, Vec<usize>) =
                (a.iter().copied().collect(), b.iter().copied().collect());
            let (sa, sb) = (set(&av, 150), set(&bv, 150));
            prop_assert_eq!(sa.cmp(&sb), a.cmp(&b));
            prop_assert_eq!(sa.iter().collect::<BTreeSet<_>>(), a.clone());
            prop_assert_eq!(sa.len(), a.len());
            let mut u = sa.clone();
            u.union_with(&sb);
            prop_assert_eq!(u.iter().collect::<BTreeSet<_>>(), a.union(&b).copied().collect());
        }
    }
}
