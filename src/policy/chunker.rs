//! The chunking state machine of a stream (SPEC section 2), over counters
//! only: it knows how many items are in the buffer and whether the stream is
//! all in, and decides what the next chunk is. The ring that holds the items
//! is someone else's business, which keeps this logic testable on its own.

use crate::policy::ChunkPolicy;

/// Where the stream stands between chunks, and the policy that makes them.
#[derive(Debug)]
pub(crate) struct Chunker {
    policy: Box<dyn ChunkPolicy>,
    /// Global position of the first item still in the buffer; only grows.
    consumed: u64,
    /// Chunks popped so far: the next chunk's index.
    chunks_popped: u64,
    /// Whether a final chunk was popped; once set, no chunk is ready again.
    final_emitted: bool,
    /// Global position one past the last item any chunk showed, or the
    /// policy's primed count if larger: items before it are context when a
    /// chunk shows them again. Only grows.
    shown_until: u64,
    /// The last pop was an empty, never final chunk with everything in
    /// (only a continue-after-done policy pops those): every later chunk is
    /// the same empty one, so nothing about the stream can change again.
    idle: bool,
}

/// What the next chunk is: the items at global positions
/// `start_offset .. start_offset + window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkPlan {
    /// Counts popped chunks from 0.
    pub chunk_index: u64,
    /// Global position of the chunk's first item (the stream's `consumed`
    /// before the pop).
    pub start_offset: u64,
    /// Items the chunk shows; at most the `available` the pop was given.
    pub window: usize,
    /// How far the stream advanced past the chunk's start: the items before
    /// `start_offset + advance` are discarded. At most `window`.
    pub advance: usize,
    /// The stream's last chunk: all in and no item left (never under
    /// continue-after-done).
    pub is_final: bool,
    /// Leading items of the chunk shown by an earlier chunk or primed; at
    /// most `window`.
    pub context_items: usize,
}

impl Chunker {
    /// A chunker at the start of a stream.
    #[cfg(test)]
    pub(crate) fn new(policy: Box<dyn ChunkPolicy>) -> Self {
        Self::at(policy, 0)
    }

    /// A chunker whose first chunk starts at global position `start` (a
    /// buffer built over a consumer that already moved on): the policy
    /// counts from there, primed items included.
    pub(crate) fn at(policy: Box<dyn ChunkPolicy>, start: u64) -> Self {
        let shown_until = start.saturating_add(policy.primed() as u64);
        Self {
            policy,
            consumed: start,
            chunks_popped: 0,
            final_emitted: false,
            shown_until,
            idle: false,
        }
    }

    /// Global position of the first item still in the buffer.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Whether a final chunk was popped (no chunk is ready ever again).
    pub(crate) fn finished(&self) -> bool {
        self.final_emitted
    }

    /// Whether the stream offers nothing new from now on: all in, drained,
    /// and one empty never-final chunk taken (see the field).
    pub(crate) fn idle(&self) -> bool {
        self.idle
    }

    /// The policy, as it stands before the next chunk.
    pub(crate) fn policy(&self) -> &dyn ChunkPolicy {
        &*self.policy
    }

    /// `has_chunk_ready` of SPEC 2. `available` is the number of items of the
    /// available prefix not yet discarded; `all_in` is
    /// `done && arrived_in_order == registered`.
    pub(crate) fn is_ready(&self, available: usize, all_in: bool) -> bool {
        // Once all in, a chunk is ready while there are items, under
        // continue-after-done, or until the final chunk was popped; as the
        // final chunk is never popped under continue-after-done and `all_in`
        // never turns false again, "not finished" covers all three.
        !self.final_emitted && (all_in || self.policy.is_ready(available))
    }

    /// `pop_chunk` of SPEC 2: the plan of the next chunk, or `None` when no
    /// chunk is ready (the caller turns that into an error). Popping moves
    /// the stream on: `consumed` grows by the plan's `advance`, and the
    /// policy is told that advance.
    ///
    /// When the stream is all in and the policy is not ready for what is
    /// left, the chunk flushes: it shows every item left and advances past
    /// them all. A policy that asks for more items than `available` or
    /// advances further than its window breaks the [`ChunkPolicy`] contract;
    /// the plan is then clamped (window to `available`, advance to the
    /// window), so the stream never reads or skips an item it does not have,
    /// and debug builds fail an assertion to point at the policy.
    pub(crate) fn pop(&mut self, available: usize, all_in: bool) -> Option<ChunkPlan> {
        if !self.is_ready(available, all_in) {
            return None;
        }
        let start_offset = self.consumed;
        let (window, advance) = if all_in && !self.policy.is_ready(available) {
            (available, available)
        } else {
            let window = self.policy.window();
            let stride = self.policy.stride();
            debug_assert!(
                window <= available,
                "policy {:?} is ready for {available} items but asks for a window of {window}",
                self.policy
            );
            debug_assert!(
                stride <= window,
                "policy {:?} has a stride {stride} beyond its window {window}",
                self.policy
            );
            let window = window.min(available);
            (window, stride.min(window))
        };
        let is_final = all_in && available - advance == 0 && !self.policy.continue_after_done();
        let context_items = self
            .shown_until
            .saturating_sub(start_offset)
            .min(window as u64) as usize;
        let shown_end = start_offset.saturating_add(window as u64);
        self.shown_until = self.shown_until.max(shown_end);
        self.consumed = start_offset.saturating_add(advance as u64);
        self.policy.register_chunk(advance);
        let chunk_index = self.chunks_popped;
        self.chunks_popped += 1;
        self.final_emitted = is_final;
        self.idle = all_in && window == 0 && !is_final;
        Some(ChunkPlan {
            chunk_index,
            start_offset,
            window,
            advance,
            is_final,
            context_items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Fixed, LeftContext, Policy, Ramp, Scheduled, Sliding};
    use proptest::prelude::*;

    /// Upper bound on the chunks of one test stream, so that a chunker that
    /// never finishes fails the test instead of hanging it.
    const MAX_CHUNKS: usize = 1000;

    /// A stream of `total` registered items, reduced to the counters of
    /// SPEC 2, with every popped plan recorded.
    struct Stream {
        chunker: Chunker,
        total: u64,
        arrived: u64,
        done: bool,
        plans: Vec<ChunkPlan>,
    }

    impl Stream {
        fn new(policy: &Policy, total: u64) -> Self {
            Self {
                chunker: Chunker::new(Box::new(policy.clone())),
                total,
                arrived: 0,
                done: false,
                plans: Vec::new(),
            }
        }

        fn available(&self) -> usize {
            usize::try_from(self.arrived - self.chunker.consumed()).unwrap()
        }

        fn all_in(&self) -> bool {
            self.done && self.arrived == self.total
        }

        fn ready(&self) -> bool {
            self.chunker.is_ready(self.available(), self.all_in())
        }

        fn arrive(&mut self) {
            assert!(self.arrived < self.total);
            self.arrived += 1;
        }

        /// Pops if ready, checking that `pop` agrees with `is_ready`.
        fn pop(&mut self) -> Option<ChunkPlan> {
            let ready = self.ready();
            let consumed = self.chunker.consumed();
            let plan = self.chunker.pop(self.available(), self.all_in());
            assert_eq!(plan.is_some(), ready, "pop disagrees with is_ready");
            match plan {
                Some(plan) => {
                    assert!(self.plans.len() < MAX_CHUNKS, "the stream never ends");
                    self.plans.push(plan);
                }
                None => assert_eq!(self.chunker.consumed(), consumed),
            }
            plan
        }

        /// Pops while ready; under continue-after-done, stops after the
        /// first empty chunk once the stream is all in and empty.
        fn drain(&mut self) {
            while let Some(plan) = self.pop() {
                if plan.window == 0 && self.all_in() && self.available() == 0 {
                    if self.chunker.policy().continue_after_done() {
                        break;
                    }
                    assert!(plan.is_final, "an empty chunk at the end must be final");
                }
            }
        }
    }

    /// All items arrive, then done, then the consumer pops.
    fn lazy(policy: &Policy, total: u64) -> Vec<ChunkPlan> {
        let mut stream = Stream::new(policy, total);
        for _ in 0..total {
            stream.arrive();
        }
        stream.done = true;
        stream.drain();
        stream.plans
    }

    /// The consumer pops whenever a chunk is ready, after every arrival and
    /// after done.
    fn eager(policy: &Policy, total: u64) -> Vec<ChunkPlan> {
        let mut stream = Stream::new(policy, total);
        for _ in 0..total {
            stream.arrive();
            stream.drain();
        }
        stream.done = true;
        stream.drain();
        stream.plans
    }

    /// Checks every plan of a stream of `total` items against the rules of
    /// SPEC 2, recomputing `context_items` from the items shown so far.
    fn check(policy: &Policy, total: u64, plans: &[ChunkPlan]) {
        let total_items = usize::try_from(total).unwrap();
        let mut shown = vec![false; total_items];
        for item in shown.iter_mut().take(policy.primed()) {
            *item = true;
        }
        let mut consumed = 0;
        for (index, plan) in plans.iter().enumerate() {
            assert_eq!(plan.chunk_index, index as u64, "{policy}: {plans:?}");
            assert_eq!(plan.start_offset, consumed, "{policy}: {plans:?}");
            assert!(plan.advance <= plan.window, "{policy}: {plan:?}");
            let start = usize::try_from(plan.start_offset).unwrap();
            let end = start + plan.window;
            assert!(end <= total_items, "{policy}: {plan:?} past {total}");
            let old = shown[start..end].iter().take_while(|&&s| s).count();
            assert_eq!(plan.context_items, old, "{policy}: {plan:?}");
            assert!(
                shown[start + old..end].iter().all(|&s| !s),
                "{policy}: items shown before are not a prefix of {plan:?}"
            );
            shown[start..end].iter_mut().for_each(|s| *s = true);
            consumed += plan.advance as u64;
        }
        assert!(
            shown.iter().all(|&s| s),
            "{policy}: an item was never shown"
        );
        assert_eq!(
            consumed, total,
            "{policy}: the stream did not reach its end"
        );
        let finals = plans.iter().filter(|plan| plan.is_final).count();
        if policy.continue_after_done() {
            assert_eq!(finals, 0, "{policy}: {plans:?}");
        } else {
            assert_eq!(finals, 1, "{policy}: {plans:?}");
            assert!(plans.last().unwrap().is_final, "{policy}: {plans:?}");
        }
    }

    /// The chunks that carry items, without the index and final flag (which
    /// depend on when the consumer popped).
    fn shapes(plans: &[ChunkPlan]) -> Vec<(u64, usize, usize, usize)> {
        plans
            .iter()
            .filter(|plan| plan.window > 0)
            .map(|plan| {
                (
                    plan.start_offset,
                    plan.window,
                    plan.advance,
                    plan.context_items,
                )
            })
            .collect()
    }

    fn plan(
        chunk_index: u64,
        start_offset: u64,
        window: usize,
        advance: usize,
        is_final: bool,
        context_items: usize,
    ) -> ChunkPlan {
        ChunkPlan {
            chunk_index,
            start_offset,
            window,
            advance,
            is_final,
            context_items,
        }
    }

    fn policies() -> Vec<Policy> {
        [
            "fixed:size=3",
            "fixed:size=1",
            "sliding:window=4,stride=2",
            "sliding:window=3,stride=3",
            "sliding:window=5,stride=1",
            "left-context:chunk=4,context=1",
            "left-context:chunk=3,context=0",
            "ramp:first=2,size=3,growth=2,max=8",
            "ramp:first=1,size=2,growth=1.5,max=5",
            "ramp:first=3,size=2",
            "scheduled:schedule=1/2,chunk=3,context=2",
            "scheduled:chunk=2,context=3,prime=1",
            "scheduled:schedule=2/4,chunk=3,context=5,prime=5",
            "fixed:size=3,continue",
            "ramp:first=1,size=2,growth=2,max=4,continue",
        ]
        .iter()
        .map(|name| name.parse().unwrap())
        .collect()
    }

    #[test]
    fn sliding_flushes_the_tail_with_its_context() {
        let policy = "sliding:window=4,stride=2".parse().unwrap();
        let plans = lazy(&policy, 7);
        assert_eq!(
            plans,
            [
                plan(0, 0, 4, 2, false, 0),
                plan(1, 2, 4, 2, false, 2),
                plan(2, 4, 3, 3, true, 2),
            ]
        );
        check(&policy, 7, &plans);
    }

    #[test]
    fn fixed_drained_before_done_ends_with_one_empty_final_chunk() {
        let policy = "fixed:size=3".parse().unwrap();
        let plans = eager(&policy, 6);
        assert_eq!(
            plans,
            [
                plan(0, 0, 3, 3, false, 0),
                plan(1, 3, 3, 3, false, 0),
                plan(2, 6, 0, 0, true, 0),
            ]
        );
        // Popped lazily, the second chunk is the final one.
        assert_eq!(
            lazy(&policy, 6),
            [plan(0, 0, 3, 3, false, 0), plan(1, 3, 3, 3, true, 0)]
        );
    }

    #[test]
    fn left_context_repeats_the_tail_of_the_previous_chunk() {
        let policy = "left-context:chunk=10,context=2".parse().unwrap();
        let plans = lazy(&policy, 30);
        assert_eq!(
            plans,
            [
                plan(0, 0, 10, 8, false, 0),
                plan(1, 8, 12, 10, false, 2),
                plan(2, 18, 12, 10, false, 2),
                plan(3, 28, 2, 2, true, 2),
            ]
        );
        check(&policy, 30, &plans);
    }

    #[test]
    fn scheduled_chunks_report_their_delivered_context() {
        let policy = "scheduled:schedule=4/8/16,chunk=25,context=25"
            .parse()
            .unwrap();
        let plans = eager(&policy, 78);
        assert_eq!(
            plans,
            [
                plan(0, 0, 4, 0, false, 0),
                plan(1, 0, 12, 0, false, 4),
                plan(2, 0, 28, 3, false, 12),
                plan(3, 3, 50, 25, false, 25),
                plan(4, 28, 50, 25, false, 25),
                plan(5, 53, 25, 25, true, 25),
            ]
        );
        check(&policy, 78, &plans);
    }

    #[test]
    fn primed_items_are_context_of_the_first_chunk() {
        let policy = "scheduled:schedule=4,chunk=4,context=2,prime=2"
            .parse()
            .unwrap();
        let plans = lazy(&policy, 10);
        assert_eq!(
            plans,
            [
                plan(0, 0, 6, 4, false, 2),
                plan(1, 4, 6, 4, false, 2),
                plan(2, 8, 2, 2, true, 2),
            ]
        );
        check(&policy, 10, &plans);
    }

    #[test]
    fn ramp_chunks_grow_without_overlap() {
        let policy = "ramp:first=4,size=8,growth=2,max=32".parse().unwrap();
        let plans = lazy(&policy, 4 + 8 + 16 + 32 + 32 + 5);
        let windows: Vec<usize> = plans.iter().map(|plan| plan.window).collect();
        assert_eq!(windows, [4, 8, 16, 32, 32, 5]);
        assert!(plans.iter().all(|plan| plan.context_items == 0));
        check(&policy, 97, &plans);
    }

    #[test]
    fn continue_after_done_keeps_offering_empty_chunks_that_are_never_final() {
        for name in ["fixed:size=2,continue", "ramp:first=2,size=4,continue"] {
            let policy: Policy = name.parse().unwrap();
            let mut stream = Stream::new(&policy, 3);
            for _ in 0..3 {
                stream.arrive();
            }
            stream.done = true;
            for _ in 0..5 {
                stream.pop().unwrap();
            }
            let plans = &stream.plans;
            assert_eq!(shapes(plans), [(0, 2, 2, 0), (2, 1, 1, 0)], "{name}");
            assert!(plans.iter().all(|plan| !plan.is_final), "{name}");
            assert!(
                plans[2..].iter().all(|plan| plan.start_offset == 3),
                "{name}"
            );
            assert!(stream.ready(), "{name}");
            assert!(!stream.chunker.finished(), "{name}");
        }
    }

    #[test]
    fn an_empty_stream_yields_one_empty_final_chunk() {
        for policy in policies() {
            let mut stream = Stream::new(&policy, 0);
            assert!(!stream.ready(), "{policy}");
            assert_eq!(stream.pop(), None, "{policy}");
            stream.done = true;
            let first = stream.pop().unwrap();
            assert_eq!(first.window, 0, "{policy}");
            assert_eq!(first.is_final, !policy.continue_after_done(), "{policy}");
            assert_eq!(stream.chunker.finished(), first.is_final, "{policy}");
            assert_eq!(stream.ready(), !first.is_final, "{policy}");
        }
    }

    #[test]
    fn every_stream_ends_with_exactly_one_final_chunk() {
        for policy in policies() {
            let size = policy.window() as u64;
            let largest = policy.max_window() as u64;
            for total in [0, 1, size - 1, size, size + 1, 3 * size, 3 * largest] {
                let eager_plans = eager(&policy, total);
                check(&policy, total, &eager_plans);
                let lazy_plans = lazy(&policy, total);
                check(&policy, total, &lazy_plans);
                assert_eq!(
                    shapes(&eager_plans),
                    shapes(&lazy_plans),
                    "{policy} over {total} items"
                );
            }
        }
    }

    #[test]
    fn only_an_empty_chunk_with_everything_in_makes_a_continuing_stream_idle() {
        let mut c = Chunker::new(Box::new("fixed:size=2,continue".parse::<Policy>().unwrap()));
        // Two items of a window of two, not done: a full chunk, not idle.
        assert_eq!(c.pop(2, false).unwrap().window, 2);
        assert!(!c.idle());
        // Done with one item left: it is flushed, still not idle.
        assert_eq!(c.pop(1, true).unwrap().window, 1);
        assert!(!c.idle());
        // Done and drained: the empty, never-final chunk, and idle for good.
        for _ in 0..3 {
            let plan = c.pop(0, true).unwrap();
            assert_eq!((plan.window, plan.is_final), (0, false));
            assert!(c.idle());
        }
        // A stream that ends with a final chunk is finished, never idle.
        let mut f = Chunker::new(Box::new("fixed:size=2".parse::<Policy>().unwrap()));
        assert!(f.pop(0, true).unwrap().is_final);
        assert!(!f.idle() && f.finished());
    }

    #[test]
    fn nothing_is_ready_after_the_final_chunk() {
        let policy = "fixed:size=2".parse().unwrap();
        let mut stream = Stream::new(&policy, 2);
        stream.arrive();
        stream.arrive();
        stream.done = true;
        assert!(stream.pop().unwrap().is_final);
        assert!(stream.chunker.finished());
        // Even if the caller claimed more items, the stream is over.
        assert!(!stream.chunker.is_ready(2, true));
        assert!(!stream.chunker.is_ready(2, false));
        assert_eq!(stream.chunker.pop(2, true), None);
        assert_eq!(stream.chunker.consumed(), 2);
    }

    #[test]
    fn a_pop_that_is_not_ready_changes_nothing() {
        let policy: Policy = "sliding:window=3,stride=1".parse().unwrap();
        let mut chunker = Chunker::new(Box::new(policy));
        assert_eq!(chunker.pop(2, false), None);
        assert_eq!(chunker.consumed(), 0);
        let first = chunker.pop(3, false).unwrap();
        assert_eq!(first.chunk_index, 0);
        assert_eq!(chunker.consumed(), 1);
    }

    #[test]
    fn the_stream_is_not_all_in_until_every_registered_item_arrived() {
        let policy = "fixed:size=4".parse().unwrap();
        let mut stream = Stream::new(&policy, 3);
        stream.arrive();
        stream.done = true;
        // Done, but two registered items are missing: no flush yet.
        assert!(!stream.ready());
        stream.arrive();
        stream.arrive();
        assert_eq!(stream.pop(), Some(plan(0, 0, 3, 3, true, 0)));
    }

    /// A policy that breaks the contract: ready for any count, it asks for
    /// 5 items and advances by 7.
    #[derive(Debug)]
    struct Greedy;

    impl ChunkPolicy for Greedy {
        fn is_ready(&self, _available: usize) -> bool {
            true
        }
        fn window(&self) -> usize {
            5
        }
        fn stride(&self) -> usize {
            7
        }
        fn register_chunk(&mut self, _advanced: usize) {}
        fn max_window(&self) -> usize {
            5
        }
    }

    #[test]
    #[cfg_attr(debug_assertions, should_panic(expected = "asks for a window of 5"))]
    fn a_policy_asking_for_too_much_is_clamped() {
        let mut chunker = Chunker::new(Box::new(Greedy));
        let plan = chunker.pop(3, false).unwrap();
        assert_eq!((plan.window, plan.advance), (3, 3));
        assert_eq!(chunker.consumed(), 3);
        let plan = chunker.pop(6, false).unwrap();
        assert_eq!((plan.window, plan.advance), (5, 5));
    }

    /// A policy that plays a script of (window, stride) pairs, then repeats
    /// the last one.
    #[derive(Debug)]
    struct Script {
        chunks: Vec<(usize, usize)>,
        next: usize,
    }

    impl Script {
        fn current(&self) -> (usize, usize) {
            self.chunks[self.next.min(self.chunks.len() - 1)]
        }
    }

    impl ChunkPolicy for Script {
        fn is_ready(&self, available: usize) -> bool {
            available >= self.current().0
        }
        fn window(&self) -> usize {
            self.current().0
        }
        fn stride(&self) -> usize {
            self.current().1
        }
        fn register_chunk(&mut self, _advanced: usize) {
            self.next += 1;
        }
        fn max_window(&self) -> usize {
            self.chunks.iter().map(|&(window, _)| window).max().unwrap()
        }
    }

    #[test]
    fn a_shorter_chunk_does_not_forget_what_was_shown() {
        let script = Script {
            chunks: vec![(4, 0), (2, 2), (2, 2)],
            next: 0,
        };
        let mut chunker = Chunker::new(Box::new(script));
        let contexts: Vec<usize> = (0..3)
            .map(|_| chunker.pop(4, false).unwrap().context_items)
            .collect();
        // [0..4), then [0..2) and [2..4), both shown by the first chunk.
        assert_eq!(contexts, [0, 2, 2]);
    }

    fn any_policy() -> impl Strategy<Value = Policy> {
        prop_oneof![
            (1..5usize, any::<bool>()).prop_map(|(size, cont)| {
                let fixed = Fixed::new(size).unwrap();
                (if cont {
                    fixed.continuing_after_done()
                } else {
                    fixed
                })
                .into()
            }),
            (1..6usize)
                .prop_flat_map(|window| (Just(window), 1..=window))
                .prop_map(|(window, stride)| Sliding::new(window, stride).unwrap().into()),
            (1..6usize)
                .prop_flat_map(|chunk| (Just(chunk), 0..chunk))
                .prop_map(|(chunk, context)| LeftContext::new(chunk, context).unwrap().into()),
            (
                1..4usize,
                1..4usize,
                prop::sample::select(vec![1.0, 1.5, 2.0]),
                0..4usize,
                any::<bool>()
            )
                .prop_map(|(first, size, growth, extra, cont)| {
                    let max = Some(first.max(size) + extra);
                    let ramp = Ramp::new(first, size, growth, max).unwrap();
                    (if cont {
                        ramp.continuing_after_done()
                    } else {
                        ramp
                    })
                    .into()
                }),
            (prop::collection::vec(1..4usize, 0..3), 1..4usize, 0..5usize)
                .prop_flat_map(|(schedule, chunk, context)| {
                    (Just(schedule), Just(chunk), Just(context), 0..=context)
                })
                .prop_map(|(schedule, chunk, context, prime)| {
                    Scheduled::new(schedule, chunk, context, prime)
                        .unwrap()
                        .into()
                }),
        ]
    }

    /// What the producer and consumer do, in order.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        Arrive,
        Done,
        Pop,
    }

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: if cfg!(miri) { 8 } else { 256 },
            // Keep failing cases in the output only: no files written next
            // to the sources (and none read, which Miri's isolation forbids).
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    proptest! {
        #![proptest_config(config())]

        /// Whatever the timing of arrivals, done and pops, the chunks that
        /// carry items are those of a lazy consumer, and exactly one chunk
        /// is final.
        #[test]
        fn chunks_do_not_depend_on_timing(
            policy in any_policy(),
            total in 0..16u64,
            steps in prop::collection::vec(
                prop::sample::select(vec![Step::Arrive, Step::Done, Step::Pop]),
                0..48,
            ),
        ) {
            let mut stream = Stream::new(&policy, total);
            for step in steps {
                match step {
                    Step::Arrive if stream.arrived < stream.total => stream.arrive(),
                    Step::Arrive => {}
                    Step::Done => stream.done = true,
                    Step::Pop => {
                        stream.pop();
                    }
                }
            }
            while stream.arrived < stream.total {
                stream.arrive();
            }
            stream.done = true;
            stream.drain();
            check(&policy, total, &stream.plans);
            prop_assert_eq!(shapes(&stream.plans), shapes(&lazy(&policy, total)));
        }
    }
}
