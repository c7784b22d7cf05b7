//! What the study's SVG plots share: the legend box and writing the file.

use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::data::at;
use crate::error::Result;

/// A chart on f64 axes in an SVG file.
pub type Chart<'a> = ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws the series' legend at `position` in a translucent framed box and writes `root` to `path`.
pub fn legend_and_save(
    chart: &mut Chart<'_>,
    root: &DrawingArea<SVGBackend<'_>, Shift>,
    position: SeriesLabelPosition,
    path: &Path,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| at(path, e))?;
    root.present().map_err(|e| at(path, e))
}
