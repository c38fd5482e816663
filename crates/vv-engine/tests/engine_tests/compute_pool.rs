//! Where the engine loop runs: on a worker of its own rayon pool, so the parallel CPU kernels
//! a round starts split their work inside that pool (`vv-engine/src/compute_pool.rs`). Seen
//! through the step hook of the fault seam, which runs on the loop's thread.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use vv_device::probe::SystemProbe;
use vv_engine::{
    start_engine_with_faults, Faults, NoopObserver, Runtime, SlotPolicy, UtteranceEvent,
};

use crate::support::{collect, options, params};

/// Counts the steps run on a rayon worker thread and the others.
#[derive(Default)]
struct StepThreads {
    on_a_worker: AtomicUsize,
    elsewhere: AtomicUsize,
}

impl Faults for StepThreads {
    fn step(&self) -> vv_model::Result<()> {
        let counter = match rayon::current_thread_index() {
            Some(_) => &self.on_a_worker,
            None => &self.elsewhere,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[test]
fn every_step_runs_on_a_worker_of_the_compute_pool() {
    let mut opts = options(SlotPolicy::Fixed { slots: 2 });
    opts.warmup = false;
    let runtime = Runtime::load(&opts, &SystemProbe::new()).unwrap();
    let threads = Arc::new(StepThreads::default());
    let faults: Arc<dyn Faults> = threads.clone();
    let engine = start_engine_with_faults(runtime, &opts, Arc::new(NoopObserver), faults).unwrap();
    let mut utt = engine.start(params(3)).unwrap();
    utt.push_text("Where does the engine loop run?").unwrap();
    utt.close().unwrap();
    let end = collect(&mut utt).1;
    assert!(matches!(end, UtteranceEvent::Finished { .. }), "{end:?}");
    assert!(threads.on_a_worker.load(Ordering::SeqCst) > 0);
    assert_eq!(threads.elsewhere.load(Ordering::SeqCst), 0);
}
