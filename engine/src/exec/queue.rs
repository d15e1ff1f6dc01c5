//! The dependency queue: which selected stages the scheduler may look at next.
//!
//! Modelled on cargo's `util/dependency_queue.rs`. Every enqueued stage is in exactly one state:
//!
//! - **waiting**: some of its deps are unfinished; the queue holds the set of them;
//! - **ready**: every dep has finished; ready stages come out of [`DependencyQueue::dequeue`]
//!   lowest priority first, and a stage's priority is its place in the enqueue order (the
//!   pipeline's topological order);
//! - **running**: handed out by `dequeue` and not finished yet. For the queue that is one state;
//!   for the scheduler it is "being checked", "checked, waiting for resources" or "running";
//! - **finished**, with an [`Outcome`].
//!
//! The queue decides only *when* a stage may be looked at. It never looks at the file system,
//! sends no event and knows nothing of freshness or resources. What must never change silently,
//! because the order of events and what a failure skips depend on it:
//!
//! - a stage becomes ready only when *every* dep has finished, whatever their outcomes: a stage
//!   downstream of a failure is released like any other, and the scheduler asks
//!   [`DependencyQueue::blame`] when it dequeues it. So a skip is reported when the stage's turn
//!   comes, in pipeline order among the other ready stages, and it names the first dep (in the
//!   DAG's order) that failed or was skipped once all of them have ended;
//! - an [`Outcome::Interrupted`] stage releases nothing: after Ctrl-C no stage downstream of a
//!   stopped one may start;
//! - ready stages come out in enqueue order, whatever order they became ready in.

use std::collections::{BTreeSet, HashSet};

use crate::dag::StageId;

/// How a stage ended, for its dependents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Fresh, frozen, restored, ran, or (dry run) would run: its outs are what its dependents
    /// will read.
    Done,
    /// Failed, or its freshness could not be checked.
    Failed,
    /// Not run because a dep failed or was skipped.
    Skipped,
    /// Stopped by Ctrl-C. Its dependents are not released.
    Interrupted,
}

#[derive(Debug)]
enum Slot {
    /// Not enqueued (a stage the run did not select).
    Absent,
    /// The deps that have not finished yet (never empty).
    Waiting(HashSet<StageId>),
    Ready,
    Running,
    Finished(Outcome),
}

/// Stages ordered by their dependencies: enqueue them all (in priority order), then
/// `dequeue` and `finish` until nothing is left.
#[derive(Debug)]
pub struct DependencyQueue {
    /// By stage id (ids are dense: `0..capacity`).
    slots: Vec<Slot>,
    /// The enqueued deps of each stage, in the order they were given.
    deps: Vec<Vec<StageId>>,
    /// The enqueued stages that wait on each stage.
    dependents: Vec<Vec<StageId>>,
    /// Place in the enqueue order.
    priority: Vec<usize>,
    ready: BTreeSet<(usize, StageId)>,
    enqueued: usize,
}

impl DependencyQueue {
    /// An empty queue for stage ids below `capacity`.
    pub fn new(capacity: usize) -> DependencyQueue {
        DependencyQueue {
            slots: (0..capacity).map(|_| Slot::Absent).collect(),
            deps: vec![Vec::new(); capacity],
            dependents: vec![Vec::new(); capacity],
            priority: vec![usize::MAX; capacity],
            ready: BTreeSet::new(),
            enqueued: 0,
        }
    }

    /// Adds `id`, which waits for `deps`. Each dep must be enqueued too (before or after `id`,
    /// but before the first `dequeue`): a dep that never is keeps `id` waiting for ever. Stages
    /// come out of `dequeue` in the order they were enqueued.
    pub fn enqueue(&mut self, id: StageId, deps: impl IntoIterator<Item = StageId>) {
        debug_assert!(matches!(self.slots[id], Slot::Absent), "enqueued twice");
        let deps: Vec<StageId> = deps.into_iter().collect();
        let unfinished: HashSet<StageId> = deps.iter().copied().collect();
        for &d in &unfinished {
            self.dependents[d].push(id);
        }
        self.priority[id] = self.enqueued;
        self.enqueued += 1;
        self.slots[id] = if unfinished.is_empty() {
            self.ready.insert((self.priority[id], id));
            Slot::Ready
        } else {
            Slot::Waiting(unfinished)
        };
        self.deps[id] = deps;
    }

    /// The ready stage enqueued first, now running; `None` when no stage is ready.
    pub fn dequeue(&mut self) -> Option<StageId> {
        let (_, id) = self.ready.pop_first()?;
        self.slots[id] = Slot::Running;
        Some(id)
    }

    /// Records how the running stage `id` ended and releases its dependents: each one whose
    /// deps have now all finished becomes ready, whatever their outcomes (the scheduler skips
    /// it when it dequeues it; see [`DependencyQueue::blame`]). An interrupted stage releases
    /// nothing.
    pub fn finish(&mut self, id: StageId, outcome: Outcome) {
        debug_assert!(
            matches!(self.slots[id], Slot::Running),
            "finished a stage that was not running: {:?}",
            self.slots[id]
        );
        self.slots[id] = Slot::Finished(outcome);
        if outcome == Outcome::Interrupted {
            return;
        }
        for &d in &self.dependents[id] {
            if let Slot::Waiting(unfinished) = &mut self.slots[d] {
                unfinished.remove(&id);
                if unfinished.is_empty() {
                    self.slots[d] = Slot::Ready;
                    self.ready.insert((self.priority[d], d));
                }
            }
        }
    }

    /// Gives up on `id`, which never started (waiting, ready, or dequeued but never run): it
    /// is finished as [`Outcome::Skipped`] and releases nothing. For the end of a run that
    /// stopped launching, where every unstarted stage is given up in turn.
    pub fn cancel(&mut self, id: StageId) {
        if matches!(self.slots[id], Slot::Ready) {
            self.ready.remove(&(self.priority[id], id));
        }
        debug_assert!(!matches!(self.slots[id], Slot::Absent | Slot::Finished(_)));
        self.slots[id] = Slot::Finished(Outcome::Skipped);
    }

    /// The first dep of `id` (in the order the deps were enqueued) that failed, was skipped or
    /// was interrupted: the reason `id` must not run.
    pub fn blame(&self, id: StageId) -> Option<StageId> {
        self.deps[id].iter().copied().find(|&d| {
            matches!(
                self.slots[d],
                Slot::Finished(Outcome::Failed | Outcome::Skipped | Outcome::Interrupted)
            )
        })
    }

    /// The place of `id` in the enqueue order.
    pub fn priority(&self, id: StageId) -> usize {
        self.priority[id]
    }

    /// True when some stage is ready.
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// How `id` ended, once it has.
    pub fn outcome(&self, id: StageId) -> Option<Outcome> {
        match self.slots[id] {
            Slot::Finished(o) => Some(o),
            _ => None,
        }
    }

    /// True once `id` has finished.
    pub fn is_finished(&self, id: StageId) -> bool {
        self.outcome(id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `edges[i]` = the deps of stage `i`; every stage enqueued in id order.
    fn queue(edges: &[&[StageId]]) -> DependencyQueue {
        let mut q = DependencyQueue::new(edges.len());
        for (id, deps) in edges.iter().enumerate() {
            q.enqueue(id, deps.iter().copied());
        }
        q
    }

    fn drain(q: &mut DependencyQueue) -> Vec<StageId> {
        std::iter::from_fn(|| q.dequeue()).collect()
    }

    #[test]
    fn a_stage_is_ready_only_when_every_dep_has_finished() {
        // 0 -> 2 <- 1, 2 -> 3
        let mut q = queue(&[&[], &[], &[0, 1], &[2]]);
        assert_eq!(drain(&mut q), vec![0, 1]);
        q.finish(0, Outcome::Done);
        assert!(!q.has_ready(), "2 still waits for 1");
        q.finish(1, Outcome::Done);
        assert_eq!(drain(&mut q), vec![2]);
        q.finish(2, Outcome::Done);
        assert_eq!(drain(&mut q), vec![3]);
        q.finish(3, Outcome::Done);
        assert!((0..4).all(|id| q.outcome(id) == Some(Outcome::Done)));
    }

    #[test]
    fn ready_stages_come_out_in_enqueue_order() {
        // Enqueued as 3, 2, 1, 0: that is the priority, not the id.
        let mut q = DependencyQueue::new(5);
        q.enqueue(4, []);
        for id in [3, 2, 1, 0] {
            q.enqueue(id, [4]);
        }
        assert_eq!(drain(&mut q), vec![4]);
        q.finish(4, Outcome::Done);
        assert_eq!(drain(&mut q), vec![3, 2, 1, 0]);
    }

    #[test]
    fn a_later_release_still_comes_out_in_priority_order() {
        // 0 and 1 independent; 2 depends on 0; 3 on nothing.
        let mut q = queue(&[&[], &[], &[0], &[]]);
        assert_eq!(q.dequeue(), Some(0));
        q.finish(0, Outcome::Done);
        // 2 became ready after 1 and 3, but 1 < 2 < 3 in the enqueue order.
        assert_eq!(drain(&mut q), vec![1, 2, 3]);
    }

    #[test]
    fn dependents_of_a_failure_are_released_and_blamed() {
        // 0 fails; 1 depends on 0 and 2; 3 depends on 1.
        let mut q = queue(&[&[], &[0, 2], &[], &[1]]);
        assert_eq!(drain(&mut q), vec![0, 2]);
        q.finish(0, Outcome::Failed);
        assert!(!q.has_ready(), "1 still waits for 2");
        q.finish(2, Outcome::Done);
        assert_eq!(q.dequeue(), Some(1));
        assert_eq!(q.blame(1), Some(0));
        q.finish(1, Outcome::Skipped);
        assert_eq!(q.dequeue(), Some(3));
        assert_eq!(q.blame(3), Some(1), "a skipped dep is blamed too");
        assert_eq!(q.blame(2), None);
    }

    #[test]
    fn blame_names_the_first_dep_in_the_given_order() {
        let mut q = queue(&[&[], &[], &[1, 0]]);
        assert_eq!(drain(&mut q), vec![0, 1]);
        q.finish(0, Outcome::Failed);
        q.finish(1, Outcome::Failed);
        assert_eq!(q.dequeue(), Some(2));
        assert_eq!(q.blame(2), Some(1));
    }

    #[test]
    fn an_interrupted_stage_releases_nothing() {
        let mut q = queue(&[&[], &[0]]);
        assert_eq!(q.dequeue(), Some(0));
        q.finish(0, Outcome::Interrupted);
        assert!(!q.has_ready());
        assert!(!q.is_finished(1));
        assert_eq!(q.blame(1), Some(0));
    }

    #[test]
    fn cancelled_stages_are_skipped_and_leave_the_ready_set() {
        let mut q = queue(&[&[], &[], &[0]]);
        assert_eq!(q.dequeue(), Some(0));
        q.finish(0, Outcome::Failed);
        // 1 and 2 are ready; the run stops launching and gives up on both.
        q.cancel(1);
        q.cancel(2);
        assert!(!q.has_ready());
        assert_eq!(q.outcome(1), Some(Outcome::Skipped));
        assert_eq!(q.outcome(2), Some(Outcome::Skipped));
    }

    #[test]
    fn stages_not_enqueued_are_not_deps() {
        // Stage 0 exists in the DAG but is not selected: 1 is enqueued without it.
        let mut q = DependencyQueue::new(2);
        q.enqueue(1, []);
        assert_eq!(drain(&mut q), vec![1]);
        assert!(!q.is_finished(0));
    }
}
