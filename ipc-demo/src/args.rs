//! Command-line pieces shared by the binaries: a stream's identity, its
//! ring, the synthetic items, and value parsers whose errors are one
//! sentence. Each group can be turned back into arguments, which is how
//! `ipc-demo run` hands its settings to the processes it starts.

use clap::{Args, ValueEnum};
use shmstream::{DType, StreamConfig, StreamId, TensorMeta, DEFAULT_PREFIX, MAX_DIMS};
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
    /// id was given (ring size as `ring` says, or the library's default).
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
                .with_slot_bytes(ring.slot_bytes);
        }
        config
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

/// The producer's ring: how many slots, how large.
#[derive(Args, Clone, Debug)]
pub struct RingArgs {
    /// Slots in the ring (a power of two)
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub capacity: u64,
    /// Bytes per slot (a multiple of 64; capacity x slot bytes a multiple of 4096)
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    pub slot_bytes: u64,
}

impl RingArgs {
    /// These settings as arguments.
    pub fn to_args(&self, out: &mut Vec<String>) {
        push(out, "--capacity", self.capacity);
        push(out, "--slot-bytes", self.slot_bytes);
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
    /// Items per second [default: as fast as possible]
    #[arg(long, value_name = "ITEMS_PER_S", value_parser = positive_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,
}

impl ItemArgs {
    /// The metadata of every item.
    ///
    /// # Errors
    ///
    /// Too many dimensions, or a byte count past 64 bits.
    pub fn meta(&self) -> Result<TensorMeta, String> {
        TensorMeta::new(self.dtype, &self.shape.0)
            .map_err(|e| format!("--shape {}: {e}", self.shape))
    }

    /// The metadata of every item, checked to fit a slot of `slot_bytes`.
    ///
    /// # Errors
    ///
    /// As [`meta`](Self::meta), and an item larger than a slot.
    pub fn meta_fitting(&self, slot_bytes: u64) -> Result<TensorMeta, String> {
        let meta = self.meta()?;
        if meta.nbytes() > slot_bytes {
            return Err(format!(
                "an item of {}[{}] is {} bytes and does not fit a slot of {slot_bytes} bytes; raise --slot-bytes or shrink --shape",
                self.dtype,
                self.shape,
                meta.nbytes()
            ));
        }
        Ok(meta)
    }

    /// These settings as arguments.
    pub fn to_args(&self, out: &mut Vec<String>) {
        push(out, "--items", self.items);
        push(out, "--shape", &self.shape);
        push(out, "--dtype", self.dtype);
        if let Some(rate) = self.rate {
            push(out, "--rate", rate);
        }
    }
}

/// How the producer commits: out of order within groups.
#[derive(Args, Clone, Debug)]
pub struct ReorderArgs {
    /// Commit items out of order within groups of up to N registered items (1: in order)
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = at_least_one)]
    pub reorder: u64,
    /// Seed of the commit-order shuffle
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    pub seed: u64,
}

impl ReorderArgs {
    /// These settings as arguments.
    pub fn to_args(&self, out: &mut Vec<String>) {
        push(out, "--reorder", self.reorder);
        push(out, "--seed", self.seed);
    }
}

/// Where the producer's tensors come from.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Generated items, committed out of order
    Synthetic,
    /// Framed tensors from one TCP connection of `ipc-demo send`
    Tcp,
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

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("must be a positive number of items per second".to_string()),
    }
}
