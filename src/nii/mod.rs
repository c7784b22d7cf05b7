//! NIfTI-1 in and out, from and to bytes.

pub mod geometry;
pub mod read;
pub mod write;

pub use read::{ReadLimits, ReadOptions, read_header_only, read_nifti};
pub use write::{write_f32, write_labels};
