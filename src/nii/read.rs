//! NIfTI bytes -> [`Volume`]. The browser hands us bytes, never paths, and the bytes may be anything a
//! user can drop: every size and field is checked here before the `nifti` crate (or an allocation)
//! sees it.

use std::io::Read;

use flate2::read::MultiGzDecoder;
use nifti::{Endianness, NiftiHeader, NiftiType};

use crate::error::{Error, Result};
use crate::volume::Volume;

const NIFTI1_HEADER: usize = 348;
const NIFTI2_HEADER: i32 = 540;
const MIB: u64 = 1 << 20;

/// Caps that keep a hostile or huge file from exhausting memory (in a browser tab, a crash).
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Largest decompressed file accepted.
    pub max_inflated_bytes: u64,
    /// Largest decoded volume accepted, counted as f32 voxels of the chosen frame.
    pub max_decoded_bytes: u64,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_inflated_bytes: 1 << 30,
            max_decoded_bytes: 1 << 30,
        }
    }
}

/// Options for [`read_nifti`]: which frame of a 4-D file, and the size caps.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    pub frame: usize,
    pub limits: ReadLimits,
}

/// Reads a `.nii` or `.nii.gz` (gzip is recognised by its magic bytes, not by a name).
///
/// The header is read and validated first; only then are as many bytes inflated as it asks for,
/// so a gzip bomb costs no more memory than the caps allow.
pub fn read_nifti(bytes: &[u8], options: &ReadOptions) -> Result<Volume> {
    let mut stream = open(bytes)?;
    let header = read_header(&stream.read_prefix(NIFTI1_HEADER)?)?;
    let layout = Layout::of(&header, &options.limits)?;
    if options.frame >= layout.frames {
        return Err(Error::NoSuchFrame {
            frame: options.frame,
            frames: layout.frames,
        });
    }
    let rest = stream.read_prefix(layout.end - NIFTI1_HEADER)?;
    if rest.len() < layout.end - NIFTI1_HEADER {
        return Err(Error::Truncated {
            needed: (layout.end - layout.offset) as u64,
            offset: layout.offset as u64,
            available: (NIFTI1_HEADER + rest.len()).saturating_sub(layout.offset) as u64,
        });
    }
    let frame_bytes = layout.voxels * layout.datatype.size_of();
    let start = layout.offset - NIFTI1_HEADER + options.frame * frame_bytes;
    let (data, nonfinite) = decode(&rest[start..start + frame_bytes], &header, layout.datatype)?;
    Ok(Volume::new(
        layout.dims,
        data,
        header,
        crate::volume::Source {
            datatype: datatype_name(layout.datatype).to_string(),
            frames: layout.frames,
            frame: options.frame,
            nonfinite_voxels: nonfinite,
            gzipped: is_gzip(bytes),
        },
    ))
}

/// Reads and validates the header alone, inflating no more than its 348 bytes.
pub fn read_header_only(bytes: &[u8], limits: &ReadLimits) -> Result<NiftiHeader> {
    let header = read_header(&open(bytes)?.read_prefix(NIFTI1_HEADER)?)?;
    Layout::of(&header, limits)?;
    Ok(header)
}

pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b])
}

/// The file's bytes, inflated on the fly when gzipped, with a bound on how many it can yield.
struct Stream<'a> {
    reader: Box<dyn Read + 'a>,
    /// No more bytes can come than this: the length, or deflate's best ratio (1032:1) times it.
    bound: usize,
}

fn open(bytes: &[u8]) -> Result<Stream<'_>> {
    if bytes.is_empty() {
        return Err(Error::Empty);
    }
    Ok(if is_gzip(bytes) {
        Stream {
            reader: Box::new(MultiGzDecoder::new(bytes)),
            bound: bytes.len().saturating_mul(1032),
        }
    } else {
        Stream {
            reader: Box::new(bytes),
            bound: bytes.len(),
        }
    })
}

impl Stream<'_> {
    /// Up to `n` further bytes; fewer only at the end. Memory is reserved for what the input
    /// can actually hold, so a tiny file claiming a huge volume reserves little.
    fn read_prefix(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        out.try_reserve_exact(n.min(self.bound))
            .map_err(|_| Error::Invalid("not enough memory to read this file".into()))?;
        (&mut self.reader)
            .take(n as u64)
            .read_to_end(&mut out)
            .map_err(|e| Error::Gzip(e.to_string()))?;
        Ok(out)
    }
}

fn read_header(raw: &[u8]) -> Result<NiftiHeader> {
    if raw.len() >= 4 {
        let first = [raw[0], raw[1], raw[2], raw[3]];
        let (le, be) = (i32::from_le_bytes(first), i32::from_be_bytes(first));
        if le == NIFTI2_HEADER || be == NIFTI2_HEADER {
            return Err(Error::Nifti2);
        }
        if le != NIFTI1_HEADER as i32 && be != NIFTI1_HEADER as i32 {
            return Err(Error::NotNifti(format!(
                "the header size field is {le}, NIfTI-1 requires 348"
            )));
        }
    }
    if raw.len() < NIFTI1_HEADER {
        return Err(Error::TooShort(raw.len()));
    }
    let header = NiftiHeader::from_reader(&raw[..NIFTI1_HEADER]).map_err(|e| match e {
        nifti::NiftiError::InvalidFormat => {
            Error::NotNifti("the magic string is neither \"n+1\" nor \"ni1\"".into())
        }
        other => Error::BadHeader(other.to_string()),
    })?;
    if header.sizeof_hdr != NIFTI1_HEADER as i32 {
        // The crate picks the byte order from dim[0]; a disagreement with sizeof_hdr is corruption.
        return Err(Error::BadHeader(
            "the byte order of dim[0] disagrees with the header size field".into(),
        ));
    }
    if &header.magic == nifti::header::MAGIC_CODE_NI1 {
        return Err(Error::HeaderOnly);
    }
    Ok(header)
}

/// Where the voxels are and how many, within the caps.
struct Layout {
    dims: [usize; 3],
    frames: usize,
    voxels: usize,
    datatype: NiftiType,
    offset: usize,
    /// One past the last voxel byte of the last frame.
    end: usize,
}

impl Layout {
    fn of(h: &NiftiHeader, limits: &ReadLimits) -> Result<Self> {
        let ndim = h.dim[0] as usize;
        if !(1..=7).contains(&ndim) {
            return Err(Error::BadHeader(format!(
                "dim[0] is {}, it must be 1 to 7",
                h.dim[0] as i16
            )));
        }
        let mut d = [1usize; 7];
        for (i, slot) in d.iter_mut().enumerate().take(ndim) {
            // On disk dims are signed 16-bit: a value above i16::MAX is a negative size.
            let v = h.dim[i + 1] as i16;
            if v <= 0 {
                return Err(Error::BadHeader(format!(
                    "dim[{}] is {v}; every dimension must be at least 1",
                    i + 1
                )));
            }
            *slot = v as usize;
        }
        if d[4..].iter().any(|&x| x > 1) {
            return Err(Error::BadHeader(format!(
                "{ndim}-D data (dims {:?}) is not a scalar volume series; only 2-D to 4-D images are supported",
                &d[..ndim]
            )));
        }
        let datatype = h.data_type().map_err(|_| {
            Error::UnsupportedDatatype(format!("code {} (not a NIfTI-1 datatype)", h.datatype))
        })?;
        if !is_readable(datatype) {
            return Err(Error::UnsupportedDatatype(
                datatype_name(datatype).to_string(),
            ));
        }
        let bits = datatype.size_of() * 8;
        if h.bitpix as i64 != bits as i64 {
            return Err(Error::BadHeader(format!(
                "bitpix is {} but datatype {} has {bits} bits per voxel",
                h.bitpix,
                datatype_name(datatype)
            )));
        }
        let voxels3 = (d[0] as u64) * (d[1] as u64) * (d[2] as u64);
        let frames = d[3];
        let decoded = voxels3 * 4;
        if decoded > limits.max_decoded_bytes {
            return Err(Error::VolumeTooLarge {
                voxels: voxels3,
                mib: decoded / MIB,
                limit_mib: limits.max_decoded_bytes / MIB,
            });
        }
        let needed = voxels3
            .saturating_mul(frames as u64)
            .saturating_mul(datatype.size_of() as u64);
        let vo = h.vox_offset;
        if !vo.is_finite() || vo < NIFTI1_HEADER as f32 || vo.fract() != 0.0 {
            return Err(Error::BadHeader(format!(
                "vox_offset is {vo}; it must be a whole number of bytes, at least 348"
            )));
        }
        let end = (vo as u64).saturating_add(needed);
        let too_large = Error::InflatedTooLarge {
            need_mib: end / MIB,
            limit_mib: limits.max_inflated_bytes / MIB,
        };
        if end > limits.max_inflated_bytes {
            return Err(too_large);
        }
        let end = usize::try_from(end).map_err(|_| too_large)?;
        check_scaling(h)?;
        check_spacing(h, ndim)?;
        Ok(Self {
            dims: [d[0], d[1], d[2]],
            frames,
            voxels: voxels3 as usize,
            datatype,
            offset: vo as usize,
            end,
        })
    }
}

fn check_scaling(h: &NiftiHeader) -> Result<()> {
    if !h.scl_slope.is_finite() || (h.scl_slope != 0.0 && !h.scl_inter.is_finite()) {
        return Err(Error::BadHeader(format!(
            "intensity scaling is not a number (scl_slope {}, scl_inter {})",
            h.scl_slope, h.scl_inter
        )));
    }
    Ok(())
}

fn check_spacing(h: &NiftiHeader, ndim: usize) -> Result<()> {
    for i in 1..=ndim.min(3) {
        let p = h.pixdim[i];
        // Negative spacing is common in the wild and readers take its magnitude; zero or NaN
        // leaves no geometry to keep.
        if !p.is_finite() || p == 0.0 {
            return Err(Error::BadHeader(format!(
                "voxel spacing pixdim[{i}] is {p}; it must be a non-zero number"
            )));
        }
    }
    Ok(())
}

fn is_readable(t: NiftiType) -> bool {
    use NiftiType::*;
    matches!(
        t,
        Uint8 | Int8 | Uint16 | Int16 | Uint32 | Int32 | Uint64 | Int64 | Float32 | Float64
    )
}

pub fn datatype_name(t: NiftiType) -> &'static str {
    use NiftiType::*;
    match t {
        Uint8 => "uint8",
        Int8 => "int8",
        Uint16 => "uint16",
        Int16 => "int16",
        Uint32 => "uint32",
        Int32 => "int32",
        Uint64 => "uint64",
        Int64 => "int64",
        Float32 => "float32",
        Float64 => "float64",
        Float128 => "float128",
        Complex64 => "complex64",
        Complex128 => "complex128",
        Complex256 => "complex256",
        Rgb24 => "rgb24",
        Rgba32 => "rgba32",
    }
}

/// Voxels as f32 with scl_slope/scl_inter applied; non-finite values become 0 and are counted,
/// since one NaN would poison every min/max and percentile downstream.
fn decode(bytes: &[u8], h: &NiftiHeader, t: NiftiType) -> Result<(Vec<f32>, usize)> {
    let size = t.size_of();
    let endianness: Endianness = h.endianness;
    let mut out = Vec::new();
    out.try_reserve_exact(bytes.len() / size)
        .map_err(|_| Error::Invalid("not enough memory for this volume".into()))?;
    let mut nonfinite = 0;
    for chunk in bytes.chunks_exact(size) {
        let v: f32 = t
            .read_primitive_value(chunk, endianness, h.scl_slope, h.scl_inter)
            .map_err(|e| Error::BadHeader(e.to_string()))?;
        if v.is_finite() {
            out.push(v);
        } else {
            nonfinite += 1;
            out.push(0.0);
        }
    }
    Ok((out, nonfinite))
}
