//! The supervised model thread under injected faults (through the engine's fault seam, on the
//! tiny fixture model): panics in a step and in command handling, a hang, a device that keeps
//! failing, a full command queue, an utterance left waiting for text, and a flood of commands.
//! Each proves the typed error, the health the engine reports, and that slots return to zero.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::executor::block_on;
use vv_device::probe::SystemProbe;
use vv_engine::{
    start_engine_with_faults, EngineError, EngineHandle, EngineHealth, EngineOptions, Faults,
    NoopObserver, Runtime, SlotPolicy, UtteranceEvent, UtteranceHandle,
};
use vv_model::ModelError;

use crate::support::{collect, options, params};

const STALL: Duration = Duration::from_millis(300);

/// A scripted fault injector; every switch starts off.
#[derive(Default)]
struct Script {
    /// Panic at the next command.
    panic_command: AtomicBool,
    /// Panic at the next step.
    panic_step: AtomicBool,
    /// Block in every command hook while set.
    hang_commands: AtomicBool,
    /// Block in every step hook while set.
    hang_steps: AtomicBool,
    /// Fail every step as a broken device would.
    device_error: AtomicBool,
    /// Steps that entered the hook.
    steps: AtomicUsize,
    /// `C` per command, `S` per step, while recording.
    log: Mutex<Option<String>>,
}

impl Script {
    fn record(&self, c: char) {
        if let Some(log) = self.log.lock().unwrap().as_mut() {
            log.push(c);
        }
    }
}

fn block_while(flag: &AtomicBool) {
    while flag.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Faults for Script {
    fn command(&self) {
        self.record('C');
        if self.panic_command.swap(false, Ordering::SeqCst) {
            panic!("injected panic in command handling");
        }
        block_while(&self.hang_commands);
    }

    fn step(&self) -> vv_model::Result<()> {
        self.record('S');
        self.steps.fetch_add(1, Ordering::SeqCst);
        if self.panic_step.swap(false, Ordering::SeqCst) {
            panic!("injected panic in a step");
        }
        block_while(&self.hang_steps);
        if self.device_error.load(Ordering::SeqCst) {
            return Err(ModelError::Candle(candle_core::Error::Msg(
                "CUDA_ERROR_ILLEGAL_ADDRESS: an illegal memory access was encountered".into(),
            )));
        }
        Ok(())
    }
}

fn start(slots: usize, tune: impl FnOnce(&mut EngineOptions)) -> (EngineHandle, Arc<Script>) {
    let mut opts = options(SlotPolicy::Fixed { slots });
    opts.warmup = false;
    opts.stall_timeout = STALL;
    tune(&mut opts);
    let runtime = Runtime::load(&opts, &SystemProbe::new()).unwrap();
    let script = Arc::new(Script::default());
    let faults: Arc<dyn Faults> = script.clone();
    let engine = start_engine_with_faults(runtime, &opts, Arc::new(NoopObserver), faults).unwrap();
    (engine, script)
}

/// Waits up to 10 s for `cond`.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn say(engine: &EngineHandle, text: &str) -> UtteranceHandle {
    let mut utt = engine.start(params(7)).unwrap();
    utt.push_text(text).unwrap();
    utt.close().unwrap();
    utt
}

fn failure(utt: &mut UtteranceHandle) -> EngineError {
    match collect(utt).1 {
        UtteranceEvent::Failed(e) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn internal(e: &EngineError) -> bool {
    matches!(
        e,
        EngineError::Model {
            code: "internal_error",
            ..
        }
    )
}

/// The engine still synthesises a whole utterance.
fn serves_on(engine: &EngineHandle) {
    let mut utt = say(engine, "Still serving after the fault.");
    let end = collect(&mut utt).1;
    assert!(matches!(end, UtteranceEvent::Finished { .. }), "{end:?}");
    drop(utt);
    eventually("slots to return to zero", || engine.slots_used() == 0);
    assert_eq!(engine.health(), EngineHealth::Running);
}

#[test]
fn a_panic_in_a_step_fails_only_that_utterance() {
    let (engine, script) = start(2, |_| {});
    script.panic_step.store(true, Ordering::SeqCst);
    let mut utt = say(&engine, "This step will panic.");
    let e = failure(&mut utt);
    assert!(internal(&e), "{e:?}");
    assert_eq!(e.code(), "synthesis_failed");
    eventually("slots to return to zero", || engine.slots_used() == 0);
    serves_on(&engine);
}

#[test]
fn a_panic_in_command_handling_fails_the_utterance_and_the_thread_survives() {
    let (engine, script) = start(2, |_| {});
    // While handling text of a running utterance.
    *script.log.lock().unwrap() = Some(String::new());
    let mut utt = engine.start(params(3)).unwrap();
    eventually("the start to be handled", || {
        script.log.lock().unwrap().as_deref() == Some("C")
    });
    script.panic_command.store(true, Ordering::SeqCst);
    // One command only (no close), so that nothing else is queued when the next panic is armed.
    utt.push_text("Text whose command panics.").unwrap();
    let e = failure(&mut utt);
    assert!(internal(&e), "{e:?}");
    drop(utt);
    eventually("slots to return to zero", || engine.slots_used() == 0);
    assert_eq!(engine.health(), EngineHealth::Running);
    // While starting one: its slot and queue are dropped, the handle reports the failure.
    script.panic_command.store(true, Ordering::SeqCst);
    let mut utt = engine.start(params(4)).unwrap();
    let e = failure(&mut utt);
    assert!(internal(&e), "{e:?}");
    assert!(block_on(utt.next_event()).is_none());
    eventually("slots to return to zero", || engine.slots_used() == 0);
    serves_on(&engine);
}

#[test]
fn a_hung_step_shows_as_stalled_until_it_moves_again() {
    let (engine, script) = start(2, |_| {});
    assert_eq!(engine.health(), EngineHealth::Running);
    script.hang_steps.store(true, Ordering::SeqCst);
    let mut utt = say(&engine, "This step hangs for a while.");
    eventually(
        "the stall to show",
        || matches!(engine.health(), EngineHealth::Stalled { silent } if silent >= STALL),
    );
    script.hang_steps.store(false, Ordering::SeqCst);
    eventually("the heartbeat to resume", || engine.health().is_running());
    let end = collect(&mut utt).1;
    assert!(matches!(end, UtteranceEvent::Finished { .. }), "{end:?}");
    drop(utt);
    serves_on(&engine);
}

#[test]
fn a_device_that_keeps_failing_kills_the_engine_with_typed_errors() {
    let (engine, script) = start(2, |_| {});
    script.device_error.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        // No close: the thread may end before a close would be queued.
        let mut utt = engine.start(params(5)).unwrap();
        utt.push_text("The device is broken.").unwrap();
        let e = failure(&mut utt);
        assert!(
            matches!(
                e,
                EngineError::Model {
                    code: "compute_error",
                    ..
                }
            ),
            "{e:?}"
        );
    }
    eventually("the engine to be dead", || {
        engine.health() == EngineHealth::Dead
    });
    assert_eq!(engine.slots_used(), 0);
    let refused = engine
        .start(params(1))
        .err()
        .expect("a dead engine refuses");
    assert_eq!(refused.code(), "engine_unavailable");
    assert_eq!(engine.slots_used(), 0);
}

#[test]
fn a_full_queue_has_its_own_error_and_failed_commands_leak_no_slot() {
    let (engine, script) = start(2, |o| o.text_wait_timeout = Duration::from_secs(600));
    let mut filler = engine.start(params(1)).unwrap();
    let mut closer = engine.start(params(2)).unwrap();
    script.hang_commands.store(true, Ordering::SeqCst);
    let mut full = None;
    for _ in 0..2 * vv_engine::COMMAND_QUEUE {
        if let Err(e) = filler.push_text("word ") {
            full = Some(e);
            break;
        }
    }
    let full = full.expect("the queue fills");
    assert!(matches!(full, EngineError::QueueFull), "{full:?}");
    assert_eq!(full.code(), "queue_full");
    // The failed handle says so again rather than pretending to go on.
    assert_eq!(filler.push_text("more").unwrap_err().code(), "queue_full");
    // A close that cannot be queued: the input is not left closed behind the engine's back.
    assert_eq!(closer.close().unwrap_err().code(), "queue_full");
    assert_eq!(closer.close().unwrap_err().code(), "queue_full");
    assert!(block_on(closer.next_event()).is_none());
    eventually("the stall to show", || {
        matches!(engine.health(), EngineHealth::Stalled { .. })
    });
    script.hang_commands.store(false, Ordering::SeqCst);
    // Both handles are still alive: the slots come back all the same.
    eventually("slots to return to zero", || engine.slots_used() == 0);
    drop((filler, closer));
    serves_on(&engine);
}

#[test]
fn an_utterance_waiting_for_text_past_the_deadline_ends_and_frees_its_slot() {
    let (engine, _script) = start(2, |o| o.text_wait_timeout = Duration::from_millis(300));
    let mut silent = engine.start(params(1)).unwrap();
    let mut trickle = engine.start(params(2)).unwrap();
    trickle.push_text("Some text, then nothing more").unwrap();
    for utt in [&mut silent, &mut trickle] {
        let e = failure(utt);
        assert!(matches!(e, EngineError::TextWaitTimeout { .. }), "{e:?}");
        assert_eq!(e.code(), "text_wait_timeout");
    }
    eventually("slots to return to zero", || engine.slots_used() == 0);
    drop((silent, trickle));
    serves_on(&engine);
}

/// A burst of new utterances (a start, its text and its close each: two or three commands
/// apiece) is handled in one go when the budget covers the command queue, as the service's
/// default does: every one of them starts in the same round. With a budget of 128 the burst
/// is split over rounds and the last ones start a round or two later (in the service on the
/// CPU, 160 streams at once: first audio p95 1,311 ms with a budget of 256 against 665).
#[test]
fn a_burst_of_new_utterances_starts_in_one_round_when_the_budget_covers_the_queue() {
    const NEW: usize = 100;
    let (engine, script) = start(NEW + 1, |o| o.commands_per_round = vv_engine::COMMAND_QUEUE);
    script.hang_steps.store(true, Ordering::SeqCst);
    let speaker = say(
        &engine,
        "This one keeps a round busy while the others arrive.",
    );
    eventually("the round to hang", || {
        script.steps.load(Ordering::SeqCst) > 0
    });
    let burst: Vec<UtteranceHandle> = (0..NEW)
        .map(|i| say(&engine, &format!("Utterance number {i} says hello.")))
        .collect();
    *script.log.lock().unwrap() = Some(String::new());
    script.hang_steps.store(false, Ordering::SeqCst);
    eventually("a round after the burst", || {
        script
            .log
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|l| l.contains('S'))
    });
    let log = script.log.lock().unwrap().take().unwrap();
    // Each utterance queued a start and a close, and text in between (the tokenizer may hold
    // the last word back for the close): all of them before the first round.
    let first_run = log.split('S').next().unwrap().len();
    let commands = log.chars().filter(|&c| c == 'C').count();
    assert!(
        first_run >= 2 * NEW,
        "commands before the first round: {log}"
    );
    assert_eq!(first_run, commands, "commands after the first round: {log}");
    drop((speaker, burst));
    eventually("slots to return to zero", || engine.slots_used() == 0);
}

#[test]
fn a_flood_of_commands_is_handled_between_rounds_within_the_budget() {
    const BUDGET: usize = 8;
    let (engine, script) = start(2, |o| o.commands_per_round = BUDGET);
    script.hang_steps.store(true, Ordering::SeqCst);
    let mut speaker = say(
        &engine,
        "A long sentence keeps this utterance speaking for many frames while the other one \
         floods the model thread with text.",
    );
    eventually("the round to hang", || {
        script.steps.load(Ordering::SeqCst) > 0
    });
    let mut flooder = engine.start(params(9)).unwrap();
    for _ in 0..200 {
        flooder.push_text("word ").unwrap();
    }
    *script.log.lock().unwrap() = Some(String::new());
    script.hang_steps.store(false, Ordering::SeqCst);
    let end = collect(&mut speaker).1;
    assert!(matches!(end, UtteranceEvent::Finished { .. }), "{end:?}");
    let log = script.log.lock().unwrap().take().unwrap();
    // Every run of commands that a round follows fits the budget.
    let runs: Vec<usize> = log.trim_end_matches('C').split('S').map(str::len).collect();
    assert!(runs.iter().all(|&n| n <= BUDGET), "{log}");
    assert!(runs.iter().filter(|&&n| n == BUDGET).count() >= 2, "{log}");
    drop((speaker, flooder));
    eventually("slots to return to zero", || engine.slots_used() == 0);
}
