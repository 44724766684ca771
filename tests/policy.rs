//! The chunk policies of SPEC section 3: their sequences of windows and
//! strides, their validation, and their names.

use proptest::prelude::*;
use shmstream::policy::{
    ChunkPolicy, Fixed, LeftContext, Policy, PolicyError, Ramp, Scheduled, Sliding,
};

/// The (window, stride) of the next `count` chunks, each popped with its
/// full stride.
fn chunks(policy: &mut dyn ChunkPolicy, count: usize) -> Vec<(usize, usize)> {
    (0..count)
        .map(|_| {
            let (window, stride) = (policy.window(), policy.stride());
            assert!(policy.is_ready(window), "{policy:?} not ready for {window}");
            assert!(window == 0 || !policy.is_ready(window - 1), "{policy:?}");
            policy.register_chunk(stride);
            (window, stride)
        })
        .collect()
}

fn windows(policy: &mut dyn ChunkPolicy, count: usize) -> Vec<usize> {
    chunks(policy, count).into_iter().map(|(w, _)| w).collect()
}

fn parse(name: &str) -> Policy {
    name.parse()
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn parse_error(name: &str) -> String {
    match name.parse::<Policy>() {
        Ok(policy) => panic!("{name} parsed as {policy:?}"),
        Err(error) => error.to_string(),
    }
}

// --- semantics ------------------------------------------------------------

#[test]
fn fixed_chunks_are_size_apart_without_overlap() {
    let mut fixed = Fixed::new(3).unwrap();
    assert!(!fixed.is_ready(2));
    assert_eq!(chunks(&mut fixed, 3), [(3, 3); 3]);
    assert!(!fixed.continue_after_done());
    assert!(Fixed::new(3)
        .unwrap()
        .continuing_after_done()
        .continue_after_done());
    assert_eq!(fixed.primed(), 0);
    assert_eq!(fixed.max_window(), 3);
}

#[test]
fn sliding_windows_overlap_by_window_minus_stride() {
    let mut sliding = Sliding::new(4, 2).unwrap();
    assert!(!sliding.is_ready(3));
    assert_eq!(chunks(&mut sliding, 3), [(4, 2); 3]);
    assert_eq!(sliding.max_window(), 4);
    assert_eq!(chunks(&mut Sliding::new(5, 5).unwrap(), 2), [(5, 5); 2]);
}

#[test]
fn left_context_first_chunk_is_shorter_than_the_rest() {
    let mut policy = LeftContext::new(10, 2).unwrap();
    assert!(!policy.is_ready(9));
    assert_eq!(chunks(&mut policy, 3), [(10, 8), (12, 10), (12, 10)]);
    assert!(!policy.is_ready(11));
    assert_eq!(policy.max_window(), 12);

    let mut without = LeftContext::new(10, 0).unwrap();
    assert_eq!(chunks(&mut without, 2), [(10, 10); 2]);
    assert_eq!(without.max_window(), 10);
}

#[test]
fn ramp_doubles_up_to_its_max() {
    let mut ramp = Ramp::new(4, 8, 2.0, Some(32)).unwrap();
    let got = chunks(&mut ramp, 6);
    assert_eq!(
        got,
        [(4, 4), (8, 8), (16, 16), (32, 32), (32, 32), (32, 32)]
    );
    assert_eq!(ramp.max_window(), 32);
}

#[test]
fn ramp_rounds_its_running_size_half_to_even() {
    // running sizes 5, 7.5, 11.25, 16.875, 25.3125, then capped at 30
    let mut ramp = Ramp::new(2, 5, 1.5, Some(30)).unwrap();
    assert_eq!(windows(&mut ramp, 7), [2, 5, 8, 11, 17, 25, 30]);
    // running sizes 8, 8.5, 9.03125, 9.5957..., 10.1954...
    let mut ramp = Ramp::new(1, 8, 1.0625, Some(100)).unwrap();
    assert_eq!(windows(&mut ramp, 6), [1, 8, 8, 9, 10, 10]);
}

#[test]
fn ramp_without_growth_stays_at_size() {
    let mut ramp = Ramp::new(4, 8, 1.0, None).unwrap();
    assert_eq!(windows(&mut ramp, 4), [4, 8, 8, 8]);
    assert_eq!(ramp.max_window(), 8);
    // A max that growth 1 never reaches is not counted as a window.
    assert_eq!(Ramp::new(4, 8, 1.0, Some(64)).unwrap().max_window(), 8);
}

#[test]
fn ramp_first_chunk_may_be_the_largest() {
    let mut ramp = Ramp::new(6, 2, 2.0, Some(6)).unwrap();
    assert_eq!(windows(&mut ramp, 5), [6, 2, 4, 6, 6]);
    assert_eq!(ramp.max_window(), 6);
    assert_eq!(Ramp::new(9, 2, 1.0, None).unwrap().max_window(), 9);
}

#[test]
fn ramp_sizes_beyond_f64_precision_stay_exact() {
    // 2^54 + 3 is no f64: as one it rounds to 2^54 + 4.
    let size = (1usize << 54) + 3;
    assert_ne!(size as f64 as usize, size);
    // Growth 1 never moves the running size, whatever the max: every chunk
    // after the first is `size`, and no window passes `max_window`.
    let mut flat = Ramp::new(1, size, 1.0, Some(usize::MAX)).unwrap();
    assert_eq!(flat.max_window(), size);
    assert_eq!(windows(&mut flat, 4), [1, size, size, size]);
    // The second chunk is `size` itself, not its f64 approximation.
    let mut growing = Ramp::new(1, size, 2.0, Some(usize::MAX)).unwrap();
    assert_eq!(windows(&mut growing, 2), [1, size]);
    assert_eq!(growing.max_window(), usize::MAX);
}

#[test]
fn ramp_counts_a_flush_as_a_chunk() {
    let mut ramp = Ramp::new(4, 8, 2.0, Some(32))
        .unwrap()
        .continuing_after_done();
    ramp.register_chunk(1);
    ramp.register_chunk(0);
    assert_eq!(ramp.window(), 16);
    assert!(ramp.continue_after_done());
}

#[test]
fn scheduled_follows_its_schedule_then_its_chunk() {
    let mut policy = Scheduled::new(vec![4, 8, 16], 25, 25, 0).unwrap();
    assert!(!policy.is_ready(3));
    assert_eq!(
        chunks(&mut policy, 6),
        [(4, 0), (12, 0), (28, 3), (50, 25), (50, 25), (50, 25)]
    );
    assert_eq!(policy.max_window(), 50);
}

#[test]
fn scheduled_context_grows_until_it_reaches_its_limit() {
    // Context 5 with 2 new items per chunk: 0, 2, 4, then 5 items of context.
    let mut policy = Scheduled::new(vec![], 2, 5, 0).unwrap();
    assert_eq!(
        chunks(&mut policy, 5),
        [(2, 0), (4, 0), (6, 1), (7, 2), (7, 2)]
    );
    // Without context, chunks do not overlap.
    let mut policy = Scheduled::new(vec![1, 3], 2, 0, 0).unwrap();
    assert_eq!(chunks(&mut policy, 3), [(1, 1), (3, 3), (2, 2)]);
}

#[test]
fn scheduled_prime_counts_as_delivered_context() {
    let mut policy = Scheduled::new(vec![4], 4, 2, 2).unwrap();
    assert_eq!(policy.primed(), 2);
    assert_eq!(chunks(&mut policy, 3), [(6, 4), (6, 4), (6, 4)]);
    let mut partial = Scheduled::new(vec![1], 3, 4, 2).unwrap();
    assert_eq!(chunks(&mut partial, 3), [(3, 0), (6, 2), (7, 3)]);
}

#[test]
fn scheduled_counts_a_flush_as_a_chunk() {
    let mut policy = Scheduled::new(vec![4, 8], 25, 25, 0).unwrap();
    policy.register_chunk(0);
    policy.register_chunk(12);
    assert_eq!((policy.window(), policy.stride()), (37, 12));
}

#[test]
fn scheduled_max_window_is_exact() {
    let max = |schedule: Vec<usize>, chunk, context, prime| {
        Scheduled::new(schedule, chunk, context, prime)
            .unwrap()
            .max_window()
    };
    assert_eq!(max(vec![4, 8, 16], 25, 25, 0), 50);
    assert_eq!(max(vec![100], 2, 3, 0), 100);
    assert_eq!(max(vec![1, 100], 2, 3, 0), 101);
    assert_eq!(max(vec![100], 2, 3, 3), 103);
    assert_eq!(max(vec![], 2, 3, 0), 5);
    // The bound is reached: a policy walked far enough shows it.
    let mut policy = Scheduled::new(vec![1, 100], 2, 3, 0).unwrap();
    assert_eq!(windows(&mut policy, 4).into_iter().max(), Some(101));
}

#[test]
fn policy_delegates_to_the_policy_it_holds() {
    let mut policy = parse("left-context:chunk=10,context=2");
    assert_eq!(chunks(&mut policy, 2), [(10, 8), (12, 10)]);
    assert_eq!(policy.max_window(), 12);
    let policy = parse("scheduled:chunk=4,context=3,prime=3");
    assert_eq!(policy.primed(), 3);
    assert!(parse("fixed:size=1,continue").continue_after_done());
    // Object safe, Send: what a stream holds.
    let boxed: Box<dyn ChunkPolicy> = Box::new(parse("fixed:size=2"));
    std::thread::spawn(move || assert!(boxed.is_ready(2)))
        .join()
        .unwrap();
}

#[test]
fn policies_compare_their_progress_too() {
    let fresh = parse("left-context:chunk=10,context=2");
    let mut moved = fresh.clone();
    assert_eq!(moved, fresh);
    moved.register_chunk(8);
    assert_ne!(moved, fresh);
    // The name is that of the parameters, whatever the progress.
    assert_eq!(moved.to_string(), fresh.to_string());
}

// --- validation -----------------------------------------------------------

fn message(result: Result<impl std::fmt::Debug, PolicyError>) -> String {
    result.unwrap_err().to_string()
}

#[test]
fn zero_counts_are_refused() {
    assert_eq!(
        Fixed::new(0).unwrap_err(),
        PolicyError::NotPositive {
            parameter: "fixed size"
        }
    );
    assert_eq!(
        message(Fixed::new(0)),
        "fixed size must be at least 1, got 0"
    );
    assert_eq!(
        message(Sliding::new(0, 0)),
        "sliding window must be at least 1, got 0"
    );
    assert_eq!(
        message(LeftContext::new(0, 0)),
        "left-context chunk must be at least 1, got 0"
    );
    assert_eq!(
        message(Ramp::new(0, 8, 1.0, None)),
        "ramp first must be at least 1, got 0"
    );
    assert_eq!(
        message(Ramp::new(4, 0, 1.0, None)),
        "ramp size must be at least 1, got 0"
    );
    assert_eq!(
        message(Scheduled::new(vec![], 0, 0, 0)),
        "scheduled chunk must be at least 1, got 0"
    );
    assert_eq!(
        message(Scheduled::new(vec![4, 8, 0], 25, 0, 0)),
        "scheduled schedule entry 2 (counting from 0) must be at least 1, got 0"
    );
}

#[test]
fn sliding_stride_must_be_within_the_window() {
    assert_eq!(
        message(Sliding::new(8, 9)),
        "sliding stride 9 must be between 1 and the window 8"
    );
    assert_eq!(
        Sliding::new(8, 0).unwrap_err(),
        PolicyError::StrideOutOfRange {
            stride: 0,
            window: 8
        }
    );
    assert!(Sliding::new(8, 8).is_ok());
    assert!(Sliding::new(8, 1).is_ok());
}

#[test]
fn left_context_must_be_below_the_chunk() {
    assert_eq!(
        message(LeftContext::new(10, 10)),
        "left-context context 10 must be between 0 and 9 (below the chunk 10)"
    );
    assert!(LeftContext::new(10, 9).is_ok());
}

#[test]
fn ramp_growth_must_be_finite_and_at_least_one() {
    assert_eq!(
        message(Ramp::new(4, 8, 0.5, Some(32))),
        "ramp growth 0.5 must be a finite number of at least 1"
    );
    assert_eq!(
        message(Ramp::new(4, 8, f64::INFINITY, Some(32))),
        "ramp growth inf must be a finite number of at least 1"
    );
    assert!(matches!(
        Ramp::new(4, 8, f64::NAN, Some(32)),
        Err(PolicyError::GrowthOutOfRange { growth }) if growth.is_nan()
    ));
}

#[test]
fn ramp_growth_above_one_needs_a_max() {
    assert_eq!(
        message(Ramp::new(4, 8, 1.5, None)),
        "ramp growth 1.5 is above 1, so a max is required to bound the chunk size"
    );
}

#[test]
fn ramp_max_must_cover_first_and_size() {
    assert_eq!(
        message(Ramp::new(4, 8, 2.0, Some(7))),
        "ramp max 7 must be at least the first size 4 and the size 8"
    );
    assert_eq!(
        Ramp::new(9, 8, 2.0, Some(8)).unwrap_err(),
        PolicyError::MaxTooSmall {
            max: 8,
            first: 9,
            size: 8
        }
    );
    assert!(Ramp::new(8, 8, 2.0, Some(8)).is_ok());
}

#[test]
fn scheduled_prime_must_not_exceed_the_context() {
    assert_eq!(
        message(Scheduled::new(vec![4], 25, 2, 3)),
        "scheduled prime 3 must be between 0 and the context 2"
    );
    assert!(Scheduled::new(vec![4], 25, 2, 2).is_ok());
    assert!(Scheduled::new(vec![], 25, 0, 0).is_ok());
}

// --- names ----------------------------------------------------------------

#[test]
fn every_documented_name_parses() {
    assert_eq!(
        parse("fixed:size=30"),
        Policy::Fixed(Fixed::new(30).unwrap())
    );
    assert_eq!(
        parse("fixed:size=30,continue"),
        Policy::Fixed(Fixed::new(30).unwrap().continuing_after_done())
    );
    assert_eq!(
        parse("sliding:window=28,stride=7"),
        Policy::Sliding(Sliding::new(28, 7).unwrap())
    );
    assert_eq!(
        parse("left-context:chunk=10,context=2"),
        Policy::LeftContext(LeftContext::new(10, 2).unwrap())
    );
    assert_eq!(
        parse("ramp:first=4,size=8,growth=2,max=32"),
        Policy::Ramp(Ramp::new(4, 8, 2.0, Some(32)).unwrap())
    );
    assert_eq!(
        parse("ramp:first=4,size=8,growth=1.5,max=32,continue"),
        Policy::Ramp(
            Ramp::new(4, 8, 1.5, Some(32))
                .unwrap()
                .continuing_after_done()
        )
    );
    assert_eq!(
        parse("ramp:first=4,size=8"),
        Policy::Ramp(Ramp::new(4, 8, 1.0, None).unwrap())
    );
    assert_eq!(
        parse("scheduled:schedule=4/8/16,chunk=25,context=25"),
        Policy::Scheduled(Scheduled::new(vec![4, 8, 16], 25, 25, 0).unwrap())
    );
    assert_eq!(
        parse("scheduled:schedule=4/8/16,chunk=25,context=25,prime=0"),
        Policy::Scheduled(Scheduled::new(vec![4, 8, 16], 25, 25, 0).unwrap())
    );
    assert_eq!(
        parse("scheduled:chunk=25,context=25,prime=5"),
        Policy::Scheduled(Scheduled::new(vec![], 25, 25, 5).unwrap())
    );
}

#[test]
fn names_allow_any_key_order_and_spaces() {
    assert_eq!(
        parse(" sliding : stride = 7 , window = 28 "),
        parse("sliding:window=28,stride=7")
    );
    assert_eq!(
        parse("scheduled:prime=1,context=2,chunk=3,schedule= 4 / 5 "),
        Policy::Scheduled(Scheduled::new(vec![4, 5], 3, 2, 1).unwrap())
    );
    assert_eq!(
        parse("scheduled:schedule=,chunk=3,context=2"),
        parse("scheduled:chunk=3,context=2")
    );
}

#[test]
fn names_print_canonically() {
    for (name, canonical) in [
        ("fixed:size=30", "fixed:size=30"),
        ("fixed:continue,size=30", "fixed:size=30,continue"),
        ("sliding:stride=7,window=28", "sliding:window=28,stride=7"),
        (
            "left-context:chunk=10,context=0",
            "left-context:chunk=10,context=0",
        ),
        (
            "ramp:first=4,size=8,growth=2,max=32",
            "ramp:first=4,size=8,growth=2,max=32",
        ),
        ("ramp:growth=1.0,size=8,first=4", "ramp:first=4,size=8"),
        (
            "ramp:first=4,size=8,max=8,continue",
            "ramp:first=4,size=8,max=8,continue",
        ),
        (
            "ramp:first=1,size=8,growth=1.0625,max=99",
            "ramp:first=1,size=8,growth=1.0625,max=99",
        ),
        (
            "scheduled:schedule=4/8/16,chunk=25,context=25,prime=0",
            "scheduled:schedule=4/8/16,chunk=25,context=25",
        ),
        (
            "scheduled:chunk=25,context=25,prime=3",
            "scheduled:chunk=25,context=25,prime=3",
        ),
    ] {
        assert_eq!(parse(name).to_string(), canonical, "{name}");
        assert_eq!(parse(canonical), parse(name), "{name}");
    }
}

#[test]
fn an_unknown_policy_lists_the_accepted_names() {
    assert_eq!(
        parse_error("tumbling:size=3"),
        "unknown chunk policy `tumbling`; the accepted policies are fixed, sliding, left-context, ramp and scheduled"
    );
    assert_eq!(
        parse_error(""),
        "the chunk policy name is empty; the accepted policies are fixed, sliding, left-context, ramp and scheduled"
    );
    assert_eq!(
        "Fixed:size=3".parse::<Policy>().unwrap_err(),
        PolicyError::UnknownPolicy {
            name: "Fixed".into()
        }
    );
}

#[test]
fn an_unknown_key_lists_the_keys_of_its_policy() {
    assert_eq!(
        parse_error("fixed:size=3,stride=1"),
        "fixed policy has no key `stride`; it accepts size and continue"
    );
    assert_eq!(
        parse_error("sliding:window=4,step=2"),
        "sliding policy has no key `step`; it accepts window and stride"
    );
    assert_eq!(
        parse_error("left-context:chunk=4,left=1"),
        "left-context policy has no key `left`; it accepts chunk and context"
    );
    assert_eq!(
        parse_error("ramp:first=1,size=2,cap=4"),
        "ramp policy has no key `cap`; it accepts first, size, growth, max and continue"
    );
    assert_eq!(
        parse_error("scheduled:chunk=1,context=0,continue"),
        "scheduled policy has no key `continue`; it accepts schedule, chunk, context and prime"
    );
}

#[test]
fn a_missing_key_is_named_with_an_example() {
    assert_eq!(
        parse_error("fixed"),
        "fixed policy needs the key `size`, as in `fixed:size=30`"
    );
    assert_eq!(
        parse_error("sliding:window=4"),
        "sliding policy needs the key `stride`, as in `sliding:window=28,stride=7`"
    );
    assert_eq!(
        parse_error("left-context:context=2"),
        "left-context policy needs the key `chunk`, as in `left-context:chunk=10,context=2`"
    );
    assert_eq!(
        parse_error("ramp:first=4,growth=2"),
        "ramp policy needs the key `size`, as in `ramp:first=4,size=8,growth=2,max=32`"
    );
    assert_eq!(
        parse_error("scheduled:schedule=4,chunk=25"),
        "scheduled policy needs the key `context`, as in `scheduled:schedule=4/8/16,chunk=25,context=25`"
    );
}

#[test]
fn a_bad_number_is_named() {
    assert_eq!(
        parse_error("fixed:size=three"),
        format!(
            "fixed size `three` is not a whole number from 0 to {}",
            usize::MAX
        )
    );
    assert_eq!(
        "sliding:window=-4,stride=2".parse::<Policy>().unwrap_err(),
        PolicyError::BadNumber {
            policy: "sliding",
            key: "window",
            value: "-4".into()
        }
    );
    assert_eq!(
        parse_error("ramp:first=4,size=8,growth=fast,max=32"),
        "ramp growth `fast` is not a number"
    );
    assert_eq!(
        parse_error("scheduled:schedule=4/x/16,chunk=25,context=25"),
        format!(
            "scheduled schedule entry `x` is not a whole number from 0 to {}",
            usize::MAX
        )
    );
    assert!(parse_error("scheduled:schedule=4//16,chunk=25,context=25")
        .starts_with("scheduled schedule entry `` is not a whole number"));
    assert!(parse_error("fixed:size=99999999999999999999999").contains("99999999999999999999999"));
}

#[test]
fn a_repeated_key_is_named() {
    assert_eq!(
        parse_error("fixed:size=3,size=4"),
        "fixed key `size` is given more than once"
    );
    assert_eq!(
        parse_error("ramp:first=1,size=2,continue,continue"),
        "ramp key `continue` is given more than once"
    );
}

#[test]
fn values_and_flags_are_not_mixed_up() {
    assert_eq!(
        parse_error("fixed:size"),
        "fixed key `size` needs a value, as in `size=8`"
    );
    assert_eq!(
        parse_error("fixed:size=3,continue=yes"),
        "fixed flag `continue` takes no value, got `continue=yes`"
    );
}

#[test]
fn an_empty_parameter_is_refused() {
    assert_eq!(
        parse_error("fixed:size=3,"),
        "fixed policy has an empty parameter (two commas in a row or a trailing comma)"
    );
    assert_eq!(
        "sliding:window=4,,stride=2".parse::<Policy>().unwrap_err(),
        PolicyError::EmptyParameter { policy: "sliding" }
    );
}

#[test]
fn a_parsed_policy_is_validated() {
    assert_eq!(
        parse_error("sliding:window=8,stride=9"),
        "sliding stride 9 must be between 1 and the window 8"
    );
    assert_eq!(
        parse_error("ramp:first=4,size=8,growth=2"),
        "ramp growth 2 is above 1, so a max is required to bound the chunk size"
    );
    assert_eq!(
        parse_error("ramp:first=4,size=8,growth=NaN,max=9"),
        "ramp growth NaN must be a finite number of at least 1"
    );
    assert_eq!(
        parse_error("scheduled:schedule=4/0,chunk=25,context=25"),
        "scheduled schedule entry 1 (counting from 0) must be at least 1, got 0"
    );
}

#[test]
fn policy_errors_are_std_errors() {
    let error: Box<dyn std::error::Error + Send + Sync> =
        Box::new("fixed:size=0".parse::<Policy>().unwrap_err());
    assert_eq!(error.to_string(), "fixed size must be at least 1, got 0");
}

// --- accessors ------------------------------------------------------------

/// Builds `policy` again from what its public accessors say, through the
/// validating constructors: equal to `policy` only if every accessor reads
/// back its parameter (a fresh policy, as parsed or built, is assumed).
fn rebuild(policy: &Policy) -> Policy {
    match policy {
        Policy::Fixed(p) => {
            let fixed = Fixed::new(p.size()).unwrap();
            if p.continue_after_done() {
                fixed.continuing_after_done().into()
            } else {
                fixed.into()
            }
        }
        Policy::Sliding(p) => Sliding::new(Sliding::window(p), Sliding::stride(p))
            .unwrap()
            .into(),
        Policy::LeftContext(p) => LeftContext::new(p.chunk(), p.context()).unwrap().into(),
        Policy::Ramp(p) => {
            let ramp = Ramp::new(p.first(), p.size(), p.growth(), p.max()).unwrap();
            if p.continue_after_done() {
                ramp.continuing_after_done().into()
            } else {
                ramp.into()
            }
        }
        Policy::Scheduled(p) => {
            Scheduled::new(p.schedule().to_vec(), p.chunk(), p.context(), p.prime())
                .unwrap()
                .into()
        }
    }
}

#[test]
fn every_accessor_reads_back_its_parameter_of_the_name() {
    // Distinct values, none 0 or 1, so that no accessor is right by chance.
    let Policy::Fixed(fixed) = parse("fixed:size=30") else {
        panic!("not fixed")
    };
    assert_eq!(fixed.size(), 30);
    assert!(!fixed.continue_after_done());
    let Policy::Fixed(fixed) = parse("fixed:size=31,continue") else {
        panic!("not fixed")
    };
    assert_eq!(fixed.size(), 31);
    assert!(fixed.continue_after_done());

    let Policy::Sliding(sliding) = parse("sliding:window=28,stride=7") else {
        panic!("not sliding")
    };
    assert_eq!(
        (Sliding::window(&sliding), Sliding::stride(&sliding)),
        (28, 7)
    );

    let Policy::LeftContext(left) = parse("left-context:chunk=10,context=3") else {
        panic!("not left-context")
    };
    assert_eq!((left.chunk(), left.context()), (10, 3));

    let Policy::Ramp(ramp) = parse("ramp:first=4,size=6,growth=2.5,max=32,continue") else {
        panic!("not ramp")
    };
    assert_eq!((ramp.first(), ramp.size()), (4, 6));
    assert_eq!(ramp.growth(), 2.5);
    assert_eq!(ramp.max(), Some(32));
    assert!(ramp.continue_after_done());
    let Policy::Ramp(ramp) = parse("ramp:first=5,size=3") else {
        panic!("not ramp")
    };
    assert_eq!((ramp.first(), ramp.size()), (5, 3));
    assert_eq!((ramp.growth(), ramp.max()), (1.0, None));
    assert!(!ramp.continue_after_done());

    let Policy::Scheduled(scheduled) =
        parse("scheduled:schedule=4/8/16,chunk=25,context=7,prime=5")
    else {
        panic!("not scheduled")
    };
    assert_eq!(scheduled.schedule(), [4, 8, 16]);
    assert_eq!(
        (scheduled.chunk(), scheduled.context(), scheduled.prime()),
        (25, 7, 5)
    );
    assert_eq!(scheduled.primed(), 5);
    let Policy::Scheduled(scheduled) = parse("scheduled:chunk=2,context=3") else {
        panic!("not scheduled")
    };
    assert_eq!(scheduled.schedule(), [] as [usize; 0]);
    assert_eq!(
        (scheduled.chunk(), scheduled.context(), scheduled.prime()),
        (2, 3, 0)
    );
}

#[test]
fn continuing_after_done_changes_only_that() {
    let fixed = Fixed::new(7).unwrap();
    let endless = fixed.clone().continuing_after_done();
    assert!(endless.continue_after_done());
    assert_eq!(endless.size(), 7);
    assert_ne!(endless, fixed);
    assert_eq!(endless.clone().continuing_after_done(), endless);
    assert_eq!(endless.to_string(), "fixed:size=7,continue");

    let ramp = Ramp::new(2, 3, 2.0, Some(12)).unwrap();
    let endless = ramp.clone().continuing_after_done();
    assert!(endless.continue_after_done());
    assert_eq!(
        (
            endless.first(),
            endless.size(),
            endless.growth(),
            endless.max()
        ),
        (2, 3, 2.0, Some(12))
    );
    assert_ne!(endless, ramp);
    assert_eq!(
        windows(&mut endless.clone(), 5),
        windows(&mut ramp.clone(), 5)
    );
    assert_eq!(
        endless.to_string(),
        "ramp:first=2,size=3,growth=2,max=12,continue"
    );
}

// --- round trip -----------------------------------------------------------

fn any_policy() -> impl Strategy<Value = Policy> {
    let count = 1..100_000usize;
    prop_oneof![
        (count.clone(), any::<bool>()).prop_map(|(size, cont)| {
            let fixed = Fixed::new(size).unwrap();
            (if cont {
                fixed.continuing_after_done()
            } else {
                fixed
            })
            .into()
        }),
        count
            .clone()
            .prop_flat_map(|window| (Just(window), 1..=window))
            .prop_map(|(window, stride)| Sliding::new(window, stride).unwrap().into()),
        count
            .clone()
            .prop_flat_map(|chunk| (Just(chunk), 0..chunk))
            .prop_map(|(chunk, context)| LeftContext::new(chunk, context).unwrap().into()),
        (
            count.clone(),
            count.clone(),
            prop_oneof![Just(1.0), 1.0..10.0f64],
            prop::option::of(0..1000usize),
            any::<bool>(),
        )
            .prop_map(|(first, size, growth, extra, cont)| {
                // A growth above 1 needs a max.
                let extra = if growth > 1.0 {
                    extra.or(Some(0))
                } else {
                    extra
                };
                let max = extra.map(|extra| first.max(size) + extra);
                let ramp = Ramp::new(first, size, growth, max).unwrap();
                (if cont {
                    ramp.continuing_after_done()
                } else {
                    ramp
                })
                .into()
            }),
        (
            prop::collection::vec(count.clone(), 0..5),
            count,
            0..1000usize
        )
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

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 8 } else { 512 },
        // Failing cases are printed, not saved: no files beside the tests
        // (and none read, which Miri's isolation forbids).
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_printed_name_parses_back_to_the_same_policy(policy in any_policy()) {
        let name = policy.to_string();
        let parsed: Policy = name.parse().unwrap();
        prop_assert_eq!(&parsed, &policy);
        prop_assert_eq!(parsed.to_string(), name);
    }

    #[test]
    fn the_accessors_rebuild_the_policy_before_and_after_its_name(policy in any_policy()) {
        prop_assert_eq!(&rebuild(&policy), &policy);
        let parsed: Policy = policy.to_string().parse().unwrap();
        prop_assert_eq!(&rebuild(&parsed), &policy);
    }

    #[test]
    fn max_window_bounds_every_window(policy in any_policy()) {
        let mut policy = policy;
        let max = policy.max_window();
        let mut largest = 0;
        // Enough chunks for a context of 999 to fill one item at a time, and
        // for a ramp growing by 1.1 to get from 1 to 101_000.
        for _ in 0..1100 {
            let (window, stride) = (policy.window(), policy.stride());
            prop_assert!(window <= max, "{} gave {} above {}", policy, window, max);
            prop_assert!(stride <= window);
            prop_assert!(policy.is_ready(window));
            largest = largest.max(window);
            policy.register_chunk(stride);
        }
        // The bound is exact, except that a ramp growing slowly takes more
        // chunks to get there than this test walks.
        let slow = matches!(&policy, Policy::Ramp(ramp) if ramp.growth() > 1.0 && ramp.growth() < 1.1);
        if !slow {
            prop_assert_eq!(largest, max, "{}", policy);
        }
    }
}
