//! Label volume -> `.nii.gz` bytes in the source's geometry, so the result overlays the image in
//! 3D Slicer or ITK-SNAP. The `nifti` crate writes only to paths and through ndarray, and the
//! browser has neither, so the 348-byte header is laid out here (little-endian, single file).

use std::io::Write;

use flate2::{Compression, write::GzEncoder};
use nifti::{NiftiHeader, NiftiType};

use crate::error::{Error, Result};

const VOX_OFFSET: f32 = 352.0;

/// A uint8 label volume with the reference header's dims (3-D), pixdim, qform/sform, their codes
/// and units; intensity scaling is reset since labels are stored as they are.
pub fn write_labels(labels: &[u8], dims: [usize; 3], reference: &NiftiHeader) -> Result<Vec<u8>> {
    let mut h = header_for(dims, reference, NiftiType::Uint8, labels.len())?;
    h.cal_min = 0.0;
    h.cal_max = labels.iter().copied().max().unwrap_or(0) as f32;
    h.intent_code = 1002; // NIFTI_INTENT_LABEL: viewers show it with a label colour table
    gzip(&h, labels)
}

/// A float32 image volume, used to export synthetic phantoms and test data.
pub fn write_f32(data: &[f32], dims: [usize; 3], reference: &NiftiHeader) -> Result<Vec<u8>> {
    let h = header_for(dims, reference, NiftiType::Float32, data.len())?;
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    gzip(&h, &bytes)
}

fn header_for(
    dims: [usize; 3],
    reference: &NiftiHeader,
    datatype: NiftiType,
    len: usize,
) -> Result<NiftiHeader> {
    let n: usize = dims.iter().product();
    if n != len || dims.iter().any(|&d| d == 0 || d > i16::MAX as usize) {
        return Err(Error::Invalid(format!(
            "cannot write {len} voxels as a {dims:?} volume"
        )));
    }
    let mut h = reference.clone();
    h.sizeof_hdr = 348;
    h.dim = [
        3,
        dims[0] as u16,
        dims[1] as u16,
        dims[2] as u16,
        1,
        1,
        1,
        1,
    ];
    for p in &mut h.pixdim[4..] {
        *p = 0.0;
    }
    if h.pixdim[0] != -1.0 {
        h.pixdim[0] = 1.0;
    }
    h.datatype = datatype as i16;
    h.bitpix = (datatype.size_of() * 8) as i16;
    h.vox_offset = VOX_OFFSET;
    h.scl_slope = 1.0;
    h.scl_inter = 0.0;
    h.magic = *b"n+1\0";
    Ok(h)
}

fn gzip(h: &NiftiHeader, payload: &[u8]) -> Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(&header_bytes(h))?;
    enc.write_all(&[0u8; 4])?; // no extensions
    enc.write_all(payload)?;
    Ok(enc.finish()?)
}

/// NIfTI-1's header in field order, little-endian.
pub fn header_bytes(h: &NiftiHeader) -> Vec<u8> {
    let mut b = Vec::with_capacity(348);
    let i16s = |b: &mut Vec<u8>, v: &[i16]| v.iter().for_each(|x| b.extend(x.to_le_bytes()));
    let f32s = |b: &mut Vec<u8>, v: &[f32]| v.iter().for_each(|x| b.extend(x.to_le_bytes()));
    b.extend(h.sizeof_hdr.to_le_bytes());
    b.extend(h.data_type);
    b.extend(h.db_name);
    b.extend(h.extents.to_le_bytes());
    i16s(&mut b, &[h.session_error]);
    b.push(h.regular);
    b.push(h.dim_info);
    h.dim.iter().for_each(|d| b.extend(d.to_le_bytes()));
    f32s(&mut b, &[h.intent_p1, h.intent_p2, h.intent_p3]);
    i16s(
        &mut b,
        &[h.intent_code, h.datatype, h.bitpix, h.slice_start],
    );
    f32s(&mut b, &h.pixdim);
    f32s(&mut b, &[h.vox_offset, h.scl_slope, h.scl_inter]);
    i16s(&mut b, &[h.slice_end]);
    b.push(h.slice_code);
    b.push(h.xyzt_units);
    f32s(&mut b, &[h.cal_max, h.cal_min, h.slice_duration, h.toffset]);
    b.extend(h.glmax.to_le_bytes());
    b.extend(h.glmin.to_le_bytes());
    let mut descrip = [0u8; 80];
    let n = h.descrip.len().min(80);
    descrip[..n].copy_from_slice(&h.descrip[..n]);
    b.extend(descrip);
    b.extend(h.aux_file);
    i16s(&mut b, &[h.qform_code, h.sform_code]);
    f32s(
        &mut b,
        &[
            h.quatern_b,
            h.quatern_c,
            h.quatern_d,
            h.quatern_x,
            h.quatern_y,
            h.quatern_z,
        ],
    );
    f32s(&mut b, &h.srow_x);
    f32s(&mut b, &h.srow_y);
    f32s(&mut b, &h.srow_z);
    b.extend(h.intent_name);
    b.extend(h.magic);
    debug_assert_eq!(b.len(), 348);
    b
}
