//! Host-side batch building on a thread, a few steps ahead of the step that uses it. A step's
//! batch and noise are a pure function of the step index (see [`super::rng`]), so the thread
//! can make them early and the result is the same as making them in the step: a prefetched
//! run equals an unprefetched one bit for bit, and resume stays exact.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// Batches made ahead, in step order.
pub struct Prefetch<T> {
    make: Arc<dyn Fn(usize) -> T + Send + Sync>,
    depth: usize,
    /// The thread's output and the step it will deliver next.
    feed: Option<(Receiver<T>, usize, JoinHandle<()>)>,
}

impl<T: Send + 'static> Prefetch<T> {
    /// A prefetcher of `make(step)`, up to `depth` steps ahead (0: no thread; each value is
    /// made when asked for). The thread starts with the first [`Prefetch::get`].
    pub fn new(make: impl Fn(usize) -> T + Send + Sync + 'static, depth: usize) -> Self {
        Self {
            make: Arc::new(make),
            depth,
            feed: None,
        }
    }

    /// `make(step)`: from the thread when `step` is the one it has next (steps asked in order),
    /// else made here, and the thread restarted at `step + 1`.
    pub fn get(&mut self, step: usize) -> T {
        if let Some((rx, next, _)) = &mut self.feed
            && *next == step
            && let Ok(value) = rx.recv()
        {
            *next += 1;
            return value;
        }
        self.stop();
        let value = (self.make)(step);
        if self.depth > 0 {
            let (tx, rx) = sync_channel(self.depth);
            let make = Arc::clone(&self.make);
            let handle = std::thread::Builder::new()
                .name("oxgen-prefetch".into())
                .spawn(move || produce(make, tx, step + 1))
                .ok();
            self.feed = handle.map(|h| (rx, step + 1, h));
        }
        value
    }

    /// Ends the thread (it stops at its next send, which fails once the receiver is gone).
    fn stop(&mut self) {
        if let Some((rx, _, handle)) = self.feed.take() {
            drop(rx);
            let _ = handle.join();
        }
    }
}

fn produce<T>(make: Arc<dyn Fn(usize) -> T + Send + Sync>, tx: SyncSender<T>, mut step: usize) {
    while tx.send(make(step)).is_ok() {
        step += 1;
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        if let Some((rx, _, handle)) = self.feed.take() {
            drop(rx);
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In-order steps come from the thread, a jump restarts it, and every value is make(step).
    #[test]
    fn values_are_make_of_the_step_asked() {
        let mut p = Prefetch::new(|s| s * 10, 2);
        for s in [3, 4, 5, 9, 10, 2, 3] {
            assert_eq!(p.get(s), s * 10);
        }
        let mut none = Prefetch::new(|s| s + 1, 0);
        assert_eq!(none.get(7), 8);
        assert!(none.feed.is_none());
    }
}
