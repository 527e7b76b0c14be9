//! One machine's task slots shared by the builds of one process (the build
//! service): the sum of slots held never exceeds the total, and a build
//! takes a slot only while no other waiting build holds fewer, so a big
//! build cannot starve a small one.
//!
//! Knows builds by number and slot counts; knows nothing of tasks or of
//! the jobserver the tasks' nested builds share.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// The slots all builds share.
pub struct SharedSlots {
    total: u32,
    shares: Mutex<Shares>,
    /// Bumped whenever slots come back.
    freed: watch::Sender<u64>,
}

#[derive(Default)]
struct Shares {
    held: HashMap<u64, u32>,
    /// Builds whose last take was refused.
    waiting: HashSet<u64>,
}

impl Shares {
    fn in_use(&self) -> u32 {
        self.held.values().sum()
    }

    fn held_by(&self, build: u64) -> u32 {
        self.held.get(&build).copied().unwrap_or(0)
    }

    /// Whether another waiting build holds fewer slots than `build`.
    fn poorer_waits(&self, build: u64) -> bool {
        let mine = self.held_by(build);
        self.waiting
            .iter()
            .any(|&b| b != build && self.held_by(b) < mine)
    }
}

impl std::fmt::Debug for SharedSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedSlots({}/{})", self.in_use(), self.total)
    }
}

impl SharedSlots {
    /// A pool of `total` slots (at least one).
    pub fn new(total: u32) -> Arc<SharedSlots> {
        Arc::new(SharedSlots {
            total: total.max(1),
            shares: Mutex::new(Shares::default()),
            freed: watch::channel(0).0,
        })
    }

    /// Build `build`'s handle on the pool; dropping it gives back all the
    /// build still holds.
    pub fn share(self: &Arc<Self>, build: u64) -> Share {
        Share {
            pool: self.clone(),
            build,
            seen: self.freed.subscribe(),
        }
    }

    /// Slots held by all builds together.
    pub fn in_use(&self) -> u32 {
        self.lock().in_use()
    }

    /// Build `build` will start nothing more (it was cancelled): it no
    /// longer holds others back by waiting.
    pub fn stop_waiting(&self, build: u64) {
        self.lock().waiting.remove(&build);
        self.announce();
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shares> {
        self.shares.lock().expect("not poisoned")
    }

    fn announce(&self) {
        self.freed.send_modify(|n| *n += 1);
    }
}

/// One build's part of a [`SharedSlots`].
pub struct Share {
    pool: Arc<SharedSlots>,
    build: u64,
    seen: watch::Receiver<u64>,
}

impl Share {
    /// Takes `n` slots, all or none, without waiting.
    pub fn take(&mut self, n: u32) -> bool {
        // A task wanting more than the machine has takes all of it.
        let n = n.min(self.pool.total);
        let mut shares = self.pool.lock();
        let fits = shares.in_use() + n <= self.pool.total;
        if n > 0 && (!fits || shares.poorer_waits(self.build)) {
            shares.waiting.insert(self.build);
            self.seen.borrow_and_update();
            return false;
        }
        shares.waiting.remove(&self.build);
        *shares.held.entry(self.build).or_default() += n;
        true
    }

    /// Gives back `n` slots taken with [`Share::take`].
    pub fn give(&self, n: u32) {
        let n = n.min(self.pool.total);
        let mut shares = self.pool.lock();
        let held = shares.held.entry(self.build).or_default();
        *held = held.saturating_sub(n);
        drop(shares);
        self.pool.announce();
    }

    /// Resolves once slots may have come back since the last refused take.
    pub fn freed(&self) -> SharesFreed {
        SharesFreed {
            seen: self.seen.clone(),
            fired: false,
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut shares = self.pool.lock();
        shares.held.remove(&self.build);
        shares.waiting.remove(&self.build);
        drop(shares);
        self.pool.announce();
    }
}

/// A pollable: slots came back to a [`SharedSlots`]. Once ready it stays
/// ready, as a pollable must (the guest may ask again before it acts).
pub struct SharesFreed {
    seen: watch::Receiver<u64>,
    fired: bool,
}

impl SharesFreed {
    /// Waits for the change (forever once the pool is gone).
    pub async fn wait(&mut self) {
        if self.fired {
            return;
        }
        if self.seen.changed().await.is_err() {
            std::future::pending::<()>().await
        }
        self.fired = true;
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for SharesFreed {
    async fn ready(&mut self) {
        self.wait().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_is_never_exceeded() {
        let pool = SharedSlots::new(3);
        let (mut a, mut b) = (pool.share(1), pool.share(2));
        assert!(a.take(2));
        assert!(b.take(1));
        assert!(!b.take(1));
        assert!(!a.take(1));
        assert_eq!(pool.in_use(), 3);
    }

    #[test]
    fn a_task_wanting_more_than_all_takes_all() {
        let pool = SharedSlots::new(2);
        let mut a = pool.share(1);
        assert!(a.take(8));
        assert_eq!(pool.in_use(), 2);
        a.give(8);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_freed_slot_goes_to_the_waiting_build_holding_fewest() {
        let pool = SharedSlots::new(2);
        let (mut big, mut small) = (pool.share(1), pool.share(2));
        assert!(big.take(1) && big.take(1));
        assert!(!small.take(1));
        big.give(1);
        assert!(!big.take(1), "the small build waits with fewer");
        assert!(small.take(1));
        big.give(1);
        assert!(big.take(1), "nobody poorer waits now");
    }

    #[test]
    fn a_dropped_share_gives_everything_back_and_wakes_the_waiting() {
        let pool = SharedSlots::new(1);
        let mut a = pool.share(1);
        let mut b = pool.share(2);
        assert!(a.take(1));
        assert!(!b.take(1));
        let mut freed = b.freed();
        drop(a);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let woken = tokio::time::timeout(std::time::Duration::from_secs(5), freed.wait());
            woken.await.expect("woken");
            let again = tokio::time::timeout(std::time::Duration::from_millis(1), freed.wait());
            again.await.expect("still ready: a pollable stays ready");
        });
        assert!(b.take(1));
        assert_eq!(pool.in_use(), 1);
    }
}
