//! The paper's label-efficiency study: every method trains on K labelled patients (ED and ES
//! volumes of each; several draws for small K) with the same budget (mini-batches or epochs) and is scored by 3-D
//! Dice on held-out patients. The plan and its methods ([`plan`]), the runs ([`run`]) and what is
//! written of them ([`report`]).

pub mod plan;
pub mod report;
pub mod run;

pub use plan::{Budget, Method, Plan, parse_k};
pub use run::{ExperimentArgs, run};
