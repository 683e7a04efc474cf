//! The threads that decide a pass's lanes at once.
//!
//! Started on first use and kept, parked on a channel, so a pass pays for no thread start and
//! an idle daemon for no wake-up. A batch owns what its lanes need (the lanes are cloned), so
//! the caller waits only for lanes that a helper actually took, never for a helper that had
//! not started yet when the work ran out: on two busy cores that wait alone cost milliseconds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

use super::{ChainMode, Decision, decide};
use crate::compile::Lane;
use crate::plugins::PassHost;

/// Stack of each worker: gates run there, and deep Rhai recursion in a debug build needs more
/// than a thread's usual 2 MiB (only what is touched is committed).
const STACK: usize = 8 << 20;

type Job = Box<dyn FnOnce() + Send>;

/// The helpers' queue; `None` if no helper could be started (passes then decide on the
/// calling thread alone).
fn queue() -> Option<&'static Mutex<Sender<Job>>> {
    static QUEUE: OnceLock<Option<Mutex<Sender<Job>>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = channel::<Job>();
            let rx = Arc::new(Mutex::new(rx));
            let started = (0..super::PASS_WORKERS - 1)
                .filter(|i| {
                    let rx = Arc::clone(&rx);
                    std::thread::Builder::new()
                        .name(format!("lanekeeper-pass-{i}"))
                        .stack_size(STACK)
                        .spawn(move || {
                            loop {
                                let job = lock(&rx).recv();
                                match job {
                                    Ok(job) => job(),
                                    Err(_) => return,
                                }
                            }
                        })
                        .is_ok()
                })
                .count();
            (started > 0).then(|| Mutex::new(tx))
        })
        .as_ref()
}

/// Lanes to decide at once, owned so that helpers need borrow nothing from the caller.
pub(super) struct Batch {
    lanes: Vec<(usize, Lane, ChainMode)>,
    host: Arc<PassHost>,
    next: AtomicUsize,
    done: Mutex<Vec<(usize, Option<Decision>)>>,
    all_done: Condvar,
}

impl Batch {
    /// Decides `lanes` (index in the pass, lane, mode), in this order, with up to `helpers`
    /// worker threads besides the calling one. A decision that panicked comes back `None`.
    pub(super) fn run(
        lanes: Vec<(usize, Lane, ChainMode)>,
        host: &Arc<PassHost>,
        helpers: usize,
    ) -> Vec<(usize, Option<Decision>)> {
        let batch = Arc::new(Batch {
            done: Mutex::new(Vec::with_capacity(lanes.len())),
            lanes,
            host: Arc::clone(host),
            next: AtomicUsize::new(0),
            all_done: Condvar::new(),
        });
        if let Some(queue) = queue() {
            let queue = lock(queue);
            for _ in 0..helpers.min(batch.lanes.len().saturating_sub(1)) {
                let b = Arc::clone(&batch);
                if queue.send(Box::new(move || b.work())).is_err() {
                    break;
                }
            }
        }
        batch.work();
        let mut done = lock(&batch.done);
        while done.len() < batch.lanes.len() {
            done = batch
                .all_done
                .wait(done)
                .unwrap_or_else(PoisonError::into_inner);
        }
        std::mem::take(&mut *done)
    }

    /// Takes lanes until none is left.
    fn work(&self) {
        loop {
            let k = self.next.fetch_add(1, Ordering::Relaxed);
            let Some((i, lane, mode)) = self.lanes.get(k) else {
                return;
            };
            let d = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                decide(lane, &self.host, *mode)
            }))
            .ok();
            let mut done = lock(&self.done);
            done.push((*i, d));
            if done.len() == self.lanes.len() {
                self.all_done.notify_all();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
