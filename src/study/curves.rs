//! Training and validation curves of one head's runs: each run a checkpoint folder, each
//! continuing the one before (`train --init`), drawn end to end as one history.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::data::at;
use super::heads::checkpoint_history;
use crate::error::Result;
use crate::train::Progress;

/// One run's epochs, numbered on from the runs before it.
pub struct Stage {
    pub run: PathBuf,
    /// The first epoch's number in the whole history.
    pub first_epoch: usize,
    pub epochs: Vec<Progress>,
}

/// The histories of `runs`, in order.
pub fn load(runs: &[PathBuf]) -> Result<Vec<Stage>> {
    let mut first_epoch = 1;
    runs.iter()
        .map(|run| {
            let epochs = checkpoint_history(run)?;
            let stage = Stage {
                run: run.clone(),
                first_epoch,
                epochs,
            };
            first_epoch += stage.epochs.len();
            Ok(stage)
        })
        .collect()
}

/// A markdown table: one row per epoch, with its run.
pub fn table(stages: &[Stage]) -> String {
    let mut out =
        String::from("| epoch | run | training loss | validation Dice |\n|---:|---|---:|---:|\n");
    for stage in stages {
        for (i, p) in stage.epochs.iter().enumerate() {
            let val = p.val_dice.map_or("-".into(), |d| format!("{d:.4}"));
            let best = if p.best { " (best)" } else { "" };
            out += &format!(
                "| {} | {} | {:.4} | {val}{best} |\n",
                stage.first_epoch + i,
                stage.run.display(),
                p.loss
            );
        }
    }
    out
}

/// Training loss (left axis) and validation Dice (right axis) per epoch, one colour per run.
pub fn plot(stages: &[Stage], path: &Path) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| at(path, e);
    let epochs = stages.iter().map(|s| s.epochs.len()).sum::<usize>().max(1);
    let max_loss = stages
        .iter()
        .flat_map(|s| s.epochs.iter().map(|p| p.loss))
        .fold(0.0, f64::max)
        .max(0.1);
    let root = SVGBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Training loss and validation Dice by epoch",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(44)
        .right_y_label_area_size(44)
        .build_cartesian_2d(0.5..epochs as f64 + 0.5, 0.0..max_loss * 1.05)
        .map_err(|e| err(&e))?
        .set_secondary_coord(0.5..epochs as f64 + 0.5, 0.0..1.0);
    chart
        .configure_mesh()
        .x_desc("epoch")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("training loss (solid)")
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .configure_secondary_axes()
        .y_desc("validation Dice (dashed)")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, stage) in stages.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let at_epoch = |j: usize| (stage.first_epoch + j) as f64;
        let loss = stage
            .epochs
            .iter()
            .enumerate()
            .map(|(j, p)| (at_epoch(j), p.loss));
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(loss, style))
            .map_err(|e| err(&e))?
            .label(stage.run.display().to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        let dice: Vec<(f64, f64)> = stage
            .epochs
            .iter()
            .enumerate()
            .filter_map(|(j, p)| p.val_dice.map(|d| (at_epoch(j), d)))
            .collect();
        chart
            .draw_secondary_series(DashedLineSeries::new(dice.clone(), 6, 4, style))
            .map_err(|e| err(&e))?;
        chart
            .draw_secondary_series(dice.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(|e| err(&e))?;
    }
    super::plot::legend_and_save(&mut chart, &root, SeriesLabelPosition::LowerRight, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(epoch: usize, loss: f64, val: f64) -> Progress {
        Progress {
            epoch,
            loss,
            val_dice: Some(val),
            best: true,
        }
    }

    #[test]
    fn later_runs_continue_the_epoch_count() {
        let stages = [
            Stage {
                run: "a".into(),
                first_epoch: 1,
                epochs: vec![progress(1, 1.0, 0.3), progress(2, 0.5, 0.6)],
            },
            Stage {
                run: "b".into(),
                first_epoch: 3,
                epochs: vec![progress(1, 0.6, 0.7)],
            },
        ];
        let table = table(&stages);
        assert!(
            table.contains("| 3 | b | 0.6000 | 0.7000 (best) |"),
            "{table}"
        );
        let dir = std::env::temp_dir().join(format!("curves-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = dir.join("c.svg");
        plot(&stages, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("validation Dice"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
