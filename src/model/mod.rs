//! The foundation model in burn, one file per upstream component (as `segment_anything/modeling`
//! and LiteMedSAM's `tiny_vit_sam.py`), plus how weights get in: upstream checkpoints
//! ([`checkpoint`]) and the converted files the page downloads ([`format`]).

pub mod attention;
pub mod banded;
pub mod checkpoint;
pub mod common;
pub mod conv3x3;
pub mod depthwise;
pub mod format;
pub mod image_encoder;
pub mod kernels;
pub mod mask_decoder;
pub mod prompt_encoder;
pub mod sam;
mod shuffle;
#[cfg(target_arch = "wasm32")]
pub(crate) mod simd128;
pub mod tiny_vit;
mod tracked;
pub mod transformer;
pub mod weights;
pub mod windows;

pub use sam::{EncoderConfig, Sam, SamConfig};
pub use weights::{HostTensor, Weights};
