//! From service settings to what the engine is built and asked with.

use vv_model::scheduler::SolverKind;

use crate::config::Solver;

/// The engine's solver for a configured solver.
pub fn solver_kind(solver: Solver) -> SolverKind {
    match solver {
        Solver::Ode => SolverKind::Ode,
        Solver::Sde => SolverKind::Sde,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solvers_map() {
        assert_eq!(solver_kind(Solver::Ode), SolverKind::Ode);
        assert_eq!(solver_kind(Solver::Sde), SolverKind::Sde);
    }
}
