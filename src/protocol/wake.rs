//! The ring's wake hook: what a ring's producer tells, besides the
//! stream's own doorbell, whoever else waits for the stream's news. A
//! stream of a worker hub sets one (the hub implements it), so that the
//! protocol never names the layers above it.

/// Someone besides the consumer to tell about the stream's news.
pub(crate) trait Wake: Send + Sync + std::fmt::Debug {
    /// Called after every publication (a commit, an abandoned slot, done,
    /// the producer's departure), after the stream's own bell.
    fn notify(&self);

    /// Whether the consumer that would adopt the stream is still alive;
    /// when it is not, the departing producer keeps its stream's name.
    fn worker_alive(&self) -> bool;
}
