//! `autosam info` and `autosam phantom`: a NIfTI file's header, the synthetic phantom.

use std::path::PathBuf;

use autosam::error::Result;
use autosam::nii::{self, ReadLimits, ReadOptions};
use autosam::phantom;
use autosam::study::data::at;

/// Print a NIfTI file's header summary (dims, spacing, datatype, orientation, intensities).
#[derive(clap::Args)]
pub struct Info {
    file: PathBuf,
    /// Frame of a 4-D file.
    #[arg(long, default_value_t = 0)]
    frame: usize,
    /// Refuse volumes whose decoded size exceeds this many MiB.
    #[arg(long, default_value_t = 1024)]
    max_mib: u64,
}

impl Info {
    pub fn run(self) -> Result<()> {
        let bytes = std::fs::read(&self.file).map_err(|e| at(&self.file, e))?;
        let limits = ReadLimits {
            max_decoded_bytes: self.max_mib << 20,
            ..Default::default()
        };
        let options = ReadOptions {
            frame: self.frame,
            limits,
        };
        let volume = nii::read_nifti(&bytes, &options).map_err(|e| at(&self.file, e))?;
        println!("file         {}", self.file.display());
        println!("{}", volume.summary());
        Ok(())
    }
}

/// Write the synthetic cardiac phantom as NAME.nii.gz and NAME_gt.nii.gz.
#[derive(clap::Args)]
pub struct Phantom {
    out: PathBuf,
    #[arg(long, num_args = 3, default_values_t = [128, 144, 8])]
    dims: Vec<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl Phantom {
    pub fn run(self) -> Result<()> {
        let dims = [self.dims[0], self.dims[1], self.dims[2]];
        let (image, labels) = phantom::cardiac_phantom(dims, self.seed);
        let name = self.out.to_string_lossy();
        let name = name.trim_end_matches(".nii.gz");
        let files = [
            (
                format!("{name}.nii.gz"),
                nii::write_f32(&image.data, dims, &image.header)?,
            ),
            (
                format!("{name}_gt.nii.gz"),
                nii::write_labels(&labels.labels(), dims, &labels.header)?,
            ),
        ];
        for (path, bytes) in files {
            std::fs::write(&path, bytes).map_err(|e| at(path.as_ref(), e))?;
            println!("wrote {path}");
        }
        Ok(())
    }
}
