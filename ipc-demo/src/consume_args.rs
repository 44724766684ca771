//! The consumer's command line (`ipc-consumer`, `ipc-demo consume`): read
//! by its one-stream mode (`consume`) and its many-streams mode (`many`),
//! and built by the launcher for the consumer it starts.

use crate::args::{at_least_one, seconds, IdentityArgs, DEFAULT_POLICY};
use crate::sizes::SizeMix;
use clap::Args;
use shmstream::policy::Policy;
use std::time::Duration;

/// The consumer's command line.
#[derive(Args, Clone, Debug)]
pub struct ConsumeArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub identity: IdentityArgs,
    /// Chunk policy, e.g. fixed:size=30, sliding:window=28,stride=7, left-context:chunk=10,context=2, ramp:first=4,size=8,growth=2,max=32, scheduled:schedule=4/8/16,chunk=25,context=25
    #[arg(long, value_name = "POLICY", default_value = DEFAULT_POLICY)]
    pub policy: Policy,
    /// Items the stream must carry; fewer or more is an error [default: not checked]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub items: Option<u64>,
    /// Byte size of every item, checked: the producer's --sizes (a list cycled through, or random:MIN..MAX with --seed), or one size [default: not checked]
    #[arg(long, value_name = "SIZES")]
    pub sizes: Option<SizeMix>,
    /// Seed of random --sizes (as the producer's)
    #[arg(long, value_name = "SEED", default_value_t = 1)]
    pub seed: u64,
    /// Seconds to keep retrying to open the stream while its segment does not exist yet
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub open_timeout: Duration,
    /// Print the report as one JSON line
    #[arg(long)]
    pub json: bool,
    /// Many-streams mode: create the hub of this worker and take every stream announced there, waiting for all at once
    #[arg(long, value_name = "WORKER")]
    pub hub: Option<String>,
    /// With --hub: the streams to take (REQUEST-s0, REQUEST-s1, ...); --items is then per stream
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = at_least_one)]
    pub streams: u64,
    /// Print `progress items=N p50_ns=X p99_ns=Y` on stdout about every 0.5 s (the running latency percentiles; for the launcher's bar; one stream only)
    #[arg(long, hide = true)]
    pub progress: bool,
}

impl ConsumeArgs {
    /// These settings as arguments, with `request` as the request id.
    pub fn to_args(&self, request: &str) -> Vec<String> {
        let mut out = Vec::new();
        self.identity.to_args(request, &mut out);
        out.push("--policy".into());
        out.push(self.policy.to_string());
        if let Some(items) = self.items {
            out.push("--items".into());
            out.push(items.to_string());
        }
        if let Some(sizes) = &self.sizes {
            out.push("--sizes".into());
            out.push(sizes.to_string());
        }
        out.push("--seed".into());
        out.push(self.seed.to_string());
        out.push("--open-timeout".into());
        out.push(self.open_timeout.as_secs_f64().to_string());
        if self.json {
            out.push("--json".into());
        }
        if let Some(hub) = &self.hub {
            out.extend(["--hub".into(), hub.clone()]);
            out.extend(["--streams".into(), self.streams.to_string()]);
        }
        if self.progress {
            out.push("--progress".into());
        }
        out
    }
}
