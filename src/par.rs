//! Work spread over the machine's cores, results in input order, so a parallel step gives
//! exactly what the sequential one would: loading many lane files, deciding many lanes.
//!
//! Scoped threads, started per call: a call worth spreading out takes far longer than starting
//! them, and nothing stays running between calls.

use std::num::NonZero;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

/// Stack of each thread: plugins run there, and deep Rhai recursion in a debug build needs
/// more than a thread's usual 2 MiB (only what is touched is committed).
const STACK: usize = 8 << 20;

/// The cores this process may use (1 if unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZero::get)
}

/// `items.into_iter().map(f).collect()`, computed on up to `threads` threads (the calling one
/// included) that take `chunk` items at a time, so a slow item holds up only its own thread.
/// The result is in the order of `items` whatever the threads did first. A panic in `f` is
/// passed on to the caller, as it would be without threads.
pub fn map<T, R, F>(items: Vec<T>, threads: usize, chunk: usize, f: F) -> Vec<R>
where
    T: Send,
    R: Send,
    F: Fn(T) -> R + Sync,
{
    let chunk = chunk.max(1);
    let threads = threads.min(items.len().div_ceil(chunk));
    if threads <= 1 {
        return items.into_iter().map(f).collect();
    }
    let len = items.len();
    let mut chunks: Vec<Mutex<Vec<T>>> = Vec::with_capacity(len.div_ceil(chunk));
    let mut items = items.into_iter();
    loop {
        let part: Vec<T> = items.by_ref().take(chunk).collect();
        if part.is_empty() {
            break;
        }
        chunks.push(Mutex::new(part));
    }
    let done: Vec<Mutex<Vec<R>>> = chunks.iter().map(|_| Mutex::new(Vec::new())).collect();
    let next = AtomicUsize::new(0);
    let work = || {
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            let (Some(part), Some(out)) = (chunks.get(k), done.get(k)) else {
                return;
            };
            let part = std::mem::take(&mut *part.lock().unwrap_or_else(PoisonError::into_inner));
            let results: Vec<R> = part.into_iter().map(&f).collect();
            *out.lock().unwrap_or_else(PoisonError::into_inner) = results;
        }
    };
    std::thread::scope(|s| {
        for i in 1..threads {
            // A thread that cannot start leaves its share to the others (this one included).
            let _ = std::thread::Builder::new()
                .name(format!("lanekeeper-par-{i}"))
                .stack_size(STACK)
                .spawn_scoped(s, work);
        }
        work();
    });
    let mut out = Vec::with_capacity(len);
    for part in done {
        out.extend(part.into_inner().unwrap_or_else(PoisonError::into_inner));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_come_in_input_order_whatever_the_threads_do() {
        let items: Vec<u64> = (0..10_000).collect();
        let out = super::map(items, 4, 7, |i| {
            if i % 97 == 0 {
                std::thread::yield_now();
            }
            i * 2
        });
        assert_eq!(out, (0..10_000).map(|i| i * 2).collect::<Vec<_>>());
        assert!(super::map(Vec::<u8>::new(), 4, 3, |i| i).is_empty());
        assert_eq!(super::map(vec![1, 2, 3], 1, 1, |i| i + 1), vec![2, 3, 4]);
    }
}
