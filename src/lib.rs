//! stamp-echo (skeleton).
#![forbid(unsafe_code)]
#![deny(missing_docs)]
pub mod tz;
