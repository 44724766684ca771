//! Command-line pieces shared by the binaries: a stream's identity, its
//! ring, the synthetic items, and value parsers whose errors are one
//! sentence. Each group can be turned back into arguments, which is how
//! `ipc-demo run` hands its settings to the processes it starts.

use crate::sizes::{fmt_bytes, parse_bytes, ItemPlan, SizeMix, MAX_ITEM_BYTES};
use clap::{Args, ValueEnum};
use shmstream::{
    DType, StreamConfig, StreamId, TensorMeta, DEFAULT_PREFIX, MAX_CAPACITY, MAX_DIMS,
    MAX_PAYLOAD_BYTES,
};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The request id of `ipc-producer` and `ipc-consumer` when none is given.
pub const DEFAULT_REQUEST_ID: &str = "demo-req";
/// The chunk policy when none is given.
pub const DEFAULT_POLICY: &str = "sliding:window=28,stride=7";

/// Which stream a process opens or creates, and how long it waits.
#[derive(Args, Clone, Debug)]
pub struct IdentityArgs {
    /// Request id of the stream (default: `demo-req`; `ipc-demo run`: `demo-<its pid>`).
    #[arg(
        long,
        value_name = "ID",
        help = "Request id of the stream [default: demo-req; ipc-demo run: demo-<its pid>]"
    )]
    pub request_id: Option<String>,
    /// Graph edge the stream carries
    #[arg(long, value_name = "NAME", default_value = "codec_tokens")]
    pub edge: String,
    /// Partition the stream comes from
    #[arg(long, value_name = "NAME", default_value = "talker")]
    pub partition: String,
    /// Prefix of the shared-memory segment's name
    #[arg(long, value_name = "PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    /// Seconds a blocking wait (full ring, next chunk, drain) may last
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub timeout: Duration,
}

impl IdentityArgs {
    /// The stream's configuration, with `default_request` when no request
    /// id was given (ring sizes as `ring` says, or the library's default;
    /// the payload size as `--payload-bytes` says: see
    /// [`RingArgs::payload_for`] for the tools' default).
    pub fn config(&self, default_request: &str, ring: Option<&RingArgs>) -> StreamConfig {
        let request = self.request_id.as_deref().unwrap_or(default_request);
        let mut config = StreamConfig::new(StreamId {
            request_id: String::from(request),
            edge_name: String::from(&self.edge),
            from_partition: String::from(&self.partition),
        })
        .with_prefix(&self.prefix)
        .with_timeout(Some(self.timeout));
        if let Some(ring) = ring {
            config = config
                .with_capacity(ring.capacity)
                .with_item_bytes(ring.item_bytes);
            if let Some(payload) = ring.payload_bytes {
                config = config.with_payload_bytes(payload);
            }
        }
        config
    }

    /// As [`config`](Self::config), for the request id `request` whatever
    /// `--request-id` says (a stream of a many-streams run).
    pub fn config_of(&self, request: &str, ring: Option<&RingArgs>) -> StreamConfig {
        let identity = IdentityArgs {
            request_id: Some(request.to_string()),
            ..self.clone()
        };
        identity.config(request, ring)
    }

    /// These settings as arguments, with `request` as the request id.
    pub fn to_args(&self, request: &str, out: &mut Vec<String>) {
        push(out, "--request-id", request);
        push(out, "--edge", &self.edge);
        push(out, "--partition", &self.partition);
        push(out, "--prefix", &self.prefix);
        push(out, "--timeout", self.timeout.as_secs_f64());
    }
}

/// The producer's ring: how many items, the default reservation, and the
/// payload ring where items lie back to back.
#[derive(Args, Clone, Debug)]
pub struct RingArgs {
    /// Items the ring holds at most (a power of two, up to 1048576)
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = item_capacity)]
    pub capacity: u64,
    /// Bytes a registration without a size reserves, e.g. 4096 or 4K (K, M, G: powers of 1024)
    #[arg(long, value_name = "BYTES", default_value = "4096", value_parser = item_size)]
    pub item_bytes: u64,
    /// Bytes of the payload ring: a power of two from 4K to 1T, e.g. 64M [default: capacity x item-bytes, raised to hold the largest item (ipc-demo run: the policy's largest window of items), rounded up to a power of two]
    #[arg(long, value_name = "BYTES", value_parser = payload_size)]
    pub payload_bytes: Option<u64>,
}

impl RingArgs {
    /// These settings as arguments.
    pub fn to_args(&self, out: &mut Vec<String>) {
        push(out, "--capacity", self.capacity);
        push(out, "--item-bytes", self.item_bytes);
        if let Some(payload) = self.payload_bytes {
            push(out, "--payload-bytes", payload);
        }
    }

    /// The payload ring's size: `--payload-bytes`, or the default (see the
    /// flag's help) when it holds `need` bytes; `need` is what the items
    /// in the ring at once may take, `what` says which items those are.
    ///
    /// # Errors
    ///
    /// `--item-bytes` larger than the payload, or a `--payload-bytes` too
    /// small for `need`; each sentence names the flags and the sizes.
    pub fn payload_for(&self, need: u64, what: &str) -> Result<u64, String> {
        let payload = match self.payload_bytes {
            Some(p) => p,
            None => self
                .capacity
                .saturating_mul(self.item_bytes)
                .max(need)
                .max(4096)
                .checked_next_power_of_two()
                .filter(|&p| p <= MAX_PAYLOAD_BYTES)
                .ok_or_else(|| {
                    format!(
                        "{what} need more than the largest payload ring of {} ({MAX_PAYLOAD_BYTES} bytes)",
                        fmt_bytes(MAX_PAYLOAD_BYTES)
                    )
                })?,
        };
        if need > payload {
            return Err(format!(
                "{what} need up to {need} bytes of payload, more than --payload-bytes {} ({payload} bytes); raise --payload-bytes to {} or leave it out",
                fmt_bytes(payload),
                fmt_bytes(need.max(4096).checked_next_power_of_two().unwrap_or(u64::MAX))
            ));
        }
        if self.item_bytes > payload {
            return Err(format!(
                "--item-bytes {} exceeds the payload ring of {} ({payload} bytes); lower --item-bytes or raise --payload-bytes",
                fmt_bytes(self.item_bytes),
                fmt_bytes(payload)
            ));
        }
        Ok(payload)
    }
}

/// The sizes of the synthetic items, and the seed of random sizes.
#[derive(Args, Clone, Debug)]
pub struct SizeArgs {
    /// Item sizes in bytes instead of --shape (items are u8 tensors): a list items cycle through, e.g. 56,64K,2M,64M, or random:MIN..MAX (log-uniform, seeded by --seed); at most 1G each
    #[arg(long, value_name = "SIZES")]
    pub sizes: Option<SizeMix>,
    /// Seed of the commit-order shuffle and of random --sizes
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    pub seed: u64,
}

impl SizeArgs {
    /// These settings as arguments.
    pub fn to_args(&self, out: &mut Vec<String>) {
        if let Some(sizes) = &self.sizes {
            push(out, "--sizes", sizes);
        }
        push(out, "--seed", self.seed);
    }
}

/// The synthetic stream: how many items, of what, how fast.
#[derive(Args, Clone, Debug)]
pub struct ItemArgs {
    /// Items to stream
    #[arg(long, value_name = "N", default_value_t = 100_000, value_parser = at_least_one)]
    pub items: u64,
    /// Shape of each item, dimensions separated by 'x' or ',' (e.g. 7 or 2x7)
    #[arg(long, value_name = "DIMS", default_value = "7")]
    pub shape: Shape,
    /// Element type: bool, u8, i8, i16, u16, i32, u32, i64, u64, f16, bf16, f32, f64
    #[arg(long, value_name = "DTYPE", default_value = "i64")]
    pub dtype: DType,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub sizes: SizeArgs,
    /// Items per second [default: as fast as possible]
    #[arg(long, value_name = "ITEMS_PER_S", value_parser = positive_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,
}

impl ItemArgs {
    /// The metadata of every item of `--shape` and `--dtype`.
    ///
    /// # Errors
    ///
    /// Too many dimensions, or a byte count past 64 bits.
    pub fn meta(&self) -> Result<TensorMeta, String> {
        TensorMeta::new(self.dtype, &self.shape.0)
            .map_err(|e| format!("--shape {}: {e}", self.shape))
    }

    /// What every item is: `--sizes` when given, else `--shape` and
    /// `--dtype`, checked against the limit of one item.
    ///
    /// # Errors
    ///
    /// As [`meta`](Self::meta), and an item past [`MAX_ITEM_BYTES`].
    pub fn plan(&self) -> Result<ItemPlan, String> {
        if let Some(mix) = &self.sizes.sizes {
            return Ok(ItemPlan::Mix {
                mix: mix.clone(),
                seed: self.sizes.seed,
            });
        }
        let meta = self.meta()?;
        if meta.nbytes() > MAX_ITEM_BYTES {
            return Err(format!(
                "an item of {}[{}] is {} bytes, more than the limit of {} ({MAX_ITEM_BYTES} bytes) per item; shrink --shape",
                self.dtype,
                self.shape,
                meta.nbytes(),
                fmt_bytes(MAX_ITEM_BYTES)
            ));
        }
        Ok(ItemPlan::Shape(meta))
    }

    /// The items in words, for the launcher's first line: `i64[7] (56
    /// bytes each)` or `u8 tensors of 56,64K,2M bytes (cycling)`.
    pub fn describe(&self) -> String {
        match &self.sizes.sizes {
            Some(SizeMix::Cycle(sizes)) if sizes.len() == 1 => {
                format!("u8[{}] ({} bytes each)", sizes[0], sizes[0])
            }
            Some(mix @ SizeMix::Cycle(_)) => format!("u8 tensors of {mix} bytes (cycling)"),
            Some(SizeMix::Random { min, max }) => format!(
                "u8 tensors of {}..{} bytes (log-uniform, seed {})",
                fmt_bytes(*min),
                fmt_bytes(*max),
                self.sizes.seed
            ),
            None => match self.meta() {
                Ok(meta) => format!(
                    "{}[{}] ({} bytes each)",
                    self.dtype,
                    self.shape,
                    meta.nbytes()
                ),
                Err(_) => format!("{}[{}]", self.dtype, self.shape),
            },
        }
    }

    /// These settings as arguments.
    pub fn to_args(&self, out: &mut Vec<String>) {
        push(out, "--items", self.items);
        push(out, "--shape", &self.shape);
        push(out, "--dtype", self.dtype);
        self.sizes.to_args(out);
        if let Some(rate) = self.rate {
            push(out, "--rate", rate);
        }
    }
}

/// How the producer commits: out of order within groups.
#[derive(Args, Clone, Debug)]
pub struct ReorderArgs {
    /// Commit items out of order within groups of up to N registered items (1: in order; shuffled by --seed)
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = at_least_one)]
    pub reorder: u64,
    /// Commit each group with one `commit_many` (published together: one doorbell, and one descriptor run for same-shaped items lying back to back) instead of one commit per item
    #[arg(long)]
    pub commit_many: bool,
}

impl ReorderArgs {
    /// These settings as arguments.
    pub fn to_args(&self, out: &mut Vec<String>) {
        push(out, "--reorder", self.reorder);
        if self.commit_many {
            out.push("--commit-many".into());
        }
    }
}

/// Where the producer's tensors come from.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Generated items, committed out of order
    Synthetic,
    /// Tensors offered over UCX by one `ipc-demo send --transport ucx`, each landed straight in its slot (UCX_TLS picks the transport)
    Ucx,
}

/// An item shape: one to [`MAX_DIMS`] positive dimensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape(pub Vec<u64>);

impl FromStr for Shape {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let dims = s
            .split(['x', ','])
            .map(|d| match d.trim().parse::<u64>() {
                Ok(0) => Err(format!(
                    "shape {s:?} has a zero dimension; every dimension must be at least 1"
                )),
                Ok(n) => Ok(n),
                Err(_) => Err(format!(
                    "shape {s:?} is not a list of whole numbers separated by 'x' or ','"
                )),
            })
            .collect::<Result<Vec<u64>, String>>()?;
        if dims.len() > MAX_DIMS {
            return Err(format!(
                "shape {s:?} has {} dimensions, the limit is {MAX_DIMS}",
                dims.len()
            ));
        }
        Ok(Shape(dims))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&dims.join("x"))
    }
}

fn push(out: &mut Vec<String>, flag: &str, value: impl fmt::Display) {
    out.push(flag.to_string());
    out.push(value.to_string());
}

/// A whole number of at least 1.
///
/// # Errors
///
/// Not a number, or 0.
pub fn at_least_one(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err("is not a whole number".to_string()),
    }
}

/// A non-negative number of seconds.
///
/// # Errors
///
/// Not a number, negative or too large.
pub fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| "is not a number of seconds".to_string())
}

/// A capacity of items: a power of two from 1 to [`MAX_CAPACITY`].
///
/// # Errors
///
/// Not a number, or not such a power of two.
pub fn item_capacity(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if n.is_power_of_two() && n <= MAX_CAPACITY => Ok(n),
        _ => Err(format!(
            "must be a power of two from 1 to {MAX_CAPACITY} items"
        )),
    }
}

/// A default item size: a byte size ([`parse_bytes`]) of at most
/// [`MAX_ITEM_BYTES`].
///
/// # Errors
///
/// Not a byte size, or past the limit.
pub fn item_size(s: &str) -> Result<u64, String> {
    let n = parse_bytes(s)?;
    if n > MAX_ITEM_BYTES {
        return Err(format!(
            "must be at most {} ({MAX_ITEM_BYTES} bytes)",
            fmt_bytes(MAX_ITEM_BYTES)
        ));
    }
    Ok(n)
}

/// A payload ring's size: a byte size ([`parse_bytes`]) that is a power of
/// two from 4K to [`MAX_PAYLOAD_BYTES`] (1T).
///
/// # Errors
///
/// Not a byte size, or not such a power of two.
pub fn payload_size(s: &str) -> Result<u64, String> {
    let n = parse_bytes(s)?;
    if !n.is_power_of_two() || !(4096..=MAX_PAYLOAD_BYTES).contains(&n) {
        return Err(format!(
            "must be a power of two from 4K (4096 bytes) to {} ({MAX_PAYLOAD_BYTES} bytes)",
            fmt_bytes(MAX_PAYLOAD_BYTES)
        ));
    }
    Ok(n)
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("must be a positive number of items per second".to_string()),
    }
}
