//! StreamBuffer on the ring against SPEC section 2: the worked examples,
//! exactly one final chunk, and random traces compared chunk for chunk
//! with a small model of the SPEC written here.

use proptest::prelude::*;
use shmstream::policy::{ChunkPolicy, Policy};
use shmstream::{
    in_process_buffer, DType, Producer, StreamBuffer, StreamConfig, StreamError, StreamId,
    TensorMeta,
};
use std::collections::BTreeSet;

/// What a popped chunk says, in the shape of SPEC section 6's output.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    chunk_index: u64,
    start_offset: u64,
    is_final: bool,
    context_items: usize,
    ids: Vec<String>,
}

fn policy(name: &str) -> Policy {
    name.parse().unwrap()
}

fn setup(name: &str, capacity: u64) -> (Producer, StreamBuffer) {
    let cfg = StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(capacity)
    .with_item_bytes(4096);
    in_process_buffer(&cfg, policy(name)).unwrap()
}

fn put(producer: &Producer, i: usize) {
    producer
        .put(
            &format!("t{i}"),
            TensorMeta::new(DType::F32, &[1]).unwrap(),
            &(i as f32).to_le_bytes(),
        )
        .unwrap();
}

/// Pops one chunk and checks its data against its ids.
fn pop(buffer: &mut StreamBuffer) -> Seen {
    let chunk = buffer.pop_chunk().unwrap();
    let ids: Vec<String> = chunk.ids().map(str::to_string).collect();
    for (k, item) in chunk.items().enumerate() {
        let index: usize = ids[k][1..].parse().unwrap();
        assert_eq!(item.as_slice::<f32>(), Some(&[index as f32][..]));
    }
    if let Some(view) = chunk.stacked() {
        assert_eq!(view.shape(), &[chunk.len() as u64, 1]);
    } else {
        // Miri runs on the heap ring, which has no mirror for a wrapped window.
        assert!(chunk.is_empty() || cfg!(miri));
    }
    Seen {
        chunk_index: chunk.chunk_index(),
        start_offset: chunk.start_offset(),
        is_final: chunk.is_final(),
        context_items: chunk.context_items(),
        ids,
    }
}

fn drain(buffer: &mut StreamBuffer, limit: usize) -> Vec<Seen> {
    let mut out = vec![];
    while out.len() < limit && buffer.has_chunk_ready().unwrap() {
        out.push(pop(buffer));
    }
    out
}

fn windows(seen: &[Seen]) -> Vec<(u64, usize, usize, bool)> {
    seen.iter()
        .map(|s| (s.start_offset, s.ids.len(), s.context_items, s.is_final))
        .collect()
}

#[test]
fn sliding_4_2_over_7_items_flushes_the_last_three_with_two_of_context() {
    let (producer, mut buffer) = setup("sliding:window=4,stride=2", 8);
    for i in 0..7 {
        producer.pre_read_register(&format!("t{i}")).unwrap();
        put(&producer, i);
    }
    producer.signal_done();
    let seen = drain(&mut buffer, 10);
    assert_eq!(
        windows(&seen),
        [(0, 4, 0, false), (2, 4, 2, false), (4, 3, 2, true)]
    );
    assert_eq!(seen[2].ids, ["t4", "t5", "t6"]);
}

#[test]
fn fixed_3_drained_before_done_ends_with_one_empty_final_chunk() {
    let (producer, mut buffer) = setup("fixed:size=3", 4);
    let mut seen = vec![];
    for i in 0..6 {
        producer.pre_read_register(&format!("t{i}")).unwrap();
        put(&producer, i);
        seen.extend(drain(&mut buffer, 10));
    }
    assert_eq!(windows(&seen), [(0, 3, 0, false), (3, 3, 0, false)]);
    assert!(!buffer.has_chunk_ready().unwrap());
    producer.signal_done();
    let last = drain(&mut buffer, 10);
    assert_eq!(windows(&last), [(6, 0, 0, true)]);
    assert!(!buffer.has_chunk_ready().unwrap());
    assert_eq!(buffer.pop_chunk().unwrap_err(), StreamError::NotReady);
}

#[test]
fn left_context_10_2_shows_two_items_again_in_each_later_chunk() {
    let (producer, mut buffer) = setup("left-context:chunk=10,context=2", 16);
    let mut seen = vec![];
    for i in 0..30 {
        producer.pre_read_register(&format!("t{i}")).unwrap();
        put(&producer, i);
        seen.extend(drain(&mut buffer, 10));
    }
    assert_eq!(
        windows(&seen),
        [(0, 10, 0, false), (8, 12, 2, false), (18, 12, 2, false)]
    );
}

#[test]
fn an_empty_stream_yields_one_empty_final_chunk() {
    let (producer, mut buffer) = setup("sliding:window=4,stride=2", 8);
    producer.signal_done();
    let chunk = buffer.next_chunk().unwrap().unwrap();
    assert!(chunk.is_final() && chunk.is_empty() && chunk.stacked().is_none());
    drop(chunk);
    assert!(buffer.next_chunk().unwrap().is_none());
}

/// Runs `n` items through the ring; `eager` pops whenever ready after each
/// arrival, otherwise everything arrives before the first pop.
fn run(name: &str, n: usize, eager: bool) -> Vec<Seen> {
    let p = policy(name);
    let capacity = (p.max_window().max(n).max(1) as u64).next_power_of_two();
    let (producer, mut buffer) = setup(name, capacity);
    let mut seen = vec![];
    for i in 0..n {
        producer.pre_read_register(&format!("t{i}")).unwrap();
        put(&producer, i);
        if eager {
            seen.extend(drain(&mut buffer, 1000));
        }
    }
    producer.signal_done();
    seen.extend(drain(&mut buffer, 1000));
    seen
}

#[test]
fn every_policy_gives_exactly_one_final_chunk_and_shows_every_item() {
    let cases: [(&str, usize); 5] = [
        ("fixed:size=4", 4),
        ("sliding:window=4,stride=3", 4),
        ("left-context:chunk=4,context=1", 4),
        ("ramp:first=2,size=3,growth=2,max=8", 3),
        ("scheduled:schedule=2/3,chunk=4,context=3", 4),
    ];
    for (name, size) in cases {
        for n in [0, 1, size - 1, size, size + 1, 3 * size] {
            for eager in [true, false] {
                let seen = run(name, n, eager);
                let finals = seen.iter().filter(|s| s.is_final).count();
                assert_eq!(finals, 1, "{name} n={n} eager={eager}: {seen:?}");
                assert!(seen.last().unwrap().is_final, "{name}: final is last");
                let shown: BTreeSet<String> = seen.iter().flat_map(|s| s.ids.clone()).collect();
                assert_eq!(shown.len(), n, "{name} n={n} eager={eager}: items lost");
                for (k, s) in seen.iter().enumerate() {
                    assert_eq!(s.chunk_index, k as u64);
                }
            }
        }
    }
}

#[test]
fn continue_after_done_offers_empty_chunks_and_never_a_final_one() {
    for name in ["fixed:size=3,continue", "ramp:first=2,size=3,continue"] {
        for n in [0, 2, 3, 7] {
            let (producer, mut buffer) = setup(name, 8);
            let mut seen = vec![];
            for i in 0..n {
                producer.pre_read_register(&format!("t{i}")).unwrap();
                put(&producer, i);
                seen.extend(drain(&mut buffer, 100));
            }
            producer.signal_done();
            seen.extend(drain(&mut buffer, 20));
            assert_eq!(
                seen.len(),
                20.max(seen.len()),
                "{name}: it keeps offering chunks"
            );
            assert!(seen.iter().all(|s| !s.is_final), "{name}: {seen:?}");
            let shown: BTreeSet<_> = seen.iter().flat_map(|s| s.ids.clone()).collect();
            assert_eq!(shown.len(), n);
            assert!(seen.last().unwrap().ids.is_empty());
        }
    }
}

#[test]
fn waiting_edges_come_back_first_in_first_out() {
    let cfg = StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(4);
    let (_producer, mut buffer) =
        in_process_buffer::<(u32, &str)>(&cfg, policy("fixed:size=1")).unwrap();
    assert_eq!(buffer.pop_waiting_edge(), None);
    buffer.store_uningested_edge((1, "a"));
    buffer.store_uningested_edge((2, "b"));
    assert_eq!(buffer.pop_waiting_edge(), Some((1, "a")));
    buffer.store_uningested_edge((3, "c"));
    assert_eq!(buffer.pop_waiting_edge(), Some((2, "b")));
    assert_eq!(buffer.pop_waiting_edge(), Some((3, "c")));
    assert_eq!(buffer.pop_waiting_edge(), None);
    assert_eq!(
        (
            buffer.request_id(),
            buffer.edge_name(),
            buffer.from_partition()
        ),
        ("r", "e", "p")
    );
}

/// SPEC section 2, written plainly over lists: the reference for the
/// property test below.
struct Model {
    policy: Policy,
    order: Vec<usize>,
    arrived: BTreeSet<usize>,
    in_order: usize,
    consumed: usize,
    chunks: u64,
    done: bool,
    final_emitted: bool,
    shown_until: usize,
}

impl Model {
    fn new(policy: Policy) -> Self {
        let shown_until = policy.primed();
        Model {
            policy,
            order: vec![],
            arrived: BTreeSet::new(),
            in_order: 0,
            consumed: 0,
            chunks: 0,
            done: false,
            final_emitted: false,
            shown_until,
        }
    }

    fn put(&mut self, i: usize) {
        self.arrived.insert(i);
        while self.in_order < self.order.len() && self.arrived.contains(&self.order[self.in_order])
        {
            self.in_order += 1;
        }
    }

    fn available(&self) -> usize {
        self.in_order - self.consumed
    }

    fn all_in(&self) -> bool {
        self.done && self.in_order == self.order.len()
    }

    fn ready(&self) -> bool {
        if self.final_emitted {
            return false;
        }
        if !self.all_in() {
            return self.policy.is_ready(self.available());
        }
        self.available() > 0 || self.policy.continue_after_done() || !self.final_emitted
    }

    fn pop(&mut self) -> Seen {
        let start = self.consumed;
        let available = self.available();
        let (window, advance) = if self.all_in() && !self.policy.is_ready(available) {
            (available, available)
        } else {
            (self.policy.window(), self.policy.stride())
        };
        self.policy.register_chunk(advance);
        self.consumed += advance;
        let is_final = self.all_in() && self.available() == 0 && !self.policy.continue_after_done();
        self.final_emitted |= is_final;
        let context_items = window.min(self.shown_until.saturating_sub(start));
        self.shown_until = self.shown_until.max(start + window);
        let seen = Seen {
            chunk_index: self.chunks,
            start_offset: start as u64,
            is_final,
            context_items,
            ids: (start..start + window)
                .map(|p| format!("t{}", self.order[p]))
                .collect(),
        };
        self.chunks += 1;
        seen
    }
}

fn any_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![
        (1usize..6, any::<bool>()).prop_map(|(s, c)| policy(&format!(
            "fixed:size={s}{}",
            if c { ",continue" } else { "" }
        ))),
        (1usize..6, 0usize..6)
            .prop_map(|(w, s)| policy(&format!("sliding:window={w},stride={}", 1 + s % w))),
        (1usize..6, 0usize..6)
            .prop_map(|(c, x)| policy(&format!("left-context:chunk={c},context={}", x % c))),
        (1usize..4, 1usize..4, 0usize..3, any::<bool>()).prop_map(|(f, s, g, c)| {
            let growth = ["1", "1.5", "2"][g];
            let cont = if c { ",continue" } else { "" };
            policy(&format!(
                "ramp:first={f},size={s},growth={growth},max={}{cont}",
                2 * f.max(s)
            ))
        }),
        (
            prop::collection::vec(1usize..4, 0..3),
            1usize..4,
            0usize..4,
            0usize..4
        )
            .prop_map(|(sch, c, x, p)| {
                let sch: Vec<String> = sch.iter().map(|v| v.to_string()).collect();
                policy(&format!(
                    "scheduled:schedule={},chunk={c},context={x},prime={}",
                    sch.join("/"),
                    p % (x + 1)
                ))
            }),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Register,
    Put(usize),
    Pop,
    Done,
}

fn any_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Register),
        3 => (0usize..1000).prop_map(Op::Put),
        2 => Just(Op::Pop),
        1 => Just(Op::Done),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_traces_agree_with_the_spec_model_chunk_for_chunk(
        p in any_policy(),
        ops in prop::collection::vec(any_op(), 0..80),
        small_ring in any::<bool>(),
    ) {
        let need = p.max_window().max(1) as u64;
        let capacity = if small_ring { need.next_power_of_two() } else { (need * 4).next_power_of_two() };
        // A full ring answers at once instead of waiting for a release.
        let cfg = StreamConfig::new(StreamId { request_id: "r".into(), edge_name: "e".into(), from_partition: "p".into() })
            .with_capacity(capacity)
            .with_item_bytes(4096)
            .with_timeout(Some(std::time::Duration::ZERO));
        let (producer, mut buffer) = in_process_buffer::<()>(&cfg, p.clone()).unwrap();
        let mut model = Model::new(p.clone());
        let mut pending: Vec<usize> = vec![];
        let mut next = 0usize;
        let step = |op: &Op, model: &mut Model, buffer: &mut StreamBuffer, pending: &mut Vec<usize>, next: &mut usize| {
            match op {
                Op::Register if !model.done => {
                    match producer.pre_read_register(&format!("t{next}")) {
                        Ok(_) => {
                            model.order.push(*next);
                            pending.push(*next);
                            *next += 1;
                        }
                        Err(StreamError::Full { .. } | StreamError::Timeout { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                Op::Register => prop_assert_eq!(producer.pre_read_register("late").unwrap_err(), StreamError::AfterDone),
                Op::Put(k) if !pending.is_empty() => {
                    let i = pending.remove(k % pending.len());
                    put(&producer, i);
                    model.put(i);
                }
                Op::Put(_) => {}
                Op::Pop => {
                    let ready = buffer.has_chunk_ready().unwrap();
                    prop_assert_eq!(ready, model.ready());
                    if ready {
                        prop_assert_eq!(pop(buffer), model.pop());
                    } else {
                        prop_assert_eq!(buffer.pop_chunk().unwrap_err(), StreamError::NotReady);
                    }
                }
                Op::Done => {
                    producer.signal_done();
                    model.done = true;
                }
            }
            Ok(())
        };
        for op in &ops {
            step(op, &mut model, &mut buffer, &mut pending, &mut next)?;
        }
        // Finish: everything arrives, done, pop until nothing is ready.
        while !pending.is_empty() {
            step(&Op::Put(0), &mut model, &mut buffer, &mut pending, &mut next)?;
        }
        step(&Op::Done, &mut model, &mut buffer, &mut pending, &mut next)?;
        for _ in 0..200 {
            step(&Op::Pop, &mut model, &mut buffer, &mut pending, &mut next)?;
            if !model.ready() {
                break;
            }
        }
        prop_assert_eq!(buffer.has_chunk_ready().unwrap(), model.ready());
        if !p.continue_after_done() {
            prop_assert!(model.final_emitted, "no final chunk");
        }
    }
}

#[test]
fn a_buffer_debugs_as_its_stream_its_policy_and_its_consumer() {
    let (_producer, buffer) = setup("sliding:window=4,stride=2", 8);
    let shown = format!("{buffer:?}");
    assert!(shown.starts_with("StreamBuffer {"), "{shown}");
    assert!(shown.contains("request_id: \"r\""), "{shown}");
    assert!(shown.contains("window: 4"), "{shown}");
    assert!(shown.contains("consumer: Consumer"), "{shown}");
}

#[test]
fn none_waits_past_the_configured_timeout_which_next_chunk_keeps() {
    let cfg = StreamConfig::new(StreamId {
        request_id: "r".into(),
        edge_name: "e".into(),
        from_partition: "p".into(),
    })
    .with_capacity(4)
    .with_timeout(Some(std::time::Duration::from_millis(10)));
    let (producer, mut buffer) = in_process_buffer::<()>(&cfg, policy("fixed:size=1")).unwrap();
    // `next_chunk` keeps the configured 10 ms.
    assert!(matches!(
        buffer.next_chunk(),
        Err(StreamError::Timeout { .. })
    ));
    let late = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        producer.pre_read_register("t0").unwrap();
        put(&producer, 0);
        producer
    });
    // `None` is "until a chunk comes", not "the configured timeout".
    let started = std::time::Instant::now();
    let chunk = buffer.next_chunk_timeout(None).unwrap().unwrap();
    assert!(started.elapsed() >= std::time::Duration::from_millis(50));
    assert_eq!(chunk.start_offset(), 0);
    assert_eq!(chunk.len(), 1);
    drop(chunk);
    let _producer = late.join().unwrap();
}

/// Issue 25: `wait_chunk` (an event loop's helper thread waits with it,
/// the loop pops) waits for readiness and takes nothing: the chunk is
/// still there for `pop_chunk`, and after the final chunk it says `None`.
#[test]
fn wait_chunk_waits_without_popping() {
    let (producer, mut buffer) = setup("fixed:size=2", 8);
    for i in 0..2 {
        producer.pre_read_register(&format!("t{i}")).unwrap();
    }
    put(&producer, 0);
    assert!(matches!(
        buffer.wait_chunk(Some(std::time::Duration::from_millis(10))),
        Err(StreamError::Timeout { .. })
    ));
    put(&producer, 1);
    assert_eq!(
        buffer.wait_chunk(Some(std::time::Duration::ZERO)).unwrap(),
        Some(2)
    );
    assert_eq!(
        buffer.wait_chunk(None).unwrap(),
        Some(2),
        "nothing was taken"
    );
    assert_eq!(buffer.consumed(), 0);
    assert_eq!(pop(&mut buffer).ids, ["t0", "t1"]);
    producer.signal_done();
    let last = pop(&mut buffer);
    assert!(last.is_final);
    assert_eq!(buffer.wait_chunk(None).unwrap(), None);
}

/// `wait_room` waits for room without taking it: a full ring times out
/// with nothing registered, a popped chunk makes room, a size that can
/// never fit says so, and after done it says AfterDone (issue 25: a
/// cancelled `aregister` must leave no position behind).
#[test]
fn wait_room_waits_for_room_and_reserves_nothing() {
    let (producer, mut buffer) = setup("fixed:size=1", 2);
    for i in 0..2 {
        producer.pre_read_register(&format!("t{i}")).unwrap();
        put(&producer, i);
    }
    let short = Some(std::time::Duration::from_millis(5));
    assert!(matches!(
        producer.wait_room(8, short),
        Err(StreamError::Timeout { .. })
    ));
    assert_eq!(producer.registered(), 2);
    drop(buffer.pop_chunk().unwrap());
    producer.wait_room(8, short).unwrap();
    assert_eq!(producer.registered(), 2, "room is not a registration");
    let too_big = producer.payload_bytes() + 1;
    assert!(matches!(
        producer.wait_room(too_big, short),
        Err(StreamError::ExceedsPayload { .. })
    ));
    producer.signal_done();
    assert_eq!(producer.wait_room(8, short), Err(StreamError::AfterDone));
}
