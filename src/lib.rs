//! autosam: prompt-free segmentation of medical volumes with a frozen Segment-Anything encoder,
//! the same code natively and in the browser.
//!
//! The data path, one module a step: NIfTI bytes ([`nii`]) -> [`volume`] -> slices and encoder
//! input ([`preprocess`]) -> model (on a [`backend`] device) -> label volume -> NIfTI export
//! ([`nii::write`]). The [`web`] layer is a thin wasm-bindgen surface over the same code.

pub mod augment;
#[cfg(feature = "model")]
pub mod backend;
#[cfg(feature = "model")]
pub mod baselines;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod bench;
#[cfg(feature = "model")]
pub mod cache;
pub mod cardiac;
pub mod components;
#[cfg(feature = "model")]
pub mod container;
pub mod error;
#[cfg(feature = "model")]
pub mod heads;
pub mod labelled;
#[cfg(feature = "model")]
pub mod loss;
pub mod metrics;
#[cfg(feature = "model")]
pub mod model;
pub mod nii;
#[cfg(feature = "model")]
pub mod params;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod parity;
pub mod phantom;
pub mod pipeline;
pub mod preprocess;
#[cfg(feature = "model")]
pub mod segment;
#[cfg(all(feature = "cli", not(target_arch = "wasm32")))]
pub mod study;
#[cfg(feature = "model")]
pub mod train;
pub mod volume;
#[cfg(all(target_arch = "wasm32", feature = "model"))]
pub mod web;
pub mod zoom;

pub use error::{Error, Result};
pub use volume::Volume;
