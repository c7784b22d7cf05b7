//! Cardiac function from labelled frames of one heart: the frame with the largest LV is
//! end-diastole (ED), the one with the smallest end-systole (ES), as ACDC's two frames are.

use serde::Serialize;

/// Grams per millilitre of myocardium, the usual figure for its mass from its volume.
pub const MYOCARDIAL_DENSITY: f64 = 1.05;

/// One ventricle's volumes at ED and ES.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chamber {
    /// End-diastolic volume, mL.
    pub edv: f64,
    /// End-systolic volume, mL.
    pub esv: f64,
    pub stroke_volume: f64,
    /// Percent of the EDV ejected; none for an empty chamber.
    pub ejection_fraction: Option<f64>,
}

impl Chamber {
    pub fn new(edv: f64, esv: f64) -> Self {
        let stroke_volume = edv - esv;
        Self {
            edv,
            esv,
            stroke_volume,
            ejection_fraction: (edv > 0.0).then(|| 100.0 * stroke_volume / edv),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CardiacFunction {
    /// Indices of the ED and ES frames.
    pub ed: usize,
    pub es: usize,
    pub lv: Chamber,
    pub rv: Option<Chamber>,
    /// At ED.
    pub myocardial_mass_g: Option<f64>,
    pub myocardial_density: f64,
}

/// The label codes of the cardiac classes (`rv`, `myo` absent when the labels lack them).
#[derive(Debug, Clone, Copy)]
pub struct Codes {
    pub lv: usize,
    pub rv: Option<usize>,
    pub myo: Option<usize>,
}

/// `frames[f][code]`: the mL of label `code` in frame `f`. None with fewer than two frames or a
/// code past a frame's classes.
pub fn cardiac_function(frames: &[Vec<f64>], codes: Codes) -> Option<CardiacFunction> {
    if frames.len() < 2 {
        return None;
    }
    let ml = |f: usize, code: usize| frames[f].get(code).copied();
    let lvs: Vec<f64> = (0..frames.len())
        .map(|f| ml(f, codes.lv))
        .collect::<Option<_>>()?;
    // The first of equal largest and the last of equal smallest: two identical frames still
    // give an ED and an ES.
    let ed = (0..lvs.len()).fold(0, |b, f| if lvs[f] > lvs[b] { f } else { b });
    let es = (0..lvs.len()).fold(0, |b, f| if lvs[f] <= lvs[b] { f } else { b });
    let chamber = |code: usize| Some(Chamber::new(ml(ed, code)?, ml(es, code)?));
    Some(CardiacFunction {
        ed,
        es,
        lv: chamber(codes.lv)?,
        rv: codes.rv.and_then(chamber),
        myocardial_mass_g: codes
            .myo
            .and_then(|m| ml(ed, m))
            .map(|v| v * MYOCARDIAL_DENSITY),
        myocardial_density: MYOCARDIAL_DENSITY,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACDC: Codes = Codes {
        lv: 3,
        rv: Some(1),
        myo: Some(2),
    };

    #[test]
    fn ed_is_the_larger_lv_and_the_fractions_follow() {
        // ES first, as a user may drop them.
        let frames = vec![vec![0.0, 60.0, 100.0, 50.0], vec![0.0, 150.0, 110.0, 150.0]];
        let f = cardiac_function(&frames, ACDC).unwrap();
        assert_eq!((f.ed, f.es), (1, 0));
        assert_eq!(f.lv, Chamber::new(150.0, 50.0));
        assert!((f.lv.ejection_fraction.unwrap() - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(f.rv.unwrap().stroke_volume, 90.0);
        assert!((f.myocardial_mass_g.unwrap() - 115.5).abs() < 1e-9);
    }

    #[test]
    fn one_frame_or_a_missing_code_gives_none_and_an_empty_lv_no_fraction() {
        assert!(cardiac_function(&[vec![0.0, 1.0, 2.0, 3.0]], ACDC).is_none());
        assert!(cardiac_function(&[vec![0.0, 1.0], vec![0.0, 1.0]], ACDC).is_none());
        let empty = vec![vec![0.0; 4], vec![0.0; 4]];
        let f = cardiac_function(&empty, ACDC).unwrap();
        assert_ne!(f.ed, f.es);
        assert_eq!(f.lv.ejection_fraction, None);
        let lv_only = Codes {
            lv: 1,
            rv: None,
            myo: None,
        };
        let f = cardiac_function(&[vec![0.0, 2.0], vec![0.0, 1.0]], lv_only).unwrap();
        assert_eq!((f.rv, f.myocardial_mass_g), (None, None));
    }
}
