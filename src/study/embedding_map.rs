//! The paper's other figure: the encoder's embeddings of the data at hand mapped to two
//! dimensions with t-SNE (bhtsne). Each point is one class in one slice: the mean of the
//! embedding's 256 channels over that class's cells of the 64 x 64 grid. Points are coloured by
//! class and shaped by ACDC's patient group (dilated or hypertrophic cardiomyopathy, after
//! infarction), the subsets the data here has.

use std::fmt::Write as _;
use std::path::Path;

use super::data::{Case, at};
use crate::error::{Error, Result};

/// Class cells a slice needs for its point: fewer make a noisy mean.
const MIN_CELLS: usize = 4;

/// ACDC numbers its patients by diagnosis group.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Group {
    Dilated,
    Hypertrophic,
    Infarction,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Dilated, Group::Hypertrophic, Group::Infarction];

    /// From a volume name such as `patient017_frame01`.
    pub fn of(name: &str) -> Option<Self> {
        let n: usize = name.strip_prefix("patient")?.get(..3)?.parse().ok()?;
        match n {
            1..=20 => Some(Self::Dilated),
            21..=40 => Some(Self::Hypertrophic),
            41..=50 => Some(Self::Infarction),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Dilated => "ACDC dilated CM (001-020)",
            Self::Hypertrophic => "ACDC hypertrophic CM (021-040)",
            Self::Infarction => "ACDC after infarction (041-050)",
        }
    }
}

pub struct Point {
    pub volume: String,
    pub slice: usize,
    pub class: usize,
    pub group: Group,
    pub xy: [f32; 2],
}

/// Per slice and class present: the class's mean embedding vector.
fn class_means(case: &Case) -> Vec<(usize, usize, Vec<f32>)> {
    let [c, h, w] = case.embeddings.shape;
    let size = case.prepared.letterbox.size;
    let mut out = Vec::new();
    for (z, embedding) in case.embeddings.slices.iter().enumerate() {
        let labels = case.labels(z);
        // Each embedding cell covers size / h input pixels a side; its centre pixel's class.
        let cell_class = |i: usize| {
            let (y, x) = (i / w, i % w);
            labels[(y * size / h + size / h / 2) * size + x * size / w + size / w / 2] as usize
        };
        let classes = labels.iter().map(|&l| l as usize).max().unwrap_or(0) + 1;
        for class in 0..classes {
            let cells: Vec<usize> = (0..h * w).filter(|&i| cell_class(i) == class).collect();
            if cells.len() < MIN_CELLS {
                continue;
            }
            let mean = (0..c)
                .map(|ch| {
                    let plane = &embedding[ch * h * w..(ch + 1) * h * w];
                    cells.iter().map(|&i| plane[i]).sum::<f32>() / cells.len() as f32
                })
                .collect();
            out.push((z, class, mean));
        }
    }
    out
}

/// The 2-D map of every case's class means (deterministic: spectral initialisation).
pub fn map(cases: &[Case], perplexity: f32) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    let mut vectors: Vec<Vec<f32>> = Vec::new();
    for case in cases {
        let group = Group::of(&case.name)
            .ok_or_else(|| Error::Invalid(format!("{}: not an ACDC patient name", case.name)))?;
        for (slice, class, mean) in class_means(case) {
            points.push(Point {
                volume: case.name.clone(),
                slice,
                class,
                group,
                xy: [0.0; 2],
            });
            vectors.push(mean);
        }
    }
    if vectors.len() < 3 * perplexity as usize + 1 {
        return Err(Error::Invalid(format!(
            "{} points are too few for perplexity {perplexity}",
            vectors.len()
        )));
    }
    let refs: Vec<&[f32]> = vectors.iter().map(Vec::as_slice).collect();
    let euclidean = |a: &&[f32], b: &&[f32]| {
        a.iter()
            .zip(b.iter())
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    };
    let xy = bhtsne::tSNE::<f32, &[f32]>::new(&refs)
        .perplexity(perplexity)
        .epochs(1000)
        .spectral_init()
        .barnes_hut(0.5, euclidean)
        .embedding();
    for (p, v) in points.iter_mut().zip(xy.chunks_exact(2)) {
        p.xy = [v[0], v[1]];
    }
    Ok(points)
}

pub fn csv(points: &[Point], classes: &[String]) -> String {
    let mut s = String::from("volume,slice,class,group,x,y\n");
    for p in points {
        let class = classes.get(p.class).map_or("?", String::as_str);
        let _ = writeln!(
            s,
            "{},{},{class},{:?},{},{}",
            p.volume, p.slice, p.group, p.xy[0], p.xy[1]
        );
    }
    s
}

/// An SVG scatter: colour by class, marker by group.
pub fn plot(points: &[Point], classes: &[String], palette: &[&str], path: &Path) -> Result<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| at(path, e);
    let range = |i: usize| {
        let (lo, hi) = points.iter().fold((f32::MAX, f32::MIN), |(lo, hi), p| {
            (lo.min(p.xy[i]), hi.max(p.xy[i]))
        });
        let pad = (hi - lo).max(1e-3) * 0.05;
        (lo - pad) as f64..(hi + pad) as f64
    };
    let root = SVGBackend::new(path, (760, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "LiteMedSAM embeddings, t-SNE: one point per class per slice",
            ("sans-serif", 17),
        )
        .margin(12)
        .build_cartesian_2d(range(0), range(1))
        .map_err(|e| err(&e))?;
    let colour = |class: usize| {
        let hex = palette[class % palette.len()].trim_start_matches('#');
        let byte =
            |i: usize| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("80"), 16).unwrap_or(128);
        RGBColor(byte(0), byte(2), byte(4))
    };
    for (c, name) in classes.iter().enumerate() {
        let color = if c == 0 {
            RGBColor(150, 150, 150)
        } else {
            colour(c)
        };
        let series = points
            .iter()
            .filter(|p| p.class == c && p.group == Group::Dilated)
            .map(|p| Circle::new((p.xy[0] as f64, p.xy[1] as f64), 3, color.filled()));
        chart
            .draw_series(series)
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| Circle::new((x + 6, y), 4, color.filled()));
        let triangles = points
            .iter()
            .filter(|p| p.class == c && p.group == Group::Hypertrophic)
            .map(|p| TriangleMarker::new((p.xy[0] as f64, p.xy[1] as f64), 4, color.filled()));
        chart.draw_series(triangles).map_err(|e| err(&e))?;
        let crosses = points
            .iter()
            .filter(|p| p.class == c && p.group == Group::Infarction)
            .map(|p| Cross::new((p.xy[0] as f64, p.xy[1] as f64), 3, color.stroke_width(2)));
        chart.draw_series(crosses).map_err(|e| err(&e))?;
    }
    super::plot::legend_and_save(&mut chart, &root, SeriesLabelPosition::MiddleRight, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_acdc_numbering() {
        assert_eq!(Group::of("patient017_frame01"), Some(Group::Dilated));
        assert_eq!(Group::of("patient021_frame02"), Some(Group::Hypertrophic));
        assert_eq!(Group::of("patient050_frame01"), Some(Group::Infarction));
        assert_eq!(Group::of("phantom"), None);
        assert_eq!(Group::ALL.len(), 3);
    }
}
