//! The kernels' worker pool, where the caller never waits for a worker that has not started.
//!
//! A job is a count of blocks; the caller and the pool's workers claim blocks from a shared
//! cursor until none is left, then the caller waits only for the blocks a worker claimed and
//! is still running. candle's barrier pool (which the kernels used before) waits for every
//! worker to check in at every operation, claimed work or not: on two cores shared with the
//! service's other threads, a worker that the scheduler had put aside held each operation until
//! it ran again (the tiny model's rounds took 5 ms instead of 1 while a word-by-word stream was
//! being read, and 10x longer per frame beside a busy process; docs/benchmarks.md, session 16).
//! Here a worker that starts late finds the job done and goes back to sleep, and one that wakes
//! after the caller closed the job never touches it.
//!
//! The hand-over is the classic two-flag one: a worker announces itself (`active` += 1) and
//! then reads whether the job is still open; the caller closes the job and then reads `active`.
//! With both in sequentially consistent order, either the caller sees the worker (and waits
//! for it) or the worker sees the job closed (and leaves without reading it).

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError, TryLockError};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a worker spins for the next job before it starts yielding its core between checks
/// (the operations of a frame mostly follow each other closer than that).
const WORKER_SPIN: Duration = Duration::from_micros(50);

/// How long a worker waits for the next job before it parks: spinning, then yielding, so that
/// it stays ready through a frame's serial stretches without holding a core another thread
/// wants. Measured (docs/benchmarks.md, session 16): parking after about 50 us of spinning made
/// frames 5-18% slower than candle's pool, quiet; spinning then yielding up to 1 ms, 3-6%.
const WORKER_WAIT: Duration = Duration::from_millis(1);

/// Spins of a caller waiting for a claimed block before it yields its core.
const CALLER_SPINS: u32 = 200;

/// One job: `run(data, block)` for every block in `0..blocks`.
#[derive(Clone, Copy)]
struct Job {
    run: unsafe fn(*const (), usize),
    data: *const (),
    blocks: usize,
}

/// What the caller and the workers share.
struct Shared {
    /// `epoch << 1 | open`: a new epoch per job, `open` while blocks may be claimed.
    state: AtomicUsize,
    /// The current job: written by the caller only while it is closed and no worker is
    /// active, read by a worker only while it is active and the job open.
    job: UnsafeCell<Job>,
    /// The next block to claim.
    next: AtomicUsize,
    /// Workers inside the current job.
    active: AtomicUsize,
    /// The first panic of a block a worker ran, for the caller to resume.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
    /// Set by [`Pool::rest`] (the caller expects no job for a while), cleared by the next job:
    /// waiting workers park at once instead of spinning and yielding.
    resting: AtomicBool,
}

// SAFETY: `job` is accessed under the protocol above (the caller writes it only while no worker
// can read it); the closure behind it is `Sync` (see `Pool::run`).
unsafe impl Sync for Shared {}

/// The pool: workers parked between jobs, and one caller at a time.
pub(crate) struct Pool {
    shared: &'static Shared,
    workers: Vec<Thread>,
    /// Held by the thread whose job runs; another caller (or a block calling back into the
    /// pool) runs its blocks on its own thread instead of waiting.
    caller: Mutex<()>,
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// The process's pool: one worker fewer than candle's thread count (the caller is the other).
pub(crate) fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool::new(super::worker_threads().saturating_sub(1)))
}

/// Lets the process's pool (if it was started) park its waiting workers now: see
/// [`Pool::rest`].
pub(crate) fn rest() {
    if let Some(pool) = POOL.get() {
        pool.rest();
    }
}

impl Pool {
    fn new(workers: usize) -> Self {
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            state: AtomicUsize::new(0),
            job: UnsafeCell::new(Job {
                run: |_, _| {},
                data: std::ptr::null(),
                blocks: 0,
            }),
            next: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            panic: Mutex::new(None),
            resting: AtomicBool::new(false),
        }));
        let workers = (0..workers)
            .filter_map(|i| {
                std::thread::Builder::new()
                    .name(format!("vv-kernels-{i}"))
                    .spawn(move || work(shared))
                    .ok()
                    .map(|handle| handle.thread().clone())
            })
            .collect();
        Self {
            shared,
            workers,
            caller: Mutex::new(()),
        }
    }

    /// Tells the waiting workers that no job follows soon: they park now rather than spin and
    /// yield for [`WORKER_WAIT`]. A caller about to sleep (the model thread out of work) calls
    /// this, so a core it leaves looks idle to the scheduler at once: a worker still yielding
    /// there made the scheduler queue a woken socket reader behind a busy thread on the other
    /// core for milliseconds (docs/benchmarks.md, session 17). The next job wakes them.
    pub(crate) fn rest(&self) {
        self.shared.resting.store(true, Ordering::Relaxed);
    }

    /// Runs `f(block)` for every block in `0..blocks`, on this thread and on whichever workers
    /// join in; returns when every block has run. A block's panic is resumed here.
    pub(crate) fn run<F: Fn(usize) + Sync>(&self, blocks: usize, f: F) {
        let _caller = match self.caller.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return (0..blocks).for_each(f),
        };
        if self.workers.is_empty() || blocks < 2 {
            return (0..blocks).for_each(f);
        }
        /// Calls the closure behind `data` for one block.
        unsafe fn call<F: Fn(usize)>(data: *const (), block: usize) {
            // SAFETY: `data` is the `&F` of the job being run, alive until it is closed.
            unsafe { (*(data as *const F))(block) }
        }
        let s = self.shared;
        let epoch = (s.state.load(Ordering::Relaxed) >> 1).wrapping_add(1);
        // SAFETY: the previous job is closed and no worker is active (the `Closing` of the
        // last run waited for that), so no worker reads `job` now.
        unsafe {
            *s.job.get() = Job {
                run: call::<F>,
                data: &f as *const F as *const (),
                blocks,
            };
        }
        s.next.store(0, Ordering::Relaxed);
        s.resting.store(false, Ordering::Relaxed);
        s.state.store(epoch << 1 | 1, Ordering::SeqCst);
        for w in &self.workers {
            w.unpark();
        }
        // Closes the job and waits for the workers inside it, also when a block panics here.
        let _closing = Closing { shared: s, epoch };
        while let Some(block) = claim(s, blocks) {
            f(block);
        }
    }
}

/// The next unclaimed block of a job of `blocks` blocks.
fn claim(s: &Shared, blocks: usize) -> Option<usize> {
    let block = s.next.fetch_add(1, Ordering::Relaxed);
    (block < blocks).then_some(block)
}

/// Ends a job when dropped: closes it, waits until no worker is inside it, and resumes a
/// worker's panic (unless the caller is already unwinding).
struct Closing {
    shared: &'static Shared,
    epoch: usize,
}

impl Drop for Closing {
    fn drop(&mut self) {
        let s = self.shared;
        s.state.store(self.epoch << 1, Ordering::SeqCst);
        let mut spins = 0;
        while s.active.load(Ordering::SeqCst) != 0 {
            spins += 1;
            if spins < CALLER_SPINS {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        let payload = s
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(payload) = payload.filter(|_| !std::thread::panicking()) {
            resume_unwind(payload);
        }
    }
}

/// A worker's loop: waits for a job it has not seen, joins it while it is open, claims blocks.
fn work(s: &'static Shared) {
    let mut seen = 0;
    loop {
        let state = wait_for_job(s, seen);
        seen = state >> 1;
        s.active.fetch_add(1, Ordering::SeqCst);
        if s.state.load(Ordering::SeqCst) == state {
            // SAFETY: the job is open and this worker is counted active, so the caller neither
            // rewrites `job` nor returns from the run (its closure stays alive).
            let job = unsafe { *s.job.get() };
            while let Some(block) = claim(s, job.blocks) {
                // SAFETY: as above; `run` matches `data` (set together by the caller).
                let ran = catch_unwind(AssertUnwindSafe(|| unsafe { (job.run)(job.data, block) }));
                if let Err(payload) = ran {
                    let mut first = s.panic.lock().unwrap_or_else(PoisonError::into_inner);
                    first.get_or_insert(payload);
                }
            }
        }
        s.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The state of an open job of an epoch other than `seen`: spins for [`WORKER_SPIN`], yields
/// between checks until [`WORKER_WAIT`], then parks until the caller's next `unpark`; parks at
/// once while the pool rests.
fn wait_for_job(s: &Shared, seen: usize) -> usize {
    let mut since = Instant::now();
    loop {
        let state = s.state.load(Ordering::Acquire);
        if state & 1 == 1 && state >> 1 != seen {
            return state;
        }
        if s.resting.load(Ordering::Relaxed) {
            std::thread::park();
            since = Instant::now();
            continue;
        }
        let waited = since.elapsed();
        if waited < WORKER_SPIN {
            for _ in 0..32 {
                std::hint::spin_loop();
            }
        } else if waited < WORKER_WAIT {
            std::thread::yield_now();
        } else {
            std::thread::park();
            since = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Every block runs exactly once, job after job.
    #[test]
    fn every_block_runs_once() {
        for blocks in [0, 1, 2, 3, 17, 1000] {
            for _ in 0..50 {
                let counts: Vec<AtomicU32> = (0..blocks).map(|_| AtomicU32::new(0)).collect();
                pool().run(blocks, |b| {
                    counts[b].fetch_add(1, Ordering::Relaxed);
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
            }
        }
    }

    /// Callers on several threads at once, and a block that calls the pool again, each get
    /// every block run once (one job at a time on the workers; the others on their caller).
    #[test]
    fn concurrent_and_nested_callers_run_every_block() {
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        let total = AtomicU32::new(0);
                        pool().run(8, |_| {
                            pool().run(4, |_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                        assert_eq!(total.load(Ordering::Relaxed), 32);
                    }
                });
            }
        });
    }

    /// A pool with a worker (whatever this machine's thread count): blocks run, and a block's
    /// panic reaches the caller, after which the pool still runs jobs.
    #[test]
    fn a_blocks_panic_reaches_the_caller() {
        let pool = Pool::new(1);
        for _ in 0..20 {
            let ran = catch_unwind(AssertUnwindSafe(|| {
                pool.run(64, |b| {
                    if b == 63 {
                        panic!("block 63");
                    }
                })
            }));
            assert!(ran.is_err());
            let total = AtomicU32::new(0);
            pool.run(64, |_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
            assert_eq!(total.load(Ordering::Relaxed), 64);
        }
    }
}
