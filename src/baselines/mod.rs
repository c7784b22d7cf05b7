//! The paper's baselines that do not use the SAM encoder: a UNet trained from scratch, and the
//! same UNet with a SimCLR-pretrained encoder path. (SAM with box prompts lives in `segment`.)

mod group_norm;
pub mod simclr;
pub mod unet;

pub use unet::UNet;
