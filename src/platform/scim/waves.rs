//! Managers before the people they manage: the creates of a push, cut into waves by depth
//! in the manager tree, so every create can name its manager's platform id. Pure.

use std::collections::HashMap;

use crate::plan::Op;

/// For each create, how many managers above it are created in this push too; 0 for one
/// whose chain of managers runs into a cycle. Linear: each chain is walked once and its
/// depths remembered (walking every chain again from each person was quadratic, 100 s for a
/// million people whose random managers form long chains).
pub(super) fn manager_depths(creates: &[Op]) -> Vec<usize> {
    let index: HashMap<&str, usize> = creates.iter().enumerate().map(|(i, o)| (o.external_id(), i)).collect();
    let manager: Vec<Option<usize>> = creates
        .iter()
        .map(|o| match o {
            Op::Create { user } => user.manager().and_then(|m| index.get(m).copied()),
            _ => None,
        })
        .collect();
    const UNSEEN: usize = usize::MAX;
    const WALKING: usize = usize::MAX - 1;
    const CYCLE: usize = usize::MAX - 2;
    let mut depth = vec![UNSEEN; creates.len()];
    let mut chain = Vec::new();
    for start in 0..creates.len() {
        let mut cur = start;
        // Walk up until a person whose depth is known, the top, or a cycle.
        let below = loop {
            if depth[cur] != UNSEEN {
                break if depth[cur] == WALKING { CYCLE } else { depth[cur] };
            }
            depth[cur] = WALKING;
            chain.push(cur);
            match manager[cur] {
                Some(m) => cur = m,
                None => break UNSEEN,
            }
        };
        // Then down again: the top has depth 0, each report one more; all of a chain that
        // runs into a cycle is 0 and marked so.
        let mut d = below;
        while let Some(i) = chain.pop() {
            d = match d {
                UNSEEN => 0,
                CYCLE => CYCLE,
                n => n + 1,
            };
            depth[i] = d;
        }
    }
    depth.into_iter().map(|d| if d == CYCLE { 0 } else { d }).collect()
}

/// Groups creates by depth in the manager tree among themselves: wave 0 has managers that
/// are not being created in this push (or none), wave n the reports of wave n-1. Cycles
/// (bad data) land in wave 0; their manager is then unknown and reported. Each wave keeps
/// the creates' order.
///
/// The creates are reordered in place, deepest wave first, and each wave is cut off the
/// end as it is sent: pushing them into new lists held every create twice at the start
/// of a million-user first sync (+60 MB beside the users).
pub(super) fn manager_waves(mut creates: Vec<Op>) -> Waves {
    let depths = manager_depths(&creates);
    let deepest = depths.iter().copied().max().unwrap_or(0);
    // Where each wave starts once the deepest is first: a counting sort's offsets.
    let mut sizes = vec![0usize; deepest + 1];
    depths.iter().for_each(|&d| sizes[d] += 1);
    let mut starts = vec![0usize; deepest + 1];
    let mut at = 0;
    for d in (0..=deepest).rev() {
        starts[d] = at;
        at += sizes[d];
    }
    // Each create's place, in order within its wave; then the permutation applied by
    // swaps (every swap puts one create at its place).
    let mut next = starts.clone();
    let mut place: Vec<usize> = depths
        .iter()
        .map(|&d| {
            next[d] += 1;
            next[d] - 1
        })
        .collect();
    for i in 0..creates.len() {
        while place[i] != i {
            let j = place[i];
            creates.swap(i, j);
            place.swap(i, j);
        }
    }
    let cuts = starts.into_iter().zip(sizes).filter(|&(_, n)| n > 0).map(|(s, _)| s).collect();
    Waves { creates, cuts }
}

/// The waves of `manager_waves`, shallowest first, each cut off the end of the creates.
pub(super) struct Waves {
    creates: Vec<Op>,
    /// Where each non-empty wave starts, shallowest first (so descending).
    cuts: Vec<usize>,
}

impl Iterator for Waves {
    type Item = Vec<Op>;
    fn next(&mut self) -> Option<Vec<Op>> {
        if self.cuts.is_empty() {
            return None;
        }
        let start = self.cuts.remove(0);
        Some(self.creates.split_off(start))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::model::User;
    use crate::model::UserFields;

    /// A create of person `id` with `manager` (the push's tests share it).
    pub(in crate::platform::scim) fn create(id: &str, manager: Option<&str>) -> Op {
        Op::Create {
            user: Box::new(User::from(UserFields {
                external_id: id.into(),
                email: None,
                employee_id: Some(id.into()),
                first_name: "F".into(),
                last_name: "L".into(),
                language: "en".into(),
                active: true,
                manager: manager.map(Into::into),
                attributes: Default::default(),
            })),
        }
    }

    fn ids(waves: Waves) -> Vec<Vec<String>> {
        waves.map(|w| w.iter().map(|o| o.external_id().to_string()).collect()).collect()
    }

    #[test]
    fn managers_are_created_before_their_reports() {
        let waves = manager_waves(vec![
            create("c", Some("b")),
            create("b", Some("a")),
            create("a", None),
            create("x", Some("outside")),
            create("loop1", Some("loop2")),
            create("loop2", Some("loop1")),
        ]);
        assert_eq!(ids(waves), vec![vec!["a", "x", "loop1", "loop2"], vec!["b"], vec!["c"]]);
    }

    #[test]
    fn manager_depths_match_walking_each_chain_and_stay_linear() {
        // Random managers, as in gen_hris.py: long chains into cycles. Compared with the
        // plain definition (walk up from each person) on 2,000 people, then run on 200,000,
        // which the quadratic walk took minutes for.
        let mut seed = 7u64;
        let mut rnd = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let people = |n: u64, rnd: &mut dyn FnMut(u64) -> u64| -> Vec<Op> {
            (0..n)
                .map(|i| {
                    let m = format!("E{}", rnd(n + n / 10)); // some managers are not created in this push
                    create(&format!("E{i}"), if i % 50 == 0 { None } else { Some(&m) })
                })
                .collect()
        };
        let small = people(2_000, &mut rnd);
        let manager_of: HashMap<&str, &str> = small
            .iter()
            .filter_map(|o| match o {
                Op::Create { user } => user.manager().map(|m| (o.external_id(), m)),
                _ => None,
            })
            .collect();
        let naive = |id: &str| {
            let (mut d, mut cur, mut seen) = (0, id, std::collections::HashSet::new());
            while let Some(m) = manager_of.get(cur).filter(|m| small.iter().any(|o| o.external_id() == **m)) {
                if !seen.insert(cur) {
                    return 0;
                }
                d += 1;
                cur = m;
            }
            d
        };
        let want: Vec<usize> = small.iter().map(|o| naive(o.external_id())).collect();
        assert_eq!(manager_depths(&small), want);
        assert!(want.iter().any(|&d| d > 0) && want.contains(&0));
        // The waves, cut from the creates reordered in place: each depth's people in file
        // order, shallowest first, every create once.
        let mut by_depth: Vec<Vec<String>> = vec![Vec::new(); want.iter().max().unwrap() + 1];
        small.iter().zip(&want).for_each(|(o, &d)| by_depth[d].push(o.external_id().to_string()));
        let copy: Vec<Op> = small.iter().map(|o| create(o.external_id(), manager_of.get(o.external_id()).copied())).collect();
        assert_eq!(ids(manager_waves(copy)), by_depth);

        let large = people(200_000, &mut rnd);
        let t = std::time::Instant::now();
        assert_eq!(manager_depths(&large).len(), 200_000);
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "linear, not a walk per person: {:?}", t.elapsed());
    }
}
