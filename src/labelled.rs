//! A volume with its label volume, as the page edits it: viewed along any axis, labelled from a
//! head's class logits, SAM's box masks, a dropped label map or the brush, rendered to RGBA.
//! Plain Rust, so that every step has native tests; `web::volume` only wraps it.
//!
//! Display coordinates: a slice along `axis` shows its first in-plane axis left to right and its
//! second bottom to top (anterior up for an axial RAS volume).

use crate::augment::Augment;
use crate::error::{Error, Result};
use crate::pipeline::{SliceInputs, label_slice, put_label_slice};
use crate::preprocess::{argmax, percentiles_nonzero};
use crate::volume::{Volume, plane_indices};
use crate::zoom::{self, Zoom};

/// A volume, the axis it is viewed along, and its labels once it has some. Segmentation, boxes
/// and training work on the acquisition axis (`seg_axis`), whatever the view.
pub struct LabelledVolume {
    pub volume: Volume,
    view_axis: usize,
    /// How encoder inputs are made, found on first use.
    inputs: Option<SliceInputs>,
    /// Empty until labelled; then one class code per voxel.
    labels: Vec<u8>,
    /// RGB per class code (background's is never drawn).
    palette: Vec<[u8; 3]>,
}

/// The side of a square grid of `n` values (the encoder grid of a logits plane).
fn grid_side(n: usize) -> usize {
    (n as f64).sqrt().round() as usize
}

fn invalid(message: &str) -> Error {
    Error::Invalid(message.into())
}

impl LabelledVolume {
    pub fn new(volume: Volume) -> Self {
        let view_axis = volume.slice_axis();
        Self {
            volume,
            view_axis,
            inputs: None,
            labels: Vec::new(),
            palette: Vec::new(),
        }
    }

    /// Same voxel grid (dimensions) as `other`: a label file can belong to it, or two frames of
    /// one heart.
    pub fn same_grid(&self, other: &Volume) -> bool {
        self.volume.dims == other.dims
    }

    /// Takes `other`'s voxels (a label map on the same grid) as the labels.
    pub fn set_labels_from(&mut self, other: &Volume) -> Result<()> {
        if !self.same_grid(other) {
            return Err(Error::Invalid(format!(
                "the label volume is {:?} voxels, the image {:?}",
                other.dims, self.volume.dims
            )));
        }
        if !other.looks_like_labels() {
            return Err(invalid(
                "that file is not a label map (its values are not a few whole numbers)",
            ));
        }
        self.labels = other.labels();
        Ok(())
    }

    /// The whole label volume (empty when unlabelled).
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Puts back what [`Self::labels`] returned; anything of another size is ignored.
    pub fn restore_labels(&mut self, labels: Vec<u8>) {
        if labels.is_empty() || labels.len() == self.volume.data.len() {
            self.labels = labels;
        }
    }

    /// The highest class code present (0 when unlabelled).
    pub fn max_label(&self) -> u8 {
        self.labels.iter().copied().max().unwrap_or(0)
    }

    pub fn has_labels(&self) -> bool {
        self.labels.iter().any(|&l| l > 0)
    }

    /// The acquisition axis: segmentation and training go slice by slice along it.
    pub fn seg_axis(&self) -> usize {
        self.volume.slice_axis()
    }

    pub fn seg_slice_count(&self) -> usize {
        self.volume.slice_count(self.seg_axis())
    }

    pub fn view_axis(&self) -> usize {
        self.view_axis
    }

    pub fn set_view_axis(&mut self, axis: usize) {
        self.view_axis = axis.min(2);
    }

    /// Slices along the view axis.
    pub fn slice_count(&self) -> usize {
        self.volume.slice_count(self.view_axis)
    }

    /// `[width, height]` of a slice along `axis` on screen.
    pub fn plane_size(&self, axis: usize) -> [usize; 2] {
        let (r, c) = Volume::plane_axes(axis.min(2));
        [self.volume.dims[r], self.volume.dims[c]]
    }

    /// Millimetres per screen pixel, `[x, y]`, of a slice along `axis`.
    pub fn plane_spacing(&self, axis: usize) -> [f64; 2] {
        let (r, c) = Volume::plane_axes(axis.min(2));
        let s = self.volume.spacing();
        [s[r].abs(), s[c].abs()]
    }

    /// Display width of the view.
    pub fn width(&self) -> usize {
        self.plane_size(self.view_axis)[0]
    }

    pub fn height(&self) -> usize {
        self.plane_size(self.view_axis)[1]
    }

    /// How encoder inputs at `size` are made, found once (again if another size is asked for).
    pub fn prepared(&mut self, size: usize) -> SliceInputs {
        match self.inputs {
            Some(p) if p.letterbox.size == size => p,
            _ => *self.inputs.insert(SliceInputs::new(&self.volume, size)),
        }
    }

    /// Slice `index` along the acquisition axis as the encoder's `[3, size, size]` input.
    pub fn encoder_input(&mut self, index: usize, size: usize) -> Result<Vec<f32>> {
        if index >= self.seg_slice_count() {
            return Err(invalid("no such slice"));
        }
        Ok(self.prepared(size).input(&self.volume, index))
    }

    /// Indices (acquisition axis) of the slices with any foreground label: what Teach trains on.
    pub fn labelled_slices(&self) -> Vec<usize> {
        if self.labels.is_empty() {
            return Vec::new();
        }
        let (dims, axis) = (self.volume.dims, self.seg_axis());
        (0..self.seg_slice_count())
            .filter(|&z| plane_indices(dims, axis, z).any(|v| self.labels[v] > 0))
            .collect()
    }

    /// Slice `index`'s labels on the encoder's `[size, size]` grid: a training target.
    pub fn training_labels(&mut self, index: usize, size: usize) -> Result<Vec<u8>> {
        if self.labels.is_empty() || index >= self.seg_slice_count() {
            return Err(invalid("no labels on that slice"));
        }
        let plane = label_slice(&self.labels, self.volume.dims, self.seg_axis(), index);
        Ok(self.prepared(size).letterbox.labels(&plane))
    }

    /// Stores slice `index`'s labels from a head's class logits `[classes, S, S]`.
    pub fn set_labels_from_logits(
        &mut self,
        index: usize,
        logits: &[f32],
        classes: usize,
    ) -> Result<()> {
        let size = grid_side(logits.len() / classes.max(1));
        let p = self.prepared(size);
        if classes == 0 || logits.len() != classes * size * size || index >= p.slice_count() {
            return Err(invalid("logits of the wrong size"));
        }
        let plane = p.letterbox.labels_from_class_logits(logits, classes);
        let (dims, axis) = (p.dims, p.axis);
        put_label_slice(self.labels_mut(), dims, axis, index, &plane);
        Ok(())
    }

    /// Every slice's labels as the encoder's `size`-square grid shows them.
    fn grid_labels(&mut self, size: usize) -> Vec<Vec<u8>> {
        let p = self.prepared(size);
        (0..p.slice_count())
            .map(|z| {
                p.letterbox
                    .labels(&label_slice(&self.labels, p.dims, p.axis, z))
            })
            .collect()
    }

    /// The second look Segment's first pass calls for with a head trained on structures
    /// spanning `target` of the grid: [`Zoom::plan`] on the labels on the encoder's `size` grid.
    pub fn zoom_plan(&mut self, size: usize, target: f32) -> Option<Zoom> {
        if self.labels.is_empty() {
            return None;
        }
        Zoom::plan(&self.grid_labels(size), size, target)
    }

    /// How much of the encoder's `size` grid the labelled structures span ([`zoom::span`]):
    /// what a head taught on this volume records.
    pub fn label_span(&mut self, size: usize) -> Option<f32> {
        if self.labels.is_empty() {
            return None;
        }
        zoom::span(&self.grid_labels(size), size)
    }

    /// Slice `index`'s encoder input on the `size` grid as `view` changes it (Teach's augmented
    /// views; natively `Case::warped`).
    pub fn view_input(&mut self, index: usize, size: usize, view: &Augment) -> Result<Vec<f32>> {
        let input = self.encoder_input(index, size)?;
        // The input's three channels are the same image.
        Ok(view.image(&input[..size * size], size, size).repeat(3))
    }

    /// Slice `index`'s training labels on the `size` grid as `view` changes them, alike with
    /// [`Self::view_input`].
    pub fn view_labels(&mut self, index: usize, size: usize, view: &Augment) -> Result<Vec<u8>> {
        let labels = self.training_labels(index, size)?;
        Ok(view.labels(&labels, size, size))
    }

    /// Slice `index`'s encoder input under `zoom`.
    pub fn zoomed_input(&mut self, index: usize, zoom: &Zoom) -> Result<Vec<f32>> {
        self.view_input(index, zoom.size, &zoom.after(Augment::IDENTITY))
    }

    /// Stores slice `index`'s labels from a head's class logits `[classes, S, S]` on the grid
    /// `zoom` made.
    pub fn set_labels_from_zoomed_logits(
        &mut self,
        index: usize,
        logits: &[f32],
        classes: usize,
        zoom: &Zoom,
    ) -> Result<()> {
        let plane = zoom.size * zoom.size;
        if classes == 0 || logits.len() != classes * plane || index >= self.seg_slice_count() {
            return Err(invalid("logits of the wrong size"));
        }
        let grid = zoom.unzoom(&argmax(logits, classes, plane));
        let p = self.prepared(zoom.size);
        let labels = p.letterbox.labels_to_slice(&grid);
        put_label_slice(self.labels_mut(), p.dims, p.axis, index, &labels);
        Ok(())
    }

    /// The volume's dimensions, x fastest: the label volume's too.
    pub fn dims(&self) -> [usize; 3] {
        self.volume.dims
    }

    /// A box drawn on the view (display pixels, corners in any order) as `[x0, y0, x1, y1]` on the
    /// encoder grid of the acquisition slice; the view must be along the acquisition axis.
    pub fn encoder_box(&mut self, size: usize, a: [f32; 2], b: [f32; 2]) -> Result<[f32; 4]> {
        if self.view_axis != self.seg_axis() {
            return Err(invalid(
                "boxes are drawn in the acquisition plane: switch the view back to it",
            ));
        }
        let h = self.height() as f32;
        // Display x runs along the slice's rows (first in-plane axis), display y up its columns.
        let (x0, x1) = (a[0].min(b[0]), a[0].max(b[0]));
        let (y0, y1) = (a[1].min(b[1]), a[1].max(b[1]));
        let scale = self.prepared(size).letterbox.scale() as f32;
        Ok([h - 1.0 - y1, x0, h - 1.0 - y0, x1].map(|v| v.max(0.0) * scale))
    }

    /// SAM's mask for a box (logits `[S, S]`) becomes `class` on slice `index`: the class's old
    /// pixels on that slice are cleared first, and pixels of the classes in `keep` stay theirs
    /// ("this mask minus these classes": myocardium is the epicardial mask minus the LV).
    /// Returns the pixels set.
    pub fn apply_mask(
        &mut self,
        index: usize,
        class: u8,
        logits: &[f32],
        keep: &[u8],
    ) -> Result<usize> {
        let p = self.prepared(grid_side(logits.len()));
        if logits.len() != p.letterbox.size * p.letterbox.size || index >= p.slice_count() {
            return Err(invalid("a mask of the wrong size"));
        }
        let back = p.letterbox.scores_to_slice(logits);
        let (dims, axis) = (p.dims, p.axis);
        let labels = self.labels_mut();
        let mut plane = label_slice(labels, dims, axis, index);
        let mut set = 0;
        for (l, &s) in plane.iter_mut().zip(&back) {
            if *l == class {
                *l = 0;
            }
            if s > 0.0 && !keep.contains(l) {
                *l = class;
                set += 1;
            }
        }
        put_label_slice(labels, dims, axis, index, &plane);
        Ok(set)
    }

    /// Paints a disc of `radius` display pixels around (x, y) on view slice `index` with `class`
    /// (0 erases).
    pub fn paint(&mut self, index: usize, x: f32, y: f32, radius: f32, class: u8) {
        let (w, h) = (self.width(), self.height());
        let r = radius.max(0.5);
        let (lo_x, hi_x) = ((x - r).floor().max(0.0) as usize, (x + r).ceil() as usize);
        let (lo_y, hi_y) = ((y - r).floor().max(0.0) as usize, (y + r).ceil() as usize);
        for py in lo_y..=hi_y.min(h.saturating_sub(1)) {
            for px in lo_x..=hi_x.min(w.saturating_sub(1)) {
                let (dx, dy) = (px as f32 + 0.5 - x, py as f32 + 0.5 - y);
                if dx * dx + dy * dy <= r * r
                    && let Some(v) = self.voxel(index, px, py)
                {
                    self.labels_mut()[v] = class;
                }
            }
        }
    }

    /// View slice `index`'s labels, for undo.
    pub fn slice_labels(&mut self, index: usize) -> Vec<u8> {
        let (dims, axis) = (self.volume.dims, self.view_axis);
        label_slice(self.labels_mut(), dims, axis, index.min(dims[axis] - 1))
    }

    /// Puts back what [`Self::slice_labels`] returned; a plane of another size is ignored.
    pub fn restore_slice_labels(&mut self, index: usize, plane: &[u8]) {
        let (dims, axis) = (self.volume.dims, self.view_axis);
        if index < dims[axis] && plane.len() == dims.iter().product::<usize>() / dims[axis] {
            put_label_slice(self.labels_mut(), dims, axis, index, plane);
        }
    }

    /// Class colours as `#rrggbb`, background first; an unreadable one draws white.
    pub fn set_palette(&mut self, colors: &[String]) {
        self.palette = colors
            .iter()
            .map(|c| {
                let v = u32::from_str_radix(c.trim_start_matches('#'), 16).unwrap_or(0xffffff);
                [(v >> 16) as u8, (v >> 8) as u8, v as u8]
            })
            .collect();
    }

    /// The label volume as `.nii.gz` bytes in the image's geometry.
    pub fn export_labels(&self) -> Result<Vec<u8>> {
        if self.labels.is_empty() {
            return Err(invalid("nothing segmented yet"));
        }
        crate::nii::write::write_labels(&self.labels, self.volume.dims, &self.volume.header)
    }

    /// Per class code 0..classes, its volume in mL (voxel count times the voxel volume).
    pub fn class_volumes_ml(&self, classes: usize) -> Vec<f64> {
        let [x, y, z] = self.volume.spacing();
        let voxel_ml = (x * y * z).abs() / 1000.0;
        let mut counts = vec![0usize; classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts.iter().map(|&n| n as f64 * voxel_ml).collect()
    }

    /// `[level, width]` covering the 0.5-99.5 percentiles of non-zero voxels.
    pub fn default_window(&self) -> [f32; 2] {
        let (lo, hi) = percentiles_nonzero(&self.volume.data, 0.5, 99.5).unwrap_or((0.0, 1.0));
        [(lo + hi) / 2.0, (hi - lo).max(f32::EPSILON)]
    }

    /// RGBA pixels of slice `index` along `axis` under a window, rows top to bottom, labels
    /// blended in at `opacity`. Its size is [`Self::plane_size`].
    pub fn render_along(
        &self,
        axis: usize,
        index: usize,
        level: f32,
        window: f32,
        opacity: f32,
    ) -> Vec<u8> {
        let axis = axis.min(2);
        let index = index.min(self.volume.dims[axis].saturating_sub(1));
        let slice = self.volume.slice(axis, index);
        let labels = if self.labels.is_empty() {
            Vec::new()
        } else {
            label_slice(&self.labels, self.volume.dims, axis, index)
        };
        let opacity = opacity.clamp(0.0, 1.0);
        let (w, h) = (slice.height, slice.width);
        let lo = level - window / 2.0;
        let window = window.max(f32::EPSILON);
        let mut rgba = vec![255u8; w * h * 4];
        for y in 0..h {
            for x in 0..w {
                // slice rows are the first in-plane axis: transpose and flip for display
                let i = x * h + (h - 1 - y);
                let g = (((slice.data[i] - lo) / window).clamp(0.0, 1.0) * 255.0).round() as u8;
                let p = (y * w + x) * 4;
                rgba[p..p + 3].fill(g);
                let class = labels.get(i).copied().unwrap_or(0) as usize;
                if let (true, Some(c)) = (class > 0, self.palette.get(class)) {
                    for (o, &c) in rgba[p..p + 3].iter_mut().zip(c) {
                        *o = (f32::from(*o) * (1.0 - opacity) + f32::from(c) * opacity).round()
                            as u8;
                    }
                }
            }
        }
        rgba
    }

    /// The voxel `[i, j, k]` under display pixel (x, y) of view slice `index`: where the other
    /// planes cross.
    pub fn ijk_at(&self, index: usize, x: usize, y: usize) -> Option<[usize; 3]> {
        let v = self.voxel(index, x, y)?;
        let [nx, ny, _] = self.volume.dims;
        Some([v % nx, (v / nx) % ny, v / (nx * ny)])
    }

    /// The label under display pixel (x, y) of view slice `index`, once labelled.
    pub fn label_at(&self, index: usize, x: usize, y: usize) -> Option<u8> {
        let v = self.voxel(index, x, y)?;
        self.labels.get(v).copied()
    }

    /// The voxel value under display pixel (x, y) of view slice `index`.
    pub fn value_at(&self, index: usize, x: usize, y: usize) -> Option<f32> {
        self.voxel(index, x, y).map(|v| self.volume.data[v])
    }

    fn labels_mut(&mut self) -> &mut Vec<u8> {
        if self.labels.len() != self.volume.data.len() {
            self.labels = vec![0; self.volume.data.len()];
        }
        &mut self.labels
    }

    /// The voxel under display pixel (x, y) of view slice `index`.
    fn voxel(&self, index: usize, x: usize, y: usize) -> Option<usize> {
        let (r, c) = Volume::plane_axes(self.view_axis);
        let (w, h) = (self.width(), self.height());
        if x >= w || y >= h || index >= self.slice_count() {
            return None;
        }
        let mut ijk = [0; 3];
        ijk[self.view_axis] = index;
        ijk[r] = x;
        ijk[c] = h - 1 - y;
        Some(self.volume.index(ijk[0], ijk[1], ijk[2]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phantom::cardiac_phantom;

    /// The phantom (128 x 144 x 8, axial) and its ground truth.
    fn phantom() -> (LabelledVolume, Volume) {
        let (image, truth) = cardiac_phantom([128, 144, 8], 0);
        (LabelledVolume::new(image), truth)
    }

    #[test]
    fn display_pixels_map_to_voxels_with_y_up() {
        let (v, _) = phantom();
        assert_eq!(v.seg_axis(), 2);
        assert_eq!(v.plane_size(2), [128, 144]);
        // The top-left display pixel is the first row's last column.
        assert_eq!(v.ijk_at(3, 0, 0), Some([0, 143, 3]));
        assert_eq!(v.ijk_at(3, 127, 143), Some([127, 0, 3]));
        assert_eq!(v.ijk_at(3, 128, 0), None);
        assert_eq!(v.ijk_at(8, 0, 0), None);
        let [i, j, k] = v.ijk_at(5, 10, 20).unwrap();
        assert_eq!(
            v.value_at(5, 10, 20),
            Some(v.volume.data[v.volume.index(i, j, k)])
        );
    }

    #[test]
    fn a_view_warps_the_input_and_its_labels_alike() {
        let (mut v, truth) = phantom();
        v.set_labels_from(&truth).unwrap();
        let size = 64;
        let (input, labels) = (
            v.encoder_input(3, size).unwrap(),
            v.training_labels(3, size).unwrap(),
        );
        let view = |v: &mut LabelledVolume, a: &Augment| {
            (
                v.view_input(3, size, a).unwrap(),
                v.view_labels(3, size, a).unwrap(),
            )
        };
        assert_eq!(
            view(&mut v, &Augment::IDENTITY),
            (input.clone(), labels.clone())
        );
        // A mirror moves every pixel to a pixel: the labels' image (codes / 3, as images stay
        // in [0, 1]) is the image of the labels.
        let mirror = Augment {
            flip: true,
            ..Augment::IDENTITY
        };
        let (image, warped) = view(&mut v, &mirror);
        assert_ne!(warped, labels);
        let as_image: Vec<f32> = labels.iter().map(|&l| f32::from(l) / 3.0).collect();
        let moved = mirror.image(&as_image, size, size);
        assert!(
            warped
                .iter()
                .zip(&moved)
                .all(|(&l, &m)| (f32::from(l) / 3.0 - m).abs() < 1e-6)
        );
        assert_eq!(
            image[..size * size],
            mirror.image(&input[..size * size], size, size)
        );
        assert_eq!(image.len(), 3 * size * size);
        assert!(v.view_input(99, size, &mirror).is_err());
        assert!(v.view_labels(99, size, &mirror).is_err());
    }

    #[test]
    fn a_second_look_zooms_onto_small_structures_and_its_labels_land_in_place() {
        let (mut v, truth) = phantom();
        v.set_labels_from(&truth).unwrap();
        // The phantom's heart as a wider field shows it: only a small square stays labelled.
        let labels = v.labels().to_vec();
        let [nx, ny, _] = v.volume.dims;
        let small: Vec<u8> = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let (x, y) = (i % nx, (i / nx) % ny);
                if (56..72).contains(&x) && (60..76).contains(&y) {
                    l.max(1)
                } else {
                    0
                }
            })
            .collect();
        v.restore_labels(small.clone());
        let size = 64;
        let zoom = v
            .zoom_plan(size, 0.3)
            .expect("small structures get a second look");
        assert!(zoom.scale > 1.5, "zoom x{}", zoom.scale);
        assert_eq!(v.zoomed_input(3, &zoom).unwrap().len(), 3 * size * size);
        // A head that sees the zoomed truth exactly: its labels come back where they were.
        let p = v.prepared(size);
        let grid = p.letterbox.labels(&label_slice(&small, p.dims, p.axis, 3));
        let seen = zoom.after(Augment::IDENTITY).labels(&grid, size, size);
        let classes = 4;
        let mut logits = vec![0.0f32; classes * size * size];
        for (i, &l) in seen.iter().enumerate() {
            logits[l as usize * size * size + i] = 1.0;
        }
        v.restore_labels(vec![0; small.len()]);
        v.set_labels_from_zoomed_logits(3, &logits, classes, &zoom)
            .unwrap();
        let want = label_slice(&small, p.dims, p.axis, 3);
        let got = label_slice(v.labels(), p.dims, p.axis, 3);
        let labelled = want.iter().filter(|&&l| l > 0).count();
        let differ = want.iter().zip(&got).filter(|(a, b)| a != b).count();
        assert!(
            labelled > 100 && differ * 10 < labelled,
            "{differ} of {labelled} differ"
        );
        assert!(
            v.set_labels_from_zoomed_logits(3, &logits[1..], classes, &zoom)
                .is_err()
        );
    }

    #[test]
    fn a_label_map_of_another_grid_or_an_image_is_refused() {
        let (mut v, truth) = phantom();
        let (other, _) = cardiac_phantom([64, 64, 4], 0);
        assert!(v.set_labels_from(&other).is_err());
        let image = v.volume.clone();
        assert!(v.set_labels_from(&image).is_err());
        assert!(!v.has_labels());
        v.set_labels_from(&truth).unwrap();
        assert_eq!(v.max_label(), 3);
        assert_eq!(v.labelled_slices().len(), 8);
    }

    #[test]
    fn the_brush_paints_a_disc_on_the_view_slice_and_undo_restores_it() {
        let (mut v, _) = phantom();
        let before = v.slice_labels(4);
        v.paint(4, 50.0, 60.0, 3.0, 2);
        // pi r^2 = 28 pixels, give or take the edge.
        let painted = v.labels().iter().filter(|&&l| l == 2).count();
        assert!((24..=32).contains(&painted), "{painted}");
        assert_eq!(v.label_at(4, 50, 60), Some(2));
        assert_eq!(v.label_at(3, 50, 60), Some(0));
        v.paint(4, 50.0, 60.0, 1.0, 0);
        assert_eq!(v.label_at(4, 50, 60), Some(0));
        v.restore_slice_labels(4, &before);
        assert!(!v.has_labels());
        // Off the edge: nothing, no panic.
        v.paint(4, -40.0, 1e6, 5.0, 1);
        assert!(!v.has_labels());
    }

    #[test]
    fn class_logits_label_a_slice_and_masks_respect_kept_classes() {
        let (mut v, _) = phantom();
        let s = 256;
        // Class 1 everywhere on the left half of the encoder grid, class 0 elsewhere.
        let mut logits = vec![0.0f32; 2 * s * s];
        for y in 0..s {
            for x in 0..s / 2 {
                logits[s * s + y * s + x] = 1.0;
            }
        }
        assert!(v.set_labels_from_logits(2, &logits[..100], 2).is_err());
        v.set_labels_from_logits(2, &logits, 2).unwrap();
        let ones = v.labels().iter().filter(|&&l| l == 1).count();
        assert!(ones > 0 && ones < 128 * 144, "{ones}");
        assert_eq!(v.labelled_slices(), vec![2]);
        // A box mask over the whole grid as class 2, keeping class 1.
        let everywhere = vec![1.0f32; s * s];
        let set = v.apply_mask(2, 2, &everywhere, &[1]).unwrap();
        assert_eq!(set, 128 * 144 - ones);
        let twos = v.labels().iter().filter(|&&l| l == 2).count();
        assert_eq!(twos, set);
        // Again without keeping: the old class-2 pixels are cleared, then all set.
        assert_eq!(v.apply_mask(2, 2, &everywhere, &[]).unwrap(), 128 * 144);
        assert!(v.apply_mask(9, 2, &everywhere, &[]).is_err());
    }

    #[test]
    fn a_box_maps_onto_the_encoder_grid_and_only_in_the_acquisition_plane() {
        let (mut v, _) = phantom();
        // 144 rows on screen scale by 256 / 144 to the encoder grid.
        let b = v.encoder_box(256, [10.0, 20.0], [0.0, 0.0]).unwrap();
        let k = 256.0 / 144.0;
        let want = [123.0 * k, 0.0, 143.0 * k, 10.0 * k];
        assert!(
            b.iter().zip(want).all(|(a, w)| (a - w).abs() < 1e-3),
            "{b:?}"
        );
        v.set_view_axis(0);
        assert!(v.encoder_box(256, [0.0, 0.0], [5.0, 5.0]).is_err());
    }

    #[test]
    fn rendering_windows_the_image_and_blends_label_colours() {
        let (mut v, truth) = phantom();
        let [level, window] = v.default_window();
        let rgba = v.render_along(2, 4, level, window, 0.5);
        assert_eq!(rgba.len(), 128 * 144 * 4);
        assert!(
            rgba.chunks(4)
                .all(|p| p[0] == p[1] && p[1] == p[2] && p[3] == 255)
        );
        v.set_labels_from(&truth).unwrap();
        v.set_palette(&["#000000".into(), "#ff0000".into()]);
        let red = v.render_along(2, 4, level, window, 1.0);
        let reds = red.chunks(4).filter(|p| p[..3] == [255, 0, 0]).count();
        let rv = (0..128 * 144)
            .filter(|&i| v.labels()[4 * 128 * 144 + i] == 1)
            .count();
        assert_eq!(reds, rv);
        // Other planes render at their own sizes.
        assert_eq!(v.render_along(0, 60, level, window, 0.5).len(), 144 * 8 * 4);
    }

    #[test]
    fn volumes_in_ml_and_the_export_round_trips() {
        let (mut v, truth) = phantom();
        assert!(v.export_labels().is_err());
        v.set_labels_from(&truth).unwrap();
        let ml = v.class_volumes_ml(4);
        let [x, y, z] = v.volume.spacing();
        let lv = truth.data.iter().filter(|&&l| l == 3.0).count() as f64;
        assert!((ml[3] - lv * x * y * z / 1000.0).abs() < 1e-9);
        let bytes = v.export_labels().unwrap();
        let back = crate::nii::read_nifti(&bytes, &Default::default()).unwrap();
        assert_eq!(back.labels(), v.labels());
    }
}
