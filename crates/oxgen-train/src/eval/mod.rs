//! Evaluation, apart from training: sample-quality and likelihood metrics ([`metrics`]),
//! sampling and scoring any trained run ([`sample`]), and the all-family comparison
//! ([`compare`]). Nothing here trains except `compare`, which calls the trainers.

pub mod compare;
pub mod metrics;
pub mod sample;
