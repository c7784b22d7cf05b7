//! The one error type. Its messages are shown to the person who dropped the file, so they say what
//! is wrong with the input and, where possible, what to do about it.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("the file is empty")]
    Empty,
    #[error("the file is too short to be NIfTI: {0} bytes, a NIfTI-1 header alone is 348")]
    TooShort(usize),
    #[error("the gzip stream is damaged or truncated: {0}")]
    Gzip(String),
    #[error("the file needs {need_mib} MiB once decompressed, above the {limit_mib} MiB limit")]
    InflatedTooLarge { need_mib: u64, limit_mib: u64 },
    #[error(
        "this is a NIfTI-2 file; only NIfTI-1 is supported, convert it with e.g. `nib-convert` or ITK-SNAP"
    )]
    Nifti2,
    #[error("not a NIfTI file: {0}")]
    NotNifti(String),
    #[error(
        "this is a header-only NIfTI (.hdr/.img pair); drop a single-file .nii or .nii.gz instead"
    )]
    HeaderOnly,
    #[error("invalid NIfTI header: {0}")]
    BadHeader(String),
    #[error("unsupported voxel type {0}; supported are the integer types, float32 and float64")]
    UnsupportedDatatype(String),
    #[error("the volume's {voxels} voxels need {mib} MiB, above the {limit_mib} MiB limit")]
    VolumeTooLarge {
        voxels: u64,
        mib: u64,
        limit_mib: u64,
    },
    #[error(
        "the file is truncated: its header asks for {needed} bytes of voxel data after offset {offset}, but only {available} are there"
    )]
    Truncated {
        needed: u64,
        offset: u64,
        available: u64,
    },
    #[error("frame {frame} requested, but the file has {frames} frame(s)")]
    NoSuchFrame { frame: usize, frames: usize },
    #[error("{0}")]
    Invalid(String),
    #[error("weights: {0}")]
    Weights(String),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
