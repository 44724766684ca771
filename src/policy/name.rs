//! [`Policy`]: any of the five built-in policies, and its name
//! (`kind:key=value,...`), printed and parsed.

use super::error::PolicyError;
use super::fixed::Fixed;
use super::left_context::LeftContext;
use super::ramp::Ramp;
use super::scheduled::Scheduled;
use super::sliding::Sliding;
use super::spelling::{Spelling, SPELLINGS};
use super::ChunkPolicy;
use std::fmt;
use std::str::FromStr;

/// Any of the built-in chunk policies; this is what a policy name parses to.
///
/// `Display` prints the canonical name of the policy's parameters (not of
/// its progress through a stream), and parsing that name gives back an equal,
/// fresh policy. Two policies are equal when their parameters are equal and
/// they are at the same point of their sequence of chunks.
///
/// Names are `kind:key=value,...` with the keys in any order: `fixed:size=30`,
/// `fixed:size=30,continue`, `sliding:window=28,stride=7`,
/// `left-context:chunk=10,context=2`,
/// `ramp:first=4,size=8,growth=2,max=32,continue` (`growth` defaults to 1,
/// `max` and `continue` are optional),
/// `scheduled:schedule=4/8/16,chunk=25,context=25,prime=0` (`schedule`
/// defaults to empty, `prime` to 0). Whitespace around the whole name and
/// around each key and value is ignored; names and keys are lower case.
///
/// # Examples
///
/// ```
/// use shmstream::policy::{ChunkPolicy, Policy, Sliding};
///
/// let policy = "sliding:window=4,stride=2".parse::<shmstream::policy::Policy>()?;
/// assert_eq!(policy, Policy::Sliding(Sliding::new(4, 2)?));
/// assert_eq!((policy.window(), policy.stride()), (4, 2));
/// assert_eq!(policy.to_string(), "sliding:window=4,stride=2");
///
/// let error = "sliding:window=4,step=2".parse::<Policy>().unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "sliding policy has no key `step`; it accepts window and stride"
/// );
/// # Ok::<(), shmstream::policy::PolicyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Policy {
    /// See [`Fixed`].
    Fixed(Fixed),
    /// See [`Sliding`].
    Sliding(Sliding),
    /// See [`LeftContext`].
    LeftContext(LeftContext),
    /// See [`Ramp`].
    Ramp(Ramp),
    /// See [`Scheduled`].
    Scheduled(Scheduled),
}

impl Policy {
    fn inner(&self) -> &dyn ChunkPolicy {
        match self {
            Self::Fixed(p) => p,
            Self::Sliding(p) => p,
            Self::LeftContext(p) => p,
            Self::Ramp(p) => p,
            Self::Scheduled(p) => p,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn ChunkPolicy {
        match self {
            Self::Fixed(p) => p,
            Self::Sliding(p) => p,
            Self::LeftContext(p) => p,
            Self::Ramp(p) => p,
            Self::Scheduled(p) => p,
        }
    }
}

impl ChunkPolicy for Policy {
    fn is_ready(&self, available: usize) -> bool {
        self.inner().is_ready(available)
    }
    fn window(&self) -> usize {
        self.inner().window()
    }
    fn stride(&self) -> usize {
        self.inner().stride()
    }
    fn register_chunk(&mut self, advanced: usize) {
        self.inner_mut().register_chunk(advanced);
    }
    fn continue_after_done(&self) -> bool {
        self.inner().continue_after_done()
    }
    fn primed(&self) -> usize {
        self.inner().primed()
    }
    fn max_window(&self) -> usize {
        self.inner().max_window()
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(p) => p.fmt(f),
            Self::Sliding(p) => p.fmt(f),
            Self::LeftContext(p) => p.fmt(f),
            Self::Ramp(p) => p.fmt(f),
            Self::Scheduled(p) => p.fmt(f),
        }
    }
}

impl From<Fixed> for Policy {
    fn from(policy: Fixed) -> Self {
        Self::Fixed(policy)
    }
}

impl From<Sliding> for Policy {
    fn from(policy: Sliding) -> Self {
        Self::Sliding(policy)
    }
}

impl From<LeftContext> for Policy {
    fn from(policy: LeftContext) -> Self {
        Self::LeftContext(policy)
    }
}

impl From<Ramp> for Policy {
    fn from(policy: Ramp) -> Self {
        Self::Ramp(policy)
    }
}

impl From<Scheduled> for Policy {
    fn from(policy: Scheduled) -> Self {
        Self::Scheduled(policy)
    }
}

/// What the parser knows of one policy name: its spelling, and how to
/// build the policy from its parameters.
#[derive(Clone, Copy)]
struct Kind {
    spelling: &'static Spelling,
    build: fn(&Params<'_>) -> Result<Policy, PolicyError>,
}

impl std::ops::Deref for Kind {
    type Target = Spelling;
    fn deref(&self) -> &Spelling {
        self.spelling
    }
}

const KINDS: [Kind; 5] = [
    Kind {
        spelling: &SPELLINGS[0],
        build: |p| {
            let fixed = Fixed::new(p.required("size")?)?;
            Ok(continuing_if(p.flag("continue")?, fixed, Fixed::continuing_after_done).into())
        },
    },
    Kind {
        spelling: &SPELLINGS[1],
        build: |p| Ok(Sliding::new(p.required("window")?, p.required("stride")?)?.into()),
    },
    Kind {
        spelling: &SPELLINGS[2],
        build: |p| Ok(LeftContext::new(p.required("chunk")?, p.required("context")?)?.into()),
    },
    Kind {
        spelling: &SPELLINGS[3],
        build: |p| {
            let first = p.required("first")?;
            let size = p.required("size")?;
            let growth = p.real("growth")?.unwrap_or(1.0);
            let max = p.optional("max")?;
            let ramp = Ramp::new(first, size, growth, max)?;
            Ok(continuing_if(p.flag("continue")?, ramp, Ramp::continuing_after_done).into())
        },
    },
    Kind {
        spelling: &SPELLINGS[4],
        build: |p| {
            let schedule = p.list("schedule")?;
            let chunk = p.required("chunk")?;
            let context = p.required("context")?;
            let prime = p.optional("prime")?.unwrap_or(0);
            Ok(Scheduled::new(schedule, chunk, context, prime)?.into())
        },
    },
];

/// `policy`, made to continue after done when the name says `continue`.
fn continuing_if<P>(flag: bool, policy: P, continuing: fn(P) -> P) -> P {
    if flag {
        continuing(policy)
    } else {
        policy
    }
}

impl Kind {
    fn named(name: &str) -> Option<Kind> {
        KINDS.into_iter().find(|kind| kind.name == name)
    }
}

/// The parameters of one policy name: for each key of its kind, whether it
/// was given and with what value.
struct Params<'a> {
    kind: Kind,
    /// Indexed like `kind.keys`: `None` when absent, `Some(None)` for a key
    /// given without `=`.
    values: [Option<Option<&'a str>>; 5],
}

impl<'a> Params<'a> {
    fn parse(kind: Kind, text: &'a str) -> Result<Self, PolicyError> {
        let mut params = Params {
            kind,
            values: [None; 5],
        };
        if text.trim().is_empty() {
            return Ok(params);
        }
        for item in text.split(',') {
            let (key, value) = match item.split_once('=') {
                Some((key, value)) => (key.trim(), Some(value.trim())),
                None => (item.trim(), None),
            };
            if key.is_empty() && value.is_none() {
                return Err(PolicyError::EmptyParameter { policy: kind.name });
            }
            let index = kind.keys.iter().position(|&k| k == key).ok_or_else(|| {
                PolicyError::UnknownKey {
                    policy: kind.name,
                    key: key.to_owned(),
                }
            })?;
            if params.values[index].is_some() {
                return Err(PolicyError::RepeatedKey {
                    policy: kind.name,
                    key: kind.keys[index],
                });
            }
            params.values[index] = Some(value);
        }
        Ok(params)
    }

    /// The value of `key`, `None` when absent; an error when it was given
    /// without a value.
    fn text(&self, key: &'static str) -> Result<Option<&'a str>, PolicyError> {
        let index = self.index(key);
        match self.values[index] {
            None => Ok(None),
            Some(None) => Err(PolicyError::MissingValue {
                policy: self.kind.name,
                key,
            }),
            Some(Some(value)) => Ok(Some(value)),
        }
    }

    fn index(&self, key: &'static str) -> usize {
        self.kind
            .keys
            .iter()
            .position(|&k| k == key)
            .expect("the parser asks only for keys its kind lists")
    }

    fn whole(&self, key: &'static str, value: &str) -> Result<usize, PolicyError> {
        value.parse().map_err(|_| PolicyError::BadNumber {
            policy: self.kind.name,
            key,
            value: value.to_owned(),
        })
    }

    fn optional(&self, key: &'static str) -> Result<Option<usize>, PolicyError> {
        self.text(key)?
            .map(|value| self.whole(key, value))
            .transpose()
    }

    fn required(&self, key: &'static str) -> Result<usize, PolicyError> {
        self.optional(key)?.ok_or(PolicyError::MissingKey {
            policy: self.kind.name,
            key,
        })
    }

    fn flag(&self, key: &'static str) -> Result<bool, PolicyError> {
        match self.values[self.index(key)] {
            None => Ok(false),
            Some(None) => Ok(true),
            Some(Some(value)) => Err(PolicyError::UnexpectedValue {
                policy: self.kind.name,
                key,
                value: value.to_owned(),
            }),
        }
    }

    fn real(&self, key: &'static str) -> Result<Option<f64>, PolicyError> {
        self.text(key)?
            .map(|value| {
                value.parse().map_err(|_| PolicyError::BadNumber {
                    policy: self.kind.name,
                    key,
                    value: value.to_owned(),
                })
            })
            .transpose()
    }

    /// A `/`-separated list; an empty value is an empty list.
    fn list(&self, key: &'static str) -> Result<Vec<usize>, PolicyError> {
        match self.text(key)? {
            None => Ok(Vec::new()),
            Some("") => Ok(Vec::new()),
            Some(value) => value
                .split('/')
                .map(|entry| self.whole("schedule entry", entry.trim()))
                .collect(),
        }
    }
}

impl FromStr for Policy {
    type Err = PolicyError;

    /// Parses a policy name such as `sliding:window=28,stride=7`; see
    /// [`Policy`] for the names.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (name, rest) = text.split_once(':').unwrap_or((text, ""));
        let name = name.trim();
        let kind = Kind::named(name).ok_or_else(|| PolicyError::UnknownPolicy {
            name: name.to_owned(),
        })?;
        // Each builder reads its keys in canonical order, so that of several
        // problems the first in the canonical name is reported.
        (kind.build)(&Params::parse(kind, rest)?)
    }
}
