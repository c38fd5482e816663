//! From service settings to what the engine is built and asked with.

use std::io::IsTerminal;
use std::time::Duration;

use vv_engine::{EngineOptions, SlotPolicy};
use vv_model::graphs::MAX_BATCH;
use vv_model::scheduler::SolverKind;

use crate::config::{MaxSlots, Settings, Solver};

/// The engine's solver for a configured solver.
pub fn solver_kind(solver: Solver) -> SolverKind {
    match solver {
        Solver::Ode => SolverKind::Ode,
        Solver::Sde => SolverKind::Sde,
    }
}

/// Engine construction options from the settings. Download progress bars are shown only when
/// stderr is a terminal.
pub fn engine_options(settings: &Settings) -> EngineOptions {
    let limits = &settings.limits;
    EngineOptions {
        model: settings.model.clone(),
        random_weights: settings.random_weights,
        model_revision: Some(settings.model_revision.clone()).filter(|r| !r.is_empty()),
        tokenizer: settings.tokenizer.clone(),
        cache_dir: settings.cache_dir.clone(),
        voices_dir: settings.voices_dir.clone(),
        default_voice: settings.default_voice.clone(),
        device: settings.device,
        dtype: settings.dtype,
        quantize: settings.quantize,
        slots: match limits.max_slots {
            MaxSlots::Auto => SlotPolicy::Auto {
                headroom: settings.capacity_headroom,
                limit: MAX_BATCH,
            },
            MaxSlots::Fixed(n) => SlotPolicy::Fixed { slots: n },
        },
        max_buffered_frames: limits.max_buffered_frames,
        max_frames_per_token: limits.max_frames_per_token,
        warmup: settings.warmup,
        cuda_graphs: settings.cuda_graphs,
        cuda_graph_warmup: settings.cuda_graph_warmup,
        diffusion_steps: settings.diffusion_steps,
        cfg_scale: f64::from(settings.cfg_scale),
        solver: solver_kind(settings.solver),
        progress: std::io::stderr().is_terminal(),
        stall_timeout: Duration::from_secs(limits.engine_stall_timeout_secs),
        text_wait_timeout: Duration::from_secs(limits.text_wait_timeout_secs),
        commands_per_round: limits.engine_commands_per_round,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_carry_over() {
        let mut s = Settings::default();
        s.limits.max_slots = MaxSlots::Fixed(3);
        s.solver = Solver::Sde;
        s.model_revision = String::new();
        let o = engine_options(&s);
        assert_eq!(o.slots, SlotPolicy::Fixed { slots: 3 });
        s.limits.max_slots = MaxSlots::Auto;
        s.capacity_headroom = 0.5;
        let limit = MAX_BATCH;
        assert_eq!(
            engine_options(&s).slots,
            SlotPolicy::Auto {
                headroom: 0.5,
                limit
            }
        );
        assert_eq!(o.solver, SolverKind::Sde);
        assert_eq!(o.model_revision, None);
        assert_eq!(o.diffusion_steps, 5);
        assert!((o.cfg_scale - 1.5).abs() < 1e-9);
        assert_eq!(o.stall_timeout, Duration::from_secs(30));
        assert_eq!(o.text_wait_timeout, Duration::from_secs(30));
        assert_eq!(o.commands_per_round, vv_engine::COMMAND_QUEUE);
    }

    #[test]
    fn solvers_map() {
        assert_eq!(solver_kind(Solver::Ode), SolverKind::Ode);
        assert_eq!(solver_kind(Solver::Sde), SolverKind::Sde);
    }
}
