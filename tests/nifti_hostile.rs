//! A corpus of broken and hostile files: each gets its specific error (or, where a reader can
//! sensibly go on, a volume), and none panics or allocates past the caps.

use std::io::Write;

use autosam::Error;
use autosam::nii::{ReadLimits, ReadOptions, read_nifti};
use flate2::{Compression, write::GzEncoder};

const DIM: usize = 40;
const DATATYPE: usize = 70;
const BITPIX: usize = 72;
const PIXDIM: usize = 76;
const VOX_OFFSET: usize = 108;
const SCL_SLOPE: usize = 112;
const SCL_INTER: usize = 116;
const MAGIC: usize = 344;

/// A valid little-endian float32 5x4x3 file (written by nibabel).
fn base() -> Vec<u8> {
    std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/nifti/dt_float32.nii"
    ))
    .unwrap()
}

fn with(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = base();
    f(&mut b);
    b
}

fn put_i16(b: &mut [u8], at: usize, v: i16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_f32(b: &mut [u8], at: usize, v: f32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn read(bytes: &[u8]) -> autosam::Result<autosam::Volume> {
    read_nifti(bytes, &ReadOptions::default())
}

fn gzip(parts: &[&[u8]]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    for p in parts {
        e.write_all(p).unwrap();
    }
    e.finish().unwrap()
}

macro_rules! refused {
    ($bytes:expr, $pat:pat) => {{
        let r = read(AsRef::<[u8]>::as_ref(&$bytes));
        assert!(matches!(r, Err($pat)), "got {:?}", r.map(|v| v.dims));
        // Every refusal has a message a person can act on.
        assert!(r.unwrap_err().to_string().len() > 10);
    }};
}

#[test]
fn the_base_file_is_valid() {
    assert_eq!(read(&base()).unwrap().dims, [5, 4, 3]);
}

#[test]
fn truncations() {
    refused!(Vec::<u8>::new(), Error::Empty);
    refused!(&base()[..100], Error::TooShort(100));
    let b = base();
    refused!(&b[..b.len() - 10], Error::Truncated { .. });
    refused!(&b[..352], Error::Truncated { .. });
}

#[test]
fn wrong_identity() {
    refused!(
        with(|b| b[MAGIC..MAGIC + 4].copy_from_slice(b"xyz\0")),
        Error::NotNifti(_)
    );
    refused!(
        with(|b| b[MAGIC..MAGIC + 4].copy_from_slice(b"ni1\0")),
        Error::HeaderOnly
    );
    refused!(
        with(|b| b[0..4].copy_from_slice(&347i32.to_le_bytes())),
        Error::NotNifti(_)
    );
    refused!(
        with(|b| b[0..4].copy_from_slice(&540i32.to_le_bytes())),
        Error::Nifti2
    );
    refused!(
        with(|b| b[0..4].copy_from_slice(&540i32.to_be_bytes())),
        Error::Nifti2
    );
}

#[test]
fn dimensions() {
    refused!(with(|b| put_i16(b, DIM, 0)), Error::BadHeader(_));
    refused!(with(|b| put_i16(b, DIM + 2, 0)), Error::BadHeader(_));
    refused!(with(|b| put_i16(b, DIM + 4, -4)), Error::BadHeader(_));
    // dim[0] past 7 reads as the other byte order, which then disagrees with sizeof_hdr
    refused!(with(|b| put_i16(b, DIM, 8)), Error::BadHeader(_));
    // 32767^4 voxels: the product overflows 32-bit and is far past the cap
    refused!(
        with(|b| {
            put_i16(b, DIM, 4);
            for i in 1..=4 {
                put_i16(b, DIM + 2 * i, i16::MAX);
            }
        }),
        Error::VolumeTooLarge { .. }
    );
    refused!(
        with(|b| {
            put_i16(b, DIM, 5);
            put_i16(b, DIM + 10, 3);
        }),
        Error::BadHeader(_)
    );
}

#[test]
fn spacing() {
    // Negative spacing is read as its magnitude, as other readers do.
    let v = read(&with(|b| put_f32(b, PIXDIM + 4, -1.5))).unwrap();
    assert_eq!(v.spacing()[0], 1.5);
    refused!(with(|b| put_f32(b, PIXDIM + 4, 0.0)), Error::BadHeader(_));
    refused!(
        with(|b| put_f32(b, PIXDIM + 8, f32::NAN)),
        Error::BadHeader(_)
    );
    refused!(
        with(|b| put_f32(b, PIXDIM + 12, f32::INFINITY)),
        Error::BadHeader(_)
    );
}

#[test]
fn voxel_offset() {
    refused!(
        with(|b| put_f32(b, VOX_OFFSET, 1e6)),
        Error::Truncated { .. }
    );
    refused!(
        with(|b| put_f32(b, VOX_OFFSET, -352.0)),
        Error::BadHeader(_)
    );
    refused!(
        with(|b| put_f32(b, VOX_OFFSET, f32::NAN)),
        Error::BadHeader(_)
    );
    refused!(with(|b| put_f32(b, VOX_OFFSET, 352.5)), Error::BadHeader(_));
    refused!(
        with(|b| put_f32(b, VOX_OFFSET, 1e30)),
        Error::InflatedTooLarge { .. }
    );
}

#[test]
fn datatypes() {
    refused!(
        with(|b| put_i16(b, DATATYPE, 999)),
        Error::UnsupportedDatatype(_)
    );
    for (code, bits) in [(32, 64), (128, 24), (1536, 128), (2304, 32), (1792, 128)] {
        refused!(
            with(|b| {
                put_i16(b, DATATYPE, code);
                put_i16(b, BITPIX, bits);
            }),
            Error::UnsupportedDatatype(_)
        );
    }
    refused!(with(|b| put_i16(b, BITPIX, 16)), Error::BadHeader(_));
}

#[test]
fn non_finite_values() {
    let v = read(&with(|b| {
        put_f32(b, 352, f32::NAN);
        put_f32(b, 356, f32::INFINITY);
        put_f32(b, 360, f32::NEG_INFINITY);
    }))
    .unwrap();
    assert_eq!(v.source.nonfinite_voxels, 3);
    assert_eq!(&v.data[..3], &[0.0, 0.0, 0.0]);
    assert!(v.data.iter().all(|x| x.is_finite()));
    refused!(
        with(|b| put_f32(b, SCL_SLOPE, f32::NAN)),
        Error::BadHeader(_)
    );
    refused!(
        with(|b| {
            put_f32(b, SCL_SLOPE, 2.0);
            put_f32(b, SCL_INTER, f32::INFINITY);
        }),
        Error::BadHeader(_)
    );
    // A finite slope that overflows float32 gives infinities, which are counted, not kept.
    let v = read(&with(|b| put_f32(b, SCL_SLOPE, 1e38))).unwrap();
    assert!(v.source.nonfinite_voxels > 0);
}

#[test]
fn gzip_damage() {
    let b = base();
    let gz = gzip(&[&b]);
    assert_eq!(read(&gz).unwrap().dims, [5, 4, 3]);
    refused!(
        &gz[..gz.len() / 2],
        Error::Gzip(_) | Error::Truncated { .. }
    );
    let mut garbage = vec![0x1f, 0x8b];
    garbage.extend((0..500u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8));
    refused!(
        garbage,
        Error::Gzip(_) | Error::TooShort(_) | Error::NotNifti(_)
    );
    let mut flipped = gz.clone();
    for byte in flipped.iter_mut().skip(20).step_by(7) {
        *byte ^= 0x5a;
    }
    assert!(read(&flipped).is_err());
}

#[test]
fn gzip_bombs_stop_at_the_caps() {
    let limits = ReadLimits {
        max_inflated_bytes: 8 << 20,
        max_decoded_bytes: 8 << 20,
    };
    let options = ReadOptions { frame: 0, limits };
    // A header asking for 64 MiB of int16, then 64 MiB of zeros that deflate to ~64 KiB: refused
    // from the header alone.
    let mut header = base()[..352].to_vec();
    put_i16(&mut header, DIM + 2, 4096);
    put_i16(&mut header, DIM + 4, 4096);
    put_i16(&mut header, DIM + 6, 2);
    put_i16(&mut header, DATATYPE, 4);
    put_i16(&mut header, BITPIX, 16);
    let zeros = vec![0u8; 64 << 20];
    let bomb = gzip(&[&header, &zeros]);
    assert!(bomb.len() < 1 << 20);
    assert!(matches!(
        read_nifti(&bomb, &options),
        Err(Error::VolumeTooLarge { .. } | Error::InflatedTooLarge { .. })
    ));
    // A small volume followed by a long tail of zeros: only what the header asks for is inflated.
    let b = base();
    let tail_bomb = gzip(&[&b, &zeros]);
    assert_eq!(read_nifti(&tail_bomb, &options).unwrap().dims, [5, 4, 3]);
}

#[test]
fn every_single_byte_corruption_of_the_header_is_handled() {
    let b = base();
    let mut outcomes = [0usize; 2];
    for at in 0..352 {
        for value in [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff] {
            let mut m = b.clone();
            m[at] = value;
            outcomes[usize::from(read(&m).is_ok())] += 1;
        }
    }
    assert!(
        outcomes[0] > 100,
        "many corruptions must be refused: {outcomes:?}"
    );
}

#[test]
fn random_bytes() {
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..2000 {
        let len = (next() % 2048) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 && len >= 4 {
            // Half start like a NIfTI-1 header so they get past the first check.
            bytes[..4].copy_from_slice(&348i32.to_le_bytes());
        }
        if round % 5 == 0 && len >= 2 {
            bytes[..2].copy_from_slice(&[0x1f, 0x8b]);
        }
        let _ = read(&bytes);
    }
}
