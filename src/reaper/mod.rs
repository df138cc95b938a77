//! The reaper: plans deletions of marked findings and carries them out behind every guard.

pub mod aws;
pub mod plan;
pub mod run;
